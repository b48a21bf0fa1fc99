"""A stylize job reads its style's registry files once (issue 23): the style record, and with edits the
direction set, are read by one `ServingCache.serve` per job, not again by each step that needs them. The job
runs in-process through its real entry point (`workers.kinds.stylize.stylize_job`), on a real Redis and the tiny
demo registry; every `read_text`/`read_bytes` under the registry is counted."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from tests.service.conftest import queue_stylize_job
from workers.kinds.stylize import run as run_stylize


def _reads_during(monkeypatch, registry: Path, action) -> Counter:
    """The registry files read while `action` runs, by path relative to the registry."""
    reads: Counter = Counter()
    for name in ("read_text", "read_bytes"):
        real = getattr(Path, name)

        def counted(self, *args, _real=real, **kwargs):
            resolved = Path(self).resolve()
            if resolved.is_relative_to(registry.resolve()):
                reads[str(resolved.relative_to(registry.resolve()))] += 1
            return _real(self, *args, **kwargs)

        monkeypatch.setattr(Path, name, counted)
    action()
    monkeypatch.undo()
    return reads


@pytest.mark.parametrize("with_edit", [False, True], ids=["plain", "edited"])
def test_a_stylize_job_reads_each_style_file_once(
    job_ctx, serving, aligner, directions, monkeypatch, with_edit
) -> None:
    ctx, cache = job_ctx, serving
    edits = [{"direction": "sefa", "index": 0, "alpha": 2.0}] if with_edit else []
    cache.stylizer("demo")  # the worker's warm-up: the networks are loaded before any job
    payload = queue_stylize_job(ctx, aligner, edits=edits).model_dump()
    result: dict = {}
    reads = _reads_during(monkeypatch, ctx.registry.root, lambda: result.update(run_stylize(payload)))
    assert result.get("width") == 256, result
    assert reads["styles/demo/style.json"] == 1, reads
    assert all(count == 1 for count in reads.values()), reads
    if with_edit:
        assert result["edits"][0]["direction"] == "sefa"

"""The shared data directory: atomic results, id-only paths, TTL sweep."""

from __future__ import annotations

import os
import time
import uuid
from pathlib import Path

import pytest

from service.storage import Storage


def test_results_inputs_and_sweep(tmp_path: Path) -> None:
    storage = Storage(tmp_path)
    old, new = uuid.uuid4().hex, uuid.uuid4().hex
    for job in (old, new):
        storage.write_input(job, b"photo")
        storage.write_result(job, "png", b"image")
    assert storage.read_input(new) == b"photo"
    assert storage.result_path(new) == tmp_path / "results" / f"{new}.png"
    assert not list(tmp_path.rglob(".*"))  # no temporary files left behind
    past = time.time() - 7200
    for path in (tmp_path / "inputs" / old, tmp_path / "results" / f"{old}.png"):
        os.utime(path, (past, past))
    assert storage.sweep(3600) == 2
    assert storage.result_path(old) is None and storage.result_path(new) is not None
    assert not (tmp_path / "inputs" / old).exists()


def test_paths_never_come_from_user_input(tmp_path: Path) -> None:
    storage = Storage(tmp_path)
    for bad in ("../etc", "a" * 32 + "/x", "ABCDEF" * 6):
        with pytest.raises(ValueError):
            storage.write_input(bad, b"x")
    with pytest.raises(ValueError):
        storage.write_result(uuid.uuid4().hex, "exe", b"x")

"""The layering contracts of pyproject.toml ([tool.importlinter]) hold, and wrong imports break them: in a
scratch copy of the packages, each kind of wrong import (the API importing torch, the platform importing the
API or a web framework, the torch library importing the API, a cycle between two command modules) makes
`lint-imports` fail with the contract it breaks."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LINT = Path(sys.executable).with_name("lint-imports")
CONTRACTS = 6


def _lint(root: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(root)}
    return subprocess.run([str(LINT), "--no-cache"], cwd=root, env=env, capture_output=True, text=True, timeout=120)


def _scratch_copy(root: Path, with_console: bool = False) -> Path:
    """The three packages and pyproject.toml under `root` (the console's files only when asked: the API serves
    them, the import graph does not need them)."""
    skip = ("__pycache__",) if with_console else ("__pycache__", "console")
    for package in ("models", "service", "workers"):
        shutil.copytree(ROOT / package, root / package, ignore=shutil.ignore_patterns(*skip))
    shutil.copy(ROOT / "pyproject.toml", root / "pyproject.toml")
    return root


def _add_import(path: Path, line: str) -> None:
    """Append an import at module level (a function-level one counts the same for the graph)."""
    path.write_text(path.read_text() + f"\n{line}  # noqa\n")


def test_the_contracts_hold(tmp_path: Path) -> None:
    clean = _lint(_scratch_copy(tmp_path))
    assert clean.returncode == 0 and f"{CONTRACTS} kept, 0 broken" in clean.stdout, clean.stdout[-2000:]


NO_TORCH, FLOORS, WORKER_FLOORS, PORTRAIT_ONLY, NO_WEB, NO_CYCLE = (
    "the API and the platform import no torch",
    "the floors:",
    "the worker floors:",
    "the torch library reads only the portrait domain",
    "the platform imports no web framework",
    "no import cycle",
)


@pytest.mark.parametrize(
    ("module", "line", "contract", "edge"),
    [
        ("service/api/edits.py", "import torch", NO_TORCH, "service.api.edits -> torch"),
        ("service/platform/registry.py", "from service.api import errors", FLOORS, "service.platform.registry -> "),
        ("service/portrait/configs.py", "import service.platform.jobstore", FLOORS, "service.portrait.configs -> "),
        ("models/networks/encoder.py", "import service.api.schemas", FLOORS, "models.networks.encoder -> service"),
        ("models/networks/encoder.py", "import service.platform.registry", PORTRAIT_ONLY, "models.networks.encoder ->"),
        ("service/platform/jobstore.py", "import fastapi", NO_WEB, "service.platform.jobstore -> fastapi"),
        ("service/portrait/media/images.py", "import anyio", NO_WEB, "service.portrait.media.images -> anyio"),
        ("workers/worker.py", "from workers.launcher import up", WORKER_FLOORS, "workers.worker -> workers.launcher"),
        ("workers/serving/cache.py", "import workers.kinds.stylize", WORKER_FLOORS, "workers.serving.cache -> "),
        ("workers/lifecycle.py", "import workers.serving.cache", WORKER_FLOORS, "workers.lifecycle -> workers.serving"),
        ("workers/context.py", "import workers.lifecycle", WORKER_FLOORS, "workers.context -> workers.lifecycle"),
        ("models/cli/common.py", "from models.cli import directions", NO_CYCLE, "cycles are allowed in models.cli"),
    ],
)
def test_a_wrong_import_is_caught(tmp_path: Path, module: str, line: str, contract: str, edge: str) -> None:
    root = _scratch_copy(tmp_path)
    _add_import(root / module, line)
    broken = _lint(root)
    assert broken.returncode != 0, broken.stdout[-2000:]
    assert "0 broken" not in broken.stdout, broken.stdout[-2000:]
    assert any(row.startswith(contract) and row.endswith("BROKEN") for row in broken.stdout.splitlines()), (
        broken.stdout[-2000:]
    )
    assert edge in broken.stdout, broken.stdout[-3000:]


def test_every_kind_names_a_job_function_and_callback_that_exist() -> None:
    """The API enqueues by dotted path (it cannot import the workers): each kind's function and failure
    callback resolve to functions of its module under workers/kinds/, and every module there is a kind."""
    import importlib

    from service.platform.job_kinds import KINDS, LEGACY_FUNCTIONS, kind_of_function

    assert list(KINDS) == ["stylize", "animate", "fit_direction", "train"]
    for kind in KINDS.values():
        for path in (kind.function, kind.on_failure):
            module, _, attribute = path.rpartition(".")
            assert callable(getattr(importlib.import_module(module), attribute)), path
        assert kind_of_function(kind.function) is kind
    modules = {p.stem for p in (ROOT / "workers" / "kinds").glob("*.py") if p.stem != "__init__"}
    assert modules == set(KINDS)
    assert {kind_of_function(path).name for path in LEGACY_FUNCTIONS} == set(KINDS)

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
CONTRACTS = 4


def _lint(root: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(root)}
    return subprocess.run([str(LINT), "--no-cache"], cwd=root, env=env, capture_output=True, text=True, timeout=120)


def _scratch_copy(root: Path) -> Path:
    for package in ("models", "service", "workers"):
        shutil.copytree(ROOT / package, root / package, ignore=shutil.ignore_patterns("__pycache__", "console"))
    shutil.copy(ROOT / "pyproject.toml", root / "pyproject.toml")
    return root


def _add_import(path: Path, line: str) -> None:
    """Append an import at module level (a function-level one counts the same for the graph)."""
    path.write_text(path.read_text() + f"\n{line}  # noqa\n")


def test_the_contracts_hold(tmp_path: Path) -> None:
    clean = _lint(_scratch_copy(tmp_path))
    assert clean.returncode == 0 and f"{CONTRACTS} kept, 0 broken" in clean.stdout, clean.stdout[-2000:]


NO_TORCH, FLOORS, NO_WEB, NO_CYCLE = (
    "the API and the platform import no torch",
    "three floors",
    "the platform imports no web framework",
    "no import cycle",
)


@pytest.mark.parametrize(
    ("module", "line", "contract", "edge"),
    [
        ("service/api/edits.py", "import torch", NO_TORCH, "service.api.edits -> torch"),
        ("service/core/registry.py", "from service.api import errors", FLOORS, "service.core.registry -> service.api"),
        ("models/networks/encoder.py", "import service.api.schemas", FLOORS, "models.networks.encoder -> service"),
        ("service/core/jobstore.py", "import fastapi", NO_WEB, "service.core.jobstore -> fastapi"),
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


def test_every_job_function_and_callback_the_contract_names_exists() -> None:
    """The API enqueues by dotted path (it cannot import the workers): each path resolves to a function."""
    import importlib

    from service.core import contract

    paths = {name: value for name, value in vars(contract).items() if name.endswith(("_FUNCTION", "_CALLBACK"))}
    assert len(paths) == 6, paths
    for name, path in paths.items():
        module, _, attribute = path.rpartition(".")
        assert callable(getattr(importlib.import_module(module), attribute)), name

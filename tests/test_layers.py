"""The layering contracts of pyproject.toml ([tool.importlinter]) hold, and a wrong import breaks them:
in a scratch copy of the packages, the API importing torch makes `lint-imports` fail."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LINT = Path(sys.executable).with_name("lint-imports")


def _lint(root: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(root)}
    return subprocess.run([str(LINT), "--no-cache"], cwd=root, env=env, capture_output=True, text=True, timeout=120)


def test_the_contracts_hold_and_a_wrong_import_is_caught(tmp_path: Path) -> None:
    for package in ("models", "service", "workers"):
        shutil.copytree(ROOT / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__", "console"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    clean = _lint(tmp_path)
    assert clean.returncode == 0 and "3 kept, 0 broken" in clean.stdout, clean.stdout[-2000:]
    edits = tmp_path / "service" / "edits.py"
    edits.write_text(edits.read_text().replace("import json\n", "import json\n\nimport torch  # noqa\n", 1))
    broken = _lint(tmp_path)
    assert broken.returncode != 0 and "the API imports no torch and no worker code BROKEN" in broken.stdout, (
        broken.stdout[-2000:]
    )
    assert "service.edits -> torch" in broken.stdout


def test_every_job_function_and_callback_the_contract_names_exists() -> None:
    """The API enqueues by dotted path (it cannot import the workers): each path resolves to a function."""
    import importlib

    from service import contract

    paths = {name: value for name, value in vars(contract).items() if name.endswith(("_FUNCTION", "_CALLBACK"))}
    assert len(paths) == 6, paths
    for name, path in paths.items():
        module, _, attribute = path.rpartition(".")
        assert callable(getattr(importlib.import_module(module), attribute)), name

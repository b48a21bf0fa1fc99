"""Fixtures of the model tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from workers.launcher.demo import demo_registry


@pytest.fixture(scope="module")
def tiny_registry(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny random-weight demo registry (64 px), one per test module (some modules add files to it)."""
    root = tmp_path_factory.mktemp("registry") / "registry"
    demo_registry(root, size=64, tiny=True)
    return root

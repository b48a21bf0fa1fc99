"""The shape of the code a newcomer reads: no function outside tests/ and bench/ is over 60 lines, and no
route handler or helper reaches into `app.state` (only the app factory and the dependency module do)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("models", "service", "workers")
MAX_FUNCTION_LINES = 60


def _functions() -> list[tuple[int, str]]:
    found = []
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                    lines = node.end_lineno - node.lineno + 1
                    found.append((lines, f"{path.relative_to(ROOT)}:{node.lineno} {node.name}"))
    return found


def test_no_function_is_over_60_lines() -> None:
    functions = _functions()
    assert len(functions) > 500  # the walk saw the packages
    long = sorted((n, where) for n, where in functions if n > MAX_FUNCTION_LINES)
    assert long == [], long


def test_only_the_app_factory_and_the_dependencies_read_app_state() -> None:
    readers = sorted(
        str(path.relative_to(ROOT)) for path in (ROOT / "service").rglob("*.py") if "app.state" in path.read_text()
    )
    assert readers == ["service/api/app.py", "service/api/deps.py"], readers

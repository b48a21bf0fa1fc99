"""The README's command examples run as written (so they cannot rot).

Every `agilegan …` line of the README's ```sh blocks runs, in order, in a fresh working directory that
has the repository's `tests/` (for the photos) and nothing else, as after `make run` (which writes the
demo registry). Commands that need the internet run against a dead network and must fail with one
clear line, not a traceback.
"""

from __future__ import annotations

import os
import re
import shlex
from pathlib import Path

from tests.cli import agilegan

ROOT = Path(__file__).resolve().parents[1]
NEEDS_NETWORK = ("agilegan styles install",)


def readme_commands() -> list[str]:
    commands = []
    for block in re.findall(r"```sh\n(.*?)```", (ROOT / "README.md").read_text(), flags=re.S):
        joined = block.replace("\\\n", " ")
        commands += [line.strip() for line in joined.splitlines() if line.strip().startswith("agilegan ")]
    return commands


def test_the_readme_has_cli_examples() -> None:
    commands = readme_commands()
    assert len(commands) >= 10
    assert any(c.startswith("agilegan styles install") for c in commands)
    assert any("--structure" in c and "--strength" in c and "--source" in c for c in commands)


def test_every_readme_cli_example_runs_as_written(tmp_path: Path) -> None:
    """Through the CLI's entry point in this process (tests/cli.py: the same argv, no torch import per
    command), in a fresh working directory."""
    (tmp_path / "tests").symlink_to(ROOT / "tests")
    env = {**os.environ, "AGILEGAN_DOWNLOAD_MIRROR": "http://127.0.0.1:9", "AGILEGAN_DOWNLOAD_TIMEOUT_S": "5"}
    env.pop("AGILEGAN_DATA_DIR", None)
    for command in readme_commands():
        done = agilegan(*shlex.split(command)[1:], cwd=tmp_path, env=env)
        if command.startswith(NEEDS_NETWORK):
            assert done.returncode == 1, (command, done.stdout, done.stderr)
            assert "Traceback" not in done.stderr and "could not reach" in done.stderr, done.stderr
        else:
            assert done.returncode == 0, (command, done.stdout[-2000:], done.stderr[-2000:])
    for output in ("aligned/obama.png", "wplus.npy", "stylized.png", "blended.png", "sample-000.png", "raw.npy"):
        assert (tmp_path / "out" / output).is_file(), output
    strays = sorted(p.name for p in tmp_path.iterdir() if p.name not in ("tests", "out", "data"))
    assert strays == [], strays  # every output under the one ignored folder


def _architecture() -> str:
    text = (ROOT / "README.md").read_text()
    start = text.index("## Architecture\n")
    assert start < len(text) // 5, "the map is near the README's top"
    return text[start : text.index("\n## ", start + 1)]


def test_every_path_the_architecture_map_names_exists() -> None:
    """Folders and files (`a/b.py`, and a bare `b.py` in a folder's row), and dotted names (a module, or an
    attribute of one): each one the map names is there."""
    import importlib

    section = _architecture()
    paths = set(re.findall(r"`([\w./-]+/[\w./-]*)`", section))
    block = re.search(r"```\n(.*?)```", section, flags=re.S).group(1)
    paths |= {line.split()[0] for line in block.splitlines() if "/" in line.split()[0]}
    paths |= {p.rstrip("/") for p in re.findall(r"(?<![\w`/])((?:service|models|workers|tests)/[\w./]+)", section)}
    folders = re.findall(r"^\| `([\w/]+)/` \| (.*?) \|", section, flags=re.M)
    for folder, holds in folders:  # a folder's row names its files and sub-folders from there
        paths |= {f"{folder}/{name}" for name in re.findall(r"`([\w.]+(?:\.py|/))`", holds)}
    top = ("service/", "models/", "workers/", "tests/", "bench/", "docker/", "docs/")
    relative = {p for p in paths if not p.startswith(top)}  # a sub-folder as its folder's row names it
    assert relative <= {name for folder, holds in folders for name in re.findall(r"`([\w./]+)`", holds)}, relative
    missing = sorted(p for p in paths - relative if not (ROOT / p.rstrip("/")).exists())
    assert len(paths) > 40 and missing == [], missing
    dotted = set(re.findall(r"`((?:models|service|workers)\.[\w.]+)(?:\(\))?`", section))
    assert len(dotted) >= 3
    for name in dotted:  # a module, or an attribute of one
        module, _, attribute = name.rpartition(".")
        try:
            importlib.import_module(name)
        except ImportError:
            assert hasattr(importlib.import_module(module), attribute), name


def test_the_maps_table_of_job_kinds_is_the_table_in_the_code() -> None:
    from service.platform.job_kinds import KINDS

    rows = re.findall(r"^\| `(\w+)` \| `(\w+)` \| `(workers/kinds/\w+\.py)` \| (.*?) \|$", _architecture(), flags=re.M)
    assert {(kind, queue, module) for kind, queue, module, _ in rows} == {
        (k.name, k.queue, k.module.replace(".", "/") + ".py") for k in KINDS.values()
    }
    assert {summary for *_, summary in rows} == {k.summary for k in KINDS.values()}

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

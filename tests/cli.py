"""The `agilegan` CLI run in this test process: the same entry point (`workers.launcher.cli.main`) and argv as the
console script, with its stdout, stderr and exit status captured, but without a process start and a
torch import per command (about 3 s each on a 2-core machine, a minute or two over the suite).

The installed console script itself is run as a real subprocess by
`tests/models/test_cli.py::test_the_console_script_is_installed`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import os
from pathlib import Path

from workers.launcher.cli import main


@dataclasses.dataclass(frozen=True)
class Ran:
    """What a command left: like subprocess.CompletedProcess (returncode, stdout, stderr)."""

    returncode: int
    stdout: str
    stderr: str


def agilegan(*args: object, cwd: Path | None = None, env: dict[str, str] | None = None) -> Ran:
    """Run `agilegan ARGS…` here, in `cwd` with exactly `env` as the environment when given (both are
    restored afterwards). An exception the CLI does not turn into an exit status propagates."""
    out, err = io.StringIO(), io.StringIO()
    saved_env, saved_cwd = dict(os.environ), os.getcwd()
    try:
        if env is not None:
            os.environ.clear()
            os.environ.update(env)
        if cwd is not None:
            os.chdir(cwd)
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = main([str(a) for a in args]) or 0
            except SystemExit as e:  # argparse, and commands that exit with a message
                if isinstance(e.code, int) or e.code is None:
                    code = e.code or 0
                else:
                    print(e.code, file=err)
                    code = 1
    finally:
        os.chdir(saved_cwd)
        if env is not None:
            os.environ.clear()
            os.environ.update(saved_env)
    return Ran(code, out.getvalue(), err.getvalue())

"""`agilegan`: the one command-line entry point; subcommands come from the packages that own them.

Run `agilegan --help` for the list. Model commands (weights import, generate, invert) live in
`models.cli.main`; this module only assembles the parser, so importing it loads no torch.
"""

from __future__ import annotations

import argparse
import sys

from models.cli import main as model_cli
from workers.launcher import commands as service_commands


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="agilegan",
        description="AgileGAN portrait stylization: model tools, the API server and GPU workers.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    model_cli.add_commands(sub)
    service_commands.add_commands(sub)
    return parser


LIST_OPTIONS = ("--alphas", "--range")  # take comma lists that may start with a minus: "--alphas -3,0,3"


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    for i in range(len(argv) - 2, -1, -1):  # argparse reads "-3,0,3" as an option; glue it to its flag
        if argv[i] in LIST_OPTIONS and argv[i + 1].startswith("-") and argv[i + 1][1:2].isdigit():
            argv[i : i + 2] = [f"{argv[i]}={argv[i + 1]}"]
    args = build_parser().parse_args(argv)
    return model_cli.run(args)


if __name__ == "__main__":
    sys.exit(main())

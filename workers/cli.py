"""`agilegan`: the one command-line entry point; subcommands come from the packages that own them.

Run `agilegan --help` for the list. Model commands (weights import, generate, invert) live in
`models.cli`; this module only assembles the parser, so importing it loads no torch.
"""

from __future__ import annotations

import argparse
import sys

from models import cli as model_cli
from workers import commands as service_commands


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="agilegan",
        description="AgileGAN portrait stylization: model tools, the API server and GPU workers.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    model_cli.add_commands(sub)
    service_commands.add_commands(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return model_cli.run(args)


if __name__ == "__main__":
    sys.exit(main())

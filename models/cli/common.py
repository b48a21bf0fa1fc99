"""What the model commands share: the one-line user error, the device, the output-suffix check.

Every command module imports this one and none imports another (no cycle between the command files)."""

from __future__ import annotations

from pathlib import Path

from service.portrait.exemplar_files import IMAGE_SUFFIXES

__all__ = ["IMAGE_SUFFIXES", "CommandError", "check_out_suffix", "command_device"]


class CommandError(ValueError):
    """A user error that the CLI reports as one line (models.cli.main.run prints it, status 1)."""


def command_device(name: str) -> str:
    """The device of `--device NAME` (auto, cpu, cuda, cuda:1, …), as the workers pick theirs."""
    from models.inference.device import DeviceUnavailable, pick_device

    try:
        return str(pick_device(name))
    except DeviceUnavailable as e:
        raise CommandError(f"--device {e}") from e


def check_out_suffix(path: Path, allowed: tuple[str, ...]) -> None:
    if path.suffix.lower() not in allowed:
        raise CommandError(f"--out {path}: the suffix must be one of {', '.join(allowed)}")

"""Which torch device a process runs on: one rule for the workers and the command line."""

from __future__ import annotations

import torch


class DeviceUnavailable(ValueError):
    """The setting names a CUDA device on a machine without CUDA."""


def pick_device(name: str) -> torch.device:
    """`auto` → CUDA when available, else the CPU; `cpu`, `cuda`, `cuda:1`, … as named.

    A CUDA device asked for where none is available is refused here, at start, rather than at the first
    tensor moved to it."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise DeviceUnavailable(f"{name}: CUDA is not available on this machine")
    return device

"""Run-time speed choices of the networks, made per device by measurement.

Two flags, carried by the modules and never part of a config (the same weights, the same images):

- `channels_last`: NHWC or NCHW feature maps (`StyleStem.channels_last`, `VAEStyleEncoder.channels_last`).
  On this project's CPU NHWC measured faster (1024 px generator, batch 1: 1.2 s → 0.74 s,
  bench/generator.py). On CUDA it depends on the GPU, the precision and the batch (cuDNN's NHWC kernels
  shine with tensor cores in half precision; on an H200 NCHW measured 1.8× faster for the generator at
  batch 32, issue 26).
- `fold_blur`: each upsampling convolution's blur folded into its kernel (`ModulatedConv2d.fold_blur`):
  one pass instead of two for about 4× that convolution's multiply-adds. The CPU is bound by the
  multiply-adds; on an H200 the blur's depthwise pass was 32 % of a generator forward (issue 26).

A worker times each both ways at start (`measure`) on its own device, networks and batch, and keeps
the faster; ties keep the flag's default side. `KeptChoices` remembers a measured choice next to the
compiled kernels, so that a restarted worker takes the same one: a near tie measured again under other
load could flip, and the other layout's graphs would have to be compiled anew.
"""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn

from service.portrait.checkpoint_files import atomic_write_bytes

FLAGS = ("channels_last", "fold_blur")
PREFERRED = {"channels_last": True, "fold_blur": False}  # the side a tie keeps, and `auto` before measuring
TIE = 1.02  # within 2 %: a tie


def initial_flag(flag: str, setting: str) -> bool:
    """A flag's side for its setting (on, off, auto, measure) before any measurement: `on` and `off` as
    named, else the preferred side (the CPU's: channels-last on, the blur unfolded)."""
    return setting == "on" or (setting != "off" and PREFERRED[flag])


@dataclass(frozen=True)
class SpeedChoice:
    """The outcome of `measure`: each side's median seconds per pass, and the choice."""

    flag: str
    on: bool
    on_s: float
    off_s: float
    kept: bool = False  # taken from an earlier start's measurement (`KeptChoices`)

    def describe(self) -> str:
        side = "on" if self.on else "off"
        times = f"on {self.on_s * 1000:.1f} ms, off {self.off_s * 1000:.1f} ms"
        return f"{self.flag} {side} ({times}{', kept from an earlier start' if self.kept else ''})"


class KeptChoices:
    """Measured choices in a JSON file, by a key naming what was measured (device, torch, precision,
    batch, networks). Delete the file to measure again."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def get(self, key: str) -> SpeedChoice | None:
        entry = self._entries().get(key)
        return None if entry is None else SpeedChoice(**{**entry, "kept": True})

    def put(self, key: str, choice: SpeedChoice) -> None:
        entries = {**self._entries(), key: {**asdict(choice), "kept": False}}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(self.path, (json.dumps(entries, indent=2) + "\n").encode())

    def _entries(self) -> dict[str, dict]:
        try:
            entries = json.loads(self.path.read_text())
        except (OSError, ValueError):  # none yet, or a damaged file: measure again
            return {}
        return entries if isinstance(entries, dict) else {}


def set_flag(module: nn.Module, flag: str, on: bool) -> None:
    """Set the run-time flag `flag` of every submodule that has one."""
    if flag not in FLAGS:
        raise ValueError(f"unknown speed flag {flag!r}")
    for m in module.modules():
        if hasattr(type(m), flag):
            setattr(m, flag, on)


def uses(module: nn.Module, flag: str) -> bool:
    """The flag of the first submodule that carries one (False for a module without)."""
    return next((bool(getattr(m, flag)) for m in module.modules() if hasattr(type(m), flag)), False)


def measure(modules: list[nn.Module], flag: str, run: Callable[[], object], prefer: bool, runs: int = 3) -> SpeedChoice:
    """Time `run` (a forward pass of `modules`) with `flag` on and off, interleaved, after a warm-up of
    each; set the faster on `modules` and return the figures. A tie keeps `prefer`."""
    device = next(modules[0].parameters()).device
    times: dict[bool, list[float]] = {True: [], False: []}
    for i in range(runs + 1):
        for on in (True, False):
            for m in modules:
                set_flag(m, flag, on)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            started = time.perf_counter()
            run()
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            if i:  # the first round warms both (cuDNN picks its algorithms per layout and kernel)
                times[on].append(time.perf_counter() - started)
    on_s, off_s = statistics.median(times[True]), statistics.median(times[False])
    on = on_s <= off_s * TIE if prefer else on_s * TIE < off_s
    for m in modules:
        set_flag(m, flag, on)
    return SpeedChoice(flag, on, on_s, off_s)

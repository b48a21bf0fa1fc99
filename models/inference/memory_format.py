"""Channels-last (NHWC) or contiguous (NCHW) feature maps for inference, chosen by measurement.

The generator (`StyleStem.channels_last`) and the encoder (`VAEStyleEncoder.channels_last`) carry a
run-time flag. On this project's CPU, NHWC measured faster (1024 px generator, batch 1: 1.2 s → 0.74 s,
bench/generator.py). On CUDA it depends on the GPU, the precision and the batch (cuDNN's NHWC kernels
shine with tensor cores in half precision, grouped and depthwise convolutions may not), so a worker
can time both at start (`measure`) on its own device and networks, and keep the faster.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class MemoryFormatChoice:
    """The outcome of `measure`: each side's median seconds per pass, and the choice."""

    channels_last: bool
    channels_last_s: float
    contiguous_s: float

    def describe(self) -> str:
        chosen = "channels-last" if self.channels_last else "contiguous"
        nhwc, nchw = self.channels_last_s * 1000, self.contiguous_s * 1000
        return f"{chosen} (channels-last {nhwc:.1f} ms, contiguous {nchw:.1f} ms)"


def set_channels_last(module: nn.Module, on: bool) -> None:
    """Set the run-time memory-format flag of every submodule that has one (generators, encoders)."""
    for m in module.modules():
        if hasattr(type(m), "channels_last"):
            m.channels_last = on


def uses_channels_last(module: nn.Module) -> bool:
    """The flag of the first submodule that carries one (False for a module without)."""
    return next((bool(m.channels_last) for m in module.modules() if hasattr(type(m), "channels_last")), False)


def measure(modules: list[nn.Module], run: Callable[[], object], runs: int = 3) -> MemoryFormatChoice:
    """Time `run` (a forward pass of `modules`) with both formats, interleaved, after a warm-up of each;
    set the faster on `modules` and return the figures. Ties (within 2 %) keep channels-last."""
    device = next(modules[0].parameters()).device
    times: dict[bool, list[float]] = {True: [], False: []}
    for i in range(runs + 1):
        for on in (True, False):
            for m in modules:
                set_channels_last(m, on)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            started = time.perf_counter()
            run()
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            if i:  # the first round warms both (cuDNN picks its algorithms per format)
                times[on].append(time.perf_counter() - started)
    nhwc, nchw = statistics.median(times[True]), statistics.median(times[False])
    choice = MemoryFormatChoice(nhwc <= nchw * 1.02, nhwc, nchw)
    for m in modules:
        set_channels_last(m, choice.channels_last)
    return choice

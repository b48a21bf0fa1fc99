"""How many kernels a call launches: the figure that bounds a network's speed at small batches on a GPU.

On CUDA it is the number of kernels the profiler sees. On the CPU it is the number of top-level aten
calls that do work: views, metadata and casts or copies to what a tensor already is launch nothing;
every other call is one pass (or one library call) over its tensors, the analogue of a kernel. The
CPU count is what the regression test of issue 26 holds (tests/models/test_generator_passes.py), and
`bench/generator.py` prints both.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch.profiler import ProfilerActivity, profile

NO_WORK = frozenset(
    {
        "aten::view", "aten::reshape", "aten::select", "aten::expand", "aten::as_strided", "aten::slice",
        "aten::transpose", "aten::unsqueeze", "aten::squeeze", "aten::detach", "aten::t", "aten::permute",
        "aten::_unsafe_view", "aten::alias", "aten::lift_fresh", "aten::empty", "aten::empty_like",
        "aten::empty_strided", "aten::view_as", "aten::expand_as", "aten::flatten", "aten::unbind",
        "aten::split", "aten::chunk", "aten::narrow", "aten::_reshape_alias", "aten::resolve_conj",
        "aten::resolve_neg",
    }
)  # fmt: skip
COPIES = frozenset({"aten::to", "aten::contiguous", "aten::reshape", "aten::clone"})  # work only when they copy
_COPY_CALLS = ("aten::_to_copy", "aten::copy_", "aten::clone")


def count_launches(run: Callable[[], object], device: torch.device | str = "cpu") -> int:
    """Kernels launched by `run()` on `device` (see the module docs for the CPU's count)."""
    device = torch.device(device)
    if device.type == "cuda":
        with profile(activities=[ProfilerActivity.CUDA]) as prof:
            run()
            torch.cuda.synchronize(device)
        return sum(1 for e in prof.events() if e.device_type == torch.autograd.DeviceType.CUDA)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        run()
    top = [e for e in prof.events() if e.cpu_parent is None and e.name.startswith("aten::")]
    return sum(1 for e in top if (e.name not in NO_WORK and e.name not in COPIES) or (e.name in COPIES and _copies(e)))


def _copies(event) -> bool:  # noqa: ANN001 - a profiler event
    return any(c.name in _COPY_CALLS or _copies(c) for c in event.cpu_children)

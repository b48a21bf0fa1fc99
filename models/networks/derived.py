"""Tensors derived from a module's weights or buffers, computed once and reused until those change.

A generator forward would otherwise recompute, on every call and for every layer, values that depend
only on its weights: the flipped FIR kernel of each blur, the squared norms that demodulation needs,
a bias times the activation gain. Each is a kernel launch, and at batch 1 on a GPU the launches are
the cost (issue 26).

`derived` keeps the value for the module, in a table beside it (neither its state dict nor a deep
copy carries it), under a key made of each source's storage, version counter (bumped by every
in-place write: `load_state_dict`, an optimiser step), device, dtype and shape, and of whether
inference mode is on (an inference tensor may not be saved for backward). It computes without keeping
anything while autograd records a graph through a source that requires grad (training: the value
must be part of the graph), while `torch.compile` traces (the compiled graph fuses the computation
instead), while a CUDA graph is captured, or when a source is an inference tensor (made in inference
mode: it has no version counter to tell a change by). `kept_tensors` lists what a module holds this
way, for the worker's accounting of device memory.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable

import torch
from torch import nn

_KEPT: weakref.WeakKeyDictionary[nn.Module, dict[str, tuple[tuple, torch.Tensor]]] = weakref.WeakKeyDictionary()


def derived(module: nn.Module, name: str, compute: Callable[[], torch.Tensor], *sources: torch.Tensor) -> torch.Tensor:
    """`compute()`, cached on `module` as `name` for as long as `sources` are unchanged."""
    if not _cacheable(sources):
        return compute()
    key = (torch.is_inference_mode_enabled(), *(_identity(t) for t in sources))
    cache = _KEPT.setdefault(module, {})
    hit = cache.get(name)
    if hit is not None and hit[0] == key:
        return hit[1]
    value = compute()
    cache[name] = (key, value)
    return value


def kept_tensors(module: nn.Module) -> list[torch.Tensor]:
    """The values kept for `module` and its submodules (what they add to its memory)."""
    return [value for m in module.modules() for _, value in _KEPT.get(m, {}).values()]


def _cacheable(sources: tuple[torch.Tensor, ...]) -> bool:
    if torch.compiler.is_compiling():
        return False
    if torch.cuda.is_available() and torch.cuda.is_current_stream_capturing():
        return False
    if any(t.is_inference() for t in sources):
        return False
    return not (torch.is_grad_enabled() and any(t.requires_grad for t in sources))


def _identity(t: torch.Tensor) -> tuple:
    return (t.untyped_storage().data_ptr(), t.storage_offset(), t._version, t.device, t.dtype, tuple(t.shape))

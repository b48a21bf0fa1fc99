"""Host → device copies that never wait for the device.

A plain `tensor.to("cuda")` from host memory ends with a stream synchronisation: the CPU waits until
every kernel queued before it has run, and the GPU then idles while the CPU queues the next ones. The
trainer and the networks draw their random inputs (latents, noise, augmentation matrices, exemplar
indices) on the CPU from seeded generators, so that a run is the same on every device; each draw is
moved with `non_blocking=True`. From pageable memory CUDA copies the bytes to a staging buffer before
the call returns, so the CPU tensor may be freed at once and the values are never stale; the copy
is ordered on the stream like a kernel. On the CPU it is the tensor itself.
"""

from __future__ import annotations

import torch


def to_device(t: torch.Tensor, device: torch.device | str, dtype: torch.dtype | None = None) -> torch.Tensor:
    """`t` on `device` (and in `dtype` when given), queued without a host synchronisation."""
    return t.to(device=device, dtype=dtype, non_blocking=True)

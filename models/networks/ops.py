"""Pure-PyTorch StyleGAN2 ops: FIR up/down-sampling and the fused bias + leaky ReLU.

These replace rosinality's `op/` folder, which JIT-compiles CUDA at import time and is the most
common install failure in this family of tools. Everything here is plain `torch.nn.functional`, so
it runs on any device torch supports and needs no compiler. The math is the reference `upfirdn2d`
(zero-insertion upsampling, padding, true convolution with the FIR kernel, decimation) expressed as
a depthwise convolution, which is both simpler and faster than the reference's reshape-to-one-
channel formulation.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F

from models.networks.gradfix import depthwise_conv2d

SQRT2 = math.sqrt(2.0)


def make_kernel(taps: Sequence[float]) -> torch.Tensor:
    """Separable FIR kernel from 1-D taps: outer product normalised to sum 1, shape [k, k]."""
    k = torch.tensor(list(taps), dtype=torch.float32)
    k = k[None, :] * k[:, None]
    return k / k.sum()


def upfirdn2d(
    x: torch.Tensor,
    kernel: torch.Tensor,
    up: int = 1,
    down: int = 1,
    pad: tuple[int, int] = (0, 0),
    weight: torch.Tensor | None = None,
) -> torch.Tensor:
    """Upsample by zero insertion, pad, convolve with `kernel` [kh, kw], then decimate.

    x: [B, C, H, W] → [B, C, (H·up + p0 + p1 − kh) // down + 1, …]. Same padding on both axes,
    as every StyleGAN2 use needs. Negative padding crops. `weight`: `fir_weight(kernel, …)` when the
    caller keeps it.
    """
    b, c, h, w = x.shape
    if up > 1:
        x = x.reshape(b, c, h, 1, w, 1)
        x = F.pad(x, [0, up - 1, 0, 0, 0, up - 1])
        x = x.reshape(b, c, h * up, w * up)
    p0, p1 = pad
    if p0 > 0 or p1 > 0:
        x = F.pad(x, [max(p0, 0), max(p1, 0), max(p0, 0), max(p1, 0)])
    if p0 < 0 or p1 < 0:
        top, bottom = max(-p0, 0), max(-p1, 0)
        x = x[:, :, top : x.shape[2] - bottom, top : x.shape[3] - bottom]
    return fir_filter(x, kernel, stride=down, weight=weight)


def fir_weight(kernel: torch.Tensor, dtype: torch.dtype, channels: int, flip: bool = True) -> torch.Tensor:
    """A true-convolution kernel [kh, kw] → the depthwise weight [C, 1, kh, kw] in `dtype`, contiguous
    (what the convolution kernels read): flipped for a cross-correlation (`conv2d`), as it is for a
    transposed convolution (`flip=False`), which correlates the other way round."""
    kh, kw = kernel.shape
    taps = torch.flip(kernel, [0, 1]) if flip else kernel
    return taps.to(dtype=dtype).reshape(1, 1, kh, kw).expand(channels, 1, kh, kw).contiguous()


def fir_filter(
    x: torch.Tensor, kernel: torch.Tensor, stride: int = 1, padding: int = 0, weight: torch.Tensor | None = None
) -> torch.Tensor:
    """Depthwise true convolution of every channel of x [B, C, H, W] with kernel [kh, kw] (`weight`:
    its `fir_weight` when the caller keeps it)."""
    if weight is None:
        weight = fir_weight(kernel, x.dtype, x.shape[1])
    return depthwise_conv2d(x, weight, stride=stride, padding=padding)  # single-call gradients (gradfix.py)


def fold_fir(weight: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """A transposed convolution's weight [O, I, k, k] with the FIR `kernel` [kh, kw] applied after it
    folded in: [O, I, k + kh − 1, k + kw − 1], the full 2-D convolution of each (O, I) slice with the
    kernel. `conv_transpose2d(x, folded, stride=s, padding=kh − 1 − p0)` is then the convolution
    followed by `fir_filter(·, kernel, padding=p0)`: one pass instead of two, for about 4× the
    multiply-adds of the transposed convolution (a choice measured per device)."""
    o, i, k, _ = weight.shape
    kh, kw = kernel.shape
    flipped = torch.flip(kernel, [0, 1]).to(weight.dtype).view(1, 1, kh, kw)
    folded = F.conv2d(weight.reshape(o * i, 1, k, k), flipped, padding=(kh - 1, kw - 1))
    return folded.reshape(o, i, k + kh - 1, k + kw - 1)


def transposed_fir_padding(taps: int, up: int, pad: tuple[int, int]) -> tuple[int, int] | None:
    """`upfirdn2d(x, k, up=up, pad=pad)` for a kernel of `taps` taps is `conv_transpose2d(x, k, stride=up,
    padding=P, output_padding=Q, groups=C)`: one call for the zero insertion, the padding and the filter
    (the transposed convolution correlates with the kernel as it is, so it is not flipped). (P, Q), or
    None where no such call exists."""
    p0, p1 = pad
    padding, output_padding = taps - 1 - p0, p1 - p0 + up - 1
    if padding < 0 or not 0 <= output_padding < up:
        return None
    return padding, output_padding


def fused_leaky_relu(
    x: torch.Tensor,
    bias: torch.Tensor | None,
    negative_slope: float = 0.2,
    scale: float = SQRT2,
    inplace: bool = False,
) -> torch.Tensor:
    """leaky_relu(x + bias) · scale, with bias broadcast over channel dim 1 (rosinality's FusedLeakyReLU).

    inplace: x may be overwritten (the caller owns it, e.g. a fresh conv output). The scale is applied
    in place only without autograd, because leaky_relu's backward reads its own output.
    """
    if bias is not None:
        shape = [1, bias.shape[0]] + [1] * (x.ndim - 2)
        bias = bias.view(shape).to(x.dtype)
        x = x.add_(bias) if inplace else x + bias
        inplace = True  # x is ours now
    if not inplace:
        return F.leaky_relu(x, negative_slope) * scale
    x = F.leaky_relu_(x, negative_slope)
    return x * scale if torch.is_grad_enabled() and x.requires_grad else x.mul_(scale)

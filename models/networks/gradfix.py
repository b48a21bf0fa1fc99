"""Convolutions whose gradients are convolutions again (issue 25), pure PyTorch.

The regularisers differentiate the networks twice: R1 takes the gradient of D's output with respect to
its input and trains on its norm; the path-length penalty does the same through the generator. PyTorch's
generic double backward of a *grouped* convolution runs one convolution per group, so every FIR blur
(a depthwise convolution: groups = channels) became hundreds of small convolutions in a regularisation
step (237 against 17 in a plain step of a 32 px discriminator on the CPU; 97 % of a 256 px R1 step on an
H200). NVIDIA's stylegan2-ada-pytorch avoids it with custom gradients; so does this module, with two
autograd functions that are each other's backward:

    y = depthwise_conv2d(x)            (conv2d, groups = C, constant weight [C, 1, kh, kw])
    dx = depthwise_conv_transpose2d(dy) (its adjoint: conv_transpose2d with the same weight)

so the backward, the double backward and every further order are one convolution call each. The FIR
weights are constants (buffers), so no weight gradient is ever computed.

The weighted convolutions (`conv2d`, `conv_transpose2d`: the modulated convolutions, D's convolutions)
get the same treatment with their weight gradient: for y = f(x, w), bilinear, the input gradient is
the adjoint convolution of dy with w, the weight gradient one `convolution_backward` call, and that
call's own gradients are f(x, ddw) and the adjoint of dy with ddw: single calls of the same kinds.
Without autograd (inference) each function is the plain `torch.nn.functional` call.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
import torch.nn.functional as F

_native = False  # PyTorch's own convolution gradients (`native_gradients`): comparisons only


@contextlib.contextmanager
def native_gradients() -> Iterator[None]:
    """Within: every function here is the plain `torch.nn.functional` call, so autograd uses PyTorch's
    own convolution gradients (what the networks used before issue 25): for parity tests and benchmarks."""
    global _native
    before, _native = _native, True
    try:
        yield
    finally:
        _native = before


def is_plain(*tensors: torch.Tensor) -> bool:
    """No autograd to serve (inference, frozen inputs) or comparing against PyTorch's own gradients."""
    return _native or not torch.is_grad_enabled() or not any(t.requires_grad for t in tensors)


def depthwise_conv2d(x: torch.Tensor, weight: torch.Tensor, stride: int = 1, padding: int = 0) -> torch.Tensor:
    """conv2d(x [B, C, H, W], weight [C, 1, kh, kw], groups=C) with single-call gradients of every
    order with respect to x (the weight is a constant: it gets none)."""
    if is_plain(x):
        return F.conv2d(x, weight, stride=stride, padding=padding, groups=x.shape[1])
    return _DepthwiseConv.apply(x, weight.detach(), stride, padding)


def _compute_dtype(x: torch.Tensor) -> torch.dtype:
    """The dtype the convolution runs in: autocast's where it is on (as for F.conv2d), else x's. Each
    function runs its convolution in it with autocast off, so its backward (which autograd runs outside
    the autocast context) meets tensors of one dtype."""
    device = x.device.type
    return torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else x.dtype


def _no_autocast(x: torch.Tensor) -> torch.autocast:
    return torch.autocast(x.device.type, enabled=False)


def _output_padding(size: tuple[int, int], out: tuple[int, int], kernel: tuple[int, int], stride: int, padding: int):
    """What conv_transpose2d needs to give back exactly `size` from the conv's output `out`."""
    return tuple(s - ((o - 1) * stride - 2 * padding + k) for s, o, k in zip(size, out, kernel))


class _DepthwiseConv(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, stride: int, padding: int) -> torch.Tensor:
        dtype = _compute_dtype(x)
        x, weight = x.to(dtype), weight.to(dtype)
        with _no_autocast(x):
            y = F.conv2d(x, weight, stride=stride, padding=padding, groups=x.shape[1])
        ctx.save_for_backward(weight)
        ctx.conf = (stride, padding, _output_padding(x.shape[2:], y.shape[2:], weight.shape[2:], stride, padding))
        return y

    @staticmethod
    def backward(ctx, dy: torch.Tensor):
        (weight,) = ctx.saved_tensors
        stride, padding, output_padding = ctx.conf
        dx = None
        if ctx.needs_input_grad[0]:
            dx = _DepthwiseConvTranspose.apply(dy.to(weight.dtype), weight, stride, padding, output_padding)
        return dx, None, None, None


class _DepthwiseConvTranspose(torch.autograd.Function):
    @staticmethod
    def forward(ctx, dy: torch.Tensor, weight: torch.Tensor, stride: int, padding: int, output_padding) -> torch.Tensor:
        dtype = _compute_dtype(dy)
        dy, weight = dy.to(dtype), weight.to(dtype)
        ctx.save_for_backward(weight)
        ctx.conf = (stride, padding)
        with _no_autocast(dy):
            return F.conv_transpose2d(
                dy, weight, stride=stride, padding=padding, output_padding=output_padding, groups=dy.shape[1]
            )

    @staticmethod
    def backward(ctx, ddx: torch.Tensor):
        (weight,) = ctx.saved_tensors
        stride, padding = ctx.conf
        ddy = _DepthwiseConv.apply(ddx.to(weight.dtype), weight, stride, padding) if ctx.needs_input_grad[0] else None
        return ddy, None, None, None, None


def conv2d(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None, stride: int = 1, padding: int = 0
) -> torch.Tensor:
    """F.conv2d (groups 1) with single-call gradients of every order."""
    if is_plain(x, weight):
        return F.conv2d(x, weight, bias, stride=stride, padding=padding)
    out = _Conv.apply(x, weight, (False, stride, padding, (0, 0)))
    return out if bias is None else out + bias.view(1, -1, 1, 1)


def conv_transpose2d(x: torch.Tensor, weight: torch.Tensor, stride: int = 1, padding: int = 0) -> torch.Tensor:
    """F.conv_transpose2d (groups 1, weight [in, out, kh, kw]) with single-call gradients of every order."""
    if is_plain(x, weight):
        return F.conv_transpose2d(x, weight, stride=stride, padding=padding)
    return _Conv.apply(x, weight, (True, stride, padding, (0, 0)))


def _run(x: torch.Tensor, weight: torch.Tensor, conf: tuple) -> torch.Tensor:
    transpose, stride, padding, output_padding = conf
    if transpose:
        return F.conv_transpose2d(x, weight, stride=stride, padding=padding, output_padding=output_padding)
    return F.conv2d(x, weight, stride=stride, padding=padding)


def _adjoint(conf: tuple, x_size, y_size, kernel) -> tuple:
    """The convolution that maps y's gradient back to x's shape: a conv's is a transposed conv (with the
    output padding that restores x's size), a transposed conv's a conv."""
    transpose, stride, padding, _ = conf
    if transpose:
        return (False, stride, padding, (0, 0))
    return (True, stride, padding, _output_padding(x_size, y_size, kernel, stride, padding))


class _Conv(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, conf: tuple) -> torch.Tensor:
        dtype = _compute_dtype(x)
        x, weight = x.to(dtype), weight.to(dtype)
        with _no_autocast(x):
            y = _run(x, weight, conf)
        ctx.save_for_backward(x, weight)
        ctx.conf = conf
        return y

    @staticmethod
    def backward(ctx, dy: torch.Tensor):
        x, weight = ctx.saved_tensors
        conf, dy = ctx.conf, dy.to(x.dtype)
        dx = dw = None
        if ctx.needs_input_grad[0]:
            dx = _Conv.apply(dy, weight, _adjoint(conf, x.shape[2:], dy.shape[2:], weight.shape[2:]))
        if ctx.needs_input_grad[1]:
            dw = _ConvWeightGrad.apply(dy, x, weight, conf)
        return dx, dw, None


class _ConvWeightGrad(torch.autograd.Function):
    """dw = the weight gradient of y = f(x, w) for dy, one `convolution_backward` call."""

    @staticmethod
    def forward(ctx, dy: torch.Tensor, x: torch.Tensor, weight: torch.Tensor, conf: tuple) -> torch.Tensor:
        transpose, stride, padding, output_padding = conf
        dtype = _compute_dtype(dy)
        dy, x, weight = dy.to(dtype), x.to(dtype), weight.to(dtype)
        with _no_autocast(dy):
            dw = torch.ops.aten.convolution_backward(
                dy, x, weight, None, [stride] * 2, [padding] * 2, [1, 1], transpose, list(output_padding), 1,
                [False, True, False],
            )[1]  # fmt: skip
        ctx.save_for_backward(dy, x, weight)
        ctx.conf = conf
        return dw

    @staticmethod
    def backward(ctx, ddw: torch.Tensor):
        dy, x, weight = ctx.saved_tensors
        conf, ddw = ctx.conf, ddw.to(dy.dtype)
        d_dy = d_x = None
        if ctx.needs_input_grad[0]:  # <ddw, f_w^T(dy; x)> = <f(x, ddw), dy>
            d_dy = _Conv.apply(x, ddw, conf)
        if ctx.needs_input_grad[1]:  # the input gradient of f with ddw as the weight
            d_x = _Conv.apply(dy, ddw, _adjoint(conf, x.shape[2:], dy.shape[2:], weight.shape[2:]))
        return d_dy, d_x, None, None

"""Convolutions whose gradients are single convolutions (models/networks/gradfix.py, issue 25):
gradcheck and gradgradcheck in float64 for every stride / padding / up / down the networks use; the R1
and path-length penalties keep their values and gradients against PyTorch's own convolution gradients;
and a regularisation step makes at most 3× the convolution calls of a plain step (PyTorch's generic
double backward of the depthwise FIR blur made 14× in D and 10× in G)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch.autograd import gradcheck, gradgradcheck
from torch.profiler import ProfilerActivity, profile

from models.networks import gradfix
from models.networks.discriminator import Discriminator
from models.networks.ops import make_kernel, upfirdn2d
from models.networks.stylegan2 import Generator
from models.training.losses import path_lengths, path_projection, r1_penalty
from service.portrait.configs import DiscriminatorConfig, GeneratorConfig

F64 = torch.float64


def _input(shape: tuple[int, ...]) -> torch.Tensor:
    return torch.randn(shape, dtype=F64, requires_grad=True)


@pytest.mark.parametrize(("stride", "padding", "size"), [(1, 0, 7), (1, 1, 7), (1, 2, 6), (2, 0, 8), (2, 1, 7)])
def test_depthwise_fir_gradients_of_every_order(stride: int, padding: int, size: int) -> None:
    torch.manual_seed(0)
    weight = make_kernel([1, 3, 3, 1]).to(F64).reshape(1, 1, 4, 4).expand(3, 1, 4, 4)

    def f(x: torch.Tensor) -> torch.Tensor:
        return gradfix.depthwise_conv2d(x, weight, stride, padding)

    x = _input((2, 3, size, size))
    assert torch.equal(f(x), F.conv2d(x, weight, stride=stride, padding=padding, groups=3))
    assert gradcheck(f, (x,)) and gradgradcheck(f, (x,))


@pytest.mark.parametrize(("up", "down", "pad"), [(2, 1, (2, 1)), (1, 2, (1, 1)), (1, 1, (2, 2)), (2, 1, (1, 1))])
def test_upfirdn2d_gradients_of_every_order(up: int, down: int, pad: tuple[int, int]) -> None:
    """The FIR up/down-sampling of the skip paths and the up/down-sampling convolutions' blurs."""
    torch.manual_seed(0)
    kernel = make_kernel([1, 3, 3, 1]).to(F64) * up**2

    def f(x: torch.Tensor) -> torch.Tensor:
        return upfirdn2d(x, kernel, up=up, down=down, pad=pad)

    x = _input((1, 2, 6, 6))
    assert gradcheck(f, (x,)) and gradgradcheck(f, (x,))


@pytest.mark.parametrize(
    ("transpose", "stride", "padding", "kernel", "size"),
    [(False, 1, 1, 3, 6), (False, 1, 0, 1, 5), (False, 2, 0, 3, 7), (False, 2, 0, 3, 8), (False, 1, 0, 4, 5)]
    + [(True, 2, 0, 3, 4), (True, 2, 1, 3, 5), (True, 1, 0, 3, 4)],
)
def test_weighted_convolution_gradients_of_every_order(
    transpose: bool, stride: int, padding: int, kernel: int, size: int
) -> None:
    """The modulated convolutions (plain, 1×1 ToRGB, stride-2 down, transposed stride-2 up) and D's."""
    torch.manual_seed(0)
    x = _input((2, 3, size, size))
    w = _input((3, 4, kernel, kernel) if transpose else (4, 3, kernel, kernel))
    if transpose:

        def f(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
            return gradfix.conv_transpose2d(x, w, stride, padding)

        reference = F.conv_transpose2d(x, w, stride=stride, padding=padding)
    else:

        def f(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
            return gradfix.conv2d(x, w, None, stride, padding)

        reference = F.conv2d(x, w, stride=stride, padding=padding)
    assert torch.equal(f(x, w), reference)
    assert gradcheck(f, (x, w)) and gradgradcheck(f, (x, w))


def _networks() -> tuple[Discriminator, Generator]:
    torch.manual_seed(0)
    d = Discriminator(DiscriminatorConfig(size=32, channel_multiplier=1, channel_max=32))
    g = Generator(GeneratorConfig(size=32, style_dim=32, n_mlp=2, channel_multiplier=1, channel_max=32))
    return d, g


def _grads(value: torch.Tensor, params: list[torch.Tensor]) -> list[torch.Tensor]:
    """The gradients of `value` for the parameters it depends on (R1 does not see D's last bias)."""
    grads = torch.autograd.grad(value, params, allow_unused=True)
    return [g for g in grads if g is not None]


def _r1(d: Discriminator, real: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
    real = real.detach().requires_grad_(True)
    penalty = r1_penalty(d(real), real)
    return penalty, _grads(penalty, list(d.parameters()))


def _path_length(g: Generator, w: torch.Tensor, projection: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
    w = w.detach().requires_grad_(True)
    lengths = path_lengths(g(w, space="wplus"), w, projection).mean()
    params = [p for n, p in g.named_parameters() if not n.startswith("style.")]
    return lengths, _grads(lengths, params)


def _close(a: torch.Tensor, b: torch.Tensor) -> bool:
    a, b = a.detach(), b.detach()
    return float((a - b).norm()) <= 1e-7 * max(float(b.norm()), 1e-30)


def test_the_penalties_keep_their_values_and_gradients() -> None:
    d, g = _networks()
    d, g = d.to(F64), g.to(F64)
    real = torch.randn(2, 3, 32, 32, dtype=F64)
    w = torch.randn(2, g.n_latent, 32, dtype=F64)
    projection = path_projection((2, 3, 32, 32)).to(F64)
    fixed = _r1(d, real), _path_length(g, w, projection)
    with gradfix.native_gradients():
        native = _r1(d, real), _path_length(g, w, projection)
    for (value, grads), (value0, grads0) in zip(fixed, native):
        assert _close(value, value0)
        assert len(grads) == len(grads0) > 10 and all(_close(a, b) for a, b in zip(grads, grads0))


def _convolutions(step) -> int:
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        step()
    return sum(e.count for e in prof.key_averages() if e.key == "aten::convolution")


def test_a_regularisation_step_makes_at_most_three_times_the_convolutions_of_a_plain_step() -> None:
    d, g = _networks()
    real = torch.randn(2, 3, 32, 32)
    w = torch.randn(2, g.n_latent, 32)

    def d_plain() -> None:
        d(real).sum().backward()

    def d_r1() -> None:
        x = real.detach().requires_grad_(True)
        logits = d(x)
        (logits.sum() + r1_penalty(logits, x)).backward()

    def g_plain() -> None:
        g(w, space="wplus").sum().backward()

    def g_path_length() -> None:
        codes = w.detach().requires_grad_(True)
        image = g(codes, space="wplus")
        (image.sum() + path_lengths(image, codes, path_projection(image.shape)).mean()).backward()

    d_counts = _convolutions(d_plain), _convolutions(d_r1)
    g_counts = _convolutions(g_plain), _convolutions(g_path_length)
    assert d_counts[1] <= 3 * d_counts[0], d_counts
    assert g_counts[1] <= 3 * g_counts[0], g_counts
    with gradfix.native_gradients():  # PyTorch's own: many times more (what the functions are for)
        assert _convolutions(d_r1) > 6 * _convolutions(d_plain)

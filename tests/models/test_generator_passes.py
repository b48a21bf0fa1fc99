"""Fewer passes per generator layer (issue 26): the kernels one forward launches, counted on the CPU.

On a GPU at batch 1 the generator is bound by kernel launches, and at batch 32 by passes over full
feature maps. Each layer now runs its modulation as one `linear`, demodulation as a [B, in] × [in, out]
product of kept squared norms, and demodulation, noise, bias, activation and gain in three passes; the
RGB skip is upsampled by one transposed convolution; values that depend only on weights are kept while
the weights are unchanged (`models/networks/derived.py`). The counts are `count_launches`'s
(models/inference/launches.py): `torch.profiler`'s top-level aten calls that do work.
"""

from __future__ import annotations

import copy

import pytest
import torch

from models.inference.launches import count_launches
from models.networks.derived import kept_tensors
from models.networks.layers import Upsample
from models.networks.ops import make_kernel, transposed_fir_padding, upfirdn2d
from models.networks.stylegan2 import Generator
from service.portrait.configs import GeneratorConfig
from tests.conftest import seeded

# One forward of `GeneratorConfig.tiny(256)` before this change (main at fa7c5c9), measured with `count_launches`:
BEFORE = {1: 286, 4: 312}


def _generator(batch: int) -> Generator:
    g = seeded(Generator(GeneratorConfig.tiny(256)), 1)
    g.per_sample_on_cpu = False  # the whole batch at once, as on CUDA
    return g


@pytest.mark.parametrize("batch", [1, 4])
def test_a_generator_forward_launches_a_third_fewer_kernels(batch: int) -> None:
    g = _generator(batch)
    w = torch.randn(batch, g.n_latent, g.config.style_dim, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        g(w, space="wplus")  # the first call computes what is then kept
        count = count_launches(lambda: g(w, space="wplus"))
    assert count <= BEFORE[batch] * 2 / 3, (count, BEFORE[batch])
    # 13 styled convolutions × 9 (linear, square, addmm, rsqrt: the demodulation; mul, conv; addcmul,
    # addcmul_, leaky_relu_) + 6 blurs + 7 RGB layers × 3 (linear, mul, conv with its bias) + 6 skips × 2
    # (transposed conv, add_) + the 2 layout conversions of channels-last
    assert count <= 13 * 9 + 6 + 7 * 3 + 6 * 2 + 2


def test_kept_values_follow_the_weights() -> None:
    """A value kept for the weights is renewed when they change (load_state_dict, an optimiser's
    in-place step), never used for a graph that trains them, and the same in inference mode."""
    g, other = seeded(Generator(GeneratorConfig.tiny(32)), 1), seeded(Generator(GeneratorConfig.tiny(32)), 2)
    w = torch.randn(2, g.n_latent, g.config.style_dim, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        first = g(w, space="wplus")
        assert torch.equal(g(w, space="wplus"), first)  # kept values give the same image
    assert kept_tensors(g) and kept_tensors(copy.deepcopy(g)) == []  # counted by the worker, never copied
    with torch.no_grad():
        g.load_state_dict(other.state_dict())
        assert torch.equal(g(w, space="wplus"), other(w, space="wplus"))
    with torch.inference_mode():
        assert torch.equal(g(w, space="wplus"), other(w, space="wplus"))
    fresh = copy.deepcopy(g)
    optimiser = torch.optim.SGD(g.parameters(), lr=0.1)
    g(w, space="wplus").square().mean().backward()
    assert g.convs[0].conv.modulation.weight.grad.abs().sum() > 0  # the graph reached the weights
    optimiser.step()
    with torch.no_grad():
        moved, before = g(w, space="wplus"), fresh(w, space="wplus")
        assert not torch.allclose(moved, before)
        twin = seeded(Generator(GeneratorConfig.tiny(32)), 3)
        twin.load_state_dict(g.state_dict())
        assert torch.equal(moved, twin(w, space="wplus"))


@pytest.mark.parametrize("taps", [(1, 3, 3, 1), (1, 2, 1), (1, 1), (1, 3, 3, 3, 3, 1)])
def test_the_skip_upsampling_is_one_transposed_convolution(taps) -> None:
    """Upsample's inference call equals upfirdn2d (zero insertion, padding, FIR) for every kernel: one
    transposed convolution where one exists (even tap counts: StyleGAN2's [1, 3, 3, 1]), else upfirdn2d."""
    up = Upsample(taps)
    x = torch.randn(2, 3, 7, 7, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        got = up(x)
    expected = upfirdn2d(x, make_kernel(taps) * 4, up=2, pad=up.pad)
    assert (up.transposed is not None) == (len(taps) % 2 == 0)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)
    assert transposed_fir_padding(4, 2, (0, 3)) is None  # no transposed convolution gives that padding

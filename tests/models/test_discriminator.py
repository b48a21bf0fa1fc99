"""StyleGAN2 discriminator: shapes, rosinality key names, odd batches, features."""

from __future__ import annotations

import torch

from models.networks.discriminator import Discriminator
from service.portrait.configs import DiscriminatorConfig
from tests.conftest import seeded


def test_logits_and_features() -> None:
    d = seeded(Discriminator(DiscriminatorConfig.tiny(32)), 0)
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        out, feats = d(x, features=True)
    assert out.shape == (4, 1)
    assert [f.shape[-1] for f in feats] == [32, 16, 8, 4, 4]
    assert d.block_resolutions() == [32, 32, 16, 8]


def test_batch_not_divisible_by_the_stddev_group() -> None:
    d = seeded(Discriminator(DiscriminatorConfig.tiny(32)), 0)
    with torch.no_grad():
        for batch in (1, 3, 5, 6):
            assert d(torch.randn(batch, 3, 32, 32)).shape == (batch, 1)


def test_rosinality_key_names_at_1024() -> None:
    with torch.device("meta"):
        d = Discriminator(DiscriminatorConfig())
    sd = d.state_dict()
    assert sd["convs.0.0.weight"].shape == (32, 3, 1, 1)
    assert sd["convs.1.conv1.0.weight"].shape == (32, 32, 3, 3)
    assert sd["convs.1.conv2.0.kernel"].shape == (4, 4)
    assert sd["convs.1.conv2.1.weight"].shape == (64, 32, 3, 3)
    assert sd["convs.1.skip.1.weight"].shape == (64, 32, 1, 1)
    assert sd["convs.8.conv2.2.bias"].shape == (512,)
    assert sd["final_conv.0.weight"].shape == (512, 513, 3, 3)
    assert sd["final_linear.0.weight"].shape == (512, 8192)
    assert "convs.9.conv1.0.weight" not in sd
    assert 28_900_000 < sum(p.numel() for p in d.parameters()) < 29_100_000


def test_channels_last_is_the_same_function_with_the_same_input_gradient() -> None:
    """The NHWC speed choice changes memory layout only: logits, features and R1's input gradient agree."""
    d = seeded(Discriminator(DiscriminatorConfig.tiny(32)), 0)
    x = torch.randn(4, 3, 32, 32)
    results = []
    for channels_last in (True, False):
        d.channels_last = channels_last
        xi = x.clone().requires_grad_(True)
        out, feats = d(xi, features=True)
        (grad,) = torch.autograd.grad(out.sum(), xi)
        layout = feats[0].is_contiguous(memory_format=torch.channels_last)
        results.append((out.detach(), feats[0].detach(), grad, layout))
    (a, fa, ga, nhwc), (b, fb, gb, nchw_is_nhwc) = results
    assert nhwc and not nchw_is_nhwc  # the flag does change the layout
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(fa, fb, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(ga, gb, rtol=1e-4, atol=1e-6)

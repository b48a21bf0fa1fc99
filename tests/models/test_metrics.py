"""The feature space that scores style training (models/training/metrics.py): palette in KID, not in consistency."""

from __future__ import annotations

import torch

from models.networks.discriminator import Discriminator
from models.training.metrics import SourceFeatures, kid
from service.portrait.configs import DiscriminatorConfig
from tests.conftest import seeded


def _features() -> SourceFeatures:
    return SourceFeatures(seeded(Discriminator(DiscriminatorConfig.tiny(32)), 3))


def _images(n: int, seed: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return (0.5 * torch.randn(n, 3, 32, 32, generator=gen)).clamp(-0.6, 0.6)


@torch.no_grad()
def test_consistency_keeps_structure_and_lets_the_palette_change() -> None:
    features, x = _features(), _images(4, 0)
    cast = x + torch.tensor([0.3, -0.15, -0.15]).view(1, 3, 1, 1)  # a global colour cast, nothing clipped
    assert float(features.distance(x, cast)) < 1e-5
    assert float(features.distance(x, x.flip(3))) > 0.05  # a different picture is far
    assert float(features.distance(x, _images(4, 1))) > 0.05


@torch.no_grad()
def test_kid_features_see_the_palette() -> None:
    """A global tint moves KID far beyond the spread between two draws of the same distribution."""
    features = _features()
    a, b = features.embed(_images(32, 0)), features.embed(_images(32, 1))
    tinted = features.embed(_images(32, 1) + torch.tensor([0.3, -0.15, -0.15]).view(1, 3, 1, 1))
    assert kid(a, tinted) > 10 * abs(kid(a, b))
    # the palette itself is part of the embedding: the image at 4×4 px, after the D features
    x = _images(2, 0)
    palette = torch.nn.functional.adaptive_avg_pool2d(x, 4).flatten(1)
    assert torch.allclose(features.embed(x)[:, -48:], palette)

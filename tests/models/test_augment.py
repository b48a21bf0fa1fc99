"""The ADA augmentation pipeline (issue 12, finding 4): StyleGAN2-ADA's bgc transforms, invertible
where ADA needs them to be, and a p that can move within a few-shot schedule."""

from __future__ import annotations

import math

import pytest
import torch

from models.training.augment import AdaptiveP, apply_colour, apply_geometric, augment, colour_matrix, geometric_matrix
from models.training.transfer import sample_reals
from service.portrait.configs import TransferConfig


def smooth_images(b: int = 8, size: int = 32) -> torch.Tensor:
    """Low-frequency test images (bilinear resampling keeps them almost exactly)."""
    ys, xs = torch.meshgrid(torch.linspace(-1, 1, size), torch.linspace(-1, 1, size), indexing="ij")
    phases = torch.linspace(0, 2, b).view(b, 1, 1, 1)
    channels = torch.stack([torch.sin(1.5 * xs + 0.5), torch.cos(1.2 * ys), torch.sin(xs + ys)]).unsqueeze(0)
    return 0.8 * torch.sin(channels * math.pi / 2 + phases)


def test_every_geometric_transform_is_invertible() -> None:
    """ADA's non-leaking condition: geometry moved by m and back by m⁻¹ is the image (up to resampling
    and what left the frame)."""
    x = smooth_images()
    m = geometric_matrix(len(x), 1.0, x.shape[-1], torch.Generator().manual_seed(3))
    assert torch.linalg.det(m).abs().min() > 1e-3
    back = apply_geometric(apply_geometric(x, m), torch.linalg.inv(m))
    inside = slice(12, 20)  # the centre, which every transform here keeps in frame
    moved = (apply_geometric(x, m) - x)[..., inside, inside].abs().mean()
    error = (back - x)[..., inside, inside].abs().mean()
    assert moved > 0.05 and error < 0.02 * float(moved) + 0.01, (float(moved), float(error))


def test_the_colour_transforms_are_invertible_and_keep_grey_grey_under_luma_only_changes() -> None:
    x = smooth_images()
    c = colour_matrix(len(x), 1.0, torch.Generator().manual_seed(4))
    assert torch.linalg.det(c).abs().min() > 1e-6
    torch.testing.assert_close(apply_colour(apply_colour(x, c), torch.linalg.inv(c)), x, atol=1e-4, rtol=1e-4)
    grey = torch.full((1, 3, 4, 4), 0.3)
    hue_only = colour_matrix(1, 0.0, None)  # p = 0: the identity
    torch.testing.assert_close(apply_colour(grey, hue_only), grey)


def test_each_transform_fires_with_probability_p() -> None:
    gen = torch.Generator().manual_seed(5)
    eye = torch.eye(3)
    for p in (0.1, 0.5):
        share = float((geometric_matrix(1000, p, 32, gen) - eye).abs().amax(dim=(1, 2)).gt(1e-6).float().mean())
        # six transforms at p, two rotations at 1 − √(1 − p): P(any) = 1 − (1 − p)^7 (a 90° rotation by
        # k = 0 or an integer shift that rounds to 0 px moves nothing: a little less)
        expected = 1 - (1 - p) ** 7
        assert expected - 0.08 < share < expected + 0.03, (p, share, expected)
    assert torch.equal(augment(smooth_images(), 0.0), smooth_images())


def test_p_can_move_within_a_few_shot_schedule() -> None:
    """ADA's adjustment speed with ada_kimg = 100 kept p at most 0.08 over 2,000 steps at batch 4;
    the default lets it reach 1 when the discriminator overfits all along."""
    cfg = TransferConfig()
    ada = AdaptiveP(cfg.ada_target, cfg.ada_kimg)
    for _ in range(cfg.max_steps // cfg.ada_every):
        for _ in range(cfg.ada_every):
            ada.observe(torch.ones(cfg.batch_size))  # D is sure about every real image
        ada.update(cfg.batch_size * cfg.ada_every)
    assert ada.p == 1.0
    slow = AdaptiveP(cfg.ada_target, 100.0)
    for _ in range(cfg.max_steps // cfg.ada_every):
        slow.observe(torch.ones(4))
        slow.update(cfg.batch_size * cfg.ada_every)
    assert slow.p == pytest.approx(0.08)


def test_exemplars_are_mirrored_half_of_the_time() -> None:
    pool = torch.arange(4 * 3 * 2 * 2, dtype=torch.float32).view(4, 3, 2, 2)
    gen = torch.Generator().manual_seed(6)
    flipped = 0
    for _ in range(50):
        batch = sample_reals(pool, 8, gen, mirror=True)
        for image in batch:
            flipped += int(not any(torch.equal(image, p) for p in pool))
            assert any(torch.equal(image, p) or torch.equal(image, p.flip(2)) for p in pool)
    assert 0.4 < flipped / 400 < 0.6
    assert all(any(torch.equal(i, p) for p in pool) for i in sample_reals(pool, 8, gen, mirror=False))

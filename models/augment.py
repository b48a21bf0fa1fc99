"""Differentiable augmentation for the discriminator, with ADA's adaptive probability.

A compact subset of Karras et al. 2020 (ADA): x-flip, integer translation, isotropic scaling,
brightness, contrast, saturation, each applied per sample with probability `p`. The same pipeline runs
on real and generated images (what makes it non-leaking). `AdaptiveP` raises `p` when the
discriminator's sign on reals, r_t = E[sign(D(real))], is above the target and lowers it otherwise.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def augment(x: torch.Tensor, p: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """x [B, 3, H, W] in about [-1, 1] → augmented x; identity when p == 0."""
    if p <= 0:
        return x
    b = x.shape[0]
    dev = x.device

    def chance() -> torch.Tensor:
        return (torch.rand(b, 1, 1, 1, generator=generator).to(dev) < p).to(x.dtype)

    def normal(scale: float) -> torch.Tensor:
        return torch.randn(b, 1, 1, 1, generator=generator).to(dev, x.dtype) * scale

    flip = chance()
    x = flip * x.flip(3) + (1 - flip) * x
    # geometric: translation (±1/8 of the size) and isotropic scale (lognormal, σ = 0.2·ln 2), one affine grid
    on_t, on_s = chance().view(b), chance().view(b)
    shift = (torch.rand(b, 2, generator=generator).to(dev, x.dtype) * 2 - 1) * 0.25 * on_t.view(b, 1)
    scale = torch.exp2(torch.randn(b, generator=generator).to(dev, x.dtype) * 0.2 * on_s)
    theta = torch.zeros(b, 2, 3, device=dev, dtype=x.dtype)
    theta[:, 0, 0] = theta[:, 1, 1] = 1 / scale
    theta[:, :, 2] = shift
    if bool((on_t + on_s).any()):
        grid = F.affine_grid(theta, list(x.shape), align_corners=False)
        x = F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)
    # colour
    x = x + normal(0.2) * chance()
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    x = (x - mean) * torch.exp2(normal(0.5) * chance()) + mean
    gray = x.mean(dim=1, keepdim=True)
    return (x - gray) * torch.exp2(normal(1.0) * chance()) + gray


class AdaptiveP:
    """ADA's controller: every update, p += sign(r_t − target) · (batch · interval) / (kimg · 1000)."""

    def __init__(self, target: float, kimg: float, p: float = 0.0) -> None:
        self.target, self.kimg, self.p = target, kimg, p
        self._signs: list[float] = []

    def observe(self, real_logits: torch.Tensor) -> None:
        self._signs.append(float(torch.sign(real_logits.detach()).mean()))

    def update(self, images_seen: int) -> float:
        if self._signs:
            rt = sum(self._signs) / len(self._signs)
            step = images_seen / (self.kimg * 1000)
            self.p = float(min(max(self.p + (step if rt > self.target else -step), 0.0), 1.0))
            self._signs.clear()
        return self.p

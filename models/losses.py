"""GAN losses and regularisers for transfer learning (StyleGAN2 / FaceStylor conventions)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def d_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor, kind: str) -> torch.Tensor:
    if kind == "hinge":
        return F.relu(1 - real_logits).mean() + F.relu(1 + fake_logits).mean()
    return F.softplus(-real_logits).mean() + F.softplus(fake_logits).mean()


def g_loss(fake_logits: torch.Tensor, kind: str) -> torch.Tensor:
    if kind == "hinge":
        return -fake_logits.mean()
    return F.softplus(-fake_logits).mean()


def r1_penalty(real_logits: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
    """E‖∇_x D(x)‖² on reals (x must require grad)."""
    (grad,) = torch.autograd.grad(real_logits.sum(), real, create_graph=True)
    return grad.pow(2).flatten(1).sum(1).mean()


def path_length_penalty(
    fake: torch.Tensor,
    wplus: torch.Tensor,
    mean_path: torch.Tensor,
    decay: float,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """StyleGAN2's path-length regulariser: (penalty, new running mean, mean path length)."""
    noise = torch.randn(fake.shape, generator=generator).to(fake) / math.sqrt(fake.shape[2] * fake.shape[3])
    (grad,) = torch.autograd.grad((fake * noise).sum(), wplus, create_graph=True)
    lengths = torch.sqrt(grad.pow(2).sum(2).mean(1))
    new_mean = mean_path + decay * (lengths.mean().detach() - mean_path)
    return (lengths - new_mean).pow(2).mean(), new_mean, lengths.mean().detach()

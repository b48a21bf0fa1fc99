"""GAN losses and regularisers for transfer learning (StyleGAN2 / FaceStylor conventions)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from models.networks.host_copy import to_device


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


def path_lengths(fake: torch.Tensor, wplus: torch.Tensor, projection: torch.Tensor) -> torch.Tensor:
    """StyleGAN2's path lengths ‖J_wᵀ y‖ per sample [B] (differentiable; wplus must require grad).

    projection: y ~ N(0, I) / sqrt(H·W), shaped like `fake` [B, 3, H, W] (drawn by the caller, so a
    batch split into micro-batches uses the same draws).
    """
    y = to_device(projection, fake.device, fake.dtype)
    (grad,) = torch.autograd.grad((fake * y).sum(), wplus, create_graph=True)
    return torch.sqrt(grad.pow(2).sum(2).mean(1))


def path_projection(shape: tuple[int, ...], generator: torch.Generator | None = None) -> torch.Tensor:
    """The random image-space direction y of `path_lengths`: N(0, I) / sqrt(H·W), on the CPU."""
    return torch.randn(shape, generator=generator) / math.sqrt(shape[-2] * shape[-1])

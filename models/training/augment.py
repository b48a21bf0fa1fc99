"""Differentiable augmentation for the discriminator, with ADA's adaptive probability.

StyleGAN2-ADA's `bgc` pipeline (Karras et al. 2020, §2 and appendix B), each transform applied per
sample with probability `p` (the rotations with 1 − √(1 − p), so that one of the two happens with p):

- geometric, composed into one affine matrix per sample and applied once (bilinear, reflection
  padding): x-flip, rotation by k·90°, integer translation (±1/8 of the size), isotropic scaling
  (log2-normal, σ 0.2), rotation (uniform, ±180°), anisotropic scaling (σ 0.2), fractional
  translation (normal, σ 1/8);
- colour, composed into one 4×4 matrix in RGB: brightness (σ 0.2), contrast (log2-normal, σ 0.5),
  luma flip, hue rotation about the luma axis (±180°), saturation (log2-normal, σ 1).

Every transform is invertible (the flips and 90° rotations are their own kind of inverse, the rest are
affine with non-zero determinant): what lets ADA run the same pipeline on real and generated images
without the augmentations leaking into the generator, for p < 0.8. `AdaptiveP` raises `p` when the
discriminator's sign on reals, r_t = E[sign(D(real))], is above the target and lowers it otherwise.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from models.networks.host_copy import to_device

SCALE_STD, ANISO_STD, XFRAC_STD, XINT_MAX = 0.2, 0.2, 0.125, 0.125
BRIGHTNESS_STD, CONTRAST_STD, SATURATION_STD = 0.2, 0.5, 1.0


def _rotation(theta: torch.Tensor) -> torch.Tensor:
    """[B] angles → [B, 3, 3] rotations of the normalised image plane."""
    c, s = theta.cos(), theta.sin()
    m = torch.eye(3, dtype=theta.dtype, device=theta.device).repeat(len(theta), 1, 1)
    m[:, 0, 0], m[:, 0, 1], m[:, 1, 0], m[:, 1, 1] = c, -s, s, c
    return m


def _scaling(sx: torch.Tensor, sy: torch.Tensor) -> torch.Tensor:
    m = torch.eye(3, dtype=sx.dtype, device=sx.device).repeat(len(sx), 1, 1)
    m[:, 0, 0], m[:, 1, 1] = sx, sy
    return m


def _translation(tx: torch.Tensor, ty: torch.Tensor) -> torch.Tensor:
    m = torch.eye(3, dtype=tx.dtype, device=tx.device).repeat(len(tx), 1, 1)
    m[:, 0, 2], m[:, 1, 2] = tx, ty
    return m


def geometric_matrix(b: int, p: float, size: int, generator: torch.Generator | None) -> torch.Tensor:
    """[B, 3, 3]: where each output pixel moves to, in normalised coordinates ([-1, 1] across)."""

    def chance(prob: float = p) -> torch.Tensor:
        return (torch.rand(b, generator=generator) < prob).float()

    p_rot = 1 - math.sqrt(max(0.0, 1 - min(p, 1.0)))
    flip = 1 - 2 * chance()
    m = _scaling(flip, torch.ones(b))
    k = torch.randint(4, (b,), generator=generator).float() * chance()
    m = _rotation(k * math.pi / 2) @ m
    pixel = 2 / size  # one pixel, normalised
    shift = (torch.rand(b, 2, generator=generator) * 2 - 1) * XINT_MAX * 2
    shift = torch.round(shift / pixel) * pixel * chance().unsqueeze(1)
    m = _translation(shift[:, 0], shift[:, 1]) @ m
    s = torch.exp2(torch.randn(b, generator=generator) * SCALE_STD * chance())
    m = _scaling(s, s) @ m
    m = _rotation((torch.rand(b, generator=generator) * 2 - 1) * math.pi * chance(p_rot)) @ m
    a = torch.exp2(torch.randn(b, generator=generator) * ANISO_STD * chance())
    m = _scaling(a, 1 / a) @ m
    m = _rotation((torch.rand(b, generator=generator) * 2 - 1) * math.pi * chance(p_rot)) @ m
    frac = torch.randn(b, 2, generator=generator) * XFRAC_STD * 2 * chance().unsqueeze(1)
    return _translation(frac[:, 0], frac[:, 1]) @ m


def apply_geometric(x: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    """Move x [B, C, H, W] by m [B, 3, 3] (reflection padding): output(u) = input(m⁻¹ u).

    m is inverted where it lives (the CPU, in `augment`): `linalg.inv` on CUDA checks for singular
    matrices on the host, a synchronisation per call."""
    theta = to_device(torch.linalg.inv(m.double())[:, :2, :], x.device, x.dtype)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)


def colour_matrix(b: int, p: float, generator: torch.Generator | None) -> torch.Tensor:
    """[B, 4, 4] acting on homogeneous RGB (values about [-1, 1])."""

    def chance() -> torch.Tensor:
        return (torch.rand(b, generator=generator) < p).float().view(b, 1, 1)

    eye = torch.eye(4).expand(b, 4, 4)
    v = torch.tensor([1.0, 1.0, 1.0, 0.0]) / math.sqrt(3)  # the luma axis
    vv = torch.outer(v, v).expand(b, 4, 4)
    c = eye.clone()
    brightness = torch.randn(b, generator=generator) * BRIGHTNESS_STD * chance().view(b)
    t = eye.clone()
    t[:, :3, 3] = brightness.view(b, 1)
    c = t @ c
    contrast = torch.exp2(torch.randn(b, generator=generator) * CONTRAST_STD).view(b, 1, 1)
    rgb_only = torch.diag(torch.tensor([1.0, 1.0, 1.0, 0.0]))
    c = (eye + (contrast - 1) * chance() * rgb_only) @ c
    flip = chance()
    c = (eye - 2 * vv * flip) @ c  # luma flip: the luma component mirrored
    theta = (torch.rand(b, generator=generator) * 2 - 1) * math.pi * chance().view(b)
    c = _hue_rotation(theta, v) @ c
    saturation = torch.exp2(torch.randn(b, generator=generator) * SATURATION_STD).view(b, 1, 1)
    sat = torch.where(chance() > 0, saturation, torch.ones_like(saturation))
    c = (eye - rgb_only + vv + (rgb_only - vv) * sat) @ c  # chroma scaled about the luma axis; w stays 1
    return c


def _hue_rotation(theta: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """[B] angles → [B, 4, 4] rotations of RGB about the axis v (Rodrigues)."""
    b = len(theta)
    axis = v[:3]
    k = torch.tensor([[0.0, -axis[2], axis[1]], [axis[2], 0.0, -axis[0]], [-axis[1], axis[0], 0.0]])
    m = torch.eye(4).repeat(b, 1, 1)
    s, c = theta.sin().view(b, 1, 1), theta.cos().view(b, 1, 1)
    m[:, :3, :3] = torch.eye(3) + s * k + (1 - c) * (k @ k)
    return m


def apply_colour(x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """x [B, 3, H, W] through c [B, 4, 4] (homogeneous RGB)."""
    c = to_device(c, x.device, x.dtype)
    return torch.einsum("bij,bjhw->bihw", c[:, :3, :3], x) + c[:, :3, 3].view(-1, 3, 1, 1)


def augment(x: torch.Tensor, p: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """x [B, 3, H, W] in about [-1, 1] → augmented x (the bgc pipeline); identity when p == 0.

    Always computed in fp32, also under autocast (resampling matrices in bf16 would shift pixels). The
    matrices are drawn, tested and inverted on the CPU and reach x's device as queued copies, so a step
    on a GPU never waits here."""
    if p <= 0:
        return x
    b = x.shape[0]
    with torch.autocast(device_type=x.device.type, enabled=False):
        x = x.float()
        m = geometric_matrix(b, p, x.shape[-1], generator)
        if not torch.allclose(m, torch.eye(3).expand_as(m)):
            x = apply_geometric(x, m)
        return apply_colour(x, colour_matrix(b, p, generator))


class AdaptiveP:
    """ADA's controller: every update, p += sign(r_t − target) · (batch · interval) / (kimg · 1000).

    `observe` keeps each step's mean sign on the device; `update` reads them in one transfer, so the
    controller costs one host synchronisation per interval (as StyleGAN2-ADA's), not one per step."""

    def __init__(self, target: float, kimg: float, p: float = 0.0) -> None:
        self.target, self.kimg, self.p = target, kimg, p
        self._signs: list[torch.Tensor] = []

    def observe(self, real_logits: torch.Tensor) -> None:
        self._signs.append(torch.sign(real_logits.detach()).mean())

    def update(self, images_seen: int) -> float:
        if self._signs:
            rt = float(torch.stack(self._signs).mean())
            step = images_seen / (self.kimg * 1000)
            self.p = float(min(max(self.p + (step if rt > self.target else -step), 0.0), 1.0))
            self._signs.clear()
        return self.p

"""Features and distances for style training: the perceptual term and early-stopping scores.

Everything is computed in the feature space of the *frozen source discriminator*, which every
deployment has (the public FFHQ checkpoints carry it) — no Inception or VGG download needed. LPIPS-VGG
is preferred for the perceptual term when its weights are configured (models/networks/lpips.py).

Two choices make these features fit for judging a *style* (measured with bench/learning.py):
- `embed` (what KID compares) carries the image at 4×4 px beside the discriminator features: the
  source D's 4–16 px features barely see a global palette change (a red tint at 60 % of its strength
  was within KID's noise), and a portrait style is largely its palette.
- `normalized_maps` (the consistency distance) sees each image with its per-channel mean removed: the
  term is there to keep the portrait (its structure), and styles change the palette by design; on
  the raw images it held the colours back (the published model closed ~60 % of a tint, not 80 %).
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from models.networks.discriminator import Discriminator

PALETTE_SIDE = 4  # the image side, in px, that `embed` adds to the features


class SourceFeatures(nn.Module):
    """A frozen copy of the source discriminator used as a feature extractor."""

    def __init__(self, discriminator: Discriminator, blocks: int = 3) -> None:
        super().__init__()
        self.d = copy.deepcopy(discriminator).eval().requires_grad_(False)
        self.blocks = blocks

    def maps(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The feature maps of the last `blocks` residual blocks and of final_conv."""
        _, feats = self.d(x, features=True)
        return feats[-(self.blocks + 1) :]

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """[B, 3, S, S] → [B, F + 48]: spatially averaged features, concatenated, and the image at
        4×4 px (its layout and palette), for KID."""
        palette = F.adaptive_avg_pool2d(x, PALETTE_SIDE).flatten(1)
        return torch.cat([*(f.mean(dim=(2, 3)) for f in self.maps(x)), palette], dim=1)

    def normalized_maps(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The feature maps of x with its per-image channel means removed (palette-invariant), each
        channel-normalised (unit norm per position)."""
        maps = self.maps(x - x.mean(dim=(2, 3), keepdim=True))
        return [f / (f.norm(dim=1, keepdim=True) + 1e-8) for f in maps]

    def distance(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """LPIPS-like distance: channel-normalised feature maps, squared difference, mean. Scalar."""
        return self.distance_to(self.normalized_maps(a), b)

    def distance_to(self, maps_a: list[torch.Tensor], b: torch.Tensor) -> torch.Tensor:
        """`distance(a, b)` with a's normalised maps computed once (fixed references)."""
        total = b.new_zeros(())
        for fa, fb in zip(maps_a, self.normalized_maps(b)):
            total = total + (fa - fb).pow(2).sum(1).mean()
        return total


def kid(x: torch.Tensor, y: torch.Tensor) -> float:
    """Kernel Inception Distance (unbiased MMD² with the cubic polynomial kernel) between feature sets
    x [n, F] and y [m, F]; here in source-discriminator feature space. Lower is closer."""
    x, y = x.double(), y.double()
    d = x.shape[1]

    def k(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return (a @ b.T / d + 1) ** 3

    n, m = x.shape[0], y.shape[0]
    kxx, kyy, kxy = k(x, x), k(y, y), k(x, y)
    mmd = (kxx.sum() - kxx.diag().sum()) / (n * (n - 1)) + (kyy.sum() - kyy.diag().sum()) / (m * (m - 1))
    return float(mmd - 2 * kxy.mean())


def downsample_to(x: torch.Tensor, size: int) -> torch.Tensor:
    return x if x.shape[-1] == size else F.interpolate(x, size=(size, size), mode="area")

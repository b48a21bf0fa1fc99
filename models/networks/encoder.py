"""AgileGAN's hierarchical VAE (HVAE) inversion encoder and the z+ → w+ inversion.

`VAEStyleEncoder` is the official architecture (reference §2.1): pSp's GradualStyleEncoder (IR-SE50
body, FPN laterals, one style head per generator layer, 3/4/11 heads on the 16/32/64 px levels for a
256 input) followed by `fc_mu`/`fc_var`, two plain Linear layers *shared by all heads* and
initialised to zero, so an untrained encoder emits exactly the N(0, I) prior. It works in the
Gaussian z+ space; `Inverter` maps each code through the frozen source (FFHQ) mapping network to the
w+ that a style generator consumes, with no `latent_avg` offset (unlike pSp).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from models.networks.irse import build_body
from models.networks.layers import EqualLinear, MappingNetwork
from models.networks.synthesis import seeded_normal
from service.portrait.configs import EncoderConfig, InverterConfig


class GradualStyleBlock(nn.Module):
    """Feature map [B, C, s, s] → one style code [B, D]: log2(s) stride-2 3×3 convs, then EqualLinear."""

    def __init__(self, in_channel: int, out_channel: int, spatial: int) -> None:
        super().__init__()
        self.out_channel = out_channel
        layers: list[nn.Module] = []
        for i in range(int(math.log2(spatial))):
            layers += [nn.Conv2d(in_channel if i == 0 else out_channel, out_channel, 3, 2, 1), nn.LeakyReLU()]
        self.convs = nn.Sequential(*layers)
        self.linear = EqualLinear(out_channel, out_channel)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(self.convs(x).reshape(-1, self.out_channel))


class VAEStyleEncoder(nn.Module):
    """image [B, 3, S, S] in [-1, 1] → (sample, mu, logvar), each z+ [B, n_styles, style_dim].

    A mu-only encoder (`config.variational` False, no `fc_var`) returns (mu, mu, None).
    """

    channels_last: bool = True  # run-time choice: NHWC convolutions are faster on oneDNN and cuDNN

    def __init__(self, config: EncoderConfig) -> None:
        super().__init__()
        self.config = config
        w = config.stage_widths
        self.input_layer = nn.Sequential(nn.Conv2d(3, w[0], 3, 1, 1, bias=False), nn.BatchNorm2d(w[0]), nn.PReLU(w[0]))
        self.body = build_body(config.stage_units, w, config.se_reduction, in_channel=w[0])
        self.styles = nn.ModuleList(
            GradualStyleBlock(w[3], config.style_dim, config.head_spatial(i)) for i in range(config.n_styles)
        )
        self.latlayer1 = nn.Conv2d(w[2], w[3], 1)
        self.latlayer2 = nn.Conv2d(w[1], w[3], 1)
        self.fc_mu = nn.Linear(config.style_dim, config.style_dim)
        self.fc_var = nn.Linear(config.style_dim, config.style_dim) if config.variational else None
        for layer in (self.fc_mu, self.fc_var):
            if layer is not None:
                nn.init.zeros_(layer.weight)
                nn.init.zeros_(layer.bias)

    def features(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Body taps c1 (S/4 px), c2 (S/8), c3 (S/16)."""
        s = self.config.input_size
        if image.ndim != 4 or tuple(image.shape[1:]) != (3, s, s):
            raise ValueError(f"encoder input must be [B, 3, {s}, {s}], got {list(image.shape)}")
        if self.channels_last:
            image = image.contiguous(memory_format=torch.channels_last)
        x = self.input_layer(image)
        t1, t2, t3 = self.config.tap_units
        taps = {}
        for i, unit in enumerate(self.body):
            x = unit(x)
            if i in (t1, t2, t3):
                taps[i] = x
        return taps[t1], taps[t2], taps[t3]

    def style_codes(self, image: torch.Tensor) -> torch.Tensor:
        """The per-layer codes before the VAE heads, [B, n_styles, style_dim]."""
        c1, c2, c3 = self.features(image)
        cfg = self.config
        codes = [self.styles[j](c3) for j in range(min(cfg.coarse, cfg.n_styles))]
        p2 = _upsample_add(c3, self.latlayer1(c2))
        codes += [self.styles[j](p2) for j in range(cfg.coarse, min(cfg.coarse + cfg.middle, cfg.n_styles))]
        p1 = _upsample_add(p2, self.latlayer2(c1))
        codes += [self.styles[j](p1) for j in range(cfg.coarse + cfg.middle, cfg.n_styles)]
        return torch.stack(codes, dim=1)

    def forward(
        self, image: torch.Tensor, rng: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """(reparameterised sample mu + ε·exp(logvar/2), mu, logvar); (mu, mu, None) when mu-only."""
        codes = self.style_codes(image)
        mu = self.fc_mu(codes)
        if self.fc_var is None:
            return mu, mu, None
        logvar = self.fc_var(codes)
        eps = seeded_normal(tuple(mu.shape), rng, mu)
        return mu + eps * torch.exp(0.5 * logvar), mu, logvar


def _upsample_add(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return F.interpolate(x, size=y.shape[-2:], mode="bilinear", align_corners=True) + y


def kl_divergence(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, exp(logvar)) ‖ N(0, I)), summed over codes and dimensions, averaged over the batch.

    mu, logvar: [B, n_styles, D]. The sum-then-mean reduction keeps the weight independent of batch
    size; the per-dimension mean would shrink it by n_styles·D (piddnad sums over codes only).
    """
    kl = 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar)
    return kl.flatten(1).sum(1).mean()


class Inversion(NamedTuple):
    mu: torch.Tensor  # z+ [B, L, D]
    logvar: torch.Tensor | None  # [B, L, D]; None for a mu-only encoder
    wplus: torch.Tensor  # [B, L, D], mu through the source mapping


class Inverter(nn.Module):
    """The HVAE encoder plus the frozen source mapping: aligned face → (mu, logvar, w+)."""

    def __init__(self, config: InverterConfig) -> None:
        super().__init__()
        self.config = config
        self.encoder = VAEStyleEncoder(config.encoder)
        self.mapping = MappingNetwork(config.mapping)
        self.mapping.requires_grad_(False)

    def forward(self, image: torch.Tensor) -> Inversion:
        """image [B, 3, S, S] in [-1, 1]. Uses mu (not a sample), as the official inference does."""
        _, mu, logvar = self.encoder(image)
        return Inversion(mu, logvar, self.mapping.map_per_layer(mu))


def image_to_tensor(image: Image.Image | np.ndarray, size: int) -> torch.Tensor:
    """An aligned RGB crop → [1, 3, size, size] in [-1, 1] (bilinear resize when needed, as torchvision)."""
    if isinstance(image, np.ndarray):
        image = Image.fromarray(image)
    image = image.convert("RGB")
    if image.size != (size, size):
        image = image.resize((size, size), Image.Resampling.BILINEAR)
    array = np.asarray(image, dtype=np.float32) / 255.0 * 2.0 - 1.0
    return torch.from_numpy(array).permute(2, 0, 1).unsqueeze(0).contiguous()

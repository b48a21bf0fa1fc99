"""The StyleGAN2 synthesis loop, shared by the plain and the attribute-aware generator.

One resolution stage r (8, 16, …) holds an upsampling StyledConv, a StyledConv and a ToRGB. Stage k
(k = 0 at 8 px) reads w+ indices 1+2k, 2+2k (convs) and 3+2k (ToRGB) and noise inputs 1+2k, 2+2k, in
the rosinality order. Both generators call `run_stages` over their own module lists, so the shared
blocks have exactly one code path.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from models.networks.host_copy import to_device

NoiseMode = str  # "const" | "random" | "zero"
NOISE_MODES = ("const", "random", "zero")


def noise_inputs(
    buffers: nn.Module, num_layers: int, mode: NoiseMode, batch: int, rng: torch.Generator | None = None
) -> list[torch.Tensor | None]:
    """Noise for each of the `num_layers` noise inputs.

    const: the stored buffers `noise_{i}` [1, 1, r, r] (the default: same input, same output);
    random: fresh N(0, 1) [B, 1, r, r] drawn from `rng`; zero: no noise at all.
    """
    if mode not in NOISE_MODES:
        raise ValueError(f"noise mode must be one of {NOISE_MODES}, got {mode!r}")
    if mode == "zero":
        return [None] * num_layers
    stored = [getattr(buffers, f"noise_{i}") for i in range(num_layers)]
    if mode == "const":
        return list(stored)
    return [seeded_normal((batch, 1, *n.shape[2:]), rng, n) for n in stored]


def noise_rows(noises: list[torch.Tensor | None], rows: slice, batch: int) -> list[torch.Tensor | None]:
    """The `rows` of a batch's noise inputs: per-sample inputs ([batch, 1, r, r]) are sliced; shared
    ([1, 1, r, r], the const buffers) and absent ones are passed as they are."""
    return [n[rows] if n is not None and n.shape[0] == batch else n for n in noises]


def seeded_normal(shape: tuple[int, ...], rng: torch.Generator | None, like: torch.Tensor) -> torch.Tensor:
    """N(0, 1) drawn on `rng`'s device (a CPU generator also seeds CUDA runs), placed like `like`."""
    device = rng.device if rng is not None else like.device
    return to_device(torch.randn(shape, generator=rng, device=device, dtype=like.dtype), like.device)


def run_stages(
    convs: Sequence[nn.Module],
    to_rgbs: Sequence[nn.Module],
    x: torch.Tensor,
    skip: torch.Tensor,
    wplus: torch.Tensor,
    noises: Sequence[torch.Tensor | None],
    first_stage: int,
    features: dict[int, torch.Tensor] | None = None,
    swap_features: dict[int, torch.Tensor] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Run consecutive stages starting at global stage `first_stage` (0 = 8 px).

    x: feature map [B, C, r, r] from the stage below; skip: its RGB [B, 3, r, r]; wplus [B, L, D].
    Records each stage's feature map in `features` (keyed by resolution) and, for resolutions in
    `swap_features`, replaces the feature map with the given tensor before going on (layer swap).
    """
    for j, to_rgb in enumerate(to_rgbs):
        k = first_stage + j
        w = 1 + 2 * k
        x = convs[2 * j](x, wplus[:, w], noises[w])
        x = convs[2 * j + 1](x, wplus[:, w + 1], noises[w + 1])
        resolution = x.shape[-1]
        if swap_features is not None and resolution in swap_features:
            x = swap_features[resolution].to(x.dtype)
        if features is not None:
            features[resolution] = x
        skip = to_rgb(x, wplus[:, w + 2], skip)
    return x, skip


def mix_styles(w1: torch.Tensor, w2: torch.Tensor, inject_index: int, n_latent: int) -> torch.Tensor:
    """Style mixing: w+ [B, n_latent, D] taking w1 [B, D] for layers < inject_index and w2 after."""
    if not 0 < inject_index < n_latent:
        raise ValueError(f"inject_index must be in 1..{n_latent - 1}, got {inject_index}")
    first = w1.unsqueeze(1).expand(-1, inject_index, -1)
    second = w2.unsqueeze(1).expand(-1, n_latent - inject_index, -1)
    return torch.cat([first, second], dim=1)

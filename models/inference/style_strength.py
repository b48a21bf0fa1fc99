"""Style strength: how much of the photo's structure and how much of the style a render keeps.

Two controls, as FaceStylor and Toonify users know them, both needing the style's *source* generator
(the FFHQ generator it was fine-tuned from, whose mapping turned the photo into w+):

- `structure` k (layer swap, FaceStylor `quick_try.layerSwap`): the source generator renders w+ up to
  resolution 2^(k+2) (k = 1 → 8 px, 2 → 16, 3 → 32, 4 → 64); its feature map there, after both convs
  of that stage and before its ToRGB, replaces the style generator's own, which renders everything
  else (its 4 px stem, the lower stages and their RGB skip included). Larger k keeps more of the
  photo's shape; k = 0 is the plain style render.
- `strength` s in [0, 1] (deep network interpolation, FaceStylor `apps/dni.py`): every weight and
  buffer is (1 − s)·source + s·style; s = 1 is the style, s = 0 the source (the photo's
  reconstruction). FaceStylor's DNI alpha is 1 − s.

`blend_generators` is FaceStylor's `apps/blend_weights.py` (resolutions ≥ 2^(k+2) take the style's
convs and ToRGBs, the rest stays source), kept for parity and offline use.
"""

from __future__ import annotations

import copy

import torch

from models.networks.stylegan2 import Generator
from models.networks.synthesis import NoiseMode

STRENGTH_STEP = 0.05  # strengths are quantised so interpolated generators can be cached


class IncompatibleGenerators(ValueError):
    """Source and style generators do not have the same architecture."""


def check_pair(source: Generator, style: Generator) -> None:
    if source.config != style.config:
        raise IncompatibleGenerators(
            f"the source generator ({source.config.size} px) and the style ({style.config.size} px) differ in "
            "architecture: a style can only be blended with the generator it was fine-tuned from"
        )


def max_structure(size: int) -> int:
    """The largest k for a `size` px generator: the swap at its last stage (2^(k+2) = size)."""
    return size.bit_length() - 3


def swap_resolution(structure: int, size: int) -> int:
    """The resolution whose feature map crosses over for `structure` k (2^(k+2)); validates k."""
    top = max_structure(size)
    if not 1 <= structure <= top:
        raise ValueError(f"structure must be 0 (off) or 1…{top} for a {size} px generator, got {structure}")
    return 2 ** (structure + 2)


@torch.no_grad()
def render(
    style: Generator,
    wplus: torch.Tensor,
    structure: int = 0,
    source: Generator | None = None,
    noise: NoiseMode = "const",
    rng: torch.Generator | None = None,
) -> torch.Tensor:
    """w+ [B, L, D] → image [B, 3, S, S], with layer swap from `source` when `structure` > 0.

    noise "const": each generator uses its own stored noise, as FaceStylor's quick_try does; "random":
    both passes get the same fresh noise; "zero": none.
    """
    if structure == 0:
        return style(wplus, space="wplus", noise=noise, rng=rng)
    if source is None:
        raise ValueError("structure > 0 needs the style's source generator")
    check_pair(source, style)
    resolution = swap_resolution(structure, style.config.size)
    noises = style.noise(noise, wplus.shape[0], rng)
    _, features = source.render(
        wplus, source.noise(noise, wplus.shape[0], rng) if noise != "random" else noises, return_features=True
    )
    return style.render(wplus, noises, swap_features={resolution: features[resolution]})


def quantise_strength(strength: float) -> float:
    """`strength` clamped to [0, 1] and rounded to STRENGTH_STEP (the cache key of interpolated weights)."""
    if not 0.0 <= strength <= 1.0:
        raise ValueError(f"strength must be in [0, 1], got {strength}")
    return round(round(strength / STRENGTH_STEP) * STRENGTH_STEP, 6)


@torch.no_grad()
def interpolate_generators(source: Generator, style: Generator, strength: float) -> Generator:
    """A new generator with every parameter and buffer (1 − strength)·source + strength·style."""
    check_pair(source, style)
    if strength == 1.0:
        return style
    out = copy.deepcopy(style)
    src_state = dict(source.named_parameters()) | dict(source.named_buffers())
    for name, tensor in list(out.named_parameters()) + list(out.named_buffers()):
        if tensor.is_floating_point():
            tensor.copy_(torch.lerp(src_state[name].to(tensor), tensor, strength))
    return out


@torch.no_grad()
def blend_generators(source: Generator, style: Generator, structure: int) -> Generator:
    """FaceStylor's weight blend: stages at resolution ≥ 2^(k+2) from the style, the rest from source."""
    check_pair(source, style)
    first = swap_resolution(structure, style.config.size)
    out = copy.deepcopy(source)
    for i, to_rgb in enumerate(out.to_rgbs):
        if 2 ** (i + 3) >= first:
            to_rgb.load_state_dict(style.to_rgbs[i].state_dict())
            out.convs[2 * i].load_state_dict(style.convs[2 * i].state_dict())
            out.convs[2 * i + 1].load_state_dict(style.convs[2 * i + 1].state_dict())
    return out

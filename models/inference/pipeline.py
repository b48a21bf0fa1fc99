"""The stylize pipeline for a batch, on any device: aligned crops → encoder → (a caller's latent step) →
edits → the style's generator → 8-bit RGB.

One function, `stylize_batch` (its second half, `render_latents`, from codes), serves the single job (a
batch of one), the worker's dynamic batches and the frames of a video (whose latent step is the moving
average and the retarget), so that the three never drift apart. What the networks see of a request is a
`RenderRequest`; the jobs of one batch share one (the worker groups them by it).

Batching by device: on CUDA the whole batch is one encoder pass and one generator pass per attribute
branch; on the CPU each sample runs alone (measured faster there, README "Batching"), so a job's bytes do
not depend on the batch it ran in. Attribute-aware styles batch too: the branch of each sample (asked, the
classifier's, or the default) groups the generator passes.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cached_property

import torch
import torch.nn.functional as F
from PIL import Image

from models.inference.directions import Edit, apply_edits
from models.inference.style_strength import quantise_strength
from models.networks.attribute_generator import AttributeAwareGenerator
from models.networks.encoder import image_to_tensor
from models.networks.synthesis import NoiseMode

LatentStep = Callable[[torch.Tensor], torch.Tensor]  # w+ [B, L, D] → w+ [B, L, D], before the generator


class IncompatibleModels(ValueError):
    """The encoder and the style generator do not share a latent space, or a request asks a style for a
    control it does not have."""


@dataclass(frozen=True)
class RenderRequest:
    """What changes the networks' output for a sample: the jobs of a batch share one."""

    branch: str | None = None  # attribute-aware styles: the branch asked for (None: classifier, else default)
    noise: NoiseMode = "const"
    seed: int = 0  # the noise generator's seed ("random" noise)
    structure: int = 0  # layer swap from the source generator (models.inference.style_strength)
    strength: float = 1.0  # interpolation toward the source generator
    edits: tuple[Edit, ...] = ()


@dataclass(frozen=True)
class BatchResult:
    """A batch's images with what ran, sample by sample where it differs.

    The images stay where the generator made them (`pixels`, on its device) until a caller asks for one
    on the host (`image(i)`, `images`): a worker that encodes JPEG on the GPU copies only the bytes back."""

    pixels: torch.Tensor  # [B, S, S, 3] uint8 RGB on the networks' device, S the generator's resolution
    wplus: torch.Tensor  # [B, L, D] fp32, the codes the generator read (after edits and the latent step)
    branches: list[str | None]  # the attribute branch of each sample (None for a plain generator)
    branch_sources: list[str | None]  # "request", "classifier" or "default"
    confidences: list[float | None]  # the classifier's probability for the chosen branch
    structure: int
    strength: float  # quantised
    compiled: bool  # every pass ran through warmed compiled programs
    stages: dict[str, float]  # seconds for the whole batch: "encode" (with the latent step), "synthesize"

    def image(self, i: int, size: int | None = None) -> Image.Image:
        """Sample `i` on the host as 8-bit RGB, resized on the device to `size` px first (`resize_pixels`)."""
        row = self.pixels[i] if size is None else resize_pixels(self.pixels[i], size)
        return Image.fromarray(row.cpu().numpy(), "RGB")

    @cached_property
    def images(self) -> list[Image.Image]:
        """Every sample on the host (one copy of the whole batch)."""
        return [Image.fromarray(a, "RGB") for a in self.pixels.cpu().numpy()]


@torch.inference_mode()
def stylize_batch(
    stylizer,
    crops: Sequence[Image.Image],
    request: RenderRequest = RenderRequest(),
    latent_step: LatentStep | None = None,
    batched: bool | None = None,
) -> BatchResult:
    """Aligned crops (any size: resized to the encoder's input) through `stylizer` (a
    `models.inference.stylizer.Stylizer`) under `request`. `latent_step`: a caller's step on the whole
    batch's codes before the edits (video: the moving average, the retarget onto a portrait). `batched`:
    whole-batch passes (None: on CUDA only)."""
    check_request(stylizer, request)
    started = time.perf_counter()
    # 1. Encode: crops → encoder input in [-1, 1] → z+ → the source mapping → w+ (the generator's L codes).
    wplus, compiled = encode_crops(stylizer, crops, batched)
    # 2. The caller's latent step.
    if latent_step is not None:
        wplus = latent_step(wplus)
    _sync(stylizer.device)
    encode_s = time.perf_counter() - started
    # 3. Edits, branches, the generator, 8-bit RGB.
    out = render_latents(stylizer, wplus, request, batched)
    return dataclasses.replace(
        out, compiled=compiled and out.compiled, stages={"encode": encode_s, "synthesize": out.stages["synthesize"]}
    )


@torch.inference_mode()
def render_latents(
    stylizer, wplus: torch.Tensor, request: RenderRequest = RenderRequest(), batched: bool | None = None
) -> BatchResult:
    """w+ [B, ≥L, D] → the batch's images under `request`: the edits (w'[l] = w[l] + α·d), the branch of
    each sample, one generator pass per branch group (per sample on the CPU), 8-bit RGB."""
    check_request(stylizer, request)
    started = time.perf_counter()
    # 1. Latent edits.
    wplus = apply_edits(wplus[:, : stylizer.generator.n_latent], request.edits)
    # 2. The branch of each sample (attribute-aware styles).
    branches, sources, confidences = choose_branches(stylizer, wplus, request.branch)
    # 3. Render, then 8-bit RGB (on the device).
    pixels, compiled = render_codes(stylizer, wplus, request, branches, batched)
    _sync(stylizer.device)
    stages = {"synthesize": time.perf_counter() - started}
    strength = quantise_strength(request.strength)
    return BatchResult(pixels, wplus, branches, sources, confidences, request.structure, strength, compiled, stages)


def check_request(stylizer, request: RenderRequest) -> None:
    """IncompatibleModels when the style cannot honour the request (before any network runs)."""
    if isinstance(stylizer.generator, AttributeAwareGenerator):
        if request.structure or request.strength != 1.0:
            raise IncompatibleModels("structure and strength are not offered by attribute-aware styles")
        if request.branch is not None and request.branch not in stylizer.branches:
            raise IncompatibleModels(f"the style has no attribute branch {request.branch!r}")
        return
    if request.branch is not None:
        raise IncompatibleModels("this style has no attribute branches")
    if request.structure and stylizer.source is None:
        raise IncompatibleModels("this style has no source generator: structure must be 0")
    if quantise_strength(request.strength) != 1.0 and stylizer.source is None:
        raise IncompatibleModels("this style has no source generator: strength must be 1")


def encode_crops(stylizer, crops: Sequence[Image.Image], batched: bool | None = None) -> tuple[torch.Tensor, bool]:
    """Crops → (w+ [B, L, D] fp32, whether compiled programs ran every pass): one pass on CUDA, one
    per sample elsewhere."""
    size = stylizer.inverter.config.encoder.input_size
    codes, compiled = [], True
    for chunk in _chunks(stylizer.device, list(range(len(crops))), batched):
        x = torch.cat([image_to_tensor(crops[i], size) for i in chunk]).to(stylizer.device)
        wplus, ran = stylizer.encode_flagged(x)
        codes.append(wplus)
        compiled = compiled and ran
    return torch.cat(codes), compiled


def choose_branches(
    stylizer, wplus: torch.Tensor, asked: str | None
) -> tuple[list[str | None], list[str | None], list[float | None]]:
    """Per sample: (branch, why, the classifier's confidence). As asked; else the classifier's choice among
    the style's branches; else the style's default. All None for a plain generator."""
    n = len(wplus)
    if not isinstance(stylizer.generator, AttributeAwareGenerator):
        return [None] * n, [None] * n, [None] * n
    if asked is not None:
        return [asked] * n, ["request"] * n, [None] * n
    if stylizer.classifier is None:
        return [stylizer.default_branch] * n, ["default"] * n, [None] * n
    picks = [stylizer.classifier.predict(wplus[i : i + 1], allowed=stylizer.branches) for i in range(n)]
    return [p[0] for p in picks], ["classifier"] * n, [p[1] for p in picks]


def render_codes(
    stylizer,
    wplus: torch.Tensor,
    request: RenderRequest,
    branches: Sequence[str | None],
    batched: bool | None = None,
) -> tuple[torch.Tensor, bool]:
    """w+ [B, L, D] (edited) → (8-bit RGB [B, S, S, 3] on the device, whether compiled programs ran every
    pass): one generator pass per branch group on CUDA, one per sample elsewhere; each pass's noise seeded
    with `request.seed`."""
    parts: list[tuple[list[int], torch.Tensor]] = []
    compiled = True
    for branch in dict.fromkeys(branches):
        members = [i for i, b in enumerate(branches) if b == branch]
        for chunk in _chunks(stylizer.device, members, batched):
            rng = torch.Generator().manual_seed(request.seed)
            out, ran = _generate(stylizer, wplus[chunk], branch, request, rng)
            compiled = compiled and ran
            parts.append((chunk, to_pixels(out)))
    if len(parts) == 1 and parts[0][0] == list(range(len(wplus))):
        return parts[0][1], compiled  # one pass in order: no reassembly
    size = parts[0][1].shape[1]
    pixels = torch.empty((len(wplus), size, size, 3), dtype=torch.uint8, device=parts[0][1].device)
    for chunk, rows in parts:
        pixels[chunk] = rows
    return pixels, compiled


def _generate(
    stylizer, wplus: torch.Tensor, branch: str | None, request: RenderRequest, rng: torch.Generator
) -> tuple[torch.Tensor, bool]:
    if branch is not None:
        with stylizer.autocast():
            out = stylizer.generator(wplus, branch=branch, space="wplus", noise=request.noise, rng=rng)
        return out.float(), False
    return stylizer.render_flagged(wplus, request.structure, request.strength, request.noise, rng)


def to_pixels(images: torch.Tensor) -> torch.Tensor:
    """[B, 3, S, S] in [-1, 1] → [B, S, S, 3] uint8 (contiguous), on the images' device."""
    return ((images.float().clamp(-1, 1) + 1) * 127.5 + 0.5).to(torch.uint8).permute(0, 2, 3, 1).contiguous()


def resize_pixels(pixels: torch.Tensor, size: int) -> torch.Tensor:
    """[S, S, 3] or [B, S, S, 3] uint8 → the same at `size` px, on the pixels' device: antialiased bicubic
    (PIL's BICUBIC filter when shrinking), rounded. The result sizes the API offers (256, 512, 1024) from
    any generator, before the image leaves the GPU (a 1024 → 256 result copies 1/16 of the bytes)."""
    if pixels.shape[-2] == size:
        return pixels
    x = pixels.permute(*range(pixels.dim() - 3), -1, -3, -2).float()  # [..., 3, S, S]
    batch = x if x.dim() == 4 else x[None]
    out = F.interpolate(batch, size=(size, size), mode="bicubic", align_corners=False, antialias=True)
    out = out.round_().clamp_(0, 255).to(torch.uint8)
    out = out if x.dim() == 4 else out[0]
    return out.permute(*range(out.dim() - 3), -2, -1, -3).contiguous()


def _chunks(device: torch.device, members: list[int], batched: bool | None) -> list[list[int]]:
    """The passes over `members`: all at once when `batched` (None: on CUDA), else one sample per pass."""
    if not members:
        return []
    whole = device.type == "cuda" if batched is None else batched
    return [members] if whole else [[i] for i in members]


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)  # so that the stage times are the GPU's


def to_image(chw: torch.Tensor) -> Image.Image:
    """One image [3, S, S] in [-1, 1] → 8-bit RGB."""
    return Image.fromarray(to_pixels(chw[None])[0].cpu().numpy(), "RGB")

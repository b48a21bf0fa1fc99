"""The stylize pipeline on an aligned crop: encoder → z+ → source mapping → w+ → style generator.

Built from already loaded models (the worker caches them); no file or queue access here. With the
style's source generator, the render takes the style-strength controls (models.inference.style_strength):
`structure` (layer swap) and `strength` (weight interpolation, computed once per quantised strength
and kept here, with the style, for the next requests).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from PIL import Image

from models.inference.compiled import Programs
from models.inference.directions import Edit
from models.inference.pipeline import IncompatibleModels, RenderRequest, stylize_batch
from models.inference.style_strength import check_pair, interpolate_generators, quantise_strength, render
from models.networks.attribute_classifier import AttributeClassifier
from models.networks.attribute_generator import AttributeAwareGenerator
from models.networks.encoder import Inverter
from models.networks.stylegan2 import Generator
from models.networks.synthesis import NoiseMode

INTERPOLATED_CACHE = 4  # interpolated generators kept per style (each is a full generator's weights)


@dataclass(frozen=True)
class Stylized:
    image: Image.Image  # RGB, the generator's resolution
    branch: str | None  # the attribute branch that ran (None for a plain generator)
    wplus: torch.Tensor  # [1, L, D]
    branch_source: str | None = None  # "request", "classifier" or "default"
    confidence: float | None = None  # the classifier's probability for the chosen branch
    structure: int = 0
    strength: float = 1.0
    compiled: bool = False  # both networks ran through warmed compiled programs (models/inference/compiled.py)
    stages: dict[str, float] | None = None  # seconds: "encode" (with edits), "synthesize" (with 8-bit RGB)


class Stylizer:
    def __init__(
        self,
        inverter: Inverter,
        generator: Generator | AttributeAwareGenerator,
        classifier: AttributeClassifier | None = None,
        source: Generator | None = None,
        precision: str = "fp32",
        programs: Programs | None = None,
    ) -> None:
        """`source`: the generator the style was fine-tuned from (enables structure and strength).
        `precision` "bf16": encoder and generator run under bf16 autocast (`resolve_precision`).
        `programs`: the worker's compiled programs; what they have not warmed runs eager.

        The encoder may emit more codes than the generator reads (FaceStylor's 18-code encoders serve
        its 256 px, 14-code styles): the first `n_latent` are used, as MMGen's generator does.
        """
        enc, gen = inverter.config, generator.config
        if enc.encoder.n_styles < gen.n_latent or enc.mapping.style_dim != gen.style_dim:
            raise IncompatibleModels(
                f"encoder emits {enc.encoder.n_styles}×{enc.mapping.style_dim} codes; the generator takes "
                f"{gen.n_latent}×{gen.style_dim}"
            )
        if source is not None:
            if isinstance(generator, AttributeAwareGenerator):
                source = None  # layer swap / interpolation are defined for plain generators only
            else:
                try:
                    check_pair(source, generator)
                except ValueError as e:
                    raise IncompatibleModels(str(e)) from e
                check_shared_mapping(inverter, source)
        if precision not in ("fp32", "bf16"):
            raise ValueError(f"precision must be fp32 or bf16, got {precision!r}")
        self.inverter, self.generator, self.source, self.precision = inverter, generator, source, precision
        self.programs = programs
        usable = classifier is not None and set(classifier.config.labels) & set(self.branches)
        self.classifier = classifier if usable else None
        self._interpolated: OrderedDict[float, Generator] = OrderedDict()
        self._lock = threading.Lock()

    def with_strength(self, strength: float) -> Generator:
        """The style generator at `strength` (quantised), interpolated once and cached (LRU)."""
        if not isinstance(self.generator, Generator):
            raise IncompatibleModels("style strength needs a plain (not attribute-aware) generator")
        strength = quantise_strength(strength)
        if strength == 1.0:
            return self.generator
        if self.source is None:
            raise IncompatibleModels("this style has no source generator: strength must be 1")
        with self._lock:
            cached = self._interpolated.get(strength)
            if cached is None:
                cached = interpolate_generators(self.source, self.generator, strength)
                self._interpolated[strength] = cached
                while len(self._interpolated) > INTERPOLATED_CACHE:
                    self._interpolated.popitem(last=False)
            self._interpolated.move_to_end(strength)
            return cached

    def style_networks(self) -> list[torch.nn.Module]:
        """The networks this style holds on the device (not the shared encoder): its generator, its
        source generator when it has one, and the interpolated generators cached for strengths."""
        with self._lock:
            interpolated = list(self._interpolated.values())
        return [self.generator, *([self.source] if self.source is not None else []), *interpolated]

    def render(self, wplus: torch.Tensor, *args: object, **kwargs: object) -> torch.Tensor:
        """w+ [B, ≥L, D] → image [B, 3, S, S] (fp32) with the plain style generator's strength controls,
        at the stylizer's precision; the arguments of `render_flagged`."""
        return self.render_flagged(wplus, *args, **kwargs)[0]

    def render_flagged(
        self,
        wplus: torch.Tensor,
        structure: int = 0,
        strength: float = 1.0,
        noise: NoiseMode = "const",
        rng: torch.Generator | None = None,
    ) -> tuple[torch.Tensor, bool]:
        """(image [B, 3, S, S] fp32, whether a compiled program ran it). `structure` (layer swap) and
        `strength` (interpolation) as in models.inference.style_strength; the layer swap and random noise always
        run eager."""
        wplus = wplus[:, : self.generator.n_latent]
        if structure and self.source is None:
            raise IncompatibleModels("this style has no source generator: structure must be 0")
        generator = self.with_strength(strength)
        if self.programs is not None and structure == 0 and noise != "random":
            out = self.programs.synthesize(generator, wplus, self.precision, noise)
            if out is not None:
                return out, True
        with self.autocast():
            return render(generator, wplus, structure, self.source, noise, rng).float(), False

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Encoder input [B, 3, S, S] in [-1, 1] → w+ [B, L, D] (fp32; the generator's L codes)."""
        return self.encode_flagged(x)[0]

    def encode_flagged(self, x: torch.Tensor) -> tuple[torch.Tensor, bool]:
        """(w+ [B, L, D] fp32, whether a compiled program ran it)."""
        n = self.generator.n_latent
        if self.programs is not None:
            wplus = self.programs.encode(self.inverter, x, self.precision)
            if wplus is not None:
                return wplus[:, :n], True
        with self.autocast():
            return self.inverter(x).wplus[:, :n].float(), False

    def autocast(self) -> torch.autocast:
        """bf16 autocast around the networks when `precision` is bf16 (a no-op context for fp32)."""
        device = self.device.type
        return torch.autocast(device_type=device, dtype=torch.bfloat16, enabled=self.precision == "bf16")

    @property
    def branches(self) -> tuple[str, ...]:
        if isinstance(self.generator, AttributeAwareGenerator):
            return self.generator.branch_names
        return ()

    @property
    def default_branch(self) -> str | None:
        if isinstance(self.generator, AttributeAwareGenerator):
            return self.generator.attribute_config.default_branch
        return None

    @property
    def device(self) -> torch.device:
        return self.generator.latent_avg.device

    def __call__(
        self,
        crop: Image.Image,
        branch: str | None = None,
        noise: NoiseMode = "const",
        seed: int = 0,
        structure: int = 0,
        strength: float = 1.0,
        edits: Sequence[Edit] = (),
    ) -> Stylized:
        """One aligned crop through the batch pipeline (models/inference/pipeline.py) as a batch of one.
        `edits`: latent edits applied to the inverted w+ before rendering (models/inference/directions.py)."""
        request = RenderRequest(branch, noise, seed, structure, strength, tuple(edits))
        out = stylize_batch(self, [crop], request)
        return Stylized(
            out.images[0],
            out.branches[0],
            out.wplus[:1],
            out.branch_sources[0],
            out.confidences[0],
            out.structure,
            out.strength,
            out.compiled,
            out.stages,
        )


def resolve_precision(setting: str, device: torch.device) -> str:
    """The inference precision for a setting: "auto" is bf16 on CUDA (where it is several times faster)
    and fp32 elsewhere; "fp32" and "bf16" are taken as they are."""
    if setting == "auto":
        return "bf16" if device.type == "cuda" else "fp32"
    if setting not in ("fp32", "bf16"):
        raise ValueError(f"inference precision must be auto, fp32 or bf16, got {setting!r}")
    return setting


def configure_fp32(precision: str, device: torch.device, allow_tf32: bool = False) -> bool:
    """Make "fp32" mean fp32 on CUDA: PyTorch runs fp32 convolutions (cuDNN) as TF32 by default, 1.3e-3 from
    the CPU's output on an H200 against 2.5e-6 without (README "Precision"), so the parity claims would not
    hold there. TF32 stays on for bf16 (its fp32 parts are not the point) or when `allow_tf32` says so.
    Process-wide (torch's flags); returns whether TF32 is allowed now. A no-op off CUDA."""
    if device.type != "cuda":
        return False
    tf32 = allow_tf32 or precision != "fp32"
    torch.backends.cuda.matmul.allow_tf32 = tf32
    torch.backends.cudnn.allow_tf32 = tf32
    return tf32


def check_shared_mapping(inverter: Inverter, source: Generator, rtol: float = 1e-4) -> None:
    """The encoder's z+ → w+ mapping must be the style's source generator's: w+ from another mapping
    (say FaceStylor's 1024 encoder for a style tuned from the 256 FFHQ generator) means nothing to it."""
    ours, theirs = inverter.mapping.state_dict(), source.style.state_dict()
    same = ours.keys() == theirs.keys() and all(
        ours[k].shape == theirs[k].shape
        and torch.allclose(ours[k].float(), theirs[k].to(ours[k].device).float(), rtol=rtol, atol=1e-6)
        for k in ours
    )
    if not same:
        raise IncompatibleModels(
            "the encoder's mapping network is not the one of the generator this style was tuned from: "
            "serve the style through its own encoder (its `encoder` in style.json)"
        )

"""The stylize pipeline on an aligned crop: encoder → z+ → source mapping → w+ → style generator.

Built from already loaded models (the worker caches them); no file or queue access here.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from models.attribute_classifier import AttributeClassifier
from models.attribute_generator import AttributeAwareGenerator
from models.encoder import Inverter, image_to_tensor
from models.stylegan2 import Generator
from models.synthesis import NoiseMode


class IncompatibleModels(ValueError):
    """The encoder and the style generator do not share a latent space."""


@dataclass(frozen=True)
class Stylized:
    image: Image.Image  # RGB, the generator's resolution
    branch: str | None  # the attribute branch that ran (None for a plain generator)
    wplus: torch.Tensor  # [1, L, D]
    branch_source: str | None = None  # "request", "classifier" or "default"
    confidence: float | None = None  # the classifier's probability for the chosen branch


class Stylizer:
    def __init__(
        self,
        inverter: Inverter,
        generator: Generator | AttributeAwareGenerator,
        classifier: AttributeClassifier | None = None,
    ) -> None:
        enc, gen = inverter.config, generator.config
        if enc.encoder.n_styles != gen.n_latent or enc.mapping.style_dim != gen.style_dim:
            raise IncompatibleModels(
                f"encoder emits {enc.encoder.n_styles}×{enc.mapping.style_dim} codes; the generator takes "
                f"{gen.n_latent}×{gen.style_dim}"
            )
        self.inverter, self.generator = inverter, generator
        usable = classifier is not None and set(classifier.config.labels) & set(self.branches)
        self.classifier = classifier if usable else None

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

    @torch.inference_mode()
    def __call__(
        self, crop: Image.Image, branch: str | None = None, noise: NoiseMode = "const", seed: int = 0
    ) -> Stylized:
        device = self.generator.latent_avg.device
        # 1. The aligned crop → encoder input [1, 3, S, S] in [-1, 1].
        x = image_to_tensor(crop, self.inverter.config.encoder.input_size).to(device)
        # 2. Invert: mu (z+) through the frozen source mapping → w+.
        wplus = self.inverter(x).wplus
        # 3. Render with the style generator (the attribute branch for attribute-aware styles).
        rng = torch.Generator().manual_seed(seed)
        source, confidence = None, None
        if isinstance(self.generator, AttributeAwareGenerator):
            # 3a. The branch: as asked; else the classifier's choice among this style's branches; else the default.
            if branch is not None:
                source = "request"
            elif self.classifier is not None:
                branch, confidence = self.classifier.predict(wplus, allowed=self.branches)
                source = "classifier"
            else:
                branch, source = self.default_branch, "default"
            out = self.generator(wplus, branch=branch, space="wplus", noise=noise, rng=rng)
        else:
            branch = None
            out = self.generator(wplus, space="wplus", noise=noise, rng=rng)
        # 4. [-1, 1] float → 8-bit RGB.
        return Stylized(to_image(out[0]), branch, wplus, source, confidence)


def to_image(chw: torch.Tensor) -> Image.Image:
    array = ((chw.float().clamp(-1, 1) + 1) * 127.5 + 0.5).to(torch.uint8).permute(1, 2, 0).cpu().numpy()
    return Image.fromarray(np.ascontiguousarray(array), "RGB")

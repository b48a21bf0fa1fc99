"""The batch pipeline (models/inference/pipeline.py) on tiny random networks: a batch gives each sample
what it would get alone, for plain styles with every control and for attribute-aware styles whose samples
take different branches; the whole-batch passes (the CUDA path, forced here on the CPU) agree with the
per-sample ones; requests a style cannot honour are refused before any network runs."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from skimage import data as skdata

from models.inference.directions import DirectionSet, Edit
from models.inference.pipeline import IncompatibleModels, RenderRequest, encode_crops, stylize_batch
from models.inference.stylizer import Stylizer
from models.networks.attribute_classifier import AttributeClassifier
from models.networks.attribute_generator import AttributeAwareGenerator
from models.networks.encoder import Inverter
from models.networks.stylegan2 import Generator
from service.portrait.configs import AttributeClassifierConfig, AttributeGeneratorConfig
from workers.launcher.demo import demo_configs

FACES = Path(__file__).parents[1] / "data" / "faces"


@pytest.fixture(scope="module")
def networks() -> tuple[Inverter, Generator, Generator]:
    """(encoder, the source generator (its mapping is the encoder's), a style tuned from it)."""
    inverter_config, generator_config = demo_configs(64, tiny=True)
    torch.manual_seed(0)
    inverter = Inverter(inverter_config).eval()
    with torch.no_grad():
        inverter.encoder.fc_mu.weight.normal_(0, 0.5)
    source = Generator(generator_config).eval()
    source.compute_latent_avg(256)
    inverter.mapping.load_state_dict(source.style.state_dict())
    style = copy.deepcopy(source)
    with torch.no_grad():
        for name, p in style.named_parameters():
            if not name.startswith("style."):
                p.add_(0.2 * torch.randn_like(p))
    return inverter, source, style


@pytest.fixture(scope="module")
def crops() -> list[Image.Image]:
    photos = [Image.fromarray(skdata.astronaut())] + [
        Image.open(FACES / name).convert("RGB") for name in ("obama.jpg", "biden.jpg", "alex-lacamoire.png")
    ]
    return [p.resize((64, 64), Image.Resampling.BILINEAR) for p in photos]


def _arrays(images: list[Image.Image]) -> list[np.ndarray]:
    return [np.asarray(i, dtype=np.int16) for i in images]


def test_a_plain_batch_gives_each_sample_its_image_alone(networks, crops) -> None:
    inverter, source, style = networks
    stylizer = Stylizer(inverter, style, source=source)
    edit = Edit(DirectionSet("d", "sefa", np.random.default_rng(0).normal(size=(2, 32)).astype(np.float32), "x"), 2.0)
    request = RenderRequest(structure=2, strength=0.5, edits=(edit,))
    batch = stylize_batch(stylizer, crops, request)
    alone = [stylizer(c, structure=2, strength=0.5, edits=[edit]).image for c in crops]
    assert [a.tobytes() for a in batch.images] == [a.tobytes() for a in alone]  # on the CPU: sample by sample
    assert len({a.tobytes() for a in alone}) == len(crops)
    assert (batch.structure, batch.strength) == (2, 0.5) and batch.wplus.shape == (4, style.n_latent, 32)
    # the whole-batch passes of CUDA, here on the CPU: the same images up to float rounding
    whole = stylize_batch(stylizer, crops, request, batched=True)
    assert max(int(np.abs(a - b).max()) for a, b in zip(_arrays(whole.images), _arrays(batch.images))) <= 2


def _splitting_classifier(inverter: Inverter, crops: list[Image.Image]) -> AttributeClassifier:
    """A classifier that calls the first two crops "female" and the last two "male" (a cut across the
    line between their mean codes)."""
    with torch.no_grad():
        w = encode_crops(Stylizer(inverter, Generator(demo_configs(64, tiny=True)[1])), crops, batched=False)[0]
    features = w.mean(1)
    a, b = features[:2].mean(0), features[2:].mean(0)
    classifier = AttributeClassifier(AttributeClassifierConfig(labels=("female", "male"), style_dim=32))
    with torch.no_grad():
        classifier.linear.weight.zero_()
        classifier.linear.weight[1] = 50 * (b - a)
        classifier.linear.bias.zero_()
        classifier.linear.bias[1] = -50 * float((b - a) @ (a + b) / 2)
    return classifier


def test_an_attribute_aware_batch_groups_its_samples_by_branch(networks, crops) -> None:
    inverter, source, _ = networks
    dual = AttributeAwareGenerator.from_generator(source, AttributeGeneratorConfig(source.config, split_resolution=16))
    with torch.no_grad():
        for p in dual.parameters():
            p.add_(0.1 * torch.randn_like(p))
    stylizer = Stylizer(inverter, dual, _splitting_classifier(inverter, crops))
    batch = stylize_batch(stylizer, crops)
    assert batch.branches == ["female", "female", "male", "male"]
    assert batch.branch_sources == ["classifier"] * 4 and all(c > 0.5 for c in batch.confidences)
    alone = [stylizer(c) for c in crops]
    assert [a.branch for a in alone] == batch.branches
    assert [a.image.tobytes() for a in alone] == [b.tobytes() for b in batch.images]
    whole = stylize_batch(stylizer, crops, batched=True)  # one generator pass per branch
    assert whole.branches == batch.branches
    assert max(int(np.abs(a - b).max()) for a, b in zip(_arrays(whole.images), _arrays(batch.images))) <= 2
    asked = stylize_batch(stylizer, crops, RenderRequest(branch="male"))
    assert asked.branches == ["male"] * 4 and asked.branch_sources == ["request"] * 4
    assert asked.images[2].tobytes() == batch.images[2].tobytes()


def test_requests_a_style_cannot_honour_are_refused_before_the_networks(networks, crops) -> None:
    inverter, source, style = networks
    dual = AttributeAwareGenerator.from_generator(source, AttributeGeneratorConfig(source.config, split_resolution=16))
    cases = [
        (Stylizer(inverter, dual), RenderRequest(strength=0.5)),
        (Stylizer(inverter, dual), RenderRequest(branch="child")),
        (Stylizer(inverter, style), RenderRequest(branch="male")),
        (Stylizer(inverter, style), RenderRequest(structure=2)),  # no source generator
        (Stylizer(inverter, style), RenderRequest(strength=0.5)),
    ]
    calls: list[int] = []
    handle = inverter.register_forward_hook(lambda *a: calls.append(1))
    try:
        for stylizer, request in cases:
            with pytest.raises(IncompatibleModels):
                stylize_batch(stylizer, crops[:1], request)
    finally:
        handle.remove()
    assert calls == []

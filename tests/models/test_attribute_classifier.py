"""attribute=auto: a linear classifier on the inverted latent picks the branch of attribute-aware styles."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import torch
from PIL import Image, ImageOps

from models.inference.stylizer import Stylizer
from models.networks.attribute_classifier import AttributeClassifier, fit_classifier
from models.networks.attribute_generator import AttributeAwareGenerator
from models.weights import checkpoints
from service.portrait.configs import AttributeClassifierConfig, AttributeGeneratorConfig
from tests.conftest import seeded
from workers.launcher.demo import demo_configs

FACES = Path(__file__).parents[1] / "data" / "faces"


def test_fit_separates_labelled_latents_and_round_trips(tmp_path: Path) -> None:
    gen = torch.Generator().manual_seed(0)
    direction = torch.randn(32, generator=gen)
    wplus = torch.randn(40, 8, 32, generator=gen)
    labels = ["male" if i % 2 else "female" for i in range(40)]
    wplus[1::2] += 2 * direction  # the attribute is a direction in W
    classifier, accuracy = fit_classifier(wplus, labels)
    assert accuracy == 1.0 and classifier.config.labels == ("female", "male")
    assert classifier.predict(wplus[1:2])[0] == "male" and classifier.predict(wplus[:1])[0] == "female"
    assert classifier.predict(wplus[1:2], allowed=("female",)) == ("female", 1.0)
    checkpoints.save(tmp_path, classifier)
    loaded = checkpoints.load(tmp_path, expected=AttributeClassifier)
    assert torch.equal(loaded(wplus), classifier(wplus))


def test_the_stylizer_takes_the_branch_from_the_request_the_classifier_or_the_default() -> None:
    inverter_config, generator_config = demo_configs(32, tiny=True)
    from models.networks.encoder import Inverter

    inverter = Inverter(inverter_config).eval()
    style = seeded(AttributeAwareGenerator(AttributeGeneratorConfig(generator_config, split_resolution=16)), 3)
    says_male = AttributeClassifier(AttributeClassifierConfig(labels=("female", "male"), style_dim=32)).eval()
    with torch.no_grad():
        says_male.linear.weight.zero_()
        says_male.linear.bias.copy_(torch.tensor([-2.0, 2.0]))
    face = Image.open(FACES / "obama.jpg").convert("RGB").resize((64, 64))
    default = Stylizer(inverter, style)(face)
    assert (default.branch, default.branch_source) == ("female", "default")
    chosen = Stylizer(inverter, style, says_male)(face)
    assert (chosen.branch, chosen.branch_source) == ("male", "classifier") and chosen.confidence > 0.9
    asked = Stylizer(inverter, style, says_male)(face, branch="female")
    assert (asked.branch, asked.branch_source) == ("female", "request")
    other_labels = AttributeClassifier(AttributeClassifierConfig(labels=("child", "adult"), style_dim=32))
    assert Stylizer(inverter, style, other_labels).classifier is None  # unrelated labels: not used


def test_the_fit_command(tmp_path: Path) -> None:
    from workers.launcher.demo import demo_registry

    demo_registry(tmp_path / "registry", size=32, tiny=True)
    for label, names in {"obama": ["obama.jpg"], "biden": ["biden.jpg"]}.items():
        (tmp_path / "photos" / label).mkdir(parents=True)
        for name in names:
            photo = Image.open(FACES / name).convert("RGB")
            photo.save(tmp_path / "photos" / label / f"{name}.png")
            ImageOps.mirror(photo).save(tmp_path / "photos" / label / f"mirror-{name}.png")
    out = tmp_path / "registry" / "base" / "attribute-classifier"
    agilegan = Path(sys.executable).with_name("agilegan")
    result = subprocess.run(
        [
            str(agilegan),
            "fit-attribute-classifier",
            "--encoder",
            str(tmp_path / "registry" / "base" / "encoder"),
            "--photos",
            str(tmp_path / "photos"),
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert "fitted on 4 photos" in result.stdout and "training accuracy 1.000" in result.stdout
    assert checkpoints.load(out, expected=AttributeClassifier).config.labels == ("biden", "obama")

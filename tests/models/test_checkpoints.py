"""Our checkpoint format: bit-exact round trips, clear failures on mismatched files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from models.networks.attribute_generator import AttributeAwareGenerator
from models.networks.discriminator import Discriminator
from models.networks.encoder import Inverter
from models.networks.stylegan2 import Generator
from models.weights import checkpoints
from service.portrait.checkpoint_files import CheckpointError, Provenance, read_info, sha256_file
from service.portrait.configs import (
    AttributeGeneratorConfig,
    DiscriminatorConfig,
    EncoderConfig,
    GeneratorConfig,
    InverterConfig,
    MappingConfig,
)
from tests.conftest import seeded


def tiny_models() -> list[torch.nn.Module]:
    inverter = Inverter(InverterConfig(encoder=EncoderConfig.tiny(8), mapping=MappingConfig(32, 2)))
    seeded(inverter, 4)
    return [
        seeded(Generator(GeneratorConfig.tiny(32)), 1),
        seeded(AttributeAwareGenerator(AttributeGeneratorConfig(GeneratorConfig.tiny(32), split_resolution=16)), 2),
        seeded(Discriminator(DiscriminatorConfig.tiny(32)), 3),
        inverter,
    ]


@pytest.mark.parametrize("model", tiny_models(), ids=lambda m: type(m).__name__)
def test_round_trip_is_bit_exact(model: torch.nn.Module, tmp_path: Path) -> None:
    prov = Provenance(source="unit.pt", source_sha256="ab" * 32, license="test", extra={"k": 1})
    checkpoints.save(tmp_path / "ckpt", model, prov)
    loaded = checkpoints.load(tmp_path / "ckpt", expected=type(model))
    assert type(loaded) is type(model)
    before, after = checkpoints.model_tensors(model), checkpoints.model_tensors(loaded)
    assert before.keys() == after.keys()
    for key in before:
        assert before[key].dtype == after[key].dtype and torch.equal(before[key], after[key]), key
    info = read_info(tmp_path / "ckpt")
    assert info.provenance == prov and info.format_version == 1 and info.class_name == type(model).__name__
    assert info.tensors_sha256 == sha256_file(tmp_path / "ckpt" / "model.safetensors")
    assert info.created_at


def test_loaded_generator_renders_identically(tiny_generator: Generator, tmp_path: Path) -> None:
    checkpoints.save(tmp_path, tiny_generator)
    loaded = checkpoints.load(tmp_path)
    z = torch.randn(2, 32)
    with torch.no_grad():
        assert torch.equal(loaded(z, truncation=0.5), tiny_generator(z, truncation=0.5))
    assert "latent_avg" in load_file(str(tmp_path / "model.safetensors"))
    assert "latent_avg" not in tiny_generator.state_dict()  # rosinality layout stays exact


def test_mismatched_config_fails_with_the_differences(tiny_generator: Generator, tmp_path: Path) -> None:
    checkpoints.save(tmp_path, tiny_generator)
    data = json.loads((tmp_path / "config.json").read_text())
    data["config"]["channel_max"] = 8
    (tmp_path / "config.json").write_text(json.dumps(data))
    with pytest.raises(CheckpointError, match=r"does not match Generator: .*wrong shape: input.input \[1, 16, 4, 4\]"):
        checkpoints.load(tmp_path)
    data["config"]["size"] = 64
    data["config"]["channel_max"] = 16
    (tmp_path / "config.json").write_text(json.dumps(data))
    with pytest.raises(CheckpointError, match=r"missing: .*convs\.6"):
        checkpoints.load(tmp_path)


def test_wrong_class_version_and_files(tiny_generator: Generator, tmp_path: Path) -> None:
    checkpoints.save(tmp_path, tiny_generator)
    with pytest.raises(CheckpointError, match="holds a Generator, expected Inverter"):
        checkpoints.load(tmp_path, expected=Inverter)
    with pytest.raises(CheckpointError, match="no config.json"):
        checkpoints.load(tmp_path / "nowhere")
    data = json.loads((tmp_path / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps({**data, "format_version": 99}))
    with pytest.raises(CheckpointError, match="format_version 99 was written by a newer release"):
        checkpoints.load(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({**data, "config": {**data["config"], "size": 48}}))
    with pytest.raises(CheckpointError, match="invalid Generator config: size must be a power of two"):
        checkpoints.load(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps(data))
    (tmp_path / "model.safetensors").write_bytes(b"\x00garbage")
    with pytest.raises(CheckpointError, match="unreadable safetensors"):
        checkpoints.load(tmp_path)

"""Importers: strict loads of each public format, BGR handling, and refusals of bad files."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from models.networks.attribute_generator import AttributeAwareGenerator
from models.networks.discriminator import Discriminator
from models.networks.encoder import Inverter
from models.networks.stylegan2 import Generator
from models.weights import checkpoints
from models.weights.importers import ImportFailure, import_weights, infer_generator_config
from service.portrait.configs import (
    AttributeGeneratorConfig,
    EncoderConfig,
    GeneratorConfig,
    InverterConfig,
    MappingConfig,
)
from tests.conftest import seeded
from tests.seeded_weights import DATA, rosinality_weights


def test_rosinality_training_checkpoint_with_args_and_discriminator(tmp_path: Path) -> None:
    ref = np.load(DATA / "rosinality_g32_s7.npz")
    d = seeded(Discriminator(checkpoints.DiscriminatorConfig(size=32)), 0)
    src = tmp_path / "000800.pt"
    torch.save(
        {
            "g_ema": rosinality_weights(32, 7),
            "g": rosinality_weights(32, 8),
            "d": d.state_dict(),
            "latent_avg": torch.from_numpy(ref["latent_avg"]),
            "args": argparse.Namespace(size=32, batch=4),
            "ada_aug_p": 0.1,
        },
        src,
    )
    result = import_weights("rosinality", src, tmp_path / "g")
    assert result.class_names == ["Generator", "Discriminator"]
    g = checkpoints.load(tmp_path / "g", expected=Generator)
    with torch.no_grad():
        img = g(torch.from_numpy(ref["z"]), truncation=0.7)
    assert float((img - torch.from_numpy(ref["img_trunc"])).norm() / img.norm()) < 1e-5
    loaded_d = checkpoints.load(tmp_path / "g" / "discriminator", expected=Discriminator)
    assert all(torch.equal(a, b) for a, b in zip(d.state_dict().values(), loaded_d.state_dict().values()))
    info = checkpoints.read_info(tmp_path / "g")
    assert info.provenance.source == "000800.pt" and len(info.provenance.source_sha256) == 64
    assert "Source Code License-NC" in info.provenance.license
    assert "args" in result.ignored_keys and any("'g'" in n for n in result.notes)


def test_rosinality_1024_imports_strictly(tmp_path: Path) -> None:
    src = tmp_path / "stylegan2-ffhq-config-f.pt"
    weights = rosinality_weights(1024, 3)
    torch.save({"g_ema": weights, "latent_avg": torch.zeros(512)}, src)
    import_weights("rosinality", src, tmp_path / "ffhq")
    g = checkpoints.load(tmp_path / "ffhq")
    assert g.config == GeneratorConfig()
    sd = g.state_dict()
    assert list(sd) == list(weights)
    assert all(torch.equal(sd[k], weights[k]) for k in weights)


def test_missing_latent_avg_is_computed_and_noted(tmp_path: Path, tiny_generator: Generator) -> None:
    src = tmp_path / "g.pt"
    torch.save({"g_ema": tiny_generator.state_dict()}, src)
    result = import_weights("rosinality", src, tmp_path / "out")
    assert any("latent_avg not in the file" in n for n in result.notes)
    g = checkpoints.load(tmp_path / "out")
    assert g.config == tiny_generator.config
    assert torch.count_nonzero(g.latent_avg) > 0


def test_channel_table_inference() -> None:
    for config in (GeneratorConfig(), GeneratorConfig(size=256, channel_multiplier=1), GeneratorConfig.tiny(64)):
        with torch.device("meta"):
            sd = Generator(config).state_dict()
        assert infer_generator_config(sd, "x") == GeneratorConfig(
            size=config.size,
            style_dim=config.style_dim,
            n_mlp=config.n_mlp,
            channel_multiplier=config.channel_multiplier,
            channel_max=config.channel_max,
        )


def _official_encoder_file(path: Path, inverter: Inverter, decoder: Generator) -> None:
    sd = {f"encoder.{k}": v for k, v in inverter.encoder.state_dict().items()}
    sd.update({f"decoder.{k}": v for k, v in decoder.state_dict().items()})
    torch.save({"state_dict": sd, "opts": {"input_nc": 3, "output_size": 32}, "latent_avg": torch.zeros(8, 32)}, path)


def test_agilegan_encoder(tmp_path: Path) -> None:
    decoder = seeded(Generator(GeneratorConfig.tiny(32)), 6)
    config = InverterConfig(encoder=EncoderConfig(style_dim=32, n_styles=8), mapping=MappingConfig(32, 2))
    # the full IR-SE50 body (official structure) with small heads; random fc_mu so mu is not all zero
    torch.manual_seed(7)
    inverter = Inverter(config).eval()
    seeded(inverter.mapping, 7)
    with torch.no_grad():
        inverter.encoder.fc_mu.weight.normal_(0, 0.1)
    src = tmp_path / "encoder.pt"
    _official_encoder_file(src, inverter, decoder)
    result = import_weights("agilegan-encoder", src, tmp_path / "enc")
    loaded = checkpoints.load(tmp_path / "enc", expected=Inverter)
    assert loaded.config == config
    x = torch.rand(1, 3, 256, 256) * 2 - 1
    with torch.no_grad():
        got, ref_mu = loaded(x), inverter.encoder(x)[1]
    assert torch.equal(got.mu, ref_mu)
    assert torch.allclose(got.wplus, decoder.style.map_per_layer(ref_mu), atol=1e-6)
    assert any("decoder" in n for n in result.notes) and "decoder.input.input" in result.ignored_keys


def _dual_state_dict(model: AttributeAwareGenerator) -> dict[str, torch.Tensor]:
    letters = {"branches.0.": "A", "branches.1.": "B"}
    out = {}
    for key, value in model.state_dict().items():
        m = re.match(r"^(branches\.\d\.)?(convs|to_rgbs)\.(.*)$", key)
        out[f"{m.group(2)}{letters.get(m.group(1), 'C')}.{m.group(3)}" if m else key] = value
    return out


def test_agilegan_dual_generator(tmp_path: Path) -> None:
    config = AttributeGeneratorConfig(generator=GeneratorConfig.tiny(128), split_resolution=64)
    model = seeded(AttributeAwareGenerator(config), 8)
    sd = _dual_state_dict(model)
    assert any(k.startswith("convsA.7.") for k in sd) and any(k.startswith("to_rgbsC.0.") for k in sd)
    torch.save({"g_ema": sd, "latent_avg": model.latent_avg}, tmp_path / "cartoon.pt")
    import_weights("agilegan-dual", tmp_path / "cartoon.pt", tmp_path / "cartoon")
    loaded = checkpoints.load(tmp_path / "cartoon", expected=AttributeAwareGenerator)
    assert loaded.branch_names == ("female", "male")
    z = torch.randn(2, 32)
    with torch.no_grad():
        assert torch.equal(loaded(z, branch=[0, 1]), model(z, branch=[0, 1]))


def test_mmgen_generator_is_converted_to_rgb(tmp_path: Path, tiny_generator: Generator) -> None:
    sd = _mmgen_state_dict(tiny_generator.state_dict())
    ckpt = {"meta": {"mmcv_version": "1.3.16", "iter": 1600}, "state_dict": {}}
    ckpt["state_dict"].update({f"generator_ema.{k}": v for k, v in sd.items()})
    ckpt["state_dict"].update({f"generator.{k}": v * 0 for k, v in sd.items()})
    ckpt["state_dict"]["discriminator.convs.0.0.weight"] = torch.zeros(1)
    torch.save(ckpt, tmp_path / "oil.pth")
    result = import_weights("mmgen", tmp_path / "oil.pth", tmp_path / "oil")
    loaded = checkpoints.load(tmp_path / "oil")
    z = torch.randn(2, 32)
    with torch.no_grad():
        assert torch.allclose(loaded(z), tiny_generator(z), atol=1e-6)
        bgr = Generator(tiny_generator.config)
        bgr.load_state_dict(_rosinality_names_bgr(sd))
        assert torch.allclose(bgr.eval()(z).flip(1), tiny_generator(z), atol=1e-6)
    assert "generator.*" in result.ignored_keys and "discriminator.*" in result.ignored_keys


def _mmgen_state_dict(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """rosinality → MMGen names, with the ToRGB output channels in BGR order (as MMGen trains them)."""
    rules = [
        (r"^style\.(\d+)\.weight$", r"style_mapping.\1.linear.weight_orig"),
        (r"^style\.(\d+)\.bias$", r"style_mapping.\1.bias"),
        (r"^input\.input$", "constant_input.input"),
        (r"\.modulation\.weight$", ".style_modulation.linear.weight_orig"),
        (r"\.modulation\.bias$", ".style_modulation.bias"),
        (r"\.noise\.weight$", ".noise_injector.weight"),
        (r"^noises\.noise_(\d+)$", r"injected_noise_\1"),
    ]
    out = {}
    for key, value in sd.items():
        new = key
        for pattern, repl in rules:
            new = re.sub(pattern, repl, new)
        if re.match(r"^to_rgb(1|s\.\d+)\.(conv\.weight|bias)$", key):
            value = value.flip(1)
        out[new] = value.clone()
    return out


def _rosinality_names_bgr(mm: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    from models.weights.importers import mmgen_key

    return {mmgen_key(k): v for k, v in mm.items()}


class RunsCode:
    """Unpickling this calls print(): the kind of payload weights_only must refuse."""

    def __reduce__(self) -> tuple:
        return (print, ("this ran at load time",))


def test_bad_files_are_refused_with_a_reason(tmp_path: Path, tiny_generator: Generator) -> None:
    with pytest.raises(ImportFailure, match="no such file"):
        import_weights("rosinality", tmp_path / "missing.pt", tmp_path / "out")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint at all")
    with pytest.raises(ImportFailure, match="not a readable torch checkpoint"):
        import_weights("rosinality", tmp_path / "junk.pt", tmp_path / "out")
    torch.save({"g_ema": tiny_generator.state_dict(), "hook": RunsCode()}, tmp_path / "evil.pt")
    with pytest.raises(ImportFailure, match="refused to unpickle: it references (builtins.)?print"):
        import_weights("rosinality", tmp_path / "evil.pt", tmp_path / "out")
    torch.save({"state_dict": {}}, tmp_path / "empty.pt")
    with pytest.raises(ImportFailure, match="no 'g_ema' entry"):
        import_weights("rosinality", tmp_path / "empty.pt", tmp_path / "out")
    with pytest.raises(ImportFailure, match="expected encoder"):
        import_weights("agilegan-encoder", tmp_path / "empty.pt", tmp_path / "out")
    with pytest.raises(ImportFailure, match="unknown format"):
        import_weights("pickle", tmp_path / "empty.pt", tmp_path / "out")
    # a generator with one key removed: strict, so the import names it
    sd = dict(tiny_generator.state_dict())
    del sd["conv1.noise.weight"]
    torch.save({"g_ema": sd}, tmp_path / "partial.pt")
    with pytest.raises(ImportFailure, match=r"1 missing: conv1\.noise\.weight"):
        import_weights("rosinality", tmp_path / "partial.pt", tmp_path / "out")
    assert not (tmp_path / "out").exists()

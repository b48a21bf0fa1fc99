"""MMGEN-FaceStylor checkpoints: import parity against outputs of FaceStylor's own code on seeded weights.

The reference arrays (tests/data/facestylor/*.npz) were computed by FaceStylor @67e7b17 on mmgen 0.7.1
from the seeded weights `tests/facestylor_weights.py` rebuilds. The tests write those weights as
`.pth` files in the published layout and import them through `agilegan weights import`'s code path.
MMGen renders BGR; our imports render RGB, so raw references are compared channel-reversed.
Judged by relative L2 (oneDNN rounding makes max-abs a poor criterion, see the fixture README).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from models.inference.style_strength import blend_generators, interpolate_generators, render
from models.networks.encoder import Inverter, image_to_tensor
from models.networks.stylegan2 import Generator
from models.weights import checkpoints
from models.weights.importers import convert_facestylor_encoder, convert_facestylor_transfer, import_weights
from tests.facestylor_weights import DATA, checkpoint_file, generator_entries, image_u8, manifest, weights

G64 = DATA / "facestylor_g64_s11.npz"
ENC = DATA / "facestylor_encoder_s11.npz"


def rel_l2(ours: torch.Tensor | np.ndarray, ref: np.ndarray) -> float:
    if isinstance(ours, torch.Tensor):
        ours = ours.detach().numpy()
    ours = np.asarray(ours, dtype=np.float64)
    return float(np.linalg.norm(ours - ref) / np.linalg.norm(ref))


def bgr(x: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(x[:, ::-1])


def _rename(sd: dict[str, torch.Tensor], old: str, new: str) -> dict[str, torch.Tensor]:
    return {new + k[len(old) :]: v for k, v in sd.items()}


@pytest.fixture(scope="module")
def g64(tmp_path_factory: pytest.TempPathFactory) -> tuple[Generator, Generator]:
    """(source S, style T) at 64 px, each imported from a transfer-layout .pth (generator_ema.*)."""
    folder = tmp_path_factory.mktemp("g64")
    models = []
    for role in ("decoder.", "generator_ema."):
        sd = _rename(weights(generator_entries(64, role)), role, "generator_ema.")
        sd.update(_rename(sd, "generator_ema.", "generator."))  # a train-only copy, as the real files have
        path = checkpoint_file(folder / f"{role.strip('.')}.pth", sd)
        result = import_weights("facestylor-transfer", path, folder / role.strip("."))
        assert result.ignored_keys == [f"generator.* ({len(sd) // 2} keys)"]  # train-only keys reported, not imported
        models.append(checkpoints.load(result.directories[0], expected=Generator))
    return models[0], models[1]


def test_the_style_render_matches_facestylor(g64) -> None:
    source, style = g64
    ref = np.load(G64)
    wplus = torch.from_numpy(ref["wplus"])[:, : style.n_latent]
    assert rel_l2(style(wplus, space="wplus", noise="const"), bgr(ref["img_style"])) < 1e-5
    assert rel_l2(source(wplus, space="wplus", noise="const"), bgr(ref["img_src"])) < 1e-5


@pytest.mark.parametrize("k", [1, 2, 3, 4])
def test_layer_swap_matches_facestylor(g64, k: int) -> None:
    source, style = g64
    ref = np.load(G64)
    wplus = torch.from_numpy(ref["wplus"])[:, : style.n_latent]
    assert rel_l2(render(style, wplus, structure=k, source=source), bgr(ref[f"img_swap{k}"])) < 1e-5


def test_dni_matches_facestylor(g64) -> None:
    """FaceStylor's DNI alpha 0.3 (alpha·base + (1 − alpha)·style) is our strength 0.7."""
    source, style = g64
    ref = np.load(G64)
    wplus = torch.from_numpy(ref["wplus"])[:, : style.n_latent]
    mixed = interpolate_generators(source, style, 0.7)
    assert rel_l2(mixed(wplus, space="wplus", noise="const"), bgr(ref["img_dni_a0.3"])) < 1e-5
    assert interpolate_generators(source, style, 1.0) is style
    at_zero = interpolate_generators(source, style, 0.0)(wplus, space="wplus", noise="const")
    assert torch.equal(at_zero, source(wplus, space="wplus", noise="const"))


def test_weight_blend_matches_facestylor(g64) -> None:
    source, style = g64
    ref = np.load(G64)
    wplus = torch.from_numpy(ref["wplus"])[:, : style.n_latent]
    blended = blend_generators(source, style, 2)
    assert rel_l2(blended(wplus, space="wplus", noise="const"), bgr(ref["img_blend2"])) < 1e-5


def test_a_structure_the_generator_cannot_take_is_refused(g64) -> None:
    source, style = g64
    wplus = torch.zeros(1, style.n_latent, 512)
    with pytest.raises(ValueError, match="structure must be 0"):
        render(style, wplus, structure=5, source=source)
    with pytest.raises(ValueError, match="source generator"):
        render(style, wplus, structure=2)


@pytest.fixture(scope="module")
def encoder_import(tmp_path_factory: pytest.TempPathFactory):
    """The 1024 encoder checkpoint, all 1208 published keys (train-only ones too), imported."""
    folder = tmp_path_factory.mktemp("encoder")
    path = checkpoint_file(folder / "agile_encoder.pth", weights(manifest("encoder_ffhq1024")))
    result = import_weights("facestylor-encoder", path, folder / "imported")
    path.unlink()  # 1.4 GB
    return result


def test_the_encoder_and_its_mapping_match_facestylor(encoder_import) -> None:
    assert encoder_import.class_names == ["Inverter", "Generator"]
    assert encoder_import.ignored_keys == ["id_loss.* (397 keys)", "lpips_loss.* (17 keys)"]
    inverter = checkpoints.load(encoder_import.directories[0], expected=Inverter)
    assert inverter.encoder.fc_var is None  # mu-only, not a zero-filled VAE head
    ref = np.load(ENC)
    x = image_to_tensor(image_u8(), 256)
    assert torch.equal(x, torch.from_numpy(ref["x"]))  # FaceStylor's ToTensor + Normalize
    with torch.no_grad():
        inversion = inverter(x)
    assert inversion.logvar is None
    assert rel_l2(inversion.mu, ref["zplus"]) < 1e-4
    assert rel_l2(inversion.wplus, ref["wplus"]) < 1e-4


def test_reconstruction_and_toonify_swap3_match_facestylor(encoder_import, tmp_path: Path) -> None:
    """The source decoder's reconstruction and quick_try's full path (layer swap k = 3) at 1024 px."""
    ref = np.load(ENC)
    source = checkpoints.load(encoder_import.directories[1], expected=Generator)
    style_path = checkpoint_file(tmp_path / "toonify.pth", weights(manifest("transfer_1024")))
    style_dir = import_weights("facestylor-transfer", style_path, tmp_path / "toonify").directories[0]
    style = checkpoints.load(style_dir, expected=Generator)
    wplus = torch.from_numpy(ref["wplus"])
    with torch.no_grad():
        recon = F.adaptive_avg_pool2d(source(wplus, space="wplus", noise="const"), (256, 256))
        toon = F.adaptive_avg_pool2d(render(style, wplus, structure=3, source=source), (256, 256))
    assert rel_l2(recon, ref["recon_rgb_pool256"]) < 1e-5
    assert rel_l2(toon, ref["toonify_swap3_rgb_pool256"]) < 1e-5


@pytest.mark.parametrize(
    ("name", "convert", "size", "train_only"),
    [
        ("encoder_ffhq1024", convert_facestylor_encoder, 1024, {"id_loss.": 397, "lpips_loss.": 17}),
        ("encoder_celebahq256", convert_facestylor_encoder, 256, {"id_loss.": 397, "lpips_loss.": 17}),
        ("transfer_1024", convert_facestylor_transfer, 1024, None),
        ("transfer_256", convert_facestylor_transfer, 256, None),
    ],
)
def test_the_real_checkpoint_layouts_import_strictly(name, convert, size, train_only) -> None:
    """Meta tensors shaped as the manifests of the released files: strict import, train-only keys listed."""
    entries = manifest(name)
    sd = {k: torch.empty(shape, dtype=getattr(torch, dtype), device="meta") for k, shape, dtype, _ in entries}
    converted = convert(sd, f"{name}.pth")
    generator = converted.models.get("source", converted.models[""])
    assert generator.config.size == size
    reported = {item.split("*")[0]: int(item.split("(")[1].split()[0]) for item in converted.ignored}
    unused = {}
    for key, _, _, use in entries:
        if use == "train_only":
            top = key.split(".")[0] + "."
            unused[top] = unused.get(top, 0) + 1
    assert reported == unused  # every train-only key reported, by module, nothing else left behind
    if train_only is not None:
        assert reported == train_only
    else:
        assert {"generator.", "discriminator.", "source_generator."} <= set(reported)


def test_interpolated_generators_are_cached_per_quantised_strength(g64) -> None:
    """The worker's Stylizer interpolates once per (style, strength step), keeps a few, and renders
    a blend equal to interpolating on the spot."""
    from models.inference.stylizer import INTERPOLATED_CACHE, IncompatibleModels, Stylizer
    from service.portrait.configs import EncoderConfig, InverterConfig, MappingConfig

    source, style = g64
    config = InverterConfig(
        encoder=EncoderConfig(input_size=64, stage_units=(1, 1, 1, 1), stage_widths=(16, 16, 32, 32), n_styles=10),
        mapping=MappingConfig(),
    )
    inverter = Inverter(config).eval()
    inverter.mapping.load_state_dict(source.style.state_dict())
    stylizer = Stylizer(inverter, style, source=source)
    assert stylizer.with_strength(0.71) is stylizer.with_strength(0.7)  # 0.71 → 0.70
    assert stylizer.with_strength(1.0) is style
    for s in (0.1, 0.2, 0.3, 0.4, 0.5):
        stylizer.with_strength(s)
    assert len(stylizer._interpolated) == INTERPOLATED_CACHE
    wplus = torch.from_numpy(np.load(G64)["wplus"])[:1, : style.n_latent]
    direct = render(interpolate_generators(source, style, 0.5), wplus, 2, source)
    assert torch.equal(stylizer.render(wplus, structure=2, strength=0.5), direct)
    with pytest.raises(ValueError, match="strength must be in"):
        stylizer.with_strength(1.2)
    wrong = Inverter(config).eval()  # a mapping that is not the source generator's
    with pytest.raises(IncompatibleModels, match="its own encoder"):
        Stylizer(wrong, style, source=source)

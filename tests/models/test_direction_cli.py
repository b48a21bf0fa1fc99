"""`agilegan directions …` and `generate --edit` (the CLI's entry point, in-process: tests/cli.py) on tiny
checkpoints."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from models.inference.directions import load, sefa
from models.networks.stylegan2 import Generator
from models.weights import checkpoints
from service.portrait.checkpoint_files import w_space_id
from tests.cli import agilegan
from tests.exemplar_data import FACES, labelled_photo_zips


def test_sefa_writes_the_factorisation_of_the_generator(tiny_registry: Path, tmp_path: Path) -> None:
    base = tiny_registry / "base" / "generator"
    g = checkpoints.load(base, expected=Generator)
    for spec, layers in (("all", None), ("2-5", (2, 3, 4, 5))):
        out = tmp_path / f"sefa-{spec}.npz"
        result = agilegan("directions", "sefa", base, "--layers", spec, "--k", 3, "--out", out)
        assert result.returncode == 0, result.stderr
        written = load(out)
        expected, values, used = sefa(g.state_dict(), g.n_latent, layers, 3)
        assert np.allclose(written.vectors, expected, atol=1e-6) and np.allclose(written.eigenvalues, values)
        assert written.w_space == w_space_id(base) == w_space_id(tiny_registry / "base" / "encoder")
        assert written.layers == (() if layers is None else tuple(used)) and written.kind == "sefa"
    bad = agilegan("directions", "sefa", base, "--layers", "0-99", "--out", tmp_path / "x.npz")
    assert bad.returncode == 1 and "w+ indices" in bad.stderr


def test_generate_edit_is_the_formula(tiny_registry: Path, tmp_path: Path) -> None:
    base = tiny_registry / "base" / "generator"
    g = checkpoints.load(base, expected=Generator)
    sets = tmp_path / "sefa.npz"
    assert agilegan("directions", "sefa", base, "--k", 4, "--out", sets).returncode == 0
    d = load(sets).vectors
    wplus = np.random.RandomState(0).standard_normal((2, g.n_latent, g.config.style_dim)).astype(np.float32)
    np.save(tmp_path / "w.npy", wplus)
    common = ("generate", base, "--latents", tmp_path / "w.npy", "--space", "wplus")
    edited = agilegan(*common, "--edit", f"{sets}:2=1.5", "--edit", f"{sets}=-2", "--out", tmp_path / "e.npy")
    assert edited.returncode == 0, edited.stderr
    by_hand = torch.from_numpy(wplus + 1.5 * d[2] - 2.0 * d[0])
    with torch.no_grad():
        expected = g(by_hand, space="wplus").numpy()
    got = np.load(tmp_path / "e.npy")
    assert np.linalg.norm(got - expected) / np.linalg.norm(expected) <= 1e-6
    # only the chosen layers: the same edit on layers 6-9 leaves the coarse layers' output alone
    layered = agilegan(*common, "--edit", f"{sets}:2=1.5", "--edit-layers", "6-9", "--out", tmp_path / "l.npy")
    assert layered.returncode == 0, layered.stderr
    only_fine = wplus.copy()
    only_fine[:, 6:10] += 1.5 * d[2]
    with torch.no_grad():
        expected = g(torch.from_numpy(only_fine), space="wplus").numpy()
    assert np.linalg.norm(np.load(tmp_path / "l.npy") - expected) / np.linalg.norm(expected) <= 1e-6
    # α = 0 is the unedited image, byte for byte (z sampled from a seed, truncated, through w+ here)
    seeded = ("generate", base, "--seed", 3, "--truncation", 0.7)
    assert agilegan(*seeded, "--out", tmp_path / "a.png").returncode == 0
    assert agilegan(*seeded, "--edit", f"{sets}:1=0", "--out", tmp_path / "b.png").returncode == 0
    assert (tmp_path / "a.png").read_bytes() == (tmp_path / "b.png").read_bytes()
    # a registry name works as well as a file; a direction of another w space is refused
    (tiny_registry / "directions").mkdir(exist_ok=True)
    (tiny_registry / "directions" / "sefa.npz").write_bytes(sets.read_bytes())
    named = agilegan(*seeded, "--registry", tiny_registry, "--edit", "sefa:1=0", "--out", tmp_path / "c.png")
    assert named.returncode == 0 and (tmp_path / "c.png").read_bytes() == (tmp_path / "a.png").read_bytes()
    checkpoints.save(tmp_path / "alien", Generator(g.config))  # the same shape, another (random) mapping
    other = agilegan("generate", tmp_path / "alien", "--edit", f"{sets}=1", "--out", tmp_path / "d.png")
    assert other.returncode == 1 and "another w space" in other.stderr
    for bad, message in (("nope=1", "no direction"), (f"{sets}=big", "number"), (f"{sets}=9", "outside")):
        result = agilegan(*seeded, "--registry", tiny_registry, "--edit", bad, "--out", tmp_path / "x.png")
        assert result.returncode == 1 and message in result.stderr, result.stderr


def test_import_then_gallery(tiny_registry: Path, tmp_path: Path) -> None:
    base = tiny_registry / "base" / "generator"
    g = checkpoints.load(base, expected=Generator)
    per_layer = np.random.RandomState(1).standard_normal((g.n_latent, g.config.style_dim)).astype(np.float32)
    np.save(tmp_path / "age.npy", per_layer)
    out = tmp_path / "age.npz"
    result = agilegan("directions", "import", tmp_path / "age.npy", "--name", "age", "--base", base, "--layers", "0-3")
    assert result.returncode == 2  # --out is required
    result = agilegan(
        "directions", "import", tmp_path / "age.npy", "--name", "age", "--base", base, "--layers", "0-3", "--out", out
    )
    assert result.returncode == 0, result.stderr
    age = load(out)
    assert age.vectors.shape == (1, g.n_latent, g.config.style_dim) and age.layers == (0, 1, 2, 3)
    assert age.alpha_range == (-3.0, 3.0) and age.w_space == w_space_id(base)
    torch.save(torch.ones(3, 3), tmp_path / "bad.pt")
    assert (
        agilegan("directions", "import", tmp_path / "bad.pt", "--name", "x", "--base", base, "--out", out).returncode
        == 1
    )

    sets = tmp_path / "sefa.npz"
    assert agilegan("directions", "sefa", base, "--k", 3, "--out", sets).returncode == 0
    grid = tmp_path / "grid.png"
    result = agilegan(
        "directions", "gallery", base, sets, "--alphas", "-3,0,3", "--tile", 32, "--seed", 1, "--out", grid
    )
    assert result.returncode == 0, result.stderr
    assert Image.open(grid).size == (24 * 3 + 3 * 32, 24 + 3 * 32)
    # on a photo: aligned by dlib, inverted by the registry's encoder
    photo = agilegan(
        "directions", "gallery", tiny_registry / "styles" / "demo", sets, "--photo", FACES / "obama.jpg",
        "--encoder", tiny_registry / "base" / "encoder", "--indices", "0-1", "--tile", 32,
        "--out", tmp_path / "photo.png",
    )  # fmt: skip
    assert photo.returncode == 0, photo.stderr
    image = np.asarray(Image.open(tmp_path / "photo.png"))
    tiles = [
        image[24 + r * 32 : 24 + (r + 1) * 32, 72 + c * 32 : 72 + (c + 1) * 32] for r in range(2) for c in range(3)
    ]
    assert image.shape[:2] == (24 + 2 * 32, 72 + 3 * 32)
    assert not np.array_equal(tiles[0], tiles[2]) and not np.array_equal(tiles[3], tiles[5])  # the alphas differ


def test_fit_from_photo_folders(tiny_registry: Path, tmp_path: Path) -> None:
    for label, archive in zip(("pos", "neg"), labelled_photo_zips()):
        with zipfile.ZipFile(io.BytesIO(archive)) as z:
            z.extractall(tmp_path / label)
    out = tmp_path / "smile.npz"
    encoder = tiny_registry / "base" / "encoder"
    result = agilegan(
        "directions", "fit", "--encoder", encoder, "--positive", tmp_path / "pos", "--negative", tmp_path / "neg",
        "--name", "smile", "--out", out,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "held-out accuracy" in result.stdout and "recommended layers" in result.stdout
    smile = load(out)
    assert smile.kind == "supervised" and smile.w_space == w_space_id(encoder)
    assert smile.info["examples"] == {"positive": 6, "negative": 6} and len(smile.info["layer_accuracy"]) == 10
    assert abs(float(np.linalg.norm(smile.vectors[0])) - 1) < 1e-5

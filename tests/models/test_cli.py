"""The `agilegan` CLI (its entry point, in-process: tests/cli.py): weights import, generate, invert, and its
errors; the installed console script as a real subprocess."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from models.networks.encoder import Inverter, image_to_tensor
from models.networks.stylegan2 import Generator
from models.weights import checkpoints
from service.portrait.configs import EncoderConfig, InverterConfig, MappingConfig
from tests.cli import agilegan
from tests.conftest import seeded

AGILEGAN = Path(sys.executable).with_name("agilegan")


def test_the_console_script_is_installed() -> None:
    """The installed script, as a real subprocess (the other tests call its entry point in-process)."""
    result = subprocess.run([str(AGILEGAN), "--help"], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0
    for command in ("weights", "generate", "invert"):
        assert command in result.stdout


def test_import_then_generate_matches_the_model(tmp_path: Path, tiny_generator: Generator) -> None:
    torch.save({"g_ema": tiny_generator.state_dict(), "latent_avg": tiny_generator.latent_avg}, tmp_path / "g.pt")
    result = agilegan("weights", "import", "--format", "rosinality", tmp_path / "g.pt", tmp_path / "g")
    assert result.returncode == 0, result.stderr
    assert "wrote Generator" in result.stdout

    wplus = np.random.RandomState(0).standard_normal((2, tiny_generator.n_latent, 32)).astype(np.float32)
    np.save(tmp_path / "wplus.npy", wplus)
    result = agilegan(
        "generate",
        tmp_path / "g",
        "--latents",
        tmp_path / "wplus.npy",
        "--space",
        "wplus",
        "--out",
        tmp_path / "out.npy",
    )
    assert result.returncode == 0, result.stderr
    with torch.no_grad():
        expected = tiny_generator(torch.from_numpy(wplus), space="wplus").numpy()
    assert np.array_equal(np.load(tmp_path / "out.npy"), expected)

    result = agilegan(
        "generate", tmp_path / "g", "--seed", 3, "--count", 2, "--truncation", 0.5, "--out", tmp_path / "s.png"
    )
    assert result.returncode == 0, result.stderr
    images = [Image.open(tmp_path / f"s-00{i}.png") for i in range(2)]
    assert all(im.size == (32, 32) and im.mode == "RGB" for im in images)
    assert np.asarray(images[0]).std() > 0 and not np.array_equal(np.asarray(images[0]), np.asarray(images[1]))


def test_invert_writes_z_plus_and_w_plus(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = Inverter(InverterConfig(encoder=EncoderConfig.tiny(8), mapping=MappingConfig(32, 2))).eval()
    seeded(model.mapping, 1)
    with torch.no_grad():
        model.encoder.fc_mu.weight.normal_(0, 0.1)
    checkpoints.save(tmp_path / "enc", model)
    face = Image.fromarray(np.random.RandomState(1).randint(0, 256, (100, 100, 3)).astype(np.uint8))
    face.save(tmp_path / "face.png")
    for space in ("z", "wplus"):
        result = agilegan(
            "invert", tmp_path / "enc", tmp_path / "face.png", "--space", space, "--out", tmp_path / f"{space}.npy"
        )
        assert result.returncode == 0, result.stderr
    with torch.no_grad():
        expected = model(image_to_tensor(face, 64))
    assert np.allclose(np.load(tmp_path / "z.npy"), expected.mu.numpy(), atol=1e-6)
    assert np.allclose(np.load(tmp_path / "wplus.npy"), expected.wplus.numpy(), atol=1e-6)
    assert np.load(tmp_path / "wplus.npy").shape == (1, 8, 32)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("weights", "import", "--format", "rosinality", "{tmp}/missing.pt", "{tmp}/x"), "no such file"),
        (("generate", "{tmp}/nothing", "--out", "{tmp}/o.npy"), "not a checkpoint directory"),
        (("generate", "{tmp}/g", "--out", "{tmp}/o.txt"), "suffix must be one of"),
        (
            ("generate", "{tmp}/g", "--latents", "{tmp}/bad.npy", "--space", "wplus", "--out", "{tmp}/o.npy"),
            "wplus latents must have shape",
        ),
        (("generate", "{tmp}/g", "--branch", "male", "--out", "{tmp}/o.npy"), "has no --branch"),
        (("invert", "{tmp}/g", "{tmp}/face.png", "--out", "{tmp}/o.npy"), "holds a Generator, expected Inverter"),
    ],
)
def test_errors_are_one_line_and_nonzero(
    tmp_path: Path, tiny_generator: Generator, args: tuple[str, ...], message: str
) -> None:
    checkpoints.save(tmp_path / "g", tiny_generator)
    np.save(tmp_path / "bad.npy", np.zeros((1, 3, 32), dtype=np.float32))
    result = agilegan(*(a.format(tmp=tmp_path) for a in args))
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0] and lines[0].startswith("agilegan ")


def test_align_writes_crops_and_one_json_line_per_input(tmp_path: Path) -> None:
    import json

    faces = Path(__file__).parents[1] / "data" / "faces"
    result = agilegan(
        "align",
        faces / "two_people.jpg",
        faces / "dogs.jpg",
        "--out",
        tmp_path,
        "--all-faces",
        "--size",
        256,
        "--transform-size",
        1024,
    )
    assert result.returncode == 1  # one input failed
    records = [json.loads(line) for line in result.stdout.strip().splitlines()]
    assert [r["faces_found"] for r in records] == [2, 0]
    first, dogs = records
    assert [f["index"] for f in first["faces"]] == [0, 1] and first["error"] is None
    assert len(first["faces"][0]["landmarks"]) == 68 and len(first["faces"][0]["box"]) == 4
    assert all(Image.open(f["output"]).size == (256, 256) for f in first["faces"])
    assert dogs["error"]["code"] == "no_face"
    ok = agilegan("align", faces / "obama.jpg", "--out", tmp_path, "--size", 256, "--transform-size", 1024)
    assert ok.returncode == 0 and (tmp_path / "obama.png").is_file()

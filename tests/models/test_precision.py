"""Inference precision of the stylize path (issue 16): bf16 autocast as a setting, fp32 untouched."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from models.inference.stylizer import Stylizer, resolve_precision
from models.networks.encoder import Inverter
from models.networks.stylegan2 import Generator
from models.weights import checkpoints
from tests.exemplar_data import FACES
from workers.demo import demo_registry


def test_auto_is_bf16_on_cuda_only() -> None:
    assert resolve_precision("auto", torch.device("cuda")) == "bf16"
    assert resolve_precision("auto", torch.device("cpu")) == "fp32"
    assert resolve_precision("fp32", torch.device("cuda")) == "fp32"  # the setting that turns it off
    with pytest.raises(ValueError):
        resolve_precision("fp8", torch.device("cpu"))


def test_bf16_stays_close_to_fp32_and_fp32_is_unchanged(tmp_path) -> None:
    demo_registry(tmp_path, size=64, tiny=True)
    inverter = checkpoints.load(tmp_path / "base" / "encoder", expected=Inverter)
    g = checkpoints.load(tmp_path / "styles" / "demo", expected=Generator)
    crop = Image.open(FACES / "obama.jpg").convert("RGB").resize((256, 256))
    plain = Stylizer(inverter, g)(crop)
    fp32 = Stylizer(inverter, g, precision="fp32")(crop)
    bf16 = Stylizer(inverter, g, precision="bf16")(crop)  # autocast runs on the CPU too
    assert np.array_equal(np.asarray(plain.image), np.asarray(fp32.image))
    w_drift = float((bf16.wplus - fp32.wplus).norm() / fp32.wplus.norm())
    pixels = np.abs(np.asarray(bf16.image, dtype=float) - np.asarray(fp32.image, dtype=float))
    assert 0 < w_drift < 0.05 and pixels.mean() < 8, (w_drift, pixels.mean())
    assert bf16.wplus.dtype == torch.float32

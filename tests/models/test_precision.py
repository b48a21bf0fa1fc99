"""Inference precision of the stylize path (issue 16): bf16 autocast as a setting, fp32 untouched."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from models.inference.stylizer import Stylizer, configure_fp32, resolve_precision
from models.networks.encoder import Inverter
from models.networks.stylegan2 import Generator
from models.weights import checkpoints
from tests.exemplar_data import FACES
from workers.launcher.demo import demo_registry


def test_auto_is_bf16_on_cuda_only() -> None:
    assert resolve_precision("auto", torch.device("cuda")) == "bf16"
    assert resolve_precision("auto", torch.device("cpu")) == "fp32"
    assert resolve_precision("fp32", torch.device("cuda")) == "fp32"  # the setting that turns it off
    with pytest.raises(ValueError):
        resolve_precision("fp8", torch.device("cpu"))


def test_fp32_means_fp32_on_cuda() -> None:
    """Issue 26 item 3: TF32 (PyTorch's default for cuDNN convolutions) off for an explicit fp32 on CUDA,
    on for bf16 or when allowed; nothing changes off CUDA. torch's own flags, read back."""
    flags = (torch.backends.cuda.matmul, torch.backends.cudnn)
    before = [f.allow_tf32 for f in flags]
    try:
        for flag in flags:
            flag.allow_tf32 = True  # a state a fresh process may start in
        cuda, cpu = torch.device("cuda"), torch.device("cpu")
        assert configure_fp32("fp32", cpu) is False and all(f.allow_tf32 for f in flags)
        assert configure_fp32("fp32", cuda) is False and not any(f.allow_tf32 for f in flags)
        assert configure_fp32("bf16", cuda) is True and all(f.allow_tf32 for f in flags)
        assert configure_fp32("fp32", cuda, allow_tf32=True) is True and all(f.allow_tf32 for f in flags)
    finally:
        for flag, value in zip(flags, before):
            flag.allow_tf32 = value


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

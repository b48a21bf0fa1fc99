"""Seeded random weights in the public checkpoint layouts, rebuilt with numpy's legacy RNG.

They reproduce the parity fixtures in tests/data (rendered by the reference implementations from
exactly these weights): one `standard_normal` draw per key, in the layout's key order, scaled by
the layout's conventions (mapping weights stored divided by lr_mul = 0.01, modulation biases near 1,
BatchNorm statistics positive, …).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from service.portrait.configs import GeneratorConfig

DATA = Path(__file__).parent / "data"


def rosinality_keys(size: int) -> list[tuple[str, tuple[int, ...]]]:
    """(key, shape) in rosinality state-dict order for Generator(size, 512, 8, channel_multiplier=2)."""
    from models.networks.stylegan2 import Generator

    with torch.device("meta"):
        g = Generator(GeneratorConfig(size=size))
    return [(k, tuple(v.shape)) for k, v in g.state_dict().items()]


def _fir(scale: float) -> np.ndarray:
    k = np.outer([1.0, 3.0, 3.0, 1.0], [1.0, 3.0, 3.0, 1.0])
    return (k / k.sum() * scale).astype(np.float32)


def rosinality_weights(size: int, seed: int) -> dict[str, torch.Tensor]:
    rng = np.random.RandomState(seed)
    out = {}
    for key, shape in rosinality_keys(size):
        if key.endswith(("blur.kernel", "upsample.kernel")):
            value = _fir(4.0)
        elif key.startswith("style.") and key.endswith("weight"):
            value = rng.standard_normal(shape) * 100.0
        elif key.startswith("style.") and key.endswith("bias"):
            value = rng.standard_normal(shape) * 10.0
        elif key.endswith("modulation.bias"):
            value = 1.0 + 0.2 * rng.standard_normal(shape)
        elif key.endswith((".bias", "noise.weight")):
            value = 0.2 * rng.standard_normal(shape)
        else:
            value = rng.standard_normal(shape)
        out[key] = torch.from_numpy(np.asarray(value, dtype=np.float32))
    return out


def rosinality_cases(seed: int, n_latent: int) -> dict[str, np.ndarray]:
    rng = np.random.RandomState(seed + 1)
    return {
        "z": rng.standard_normal((2, 512)).astype(np.float32),
        "wplus": (rng.standard_normal((2, n_latent, 512)) * 0.5).astype(np.float32),
    }


def encoder_manifest() -> list[tuple[str, tuple[int, ...], str]]:
    return [(k, tuple(s), d) for k, s, d in json.loads((DATA / "agilegan_encoder_keys.json").read_text())]


def encoder_weights(seed: int) -> dict[str, torch.Tensor]:
    """Seeded official-layout `VAEStyleEncoder(50)` weights (encoder keys without prefix)."""
    rng = np.random.RandomState(seed)
    out = {}
    for key, shape, dtype in encoder_manifest():
        if dtype == "int64":
            out[key] = torch.zeros(shape, dtype=torch.int64)
            continue
        fan_in = int(np.prod(shape[1:])) if len(shape) > 1 else 1
        if key.endswith("running_var"):
            value = 1.0 + 0.1 * np.abs(rng.standard_normal(shape))
        elif key.endswith("running_mean"):
            value = 0.1 * rng.standard_normal(shape)
        elif len(shape) == 1 and ("res_layer.2" in key or "input_layer.2" in key):
            value = 0.25 + 0.05 * rng.standard_normal(shape)
        elif len(shape) == 1 and key.endswith(".weight"):
            value = 1.0 + 0.1 * rng.standard_normal(shape)
        elif len(shape) == 1:
            value = 0.1 * rng.standard_normal(shape)
        elif ".linear." in key:
            value = rng.standard_normal(shape)
        else:
            value = rng.standard_normal(shape) * np.sqrt(1.0 / fan_in)
        out[key] = torch.from_numpy(np.asarray(value, dtype=np.float32))
    return out


def encoder_checkpoint(seed: int) -> dict:
    """The official encoder.pt layout: encoder.* and decoder.* (a rosinality 1024 G) in state_dict."""
    sd = {"encoder." + k: v for k, v in encoder_weights(seed).items()}
    sd.update({"decoder." + k: v for k, v in rosinality_weights(1024, seed + 5).items()})
    return {"state_dict": sd, "opts": {"input_nc": 3, "output_size": 1024}}


def encoder_image(seed: int) -> np.ndarray:
    return np.random.RandomState(seed + 1).randint(0, 256, (256, 256, 3)).astype(np.uint8)


def rel_l2(a: torch.Tensor | np.ndarray, b: torch.Tensor | np.ndarray) -> float:
    a = torch.as_tensor(np.asarray(a), dtype=torch.float64)
    b = torch.as_tensor(np.asarray(b), dtype=torch.float64)
    return float((a - b).norm() / b.norm())

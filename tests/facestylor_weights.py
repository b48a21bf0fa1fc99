"""Seeded weights in the published MMGEN-FaceStylor checkpoint layouts (numpy's legacy RNG only).

Our own equivalent of the parity folder's generator: every key draws from its own
RandomState(crc32(f"{seed}:{key}")), scaled by its module's init convention, so a key's value depends
only on (seed, key). With seed 11 these are the weights the reference outputs in
tests/data/facestylor/*.npz were computed from by FaceStylor's own code. `checkpoint_file` writes them
as an mmcv checkpoint ({"meta", "state_dict"}), the way the public `.pth` files are stored.
"""

from __future__ import annotations

import json
import zlib
from pathlib import Path

import numpy as np
import torch

DATA = Path(__file__).parent / "data" / "facestylor"
SEED = 11


def manifest(name: str) -> list[list]:
    """[key, shape, dtype, use] of a real checkpoint: encoder_ffhq1024, encoder_celebahq256, transfer_1024/256."""
    return json.loads((DATA / f"{name}_keys.json").read_text())["keys"]


def _kernel(scale: float) -> np.ndarray:
    k = np.outer([1.0, 3.0, 3.0, 1.0], [1.0, 3.0, 3.0, 1.0])
    return (k / k.sum() * scale).astype(np.float32)


def _value(key: str, shape: tuple[int, ...], dtype: str, rng: np.random.RandomState, keys: set[str]) -> np.ndarray:
    if dtype == "int64":
        return np.zeros(shape, dtype=np.int64)
    module, _, leaf = key.rpartition(".")
    fan_in = int(np.prod(shape[1:])) if len(shape) > 1 else 1
    in_generator = key.startswith(("decoder.", "generator.", "generator_ema.", "source_generator."))
    batchnorm = module + ".running_var" in keys
    if leaf == "kernel":
        return _kernel(4.0 if key.endswith(("blur.kernel", "upsample.kernel")) else 1.0)
    if key.endswith("lpips_loss.net.mean"):
        return np.array([-0.030, -0.088, -0.188], np.float32).reshape(1, 3, 1, 1)
    if key.endswith("lpips_loss.net.std"):
        return np.array([0.458, 0.448, 0.450], np.float32).reshape(1, 3, 1, 1)
    if leaf in ("log_buffer", "p"):
        return np.zeros(shape, np.float32)
    n = rng.standard_normal
    if leaf == "running_mean":
        v = 0.1 * n(shape)
    elif leaf == "running_var":
        v = 1.0 + 0.1 * np.abs(n(shape))
    elif leaf == "weight" and len(shape) == 1 and batchnorm:
        v = 1.0 + 0.1 * n(shape)
    elif leaf == "bias" and len(shape) == 1 and batchnorm:
        v = 0.1 * n(shape)
    elif leaf == "weight" and len(shape) == 1:  # PReLU
        v = 0.25 + 0.05 * n(shape)
    elif leaf.startswith("injected_noise_"):
        v = n(shape)
    elif ".style_mapping." in key and leaf == "weight_orig":
        v = n(shape) * 100.0
    elif ".style_mapping." in key and leaf == "bias":
        v = n(shape) * 10.0
    elif key.endswith("style_modulation.bias"):
        v = 1.0 + 0.2 * n(shape)
    elif key.endswith("noise_injector.weight") or (in_generator and leaf == "bias"):
        v = 0.2 * n(shape)
    elif leaf in ("weight_orig", "input"):
        v = n(shape)
    elif key.endswith(".linear.weight") and ".styles." in key:
        v = n(shape)
    elif "lpips_loss.lin." in key:
        v = 0.1 * np.abs(n(shape))
    elif leaf == "weight" and len(shape) >= 2:
        v = n(shape) * np.sqrt(1.0 / fan_in)
    elif leaf == "bias" or len(shape) <= 1:
        v = 0.1 * n(shape)
    else:
        v = n(shape)
    return np.asarray(v, dtype=np.float32)


def weights(entries: list[list], seed: int = SEED, prefixes: tuple[str, ...] | None = None) -> dict[str, torch.Tensor]:
    """Seeded state dict for manifest entries (saved order kept), optionally only some prefixes."""
    keys = {e[0] for e in entries}
    out = {}
    for key, shape, dtype, *_ in entries:
        if prefixes is None or key.startswith(prefixes):
            rng = np.random.RandomState(zlib.crc32(f"{seed}:{key}".encode()) & 0xFFFFFFFF)
            out[key] = torch.from_numpy(_value(key, tuple(shape), dtype, rng, keys))
    return out


def generator_entries(size: int, prefix: str, style_dim: int = 512, channel_max: int = 512) -> list[list]:
    """MMGen StyleGANv2Generator(size, style_dim, 8 mlp, channel multiplier 2) keys, state-dict order,
    prefixed (the released files: style_dim = channel_max = 512; smaller ones make tiny test files)."""
    ch = {r: min(channel_max, 32768 // r) for r in (4, 8, 16, 32, 64, 128, 256, 512, 1024)}
    log_size = size.bit_length() - 1
    n_latent = 2 * log_size - 2
    sides = [2 ** ((i + 5) // 2) for i in range(n_latent - 1)]
    keys = [[f"injected_noise_{i}", [1, 1, r, r]] for i, r in enumerate(sides)]
    for i in range(1, 9):
        keys += [
            [f"style_mapping.{i}.bias", [style_dim]],
            [f"style_mapping.{i}.linear.weight_orig", [style_dim, style_dim]],
        ]
    keys.append(["constant_input.input", [1, ch[4], 4, 4]])

    def conv(p: str, cin: int, cout: int, up: bool) -> list:
        k = [
            [f"{p}.conv.weight_orig", [1, cout, cin, 3, 3]],
            [f"{p}.conv.style_modulation.bias", [cin]],
            [f"{p}.conv.style_modulation.linear.weight_orig", [cin, style_dim]],
        ]
        k += [[f"{p}.conv.blur.kernel", [4, 4]]] if up else []
        return k + [[f"{p}.noise_injector.weight", [1]], [f"{p}.activate.bias", [cout]]]

    def rgb(p: str, cin: int, up: bool) -> list:
        k = [[f"{p}.bias", [1, 3, 1, 1]]] + ([[f"{p}.upsample.kernel", [4, 4]]] if up else [])
        return k + [
            [f"{p}.conv.weight_orig", [1, 3, cin, 1, 1]],
            [f"{p}.conv.style_modulation.bias", [cin]],
            [f"{p}.conv.style_modulation.linear.weight_orig", [cin, style_dim]],
        ]

    keys += conv("conv1", ch[4], ch[4], False) + rgb("to_rgb1", ch[4], False)
    convs, rgbs, cin = [], [], ch[4]
    for i in range(3, log_size + 1):
        cout = ch[2**i]
        convs += conv(f"convs.{2 * (i - 3)}", cin, cout, True) + conv(f"convs.{2 * (i - 3) + 1}", cout, cout, False)
        rgbs += rgb(f"to_rgbs.{i - 3}", cout, True)
        cin = cout
    return [[prefix + k, s, "float32"] for k, s in keys + convs + rgbs]


TINY_STYLE_DIM, TINY_CHANNELS, TINY_SIZE = 32, 16, 64


def tiny_encoder_entries() -> list[list]:
    """A FaceStylor encoder checkpoint's layout at test size: `encoder.*` of a mu-only IR-SE encoder
    (64 px input, 10 codes), `decoder.*` an MMGen 64 px generator, and train-only LPIPS keys."""
    from models.networks.encoder import VAEStyleEncoder
    from service.portrait.configs import EncoderConfig

    config = EncoderConfig(
        input_size=64,
        stage_units=(1, 2, 1, 1),
        stage_widths=(8, 16, 24, 32),
        se_reduction=4,
        style_dim=TINY_STYLE_DIM,
        n_styles=2 * (TINY_SIZE.bit_length() - 1) - 2,
        variational=False,
    )
    with torch.device("meta"):
        encoder = VAEStyleEncoder(config)
    entries = [
        [f"encoder.{k}", list(v.shape), str(v.dtype).removeprefix("torch.")] for k, v in encoder.state_dict().items()
    ]
    entries += generator_entries(TINY_SIZE, "decoder.", TINY_STYLE_DIM, TINY_CHANNELS)
    return entries + [["lpips_loss.lin.lin0.model.1.weight", [1, 8, 1, 1], "float32"]]


def tiny_transfer_entries() -> list[list]:
    """A FaceStylor transfer checkpoint's layout at test size: generator_ema.* plus train-only parts."""
    entries = generator_entries(TINY_SIZE, "generator_ema.", TINY_STYLE_DIM, TINY_CHANNELS)
    entries += generator_entries(TINY_SIZE, "generator.", TINY_STYLE_DIM, TINY_CHANNELS)
    return entries + [["discriminator.convs.0.0.weight", [16, 3, 1, 1], "float32"]]


def checkpoint_file(path: Path, state_dict: dict[str, torch.Tensor], name: str = "seeded") -> Path:
    """Write an mmcv-style checkpoint (what OpenMMLab's publish_model leaves: meta + state_dict)."""
    meta = {"mmcv_version": "1.4.0", "time": "Thu Nov  4 13:44:49 2021", "iter": 1600, "exp_name": name}
    torch.save({"meta": meta, "state_dict": state_dict}, path)
    return path


def image_u8() -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.open(DATA / "obama_face256.png").convert("RGB"), dtype=np.uint8)

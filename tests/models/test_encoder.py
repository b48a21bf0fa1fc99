"""HVAE encoder: official parity, zero-initialised VAE heads, inversion through the mapping, KL."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from models.networks.encoder import Inverter, VAEStyleEncoder, image_to_tensor, kl_divergence
from service.portrait.configs import EncoderConfig, InverterConfig, MappingConfig
from tests.conftest import seeded
from tests.seeded_weights import DATA, encoder_checkpoint, encoder_image, encoder_manifest, rel_l2


def tiny_inverter(seed: int = 0) -> Inverter:
    config = InverterConfig(encoder=EncoderConfig.tiny(n_styles=8), mapping=MappingConfig(32, 2))
    model = Inverter(config)
    seeded(model.mapping, seed)
    return model.eval()


def test_tiny_shapes_and_zero_initialised_heads() -> None:
    enc = VAEStyleEncoder(EncoderConfig.tiny(n_styles=8)).eval()
    x = torch.rand(2, 3, 64, 64) * 2 - 1
    with torch.no_grad():
        sample, mu, logvar = enc(x, rng=torch.Generator().manual_seed(0))
    assert sample.shape == mu.shape == logvar.shape == (2, 8, 32)
    # fc_mu / fc_var start at zero: the untrained encoder emits exactly the N(0, I) prior
    assert torch.count_nonzero(mu) == 0 and torch.count_nonzero(logvar) == 0
    assert sample.std() > 0.5


def test_wrong_input_size_is_a_clear_error() -> None:
    enc = VAEStyleEncoder(EncoderConfig.tiny())
    with pytest.raises(ValueError, match=r"encoder input must be \[B, 3, 64, 64\]"):
        enc(torch.zeros(1, 3, 32, 32))


def test_head_split_follows_the_pyramid_levels() -> None:
    c = EncoderConfig()
    assert [c.head_spatial(i) for i in range(18)] == [16] * 3 + [32] * 4 + [64] * 11
    assert c.tap_units == (6, 20, 23)


def test_official_key_layout() -> None:
    with torch.device("meta"):
        enc = VAEStyleEncoder(EncoderConfig())
    ours = [(k, tuple(v.shape)) for k, v in enc.state_dict().items()]
    assert ours == [(k, s) for k, s, _ in encoder_manifest()]


def test_inverter_maps_mu_per_layer_without_offset() -> None:
    inv = tiny_inverter()
    with torch.no_grad():
        for p in (inv.encoder.fc_mu.weight, inv.encoder.fc_mu.bias):
            p.copy_(torch.randn(p.shape))
        result = inv(torch.rand(2, 3, 64, 64) * 2 - 1)
        expected = torch.stack([inv.mapping(result.mu[:, i]) for i in range(8)], dim=1)
    assert result.wplus.shape == (2, 8, 32)
    assert torch.allclose(result.wplus, expected, atol=1e-6)
    assert not any(p.requires_grad for p in inv.mapping.parameters())


def test_kl_divergence() -> None:
    zeros = torch.zeros(2, 18, 8)
    assert kl_divergence(zeros, zeros).item() == 0.0
    mu = torch.full((2, 18, 8), 0.5, requires_grad=True)
    logvar = torch.full((2, 18, 8), -1.0, requires_grad=True)
    kl = kl_divergence(mu, logvar)
    per_element = 0.5 * (0.25 + np.exp(-1.0) - 1.0 + 1.0)
    assert kl.item() == pytest.approx(per_element * 18 * 8, rel=1e-6)
    kl.backward()
    assert mu.grad is not None and torch.all(mu.grad > 0)


def test_parity_with_the_official_encoder() -> None:
    ref = np.load(DATA / "agilegan_encoder_s5.npz")
    sd = encoder_checkpoint(5)["state_dict"]
    with torch.device("meta"):
        inv = Inverter(InverterConfig())
    enc = {k[len("encoder.") :]: v for k, v in sd.items() if k.startswith("encoder.")}
    mapping = {k[len("decoder.style.") :]: v for k, v in sd.items() if k.startswith("decoder.style.")}
    inv.encoder.load_state_dict(enc, strict=True, assign=True)
    inv.mapping.load_state_dict(mapping, strict=True, assign=True)
    inv.eval()
    image = encoder_image(5)
    assert np.array_equal(image, np.asarray(Image.open(DATA / "agilegan_encoder_s5.png")))
    with torch.no_grad():
        result = inv(image_to_tensor(image, 256))
    assert rel_l2(result.mu, ref["mu"]) <= 1e-4
    assert rel_l2(result.logvar, ref["logvar"]) <= 1e-4
    assert rel_l2(result.wplus, ref["wplus"]) <= 1e-4


def test_image_to_tensor_scales_and_resizes() -> None:
    img = np.zeros((100, 100, 3), dtype=np.uint8)
    img[..., 0] = 255
    x = image_to_tensor(img, 64)
    assert x.shape == (1, 3, 64, 64)
    assert torch.allclose(x[0, 0], torch.ones(64, 64)) and torch.allclose(x[0, 1], -torch.ones(64, 64))

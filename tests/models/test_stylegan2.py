"""StyleGAN2 generator: shapes, inputs, noise modes, truncation, mixing, features, rosinality parity."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from models.networks.stylegan2 import Generator
from models.networks.synthesis import mix_styles
from service.portrait.configs import GeneratorConfig
from tests.conftest import seeded
from tests.seeded_weights import DATA, rel_l2, rosinality_cases, rosinality_weights


@pytest.mark.parametrize("size", [32, 64, 128])
def test_output_shape_for_each_input_space(size: int) -> None:
    g = seeded(Generator(GeneratorConfig.tiny(size)), 0)
    n, d = g.n_latent, g.config.style_dim
    assert n == int(np.log2(size)) * 2 - 2
    with torch.no_grad():
        for latents, space in [
            (torch.randn(2, d), "z"),
            (torch.randn(2, n, d), "z"),
            (torch.randn(2, d), "w"),
            (torch.randn(2, n, d), "wplus"),
        ]:
            assert g(latents, space=space).shape == (2, 3, size, size)


def test_wrong_latent_shape_is_a_clear_error(tiny_generator: Generator) -> None:
    with pytest.raises(ValueError, match="wplus latents must have shape"):
        tiny_generator(torch.randn(2, 32), space="wplus")
    with pytest.raises(ValueError, match="space must be one of"):
        tiny_generator(torch.randn(2, 32), space="s")


def test_const_noise_is_deterministic_and_other_modes_differ(tiny_generator: Generator) -> None:
    z = torch.randn(2, 32)
    with torch.no_grad():
        a, b = tiny_generator(z), tiny_generator(z)
        zero = tiny_generator(z, noise="zero")
        r1 = tiny_generator(z, noise="random", rng=torch.Generator().manual_seed(3))
        r2 = tiny_generator(z, noise="random", rng=torch.Generator().manual_seed(3))
        r3 = tiny_generator(z, noise="random", rng=torch.Generator().manual_seed(4))
    assert torch.equal(a, b)
    assert torch.equal(r1, r2)
    assert not torch.allclose(a, zero) and not torch.allclose(r1, r3) and not torch.allclose(a, r1)


def test_batch_paths_agree(tiny_generator: Generator) -> None:
    """Batch 1 modulates the weights; whole batches (CUDA's path) modulate the activations: one function."""
    z = torch.randn(3, 32)
    tiny_generator.per_sample_on_cpu = False
    with torch.no_grad():
        batched = tiny_generator(z)
    tiny_generator.per_sample_on_cpu = True
    with torch.no_grad():
        single = torch.cat([tiny_generator(z[i : i + 1]) for i in range(3)])
        per_sample = tiny_generator(z)
    assert rel_l2(batched, single) < 1e-5
    assert rel_l2(per_sample, single) < 1e-6


@pytest.mark.parametrize("per_sample", [True, False])
def test_gradients_match_out_of_place_reference(tiny_generator: Generator, per_sample: bool) -> None:
    """The in-place noise/activation ops are autograd-safe: same gradients as out-of-place ops."""
    g = tiny_generator.train()
    g.per_sample_on_cpu = per_sample
    z = torch.randn(2, 32)

    def grads() -> list[torch.Tensor]:
        g.zero_grad()
        g(z, noise="const").square().mean().backward()
        return [p.grad.clone() for p in g.parameters()]

    inplace = grads()
    for m in g.modules():
        if hasattr(m, "inplace"):
            m.inplace = False
    reference = grads()
    assert all(torch.allclose(a, b, rtol=1e-5, atol=1e-7) for a, b in zip(inplace, reference))
    assert any(a.abs().sum() > 0 for a in inplace)


def test_z_plus_maps_each_layer_and_w_broadcasts(tiny_generator: Generator) -> None:
    g = tiny_generator
    z = torch.randn(2, 32)
    with torch.no_grad():
        w = g.style(z)
        same_z_plus = g(z.unsqueeze(1).expand(-1, g.n_latent, -1).contiguous())
        assert torch.allclose(g(z), same_z_plus, atol=1e-6)
        assert torch.allclose(g(w, space="w"), g(z), atol=1e-6)
        assert torch.allclose(g(w.unsqueeze(1).expand(-1, g.n_latent, -1), space="wplus"), g(z), atol=1e-6)


def test_truncation_zero_collapses_to_the_average_latent(tiny_generator: Generator) -> None:
    g = tiny_generator
    with torch.no_grad():
        out = g(torch.randn(3, 32), truncation=0.0)
        avg = g(g.latent_avg.unsqueeze(0), space="w")
    assert torch.allclose(out, avg.expand_as(out), atol=1e-5)


def test_style_mixing_takes_coarse_layers_from_the_first_code(tiny_generator: Generator) -> None:
    g = tiny_generator
    w1, w2 = g.style(torch.randn(1, 32)), g.style(torch.randn(1, 32))
    mixed = mix_styles(w1, w2, 3, g.n_latent)
    assert torch.equal(mixed[:, :3], w1.unsqueeze(1).expand(-1, 3, -1))
    assert torch.equal(mixed[:, 3:], w2.unsqueeze(1).expand(-1, g.n_latent - 3, -1))
    with torch.no_grad():
        image = g(mixed, space="wplus")
        assert not torch.allclose(image, g(w1, space="w")) and not torch.allclose(image, g(w2, space="w"))
    with pytest.raises(ValueError):
        mix_styles(w1, w2, 0, g.n_latent)


def test_features_and_layer_swap(tiny_generator: Generator) -> None:
    g = tiny_generator
    other = seeded(Generator(g.config), 9)
    z = torch.randn(2, 32)
    with torch.no_grad():
        image, feats = g(z, return_features=True)
        assert sorted(feats) == [4, 8, 16, 32]
        assert feats[16].shape == (2, g.config.channels(16), 16, 16)
        assert torch.equal(g(z, swap_features={16: feats[16]}), image)
        _, other_feats = other(z, return_features=True)
        swapped = g(z, swap_features={16: other_feats[16]})
        # After a swap at 16 px, the 32 px stage sees other's features: it equals rendering with
        # g's 32 px stage on top of other's 16 px map, i.e. not g's own image.
        assert not torch.allclose(swapped, image)
        _, swapped_feats = g(z, swap_features={16: other_feats[16]}, return_features=True)
        assert torch.equal(swapped_feats[16], other_feats[16])


def test_rosinality_layout_at_1024_matches_the_manifest() -> None:
    manifest = json.loads((DATA / "rosinality_g1024_keys.json").read_text())["keys"]
    with torch.device("meta"):
        g = Generator(GeneratorConfig())
    ours = [(k, list(v.shape)) for k, v in g.state_dict().items()]
    assert ours == [(k, list(s)) for k, s in manifest]
    assert sum(p.numel() for p in g.parameters()) == 30_370_060


def test_parity_with_the_reference_implementation() -> None:
    ref = np.load(DATA / "rosinality_g32_s7.npz")
    g = Generator(GeneratorConfig(size=32))
    g.load_state_dict(rosinality_weights(32, 7), strict=True)
    g.latent_avg.copy_(torch.from_numpy(ref["latent_avg"]))
    g.eval()
    cases = rosinality_cases(7, g.n_latent)
    assert np.array_equal(cases["z"], ref["z"]) and np.array_equal(cases["wplus"], ref["wplus"])
    z, wplus = torch.from_numpy(ref["z"]), torch.from_numpy(ref["wplus"])
    with torch.no_grad():
        assert rel_l2(g.style(z), ref["w"]) <= 1e-5
        assert rel_l2(g(z), ref["img_z"]) <= 1e-5
        assert rel_l2(g(wplus, space="wplus"), ref["img_wplus"]) <= 1e-5
        assert rel_l2(g(z, truncation=float(ref["truncation"])), ref["img_trunc"]) <= 1e-5
    g.per_sample_on_cpu = False  # the whole-batch (activation-modulation) path, as on CUDA
    with torch.no_grad():
        assert rel_l2(g(z), ref["img_z"]) <= 1e-5

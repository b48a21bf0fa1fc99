"""Attribute-aware generator: per-sample branch routing, determinism, conversion to plain generators."""

from __future__ import annotations

import pytest
import torch

from models.networks.attribute_generator import AttributeAwareGenerator
from models.networks.stylegan2 import Generator
from service.portrait.configs import AttributeGeneratorConfig, ConfigError, GeneratorConfig
from tests.conftest import seeded
from tests.seeded_weights import rel_l2


@pytest.fixture
def model(tiny_attribute_config: AttributeGeneratorConfig) -> AttributeAwareGenerator:
    return seeded(AttributeAwareGenerator(tiny_attribute_config), 2)


def test_layout_has_per_branch_low_res_blocks_and_shared_high_res(model: AttributeAwareGenerator) -> None:
    keys = model.state_dict().keys()
    # split at 16 px: each branch owns stages 8 and 16 (4 StyledConvs, 2 ToRGBs); 32 and 64 are shared
    assert {k.split(".")[3] for k in keys if k.startswith("branches.0.convs.")} == {"0", "1", "2", "3"}
    assert {k.split(".")[1] for k in keys if k.startswith("convs.")} == {"0", "1", "2", "3"}
    assert not any(k.startswith("branches.2.") for k in keys)
    assert model.n_latent == 10


def test_default_config_splits_8_to_64_like_the_official_dual_generator() -> None:
    with torch.device("meta"):
        m = AttributeAwareGenerator(AttributeGeneratorConfig())
    branch_convs = {k.split(".")[3] for k in m.state_dict() if k.startswith("branches.1.convs.")}
    shared_convs = {k.split(".")[1] for k in m.state_dict() if k.startswith("convs.")}
    assert len(branch_convs) == 8 and len(shared_convs) == 8  # 8..64 px and 128..1024 px


def test_mixed_batch_equals_each_branch_alone(model: AttributeAwareGenerator) -> None:
    z = torch.randn(4, 32)
    branches = ["male", "female", "male", "female"]
    with torch.no_grad():
        mixed = model(z, branch=branches)
        for name in ("female", "male"):
            sel = [i for i, b in enumerate(branches) if b == name]
            alone = model(z[sel], branch=name)
            plain = model.branch_generator(name)(z[sel])
            assert rel_l2(mixed[sel], alone) < 1e-5
            assert rel_l2(alone, plain) < 1e-6
        # the branches really differ
        assert not torch.allclose(model(z, branch="female"), model(z, branch="male"))


def test_branch_is_computed_only_for_its_own_samples(model: AttributeAwareGenerator) -> None:
    calls: list[int] = []
    for k, b in enumerate(model.branches):
        b.convs[0].register_forward_hook(lambda _m, inp, _out, k=k: calls.append((k, inp[0].shape[0])))
    model.per_sample_on_cpu = False  # whole batches (CUDA's path): one gathered call per branch
    with torch.no_grad():
        model(torch.randn(3, 32), branch=[0, 1, 1])
    assert sorted(calls) == [(0, 1), (1, 2)]
    calls.clear()
    model.per_sample_on_cpu = True  # the CPU renders sample by sample
    with torch.no_grad():
        model(torch.randn(3, 32), branch=[0, 1, 1])
    assert sorted(calls) == [(0, 1), (1, 1), (1, 1)]


def test_const_noise_is_deterministic_for_mixed_batches(model: AttributeAwareGenerator) -> None:
    z = torch.randn(3, 32)
    with torch.no_grad():
        assert torch.equal(model(z, branch=[0, 1, 0]), model(z, branch=[0, 1, 0]))
        a = model(z, branch=[0, 1, 0], noise="random", rng=torch.Generator().manual_seed(1))
        b = model(z, branch=[0, 1, 0], noise="random", rng=torch.Generator().manual_seed(1))
    assert torch.equal(a, b)


def test_features_of_a_mixed_batch(model: AttributeAwareGenerator) -> None:
    z = torch.randn(2, 32)
    with torch.no_grad():
        _, feats = model(z, branch=[1, 0], return_features=True)
        _, f1 = model(z[:1], branch=1, return_features=True)
    assert sorted(feats) == [4, 8, 16, 32, 64]
    assert rel_l2(feats[16][:1], f1[16]) < 1e-5


def test_from_generator_initialises_every_branch_from_the_source(
    tiny_attribute_config: AttributeGeneratorConfig,
) -> None:
    source = seeded(Generator(tiny_attribute_config.generator), 5)
    model = AttributeAwareGenerator.from_generator(source, tiny_attribute_config)
    z = torch.randn(2, 32)
    with torch.no_grad():
        for branch in ("female", "male"):
            assert torch.equal(model(z, branch=branch), source(z))


def test_bad_branches_are_clear_errors(model: AttributeAwareGenerator) -> None:
    with pytest.raises(ValueError, match="unknown branch 'child'"):
        model(torch.randn(1, 32), branch="child")
    with pytest.raises(ValueError, match="got 2 branches for a batch of 3"):
        model(torch.randn(3, 32), branch=[0, 1])
    with pytest.raises(ValueError, match="out of range"):
        model(torch.randn(1, 32), branch=5)
    with pytest.raises(ConfigError):
        AttributeGeneratorConfig(generator=GeneratorConfig.tiny(32), branches=("a", "a"), default_branch="a")


def test_single_branch_is_the_n_equals_1_case() -> None:
    config = AttributeGeneratorConfig(
        generator=GeneratorConfig.tiny(32), branches=("all",), split_resolution=16, default_branch="all"
    )
    model = seeded(AttributeAwareGenerator(config), 3)
    z = torch.randn(2, 32)
    with torch.no_grad():
        assert rel_l2(model(z), model.branch_generator("all")(z)) < 1e-6

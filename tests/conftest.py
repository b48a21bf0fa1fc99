"""Shared fixtures: tiny seeded models on the CPU."""

from __future__ import annotations

import pytest
import torch

from models.configs import AttributeGeneratorConfig, GeneratorConfig
from models.stylegan2 import Generator

torch.set_num_threads(min(2, torch.get_num_threads()))


def seeded(module: torch.nn.Module, seed: int) -> torch.nn.Module:
    """Fill every parameter and buffer-free weight with seeded values (latent_avg computed)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            if name.endswith("modulation.bias"):
                p.copy_(1.0 + 0.2 * torch.randn(p.shape, generator=gen))
            elif name.endswith(("bias", "noise.weight")):
                p.copy_(0.2 * torch.randn(p.shape, generator=gen))
            else:
                p.copy_(torch.randn(p.shape, generator=gen))
    if hasattr(module, "compute_latent_avg"):
        module.compute_latent_avg(256, seed=seed)
    return module.eval()


@pytest.fixture
def tiny_generator() -> Generator:
    return seeded(Generator(GeneratorConfig.tiny(32)), 1)


@pytest.fixture
def tiny_attribute_config() -> AttributeGeneratorConfig:
    return AttributeGeneratorConfig(generator=GeneratorConfig.tiny(64), split_resolution=16)

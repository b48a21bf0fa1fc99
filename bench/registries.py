"""The random-weight registries the benchmarks serve (loaded by path: bench/ is not a package)."""

from __future__ import annotations

from pathlib import Path

from workers.launcher.demo import demo_registry


def make_registry(directory: Path, size: int, networks: str) -> Path:
    """The demo registry at `size` px; with `networks` "real", its encoder and style replaced by
    real-sized random networks (the full IR-SE-50 HVAE encoder, a config-f StyleGAN2 whose mapping the
    encoder shares, as a transfer-learned style does): the figures of a served public style."""
    demo_registry(directory, size=size)
    if networks == "real":
        import torch

        from models.networks.encoder import Inverter
        from models.networks.stylegan2 import Generator
        from models.weights import checkpoints
        from service.platform.registry import Registry
        from service.portrait.configs import GeneratorConfig, InverterConfig

        torch.manual_seed(0)
        registry = Registry(directory)
        generator = Generator(GeneratorConfig(size=size)).eval()
        generator.compute_latent_avg(1024)
        inverter = Inverter(InverterConfig()).eval()
        with torch.no_grad():  # the mu head starts at zero (as the official code): codes that vary
            inverter.encoder.fc_mu.weight.normal_(0, inverter.config.encoder.style_dim**-0.5)
        inverter.mapping.load_state_dict(generator.style.state_dict())
        checkpoints.save(registry.encoder_dir, inverter)
        checkpoints.save(registry.source_generator_dir, generator)
        checkpoints.save(registry.style_dir("demo"), generator)
    return directory

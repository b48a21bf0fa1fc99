"""The offline demo registry: random-weight models, clearly labelled, so the whole request path runs
on a fresh machine with no downloads. They produce abstract patterns, not portraits.

`demo_registry(registry_dir, size=...)` writes `base/encoder`, `base/generator` (with its
discriminator, for style training) and `styles/demo` when absent.
"""

from __future__ import annotations

import datetime
from pathlib import Path

import torch

from models.networks.discriminator import Discriminator
from models.networks.encoder import Inverter
from models.networks.stylegan2 import Generator
from models.weights import checkpoints
from service.platform.contract import StyleState
from service.platform.registry import Registry
from service.portrait.checkpoint_files import Provenance
from service.portrait.configs import DiscriminatorConfig, EncoderConfig, GeneratorConfig, InverterConfig, MappingConfig

DEMO_STYLE = "demo"
NOTE = "RANDOM WEIGHTS for the offline demo: outputs are abstract patterns. Import real weights (README)."


def demo_configs(size: int = 1024, tiny: bool = False) -> tuple[InverterConfig, GeneratorConfig]:
    """Small but complete models: the real architectures with narrow channels (tiny: for tests)."""
    style_dim = 32 if tiny else 64
    generator = GeneratorConfig(
        size=size, style_dim=style_dim, n_mlp=2 if tiny else 4, channel_multiplier=1, channel_max=16 if tiny else 64
    )
    encoder = EncoderConfig(
        input_size=64 if tiny else 256,
        stage_units=(1, 1, 1, 1),
        stage_widths=(16, 16, 32, 32) if tiny else (16, 32, 64, 64),
        style_dim=style_dim,
        n_styles=generator.n_latent,
    )
    return InverterConfig(encoder=encoder, mapping=MappingConfig(style_dim, generator.n_mlp)), generator


def demo_registry(registry_dir: Path, size: int = 1024, tiny: bool = False, seed: int = 0) -> bool:
    """Create the demo encoder and style if the registry has none; True when something was written."""
    registry = Registry(registry_dir)
    wrote = False
    inverter_config, generator_config = demo_configs(size, tiny)
    torch.manual_seed(seed)
    if not registry.has_base():
        inverter = Inverter(inverter_config).eval()
        with torch.no_grad():  # a non-zero mu head, so different photos give different codes
            inverter.encoder.fc_mu.weight.normal_(0, 0.5)
        source = Generator(generator_config).eval()
        source.compute_latent_avg(1024)
        inverter.mapping.load_state_dict(source.style.state_dict())
        prov = Provenance(source="random-init", license="demo", notes=NOTE)
        checkpoints.save(registry.encoder_dir, inverter, prov)
        # the source generator and discriminator that style training starts from
        checkpoints.save(registry.source_generator_dir, source, prov)
        disc = Discriminator(
            DiscriminatorConfig(size=size, channel_multiplier=1, channel_max=generator_config.channel_max)
        )
        checkpoints.save(registry.source_generator_dir / "discriminator", disc, prov)
        wrote = True
    if registry.style(DEMO_STYLE) is None:
        # like a transfer-learned style: new synthesis weights, the base's (frozen) mapping, so the
        # base's w space and its latent directions hold for it
        generator = Generator(generator_config).eval()
        if registry.source_generator_dir.is_dir():
            base = checkpoints.load(registry.source_generator_dir, expected=Generator)
            generator.style.load_state_dict(base.style.state_dict())
        generator.compute_latent_avg(1024)
        checkpoints.save(
            registry.style_dir(DEMO_STYLE), generator, Provenance(source="random-init", license="demo", notes=NOTE)
        )
        registry.write_style_meta(
            DEMO_STYLE,
            {
                "name": "Demo (random weights)",
                "description": NOTE,
                "status": StyleState.READY,
                "created_at": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
                "labels": ["demo", "random-weights"],
            },
        )
        wrote = True
    return wrote

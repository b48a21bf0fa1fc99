"""Save and load our checkpoint directories (`model.safetensors` + `config.json`).

`save` writes every tensor of the model's state dict plus its non-persistent buffers (the generator's
`latent_avg`, which the rosinality layout keeps outside the state dict). `load` reads `config.json`,
builds the class it names on the meta device (so a 267 M-parameter encoder costs no random init),
checks every key and shape against the file, and assigns the tensors: a round trip is bit-exact, and a
file that does not match fails with the list of what differs.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from models.networks.attribute_classifier import AttributeClassifier
from models.networks.attribute_generator import AttributeAwareGenerator
from models.networks.discriminator import Discriminator
from models.networks.encoder import Inverter
from models.networks.lpips import LPIPS
from models.networks.stylegan2 import Generator
from service.portrait.checkpoint_files import (
    FORMAT_VERSION,
    TENSORS_FILE,
    CheckpointError,
    CheckpointInfo,
    Provenance,
    read_info,
    sha256_file,
    write_info,
)
from service.portrait.configs import (
    AttributeClassifierConfig,
    AttributeGeneratorConfig,
    ConfigError,
    DiscriminatorConfig,
    GeneratorConfig,
    InverterConfig,
    LPIPSConfig,
)

# The classes a checkpoint may name, with the config class that builds each.
MODEL_TYPES: dict[str, tuple[type[nn.Module], type]] = {
    "Generator": (Generator, GeneratorConfig),
    "AttributeAwareGenerator": (AttributeAwareGenerator, AttributeGeneratorConfig),
    "Discriminator": (Discriminator, DiscriminatorConfig),
    "Inverter": (Inverter, InverterConfig),
    "AttributeClassifier": (AttributeClassifier, AttributeClassifierConfig),
    "LPIPS": (LPIPS, LPIPSConfig),
}


def model_tensors(model: nn.Module) -> dict[str, torch.Tensor]:
    """State dict plus non-persistent buffers, detached, contiguous, unshared (safetensors needs that)."""
    tensors = dict(model.state_dict())
    for name, buf in model.named_buffers():
        tensors.setdefault(name, buf)
    return {k: v.detach().to("cpu").contiguous().clone() for k, v in tensors.items()}


def save(directory: str | os.PathLike[str], model: nn.Module, provenance: Provenance | None = None) -> Path:
    """Write `model` (one of MODEL_TYPES) to `directory`; returns the directory."""
    class_name = type(model).__name__
    if class_name not in MODEL_TYPES:
        raise CheckpointError(f"cannot save {class_name}: not one of {sorted(MODEL_TYPES)}")
    config = model.attribute_config if isinstance(model, AttributeAwareGenerator) else model.config
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tmp = directory / f".{TENSORS_FILE}.tmp"
    save_file(
        model_tensors(model), str(tmp), metadata={"format_version": str(FORMAT_VERSION), "class_name": class_name}
    )
    os.replace(tmp, directory / TENSORS_FILE)
    write_info(
        directory, class_name, config.to_dict(), provenance or Provenance(), sha256_file(directory / TENSORS_FILE)
    )
    return directory


def build(info: CheckpointInfo, device: str | torch.device = "meta") -> nn.Module:
    """Construct (without weights) the model a checkpoint describes."""
    if info.class_name not in MODEL_TYPES:
        raise CheckpointError(f"{info.directory}: unknown class {info.class_name!r} (known: {sorted(MODEL_TYPES)})")
    cls, config_cls = MODEL_TYPES[info.class_name]
    try:
        config = config_cls.from_dict(info.config)
    except (ConfigError, TypeError) as e:
        raise CheckpointError(f"{info.directory}: invalid {info.class_name} config: {e}") from e
    with torch.device(device):
        return cls(config)


def load(
    directory: str | os.PathLike[str],
    expected: type[nn.Module] | tuple[type[nn.Module], ...] | None = None,
    device: str | torch.device = "cpu",
) -> nn.Module:
    """Load a checkpoint directory as the class it names (which must be `expected`, when given).

    Returns the model in eval mode on `device`. Raises CheckpointError on any mismatch.
    """
    info = read_info(directory)
    cls = MODEL_TYPES.get(info.class_name, (None,))[0]
    if expected is not None and (cls is None or not issubclass(cls, expected)):
        names = [e.__name__ for e in (expected if isinstance(expected, tuple) else (expected,))]
        raise CheckpointError(f"{info.directory}: holds a {info.class_name}, expected {' or '.join(names)}")
    model = build(info)
    path = Path(directory) / TENSORS_FILE
    try:
        tensors = load_file(str(path), device=str(device))
    except (OSError, SafetensorError) as e:
        raise CheckpointError(f"{path}: unreadable safetensors file ({e})") from e
    assign_tensors(model, tensors, where=str(path))
    return model.eval()


def assign_tensors(model: nn.Module, tensors: dict[str, torch.Tensor], where: str) -> None:
    """Strictly assign `tensors` (state dict + non-persistent buffers) to a (meta-built) model."""
    expected = dict(model.state_dict().items())
    extra_buffers = {name: b for name, b in model.named_buffers() if name not in expected}
    expected.update(extra_buffers)
    problems = describe_mismatch(expected, tensors)
    if problems:
        raise CheckpointError(f"{where} does not match {type(model).__name__}: {problems}")
    state = {k: v for k, v in tensors.items() if k not in extra_buffers}
    model.load_state_dict(state, strict=True, assign=True)
    for name in extra_buffers:
        owner_name, _, buf_name = name.rpartition(".")
        owner = model.get_submodule(owner_name) if owner_name else model
        owner._buffers[buf_name] = tensors[name]


def describe_mismatch(expected: dict[str, torch.Tensor], got: dict[str, torch.Tensor], limit: int = 8) -> str:
    """'' when keys and shapes agree, else a short list of missing, unexpected and mis-shaped keys."""
    missing = [k for k in expected if k not in got]
    unexpected = [k for k in got if k not in expected]
    shapes = [
        f"{k} {list(got[k].shape)} (expected {list(expected[k].shape)})"
        for k in expected
        if k in got and tuple(got[k].shape) != tuple(expected[k].shape)
    ]
    parts = []
    for label, items in (("missing", missing), ("unexpected", unexpected), ("wrong shape", shapes)):
        if items:
            more = f" … and {len(items) - limit} more" if len(items) > limit else ""
            parts.append(f"{len(items)} {label}: {', '.join(items[:limit])}{more}")
    return "; ".join(parts)

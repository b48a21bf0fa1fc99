"""Importers from the public pickled formats into our checkpoint directories.

The only code in the project that unpickles: `torch.load(weights_only=True)` with an explicit
allow-list (rosinality's training checkpoints pickle an `argparse.Namespace`). Every import maps keys
to our layout and loads strictly; the only keys that may be left behind are listed per format and
reported, never dropped silently (the official AgileGAN code loads styles with `strict=False`).

Formats:
- rosinality: `{"g_ema", "latent_avg"}` (convert_weight.py) or a training checkpoint that also holds
  `g`, `d`, `args`, optimiser states; `d` is imported too, into `<dest>/discriminator`.
- agilegan-encoder: the official `encoder.pt`, `{"state_dict": encoder.* + decoder.*, "opts"}`; the
  encoder and the decoder's mapping network become one `Inverter`.
- agilegan-dual: an official style `.pt` whose `g_ema` is a `DualGenerator` (convsA/B/C, to_rgbsA/B/C).
- mmgen: MMGen/FaceStylor `.pth` (`state_dict` with `generator_ema.`/`generator.` prefixes, MMGen key
  names); MMGen's FFHQ generators emit BGR, so the ToRGB layers are permuted to RGB on import.
- facestylor-encoder: a FaceStylor `PSPEncoderDecoder` `.pth`: `encoder.*` (mu-only HVAE encoder) and
  `decoder.style_mapping.*` become one `Inverter`; the rest of `decoder.*` (MMGen's FFHQ generator, the
  source of layer swap and strength) becomes `<dest>/source`.
- facestylor-transfer: a FaceStylor `PSPTransfer` `.pth`: `generator_ema.*` becomes the style generator.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import pickle
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from models.networks.attribute_generator import AttributeAwareGenerator, branch_key_to_plain
from models.networks.discriminator import Discriminator
from models.networks.encoder import Inverter
from models.networks.stylegan2 import Generator
from models.weights import checkpoints
from service.portrait.checkpoint_files import Provenance, sha256_file
from service.portrait.configs import (
    AttributeGeneratorConfig,
    DiscriminatorConfig,
    EncoderConfig,
    GeneratorConfig,
    InverterConfig,
    MappingConfig,
)

FORMATS = (
    "rosinality",
    "agilegan-encoder",
    "agilegan-dual",
    "mmgen",
    "facestylor-encoder",
    "facestylor-transfer",
    "lpips-vgg",
)
SAFE_GLOBALS: list[Any] = [argparse.Namespace]

LICENSE_NOTES = {
    "rosinality": "StyleGAN2 weights: NVIDIA's FFHQ releases are under the Nvidia Source Code License-NC "
    "(non-commercial); fine-tuned styles inherit the licence of their source. Check before commercial use.",
    "agilegan-encoder": "Official AgileGAN test-code weights (research release, no licence stated); "
    "the embedded FFHQ mapping is NVIDIA's (Source Code License-NC).",
    "agilegan-dual": "Official AgileGAN style weights (research release, no licence stated); derived from "
    "NVIDIA's FFHQ StyleGAN2 (Source Code License-NC).",
    "lpips-vgg": "LPIPS heads: BSD-2-Clause (richzhang/PerceptualSimilarity); VGG16: torchvision's ImageNet "
    "weights (check the ImageNet terms for your use).",
    "mmgen": "OpenMMLab MMGen/FaceStylor release (Apache-2.0 code; weights trained on FFHQ/MetFaces/etc., "
    "whose dataset licences apply).",
    "facestylor-encoder": "OpenMMLab MMGEN-FaceStylor encoder (Apache-2.0 code). Trained on FFHQ/CelebA-HQ with "
    "MMGen's FFHQ StyleGAN2 as decoder: FFHQ is CC BY-NC-SA 4.0 and CelebA-HQ is for non-commercial research, "
    "so treat the weights as non-commercial.",
    "facestylor-transfer": "OpenMMLab MMGEN-FaceStylor style (Apache-2.0 code), fine-tuned from MMGen's FFHQ "
    "StyleGAN2 (FFHQ: CC BY-NC-SA 4.0) on the style's exemplars (MetFaces: CC BY-NC 2.0; Toonify, "
    "photo2cartoon, Bitmoji, face2comics: their own, mostly non-commercial, terms). Non-commercial.",
}


class ImportFailure(Exception):
    """The source file cannot be imported in the asked format; the message says why."""


@dataclasses.dataclass(frozen=True)
class ImportResult:
    directories: list[Path]
    class_names: list[str]
    ignored_keys: list[str]
    notes: list[str]


def load_pickle(path: str | os.PathLike[str]) -> Any:
    """torch.load with weights_only=True and our allow-list; clear errors for bad files."""
    path = Path(path)
    if not path.is_file():
        raise ImportFailure(f"{path}: no such file")
    try:
        with torch.serialization.safe_globals(SAFE_GLOBALS):
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        blocked = re.search(r"Unsupported global: GLOBAL ([\w.]+)", str(e))
        if blocked:
            raise ImportFailure(
                f"{path}: refused to unpickle: it references {blocked.group(1)}, which is not on the allow-list "
                "of plain checkpoint types (a file that runs code when loaded is never imported)"
            ) from e
        raise ImportFailure(f"{path}: not a readable torch checkpoint ({_last_reason(str(e))})") from e
    except (RuntimeError, EOFError, OSError, ValueError) as e:
        raise ImportFailure(f"{path}: not a readable torch checkpoint ({type(e).__name__}: {e})") from e


def _last_reason(message: str) -> str:
    lines = [ln.strip() for ln in message.splitlines() if ln.strip()]
    specific = [ln for ln in lines if ln.startswith(("Unsupported", "invalid", "Expected"))]
    return (specific or lines or ["unknown error"])[0][:200]


def import_weights(
    fmt: str, src: str | os.PathLike[str], dest: str | os.PathLike[str], vgg: str | os.PathLike[str] | None = None
) -> ImportResult:
    """Import `src` (in format `fmt`) into the checkpoint directory `dest`.

    lpips-vgg: `src` is the LPIPS heads file (`vgg.pth` of the lpips package), `vgg` torchvision's
    VGG16 ImageNet weights (`vgg16-397923af.pth`).
    """
    if fmt == "lpips-vgg":
        if vgg is None:
            raise ImportFailure("lpips-vgg needs the VGG16 weights too (--vgg FILE)")
        return _import_lpips(Path(src), Path(vgg), Path(dest))
    importers: dict[str, Callable[[Any, Path, Provenance], ImportResult]] = {
        "rosinality": _import_rosinality,
        "agilegan-encoder": _import_agilegan_encoder,
        "agilegan-dual": _import_agilegan_dual,
        "mmgen": _import_mmgen,
        "facestylor-encoder": _import_facestylor_encoder,
        "facestylor-transfer": _import_facestylor_transfer,
    }
    if fmt not in importers:
        raise ImportFailure(f"unknown format {fmt!r}; one of {', '.join(FORMATS)}")
    src = Path(src)
    ckpt = load_pickle(src)
    if not isinstance(ckpt, dict):
        raise ImportFailure(f"{src}: expected a dict checkpoint, got {type(ckpt).__name__}")
    provenance = Provenance(
        source=src.name, source_sha256=sha256_file(src), license=LICENSE_NOTES[fmt], extra={"import_format": fmt}
    )
    return importers[fmt](ckpt, Path(dest), provenance)


# ------------------------------------------------------------------------------------ helpers


def _tensors(mapping: Any, where: str) -> dict[str, torch.Tensor]:
    if not isinstance(mapping, dict) or not all(isinstance(v, torch.Tensor) for v in mapping.values()):
        raise ImportFailure(f"{where}: expected a state dict of tensors")
    return {k: v.detach().to(torch.float32) if v.is_floating_point() else v for k, v in mapping.items()}


def _strict_assign(model: nn.Module, tensors: dict[str, torch.Tensor], where: str) -> None:
    try:
        checkpoints.assign_tensors(model, tensors, where)
    except checkpoints.CheckpointError as e:
        raise ImportFailure(str(e)) from e


def infer_generator_config(sd: dict[str, torch.Tensor], where: str) -> GeneratorConfig:
    """Generator shape from a rosinality-layout state dict (size, style_dim, n_mlp, channel table)."""
    try:
        style_dim = sd["style.1.weight"].shape[1]
        n_mlp = len([k for k in sd if re.fullmatch(r"style\.\d+\.weight", k)])
        n_rgb = len({k.split(".")[1] for k in sd if k.startswith("to_rgbs.")})
        size = 2 ** (n_rgb + 2)
        channels = {4: sd["conv1.conv.weight"].shape[1]}
        for i in range(n_rgb):
            channels[2 ** (i + 3)] = sd[f"convs.{2 * i}.conv.weight"].shape[1]
    except KeyError as e:
        raise ImportFailure(f"{where}: not a StyleGAN2 generator state dict (no {e})") from e
    channel_max = max(channels.values())
    below = [(r, c) for r, c in channels.items() if c < channel_max]
    if below:
        multiplier = below[-1][1] * below[-1][0] // 16384
    else:  # every stage at channel_max: the smallest multiplier that gives this table
        multiplier = math.ceil(channel_max * size / 16384)
    config = GeneratorConfig(
        size=size, style_dim=style_dim, n_mlp=n_mlp, channel_multiplier=max(1, multiplier), channel_max=channel_max
    )
    if any(config.channels(r) != c for r, c in channels.items()):
        raise ImportFailure(f"{where}: channel table {channels} is not a StyleGAN2 config")
    return config


def _latent_avg(model: Generator | AttributeAwareGenerator, ckpt: dict, notes: list[str]) -> None:
    avg = ckpt.get("latent_avg")
    if isinstance(avg, torch.Tensor) and avg.numel() == model.config.style_dim:
        model.latent_avg = avg.detach().reshape(-1).to(torch.float32).clone()
    else:
        model.latent_avg = torch.zeros(model.config.style_dim)
        model.compute_latent_avg()
        notes.append("latent_avg not in the file: computed as the mean mapping of 4096 seeded z")


def _materialise_buffers(model: nn.Module) -> None:
    """After a meta build, buffers not in the file (latent_avg) need real storage before use."""
    for name, buf in list(model.named_buffers()):
        if buf.is_meta:
            owner_name, _, buf_name = name.rpartition(".")
            owner = model.get_submodule(owner_name) if owner_name else model
            owner._buffers[buf_name] = torch.zeros(buf.shape, dtype=buf.dtype)


def _generator_from(sd: dict[str, torch.Tensor], where: str) -> Generator:
    config = infer_generator_config(sd, where)
    with torch.device("meta"):
        model = Generator(config)
    _materialise_buffers(model)
    tensors = dict(sd)
    tensors["latent_avg"] = model.latent_avg
    _strict_assign(model, tensors, where)
    return model


# ------------------------------------------------------------------------------------ formats


def _import_rosinality(ckpt: dict, dest: Path, provenance: Provenance) -> ImportResult:
    notes: list[str] = []
    if "g_ema" in ckpt:
        g_sd = _tensors(ckpt["g_ema"], "g_ema")
    elif "style.1.weight" in ckpt:
        g_sd = _tensors(ckpt, "state dict")
    else:
        raise ImportFailure(f"{provenance.source}: no 'g_ema' entry (keys: {sorted(ckpt)[:8]})")
    model = _generator_from(g_sd, f"{provenance.source}[g_ema]")
    _latent_avg(model, ckpt, notes)
    dirs, classes = [checkpoints.save(dest, model, provenance)], ["Generator"]
    if "d" in ckpt:
        d_sd = _tensors(ckpt["d"], "d")
        disc = _discriminator_from(d_sd, model.config, f"{provenance.source}[d]")
        dirs.append(checkpoints.save(dest / "discriminator", disc, provenance))
        classes.append("Discriminator")
    ignored = sorted(set(ckpt) - {"g_ema", "latent_avg", "d"}) if "g_ema" in ckpt else []
    if "g" in ckpt:
        notes.append("the non-EMA generator 'g' was not imported (g_ema is the one to serve and fine-tune)")
    return ImportResult(dirs, classes, ignored, notes)


def _discriminator_from(sd: dict[str, torch.Tensor], g_config: GeneratorConfig, where: str) -> Discriminator:
    n_blocks = len({k.split(".")[1] for k in sd if re.match(r"convs\.\d+\.", k)}) - 1
    size = 2 ** (n_blocks + 2)
    config = DiscriminatorConfig(
        size=size, channel_multiplier=g_config.channel_multiplier, channel_max=g_config.channel_max
    )
    with torch.device("meta"):
        model = Discriminator(config)
    _strict_assign(model, sd, where)
    return model


def _import_agilegan_encoder(ckpt: dict, dest: Path, provenance: Provenance) -> ImportResult:
    sd = _tensors(ckpt.get("state_dict"), f"{provenance.source}[state_dict]")
    enc = {k[len("encoder.") :]: v for k, v in sd.items() if k.startswith("encoder.")}
    mapping = {k[len("decoder.style.") :]: v for k, v in sd.items() if k.startswith("decoder.style.")}
    if not enc or not mapping:
        raise ImportFailure(
            f"{provenance.source}: expected encoder.* and decoder.style.* keys (the official encoder.pt)"
        )
    if "fc_mu.weight" not in enc:
        raise ImportFailure(f"{provenance.source}: no fc_mu/fc_var heads: a pSp encoder, not AgileGAN's HVAE encoder")
    n_styles = len({k.split(".")[1] for k in enc if k.startswith("styles.")})
    style_dim = enc["fc_mu.weight"].shape[0]
    n_mlp = len([k for k in mapping if k.endswith(".weight")])
    config = InverterConfig(
        encoder=EncoderConfig(style_dim=style_dim, n_styles=n_styles),
        mapping=MappingConfig(style_dim=style_dim, n_mlp=n_mlp),
    )
    with torch.device("meta"):
        model = Inverter(config)
    tensors = {f"encoder.{k}": v for k, v in enc.items()}
    tensors.update({f"mapping.{k}": v for k, v in mapping.items()})
    _strict_assign(model, tensors, provenance.source)
    ignored = sorted(k for k in sd if k.startswith("decoder.") and not k.startswith("decoder.style."))
    notes = [
        f"kept the decoder's mapping network; {len(ignored)} other decoder.* keys (the FFHQ synthesis "
        "network) are not part of the encoder: import the FFHQ generator separately"
    ]
    if "latent_avg" in ckpt:
        notes.append("latent_avg ignored: AgileGAN maps z+ with no latent_avg offset")
    return ImportResult([checkpoints.save(dest, model, provenance)], ["Inverter"], ignored, notes)


_DUAL_KEY = re.compile(r"^(convs|to_rgbs)([ABC])\.(.*)$")


def _import_agilegan_dual(ckpt: dict, dest: Path, provenance: Provenance) -> ImportResult:
    sd = _tensors(ckpt.get("g_ema"), f"{provenance.source}[g_ema]")
    if not any(k.startswith("convsA.") for k in sd):
        raise ImportFailure(f"{provenance.source}: g_ema has no convsA.* keys: not a DualGenerator (try rosinality)")
    branch_of = {"A": "branches.0.", "B": "branches.1.", "C": ""}
    renamed = {}
    for key, value in sd.items():
        m = _DUAL_KEY.match(key)
        renamed[f"{branch_of[m.group(2)]}{m.group(1)}.{m.group(3)}" if m else key] = value
    n_branch = len({k.split(".")[1] for k in sd if k.startswith("to_rgbsA.")})
    plain_a = {}  # branch A as a plain generator's state dict, to infer the shape
    for key, value in renamed.items():
        plain = branch_key_to_plain(key, 0, n_branch)
        if plain is not None:
            plain_a[plain] = value
    g_config = infer_generator_config(plain_a, provenance.source)
    config = AttributeGeneratorConfig(
        generator=g_config, branches=("female", "male"), split_resolution=2 ** (n_branch + 2), default_branch="female"
    )
    with torch.device("meta"):
        model = AttributeAwareGenerator(config)
    _materialise_buffers(model)
    renamed["latent_avg"] = model.latent_avg
    _strict_assign(model, renamed, provenance.source)
    notes = ["branch A → 'female', branch B → 'male' (the official gender mapping)"]
    _latent_avg(model, ckpt, notes)
    ignored = sorted(set(ckpt) - {"g_ema", "latent_avg"})
    return ImportResult([checkpoints.save(dest, model, provenance)], ["AttributeAwareGenerator"], ignored, notes)


def _import_lpips(heads_path: Path, vgg_path: Path, dest: Path) -> ImportResult:
    from models.networks.lpips import LPIPS
    from service.portrait.configs import LPIPSConfig

    heads = _tensors(load_pickle(heads_path), heads_path.name)
    vgg = _tensors(load_pickle(vgg_path), vgg_path.name)
    model = LPIPS(LPIPSConfig())
    state = {"shift": model.shift, "scale": model.scale}
    state.update({k.removeprefix("module."): v for k, v in heads.items()})
    state.update({f"net.{k}": v for k, v in vgg.items() if k.startswith("features.")})
    _strict_assign(model, state, f"{heads_path.name} + {vgg_path.name}")
    provenance = Provenance(
        source=f"{heads_path.name}+{vgg_path.name}",
        source_sha256=sha256_file(heads_path),
        license=LICENSE_NOTES["lpips-vgg"],
        extra={"vgg_sha256": sha256_file(vgg_path)},
    )
    ignored = sorted({k.split(".")[0] + ".*" for k in vgg if not k.startswith("features.")})
    return ImportResult([checkpoints.save(dest, model, provenance)], ["LPIPS"], ignored, [])


_MMGEN_RULES = [
    (re.compile(r"^style_mapping\.(\d+)\.linear\.weight_orig$"), r"style.\1.weight"),
    (re.compile(r"^style_mapping\.(\d+)\.bias$"), r"style.\1.bias"),
    (re.compile(r"^constant_input\.input$"), "input.input"),
    (re.compile(r"^(.*)\.style_modulation\.linear\.weight_orig$"), r"\1.modulation.weight"),
    (re.compile(r"^(.*)\.style_modulation\.bias$"), r"\1.modulation.bias"),
    (re.compile(r"^(.*)\.noise_injector\.weight$"), r"\1.noise.weight"),
    (re.compile(r"^(?:noises\.)?injected_noise_(\d+)$"), r"noises.noise_\1"),
    (re.compile(r"^(.*)\.weight_orig$"), r"\1.weight"),
]


def mmgen_key(key: str) -> str:
    for pattern, repl in _MMGEN_RULES:
        if pattern.match(key):
            return pattern.sub(repl, key)
    return key


def _import_mmgen(ckpt: dict, dest: Path, provenance: Provenance) -> ImportResult:
    sd = _tensors(ckpt.get("state_dict", ckpt), f"{provenance.source}[state_dict]")
    for prefix in ("generator_ema.", "generator.", ""):
        sub = {k[len(prefix) :]: v for k, v in sd.items() if k.startswith(prefix)}
        if any(k.startswith("style_mapping.") for k in sub):
            break
    else:
        raise ImportFailure(f"{provenance.source}: no MMGen StyleGAN2 generator (style_mapping.*) found")
    model = _mmgen_generator(sub, provenance.source)
    notes = [f"generator taken from prefix {prefix!r}; ToRGB channels reversed (MMGen emits BGR)"]
    _latent_avg(model, ckpt, notes)
    ignored = sorted({k.split(".")[0] + ".*" for k in sd if not k.startswith(prefix)}) if prefix else []
    return ImportResult([checkpoints.save(dest, model, provenance)], ["Generator"], ignored, notes)


# ------------------------------------------------------------------------------------ FaceStylor

FACESTYLOR_TRAIN_ONLY = ("lpips_loss.", "id_loss.", "generator.", "discriminator.", "source_generator.")


def _mmgen_generator(sub: dict[str, torch.Tensor], where: str) -> Generator:
    """An MMGen StyleGAN2 state dict (no prefix) → our Generator, with ToRGB permuted BGR → RGB."""
    renamed = {mmgen_key(k): v for k, v in sub.items()}
    for key in [k for k in renamed if re.match(r"^to_rgb(1|s\.\d+)\.(conv\.weight|bias)$", k)]:
        renamed[key] = renamed[key].flip(1).contiguous()
    return _generator_from(renamed, where)


def infer_encoder_config(enc: dict[str, torch.Tensor], where: str) -> EncoderConfig:
    """The HVAE encoder's shape from its state dict (no prefix): IR-SE stages, heads, input size.

    A stage starts at unit 0 and wherever a unit has a conv shortcut (its width changes), so stages
    must differ in width, as IR-SE50's 64/128/256/512 do. The style heads read feature maps of
    input/16, /8 and /4 px with log2 of that many stride-2 convs, which gives the input size and the
    coarse/middle split.
    """
    try:
        units = sorted({int(k.split(".")[1]) for k in enc if k.startswith("body.")})
        starts = [u for u in units if u == 0 or f"body.{u}.shortcut_layer.0.weight" in enc]
        widths = tuple(int(enc[f"body.{u}.res_layer.1.weight"].shape[0]) for u in starts)
        stage_units = tuple(b - a for a, b in zip(starts, [*starts[1:], len(units)]))
        reduction = widths[0] // int(enc["body.0.res_layer.5.fc1.weight"].shape[0])
        heads = sorted({int(k.split(".")[1]) for k in enc if k.startswith("styles.")})
        convs = [len({k for k in enc if k.startswith(f"styles.{h}.convs.") and k.endswith(".weight")}) for h in heads]
        low = min(convs)
        return EncoderConfig(
            input_size=16 * 2**low,
            stage_units=stage_units,
            stage_widths=widths,
            se_reduction=reduction,
            style_dim=int(enc["fc_mu.weight"].shape[0]),
            n_styles=len(heads),
            coarse=convs.count(low),
            middle=convs.count(low + 1),
            variational="fc_var.weight" in enc,
        )
    except (KeyError, IndexError, ValueError, ZeroDivisionError) as e:
        raise ImportFailure(f"{where}: encoder.* is not an IR-SE HVAE encoder ({type(e).__name__}: {e})") from e


def _set_latent_avg(model: Generator) -> None:
    """MMGen files carry no latent_avg (used for truncation only): the mean mapping of 4096 seeded z.
    Skipped for meta tensors (layout checks)."""
    if not model.style[1].weight.is_meta:
        model.compute_latent_avg()


def _prefixed(sd: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    return {k[len(prefix) :]: v for k, v in sd.items() if k.startswith(prefix)}


def _report_left(sd: dict[str, torch.Tensor], used: tuple[str, ...]) -> tuple[list[str], list[str]]:
    """(ignored: 'prefix.* (N keys)' per top-level module not used, notes on unexpected ones)."""
    groups: dict[str, int] = {}
    for key in sd:
        if not key.startswith(used):
            top = key.split(".")[0] + "."
            groups[top] = groups.get(top, 0) + 1
    ignored = [f"{top}* ({n} keys)" for top, n in sorted(groups.items())]
    unexpected = [top for top in groups if not top.startswith(FACESTYLOR_TRAIN_ONLY + ("gen_auxiliary_losses.",))]
    notes = [f"unexpected module {top}* left out (not part of a FaceStylor checkpoint we know)" for top in unexpected]
    return ignored, notes


@dataclasses.dataclass
class FaceStylorModels:
    """What a FaceStylor checkpoint converts to, before anything is written."""

    models: dict[str, nn.Module]  # "" (the main model) and, for encoders, "source"
    ignored: list[str]
    notes: list[str]


def convert_facestylor_encoder(sd: dict[str, torch.Tensor], where: str) -> FaceStylorModels:
    """`PSPEncoderDecoder` state dict → {"": Inverter (encoder + decoder mapping), "source": Generator}.

    Works on meta tensors too (the manifests of the real checkpoints are checked that way)."""
    enc = _prefixed(sd, "encoder.")
    decoder = _prefixed(sd, "decoder.")
    if not enc or not any(k.startswith("style_mapping.") for k in decoder):
        raise ImportFailure(
            f"{where}: expected encoder.* and decoder.style_mapping.* keys (a FaceStylor agile_encoder "
            "checkpoint); a transfer checkpoint is --format facestylor-transfer"
        )
    if "fc_mu.weight" not in enc:
        raise ImportFailure(f"{where}: encoder.* has no fc_mu head: not an AgileGAN-style encoder")
    encoder_config = infer_encoder_config(enc, where)
    variational = encoder_config.variational
    mapping = {mmgen_key(k): v for k, v in decoder.items() if k.startswith("style_mapping.")}
    mapping = {k[len("style.") :]: v for k, v in mapping.items()}
    config = InverterConfig(
        encoder=encoder_config,
        mapping=MappingConfig(
            style_dim=encoder_config.style_dim, n_mlp=len([k for k in mapping if k.endswith(".weight")])
        ),
    )
    with torch.device("meta"):
        inverter = Inverter(config)
    tensors = {f"encoder.{k}": v for k, v in enc.items()}
    tensors.update({f"mapping.{k}": v for k, v in mapping.items()})
    _strict_assign(inverter, tensors, where)
    source = _mmgen_generator(decoder, f"{where}[decoder]")
    _set_latent_avg(source)
    ignored, notes = _report_left(sd, ("encoder.", "decoder."))
    notes = [
        *([] if variational else ["mu-only encoder (no fc_var): inversion uses mu, as FaceStylor does"]),
        f"decoder.* (MMGen's FFHQ {source.config.size} px generator, ToRGB permuted BGR → RGB) imported as "
        "the source generator in source/ (layer swap and style strength); its mapping is the encoder's "
        "z+ → w+ mapping",
        *notes,
    ]
    return FaceStylorModels({"": inverter, "source": source}, ignored, notes)


def convert_facestylor_transfer(sd: dict[str, torch.Tensor], where: str) -> FaceStylorModels:
    """`PSPTransfer` state dict → {"": the style Generator from generator_ema.*}."""
    sub = _prefixed(sd, "generator_ema.")
    if not any(k.startswith("style_mapping.") for k in sub):
        raise ImportFailure(
            f"{where}: no generator_ema.* generator (a FaceStylor agile_transfer checkpoint); an encoder "
            "checkpoint is --format facestylor-encoder"
        )
    model = _mmgen_generator(sub, f"{where}[generator_ema]")
    _set_latent_avg(model)
    ignored, notes = _report_left(sd, ("generator_ema.",))
    notes = [
        "generator_ema.* imported as the style generator, ToRGB permuted BGR → RGB; its own mapping is not "
        "used for stylization (w+ comes from the encoder's source mapping)",
        *notes,
    ]
    return FaceStylorModels({"": model}, ignored, notes)


def _save_facestylor(converted: FaceStylorModels, dest: Path, provenance: Provenance) -> ImportResult:
    dirs = [checkpoints.save(dest / sub if sub else dest, m, provenance) for sub, m in converted.models.items()]
    classes = [type(m).__name__ for m in converted.models.values()]
    return ImportResult(dirs, classes, converted.ignored, converted.notes)


def _import_facestylor_encoder(ckpt: dict, dest: Path, provenance: Provenance) -> ImportResult:
    sd = _tensors(ckpt.get("state_dict"), f"{provenance.source}[state_dict]")
    return _save_facestylor(convert_facestylor_encoder(sd, provenance.source), dest, provenance)


def _import_facestylor_transfer(ckpt: dict, dest: Path, provenance: Provenance) -> ImportResult:
    sd = _tensors(ckpt.get("state_dict"), f"{provenance.source}[state_dict]")
    return _save_facestylor(convert_facestylor_transfer(sd, provenance.source), dest, provenance)

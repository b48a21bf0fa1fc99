"""`agilegan directions …` and `generate --edit`: latent directions from the command line.

Examples:
    agilegan directions sefa data/registry/base/generator --k 10 --out data/registry/directions/sefa.npz
    agilegan directions sefa data/registry/base/generator --layers 0-3 --out data/registry/directions/pose.npz
    agilegan directions fit --encoder data/registry/base/encoder --positive smiling/ --negative neutral/ \\
        --name smile --out data/registry/directions/smile.npz
    agilegan directions import age.npy --name age --base data/registry/base/generator --layers 0-7 \\
        --range -3,3 --out data/registry/directions/age.npz
    agilegan directions gallery data/registry/styles/cartoon data/registry/directions/sefa.npz \\
        --photo me.jpg --alphas -3,0,3 --out gallery.png
    agilegan generate data/registry/styles/cartoon --seed 3 --edit sefa:1=2.5 --edit smile=1 --out edited.png

A direction file written into `<registry>/directions/` is what `POST /v1/stylize` takes in `edits`
(the file name without .npz is its id). Every file records the w space it lives in (the fingerprint of
the mapping network of the checkpoint it was made from); edits through another mapping are refused.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from models.cli.common import IMAGE_SUFFIXES, CommandError, check_out_suffix, command_device


def add_direction_commands(sub: argparse._SubParsersAction) -> None:
    top = sub.add_parser("directions", help="latent directions for editing: SeFa, supervised fit, import, gallery")
    dsub = top.add_subparsers(dest="directions_command", required=True)

    sf = dsub.add_parser("sefa", help="closed-form directions of a generator (SeFa; no data)")
    sf.add_argument("generator", type=Path, help="a generator checkpoint (the base FFHQ one, usually)")
    sf.add_argument("--layers", default="all", help="only the convs reading these w+ indices: all, A-B, A-B,C")
    sf.add_argument("--k", type=int, default=10, help="how many directions (by descending eigenvalue)")
    sf.add_argument("--name", help="the set's name (default: the output file's name)")
    sf.add_argument("--out", type=Path, required=True, help=".npz")
    sf.set_defaults(handler=cmd_sefa)

    fit = dsub.add_parser("fit", help="a supervised direction (InterFaceGAN) from two folders of photos")
    fit.add_argument("--encoder", type=Path, required=True, help="an Inverter checkpoint: its w space is used")
    fit.add_argument("--positive", type=Path, required=True, help="folder of photos with the attribute")
    fit.add_argument("--negative", type=Path, required=True, help="folder of photos without it")
    fit.add_argument("--name", required=True)
    fit.add_argument("--range", default="-3,3", help="the alpha range clients may use, LOW,HIGH")
    fit.add_argument("--device", default="auto")
    fit.add_argument("--out", type=Path, required=True, help=".npz")
    fit.set_defaults(handler=cmd_fit)

    imp = dsub.add_parser("import", help="a direction from elsewhere: .npy or .pt, [D] or [L, D]")
    imp.add_argument("file", type=Path)
    imp.add_argument("--name", required=True)
    imp.add_argument("--base", type=Path, required=True, help="the generator or encoder whose w space it is in")
    imp.add_argument("--layers", default="all", help="recommended w+ indices: all, A-B, A-B,C")
    imp.add_argument("--range", default="-3,3", help="the alpha range, LOW,HIGH")
    imp.add_argument("--out", type=Path, required=True, help=".npz")
    imp.set_defaults(handler=cmd_import)

    gal = dsub.add_parser("gallery", help="a grid: rows = directions, columns = alphas, on one photo")
    gal.add_argument("style", type=Path, help="a style (or base) generator checkpoint")
    gal.add_argument("directions", type=Path, help=".npz")
    gal.add_argument("--photo", type=Path, help="a portrait photo (aligned here); without it, a seeded sample")
    gal.add_argument("--aligned", action="store_true", help="--photo is already an FFHQ-aligned crop")
    gal.add_argument("--encoder", type=Path, default=Path("data/registry/base/encoder"), help="for --photo")
    gal.add_argument("--seed", type=int, default=0, help="the sample without --photo")
    gal.add_argument("--alphas", default="-3,0,3")
    gal.add_argument("--indices", default=None, help="which directions (rows): A-B, A,B (default: all, up to 10)")
    gal.add_argument("--layers", default=None, help="override the edit layers: A-B")
    gal.add_argument("--tile", type=int, default=256, help="tile side in px")
    gal.add_argument("--device", default="auto")
    gal.add_argument("--out", type=Path, required=True, help=".png or .jpg")
    gal.set_defaults(handler=cmd_gallery)


def add_edit_arguments(parser: argparse.ArgumentParser) -> None:
    """`generate`'s editing flags."""
    parser.add_argument(
        "--edit",
        action="append",
        default=[],
        metavar="NAME_OR_FILE[:INDEX]=ALPHA",
        help="edit w+ with a direction (a registry id or an .npz; INDEX into a set, default 0); repeatable",
    )
    parser.add_argument("--edit-layers", help="w+ indices for every --edit (default: each set's recommended)")
    parser.add_argument("--registry", type=Path, default=Path("data/registry"), help="where --edit NAME is looked up")


# --------------------------------------------------------------------------------------- commands


def cmd_sefa(args: argparse.Namespace) -> None:
    from models.inference.directions import DirectionSet, parse_layers, sefa
    from models.networks.stylegan2 import Generator
    from models.weights import checkpoints
    from service.portrait.checkpoint_files import w_space_id

    check_out_suffix(args.out, (".npz",))
    model = checkpoints.load(args.generator, expected=Generator)
    layers = parse_layers(args.layers, model.n_latent)
    vectors, values, used = sefa(model.state_dict(), model.n_latent, layers, args.k)
    found = DirectionSet(
        name=args.name or args.out.stem,
        kind="sefa",
        vectors=vectors,
        w_space=w_space_id(args.generator),
        layers=tuple(used) if layers is not None else (),
        eigenvalues=values,
        info={"generator": args.generator.name, "factorised_layers": list(used)},
    )
    found.save(args.out)
    shares = values / values.sum()
    print(f"wrote {len(vectors)} SeFa directions of w+ layers {_span(used)} to {args.out}")
    print("eigenvalue share of each: " + " ".join(f"{s:.3f}" for s in shares))


def cmd_fit(args: argparse.Namespace) -> None:
    import torch

    from models.inference.directions import DirectionSet, fit_direction
    from models.networks.encoder import Inverter, image_to_tensor
    from models.weights import checkpoints
    from service.portrait.checkpoint_files import w_space_id
    from service.portrait.configs import AlignerConfig
    from service.portrait.errors import InputError
    from service.portrait.media.alignment import FaceAligner
    from service.portrait.media.images import load_image

    check_out_suffix(args.out, (".npz",))
    device = command_device(args.device)
    inverter = checkpoints.load(args.encoder, expected=Inverter, device=device)
    aligner = FaceAligner(AlignerConfig())
    codes = {}
    for label, folder in (("positive", args.positive), ("negative", args.negative)):
        if not folder.is_dir():
            raise CommandError(f"--{label} {folder}: not a folder")
        found = []
        for path in sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES):
            try:
                crop = aligner.align(load_image(path, aligner.config.max_pixels).image).image
            except InputError as e:
                print(f"skipped {path}: {e.code}")
                continue
            with torch.inference_mode():
                found.append(inverter(image_to_tensor(crop, inverter.config.encoder.input_size).to(device)).wplus.cpu())
        if not found:
            raise CommandError(f"--{label} {folder}: no photo with a face")
        codes[label] = torch.cat(found)
    fit = fit_direction(codes["positive"], codes["negative"])
    info = {
        "accuracy": round(fit.accuracy, 4),
        "layer_accuracy": [round(a, 4) for a in fit.layer_accuracy],
        "examples": {k: len(v) for k, v in codes.items()},
    }
    DirectionSet(
        name=args.name,
        kind="supervised",
        vectors=fit.direction[None],
        w_space=w_space_id(args.encoder),
        layers=fit.recommended,
        alpha_range=_range(args.range),
        info=info,
    ).save(args.out)
    print(f"held-out accuracy {fit.accuracy:.3f} (pooled over layers); per layer:")
    print(" ".join(f"{i}:{a:.2f}" for i, a in enumerate(fit.layer_accuracy)))
    print(f"recommended layers: {_span(fit.recommended) if fit.recommended else 'all (no layer stands out)'}")
    print(f"wrote {args.out}")


def cmd_import(args: argparse.Namespace) -> None:
    from models.inference.directions import from_array, parse_layers
    from service.portrait.checkpoint_files import read_info, w_space_id

    check_out_suffix(args.out, (".npz",))
    if args.file.suffix == ".npy":
        try:
            array = np.load(args.file, allow_pickle=False)
        except (OSError, ValueError) as e:
            raise CommandError(f"{args.file}: not a .npy array ({e})") from e
    elif args.file.suffix in (".pt", ".pth"):
        import torch

        try:
            loaded = torch.load(args.file, map_location="cpu", weights_only=True)
        except Exception as e:  # pickles that need code, or not a torch file
            raise CommandError(f"{args.file}: not a plain tensor file ({e})") from e
        if not torch.is_tensor(loaded):
            raise CommandError(f"{args.file}: expected one tensor, got {type(loaded).__name__}")
        array = loaded.float().numpy()
    else:
        raise CommandError(f"{args.file}: expected .npy or .pt")
    n_latent, style_dim = _latent_shape(read_info(args.base))
    array = array.squeeze(0) if array.ndim == 3 and array.shape[0] == 1 else array
    if array.shape[-1] != style_dim or (array.ndim == 2 and array.shape[0] != n_latent):
        raise CommandError(
            f"{args.file}: shape {list(array.shape)}; {args.base} takes [{style_dim}] or [{n_latent}, {style_dim}]"
        )
    found = from_array(
        array, args.name, w_space_id(args.base), parse_layers(args.layers, n_latent) or (), _range(args.range)
    )
    found.save(args.out)
    print(f"wrote {args.name} ({list(array.shape)}) to {args.out}")


def cmd_gallery(args: argparse.Namespace) -> None:
    import torch
    from PIL import Image, ImageDraw

    from models.inference.directions import Edit, apply_edits, load, parse_layers
    from models.inference.pipeline import to_image
    from models.networks.attribute_generator import AttributeAwareGenerator
    from models.networks.stylegan2 import Generator
    from models.weights import checkpoints
    from service.portrait.checkpoint_files import w_space_id

    check_out_suffix(args.out, (".png", ".jpg", ".jpeg"))
    device = command_device(args.device)
    model = checkpoints.load(args.style, expected=(Generator, AttributeAwareGenerator), device=device)
    directions = load(args.directions)
    alphas = [float(a) for a in args.alphas.split(",")]
    rows = parse_layers(args.indices, len(directions.vectors)) if args.indices else None
    rows = list(rows) if rows is not None else list(range(min(10, len(directions.vectors))))
    layers = parse_layers(args.layers, model.n_latent) if args.layers else None
    # 1. The w+ to edit: the photo inverted (its w space must be the directions'), or a seeded sample.
    if args.photo is not None:
        wplus, space = _invert_photo(args.photo, args.encoder, args.aligned, device), w_space_id(args.encoder)
        wplus = wplus[:, : model.n_latent]
    else:
        z = torch.randn(1, model.config.style_dim, generator=torch.Generator().manual_seed(args.seed))
        with torch.inference_mode():
            wplus, space = model.to_wplus(z.to(device)), w_space_id(args.style)
    # 2. One render per (direction, alpha), with the limits of the set's range waived (a gallery explores).
    wide = _widened(directions, alphas)
    tiles = []
    with torch.inference_mode():
        for index in rows:
            edits = [Edit(wide, alpha, index, layers) for alpha in alphas]
            for edit in edits:
                edit.check(model.n_latent, model.config.style_dim, space)
            batch = torch.cat([apply_edits(wplus, [e]) for e in edits])
            images = model(batch, space="wplus")
            tiles += [to_image(t).resize((args.tile, args.tile), Image.Resampling.LANCZOS) for t in images]
    # 3. The grid, labelled: rows are directions, columns alphas.
    pad = 24
    grid = Image.new("RGB", (pad * 3 + args.tile * len(alphas), pad + args.tile * len(rows)), "white")
    draw = ImageDraw.Draw(grid)
    for c, alpha in enumerate(alphas):
        draw.text((pad * 3 + c * args.tile + args.tile // 2 - 10, 6), f"{alpha:+g}", fill=(0, 0, 0))
    for r, index in enumerate(rows):
        draw.text((4, pad + r * args.tile + args.tile // 2), f"#{index}", fill=(0, 0, 0))
        for c in range(len(alphas)):
            grid.paste(tiles[r * len(alphas) + c], (pad * 3 + c * args.tile, pad + r * args.tile))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    grid.save(args.out)
    print(f"wrote {args.out}: {len(rows)} directions × alphas {alphas}")


# ------------------------------------------------------------------------------ generate --edit


def edits_for(args: argparse.Namespace, model, checkpoint: Path) -> list:
    """`generate --edit …` → `models.inference.directions.Edit`s checked against the checkpoint's w space."""
    from models.inference.directions import Edit, load, parse_layers
    from service.portrait.checkpoint_files import w_space_id

    layers = parse_layers(args.edit_layers, model.n_latent) if args.edit_layers else None
    space = w_space_id(checkpoint)
    out = []
    for text in args.edit:
        target, sep, alpha_text = text.rpartition("=")
        if not sep or not target:
            raise CommandError(f"--edit {text!r}: expected NAME_OR_FILE[:INDEX]=ALPHA")
        index = 0
        head, colon, tail = target.rpartition(":")
        if colon and tail.isdigit():
            target, index = head, int(tail)
        path = Path(target)
        if not path.is_file():
            path = args.registry / "directions" / f"{target}.npz"
            if not path.is_file():
                raise CommandError(
                    f"--edit {text!r}: no file {target!r} and no direction {target!r} in {args.registry}"
                )
        try:
            alpha = float(alpha_text)
        except ValueError:
            raise CommandError(f"--edit {text!r}: alpha must be a number") from None
        edit = Edit(load(path), alpha, index, layers)
        edit.check(model.n_latent, model.config.style_dim, space)
        out.append(edit)
    return out


# --------------------------------------------------------------------------------------- helpers


def _invert_photo(photo: Path, encoder: Path, aligned: bool, device: str):
    import torch

    from models.networks.encoder import Inverter, image_to_tensor
    from models.weights import checkpoints
    from service.portrait.configs import AlignerConfig
    from service.portrait.media.alignment import FaceAligner
    from service.portrait.media.images import load_image

    inverter = checkpoints.load(encoder, expected=Inverter, device=device)
    image = load_image(photo, AlignerConfig().max_pixels).image
    crop = image if aligned else FaceAligner(AlignerConfig()).align(image).image
    with torch.inference_mode():
        return inverter(image_to_tensor(crop, inverter.config.encoder.input_size).to(device)).wplus


def _widened(directions, alphas: list[float]):
    import dataclasses

    low, high = directions.alpha_range
    return dataclasses.replace(directions, alpha_range=(min(low, *alphas), max(high, *alphas)))


def _latent_shape(info) -> tuple[int, int]:
    """(w+ layers, w dimension) of a generator or encoder checkpoint, from its config."""
    config = info.config.get("generator", info.config)
    if "size" in config:
        return 2 * (int(config["size"]).bit_length() - 1) - 2, int(config.get("style_dim", 512))
    encoder, mapping = info.config.get("encoder", {}), info.config.get("mapping", {})
    return int(encoder.get("n_styles", 18)), int(mapping.get("style_dim", 512))


def _range(text: str) -> tuple[float, float]:
    try:
        low, high = (float(v) for v in text.split(","))
    except ValueError:
        raise CommandError(f"--range {text!r}: expected LOW,HIGH") from None
    if not low < 0 < high:
        raise CommandError(f"--range {text!r}: must contain 0")
    return low, high


def _span(layers) -> str:
    layers = list(layers)
    return (
        f"{layers[0]}-{layers[-1]}" if layers == list(range(layers[0], layers[-1] + 1)) else ",".join(map(str, layers))
    )

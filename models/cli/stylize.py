"""`agilegan stylize`: photos through a style on this machine, without the service: the largest face (or
`--face-index`), or every face of a group photo (`--faces all`, pasted back in place as the service does).

    agilegan stylize data/registry/styles/toonify photo.jpg --out out/toon.png
    agilegan stylize data/registry/styles/toonify group.jpg --faces all --out out/group.png
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from models.cli.common import IMAGE_SUFFIXES, CommandError, check_out_suffix, command_device


def add_stylize_command(sub: argparse._SubParsersAction) -> None:
    st = sub.add_parser("stylize", help="stylize a photo's face (or every face) with a style checkpoint")
    st.add_argument("style", type=Path, help="a style generator checkpoint")
    st.add_argument("photo", type=Path, help="JPEG, PNG or WebP")
    st.add_argument("--out", type=Path, required=True, help=f"the result ({', '.join(IMAGE_SUFFIXES)})")
    st.add_argument("--encoder", type=Path, default=Path("data/registry/base/encoder"))
    st.add_argument("--output", choices=("aligned", "full"), default="aligned", help="the crop, or pasted back")
    st.add_argument("--faces", choices=("one", "all"), default="one", help="all: every face, pasted back")
    st.add_argument("--face-index", type=int, default=0, help="--faces one: which face, by size (0 = largest)")
    st.add_argument("--min-face-size", type=int, default=128, help="--faces all: smaller faces are left as they are")
    st.add_argument("--device", default="auto")
    st.set_defaults(handler=cmd_stylize)


def cmd_stylize(args: argparse.Namespace) -> None:
    from models.inference.pipeline import stylize_batch
    from models.inference.stylizer import Stylizer
    from models.networks.attribute_generator import AttributeAwareGenerator
    from models.networks.encoder import Inverter
    from models.networks.stylegan2 import Generator
    from models.weights import checkpoints
    from service.portrait.configs import AlignerConfig
    from service.portrait.errors import InputError
    from service.portrait.media.alignment import FaceAligner, paste_faces
    from service.portrait.media.images import load_image

    check_out_suffix(args.out, IMAGE_SUFFIXES)
    if args.faces == "all" and args.output != "full":
        raise CommandError("--faces all pastes every face back into the photo: add --output full")
    # 1. The photo and its faces.
    aligner = FaceAligner(AlignerConfig(min_face_size=args.min_face_size))
    try:
        photo = load_image(args.photo, aligner.config.max_pixels).image
        faces = aligner.detect(photo, exhaustive=args.faces == "all" or args.face_index > 0)
        if args.faces == "all":
            aligned = aligner.align_all(photo, faces=faces)
        else:
            aligned = [aligner.align(photo, face_index=args.face_index, faces=faces)]
    except InputError as e:
        raise CommandError(f"{args.photo}: {e.message} ({e.code})") from e
    # 2. The networks, every face in one batch.
    device = command_device(args.device)
    inverter = checkpoints.load(args.encoder, expected=Inverter, device=device)
    g = checkpoints.load(args.style, expected=(Generator, AttributeAwareGenerator), device=device)
    batch = stylize_batch(Stylizer(inverter, g), [a.image for a in aligned])
    # 3. The crop, or every face pasted back.
    if args.output == "full":
        result = paste_faces(photo, list(zip(batch.images, aligned, strict=True)))
    else:
        result = batch.images[0]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    result.save(args.out)
    boxes = [[int(v) for v in a.face.box] for a in aligned]
    listing = [{"box": box, "branch": branch} for box, branch in zip(boxes, batch.branches, strict=True)]
    print(json.dumps({"output": str(args.out), "size": list(result.size), "faces": listing}))

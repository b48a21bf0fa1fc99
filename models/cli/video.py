"""`agilegan animate`: a stylized video, or a portrait driven by a video, from the command line.

Examples:
    agilegan animate data/registry/styles/toonify clip.mp4 --out toon.mp4
    agilegan animate data/registry/styles/toonify clip.mp4 --portrait me.jpg --mode retarget --out me.mp4

The same pipeline as `POST /v1/animate` (models/inference/video_run.py); the work files go to `--workdir`
(default: next to the output), so an interrupted run started again resumes from its finished chunks.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from models.cli.common import CommandError, check_out_suffix, command_device


def add_video_command(sub: argparse._SubParsersAction) -> None:
    an = sub.add_parser("animate", help="stylize a video, or drive a portrait with a video's motion")
    an.add_argument("style", type=Path, help="a style generator checkpoint")
    an.add_argument("video", type=Path, help="MP4, WebM, GIF, or a zip of frames")
    an.add_argument("--portrait", type=Path, help="retarget: the portrait to animate")
    an.add_argument("--mode", choices=("stylize", "retarget"), help="default: retarget with --portrait, else stylize")
    an.add_argument("--output", choices=("full", "aligned"), default="full", help="pasted back, or the crops")
    an.add_argument("--size", type=int, default=256, help="aligned side in px")
    an.add_argument(
        "--faces", choices=("one", "all"), default="one", help="all: every face, tracked (stylize, --output full)"
    )
    an.add_argument("--max-faces", type=int, default=8, help="--faces all: at most this many tracked faces")
    an.add_argument("--encoder", type=Path, default=Path("data/registry/base/encoder"))
    an.add_argument("--retarget-layers", default="0-7", help="w+ indices the driver moves (retarget)")
    an.add_argument("--fps", type=float, help="the frame rate of a zip of frames (default 25)")
    an.add_argument("--max-seconds", type=float, default=600.0)
    an.add_argument("--workdir", type=Path, help="resumable work files (default: OUT.work/)")
    an.add_argument("--device", default="auto")
    an.add_argument("--out", type=Path, required=True, help=".mp4, .webm, .gif or .zip")
    an.set_defaults(handler=cmd_animate)


def cmd_animate(args: argparse.Namespace) -> None:
    import shutil

    from models.inference.pipeline import RenderRequest
    from models.inference.stylizer import Stylizer
    from models.inference.video import VideoConfig, VideoStylizer
    from models.inference.video_run import run_video
    from models.networks.attribute_generator import AttributeAwareGenerator
    from models.networks.encoder import Inverter
    from models.networks.stylegan2 import Generator
    from models.weights import checkpoints
    from service.portrait.configs import AlignerConfig
    from service.portrait.media.alignment import FaceAligner
    from service.portrait.media.images import load_image
    from service.portrait.media.video_io import VideoLimits, check_limits, probe

    check_out_suffix(args.out, (".mp4", ".webm", ".gif", ".zip"))
    kind = args.out.suffix.lower().lstrip(".")
    if not args.video.is_file():
        raise CommandError(f"{args.video}: no such file")
    mode = args.mode or ("retarget" if args.portrait else "stylize")
    if mode == "retarget" and args.portrait is None:
        raise CommandError("--mode retarget needs --portrait")
    if args.faces == "all" and (mode != "stylize" or args.output != "full"):
        raise CommandError("--faces all stylizes every face in place: --mode stylize --output full")
    device = command_device(args.device)
    limits = VideoLimits(max_duration_s=args.max_seconds, max_frames=10**7, max_frame_pixels=8192 * 8192)
    check_limits(probe(args.video, args.fps, limits), limits)
    inverter = checkpoints.load(args.encoder, expected=Inverter, device=device)
    g = checkpoints.load(args.style, expected=(Generator, AttributeAwareGenerator), device=device)
    aligner = FaceAligner(AlignerConfig())
    portrait = photo = None
    if mode == "retarget":
        photo = load_image(args.portrait, AlignerConfig().max_pixels).image
        portrait = aligner.align(photo, output_size=max(args.size, inverter.config.encoder.input_size))
    config = VideoConfig(mode=mode, output=args.output, size=args.size, retarget_layers=args.retarget_layers)
    video = VideoStylizer(Stylizer(inverter, g), RenderRequest(), config, portrait, photo)
    workdir = args.workdir or args.out.with_name(args.out.name + ".work")

    def bar(info: dict) -> None:
        done, total = info["done"], max(info["total"], 1)
        filled = int(30 * done / total)
        eta = f" eta {info['eta_s']:.0f} s" if "eta_s" in info else ""
        sys.stderr.write(f"\r{info['stage']:>13} [{'#' * filled}{'.' * (30 - filled)}] {done}/{total}{eta}   ")
        sys.stderr.flush()

    args.out.parent.mkdir(parents=True, exist_ok=True)
    group = args.max_faces if args.faces == "all" else 0
    result = run_video(
        args.video, args.out, kind, video, aligner, workdir, limits, progress=bar, fps=args.fps, max_faces=group
    )
    sys.stderr.write("\n")
    shutil.rmtree(workdir, ignore_errors=True)
    print(
        f"wrote {args.out}: {result.frames} frames at {result.fps:g} fps, {result.stylized} stylized "
        f"({result.bridged} bridged), {result.passed_through} passed through, {result.seconds:.1f} s"
        + (f"; {len(result.tracks)} face tracks" if group else "")
    )

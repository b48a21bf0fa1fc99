"""Video: temporal stability of each smoothing step, and end-to-end frames per second.

Usage:
    python bench/video.py [--frames 60] [--speed-frames 8] [--runs 3] [--sizes 256,1024] [--device cpu]

A video is made from the repository's photos with known synthetic motion: a slow pan (1 px per frame)
plus affine jitter (2 px standard deviation, fresh each frame). Then:

1. **Crop jitter**: dlib's landmarks in each frame → the FFHQ crop centre; its deviation from the known
   pan path (the jitter we added plus the detector's own noise), as a standard deviation in px, for the
   raw landmarks and after each filter (`savgol`, the default; `one_euro`). Lower is steadier; the
   pan's lag shows as a larger deviation for a causal filter.
2. **Output flicker**: on a still clip of the same photo with fresh sensor noise in each frame (σ = 4
   of 255), where any change of the output is flicker, the mean absolute change between consecutive
   stylized frames (aligned crops, 8-bit), for the unsmoothed pipeline (no landmark filter, no latent
   moving average) and the default, on the tiny demo networks (what moves is the crop and the codes).
3. **Speed**: end to end (decode, detect, align, encode, generate, paste back, encode the MP4), in
   frames per second on this machine, for the full-size networks (the HVAE encoder and a config-f
   generator at each `--sizes`, random weights: speed does not depend on their values), the median of
   `--runs` runs of `--speed-frames` frames.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

from models.inference.pipeline import RenderRequest  # noqa: E402
from models.inference.stylizer import Stylizer  # noqa: E402
from models.inference.video import VideoConfig, VideoStylizer, crop_centres, fill_gaps, smooth_tracks  # noqa: E402
from models.inference.video_run import find_tracks, run_video  # noqa: E402
from models.networks.encoder import Inverter  # noqa: E402
from models.networks.stylegan2 import Generator  # noqa: E402
from service.portrait.configs import AlignerConfig, GeneratorConfig, InverterConfig  # noqa: E402
from service.portrait.media.alignment import FaceAligner  # noqa: E402
from service.portrait.media.video_io import VideoLimits, read_frames, write_video  # noqa: E402
from workers.launcher.demo import demo_configs  # noqa: E402

PHOTO = ROOT / "tests" / "data" / "faces" / "obama.jpg"


def make_video(path: Path, frames: int, side: int = 512, seed: int = 0) -> np.ndarray:
    """The synthetic clip; returns the content's true shift per frame [T, 2] (pan + jitter) in px."""
    face = Image.open(PHOTO).convert("RGB")
    scale = side / max(face.size)
    face = face.resize((round(face.width * scale), round(face.height * scale)))
    rng = np.random.RandomState(seed)
    shifts, images = [], []
    for t in range(frames):
        pan = np.array([1.0 * t, 0.0])
        jitter = rng.normal(0, 2.0, 2)
        dx, dy = pan + jitter
        images.append(np.asarray(face.transform(face.size, Image.AFFINE, (1, 0, dx, 0, 1, dy), Image.BICUBIC)))
        shifts.append((-dx, -dy))  # the content moves against the sampling offset
    write_video(path, images, 25, "zip")
    return np.asarray(shifts)


def crop_jitter(video: Path, shifts: np.ndarray) -> dict[str, float]:
    tracks = find_tracks(FaceAligner(AlignerConfig()), read_frames(video))
    filled, usable = fill_gaps(tracks, 12)
    pan = np.stack([-np.arange(len(shifts)) * 1.0, np.zeros(len(shifts))], 1)  # the smooth path: the pan only
    out = {}
    for name in ("none", "savgol", "one_euro"):
        smoothed = smooth_tracks(filled, usable, VideoConfig(landmark_filter=name), 25)
        centres = crop_centres(smoothed)
        residual = centres - pan
        residual -= residual.mean(0)  # the crop's offset from the content is constant
        out[name] = float(np.sqrt((residual**2).sum(1).mean()))
    return out


def still_video(path: Path, frames: int, side: int = 512, seed: int = 1) -> None:
    face = Image.open(PHOTO).convert("RGB")
    scale = side / max(face.size)
    base = np.asarray(face.resize((round(face.width * scale), round(face.height * scale)))).astype(np.float32)
    rng = np.random.RandomState(seed)
    noisy = [np.clip(base + rng.normal(0, 4.0, base.shape), 0, 255).astype(np.uint8) for _ in range(frames)]
    write_video(path, noisy, 25, "zip")


def flicker(video: Path) -> dict[str, float]:
    inverter_config, g_config = demo_configs(64, tiny=True)
    torch.manual_seed(0)
    inverter, g = Inverter(inverter_config).eval(), Generator(g_config).eval()
    with torch.no_grad():
        inverter.encoder.fc_mu.weight.normal_(0, 0.5)
    g.compute_latent_avg(256)
    inverter.mapping.load_state_dict(g.style.state_dict())
    out = {}
    for name, config in (
        ("unsmoothed", VideoConfig(output="aligned", size=128, landmark_filter="none", latent_smoothing=0.0)),
        ("default", VideoConfig(output="aligned", size=128)),
    ):
        stylizer = VideoStylizer(Stylizer(inverter, g), RenderRequest(), config)
        with tempfile.TemporaryDirectory() as tmp:
            result = Path(tmp) / "out.zip"
            run_video(video, result, "zip", stylizer, FaceAligner(AlignerConfig()), Path(tmp) / "w", VideoLimits())
            frames = np.stack(list(read_frames(result))).astype(np.float32)
        out[name] = float(np.abs(np.diff(frames, axis=0)).mean())
    return out


def speed(video: Path, size: int, frames: int, runs: int, device: str) -> float:
    torch.manual_seed(0)
    inverter = Inverter(InverterConfig()).eval().to(device)
    g = Generator(GeneratorConfig(size=size)).eval().to(device)
    config = VideoConfig(output="full", size=size, batch=4)
    stylizer = VideoStylizer(Stylizer(inverter, g), RenderRequest(), config)
    rates = []
    with tempfile.TemporaryDirectory() as tmp:
        clip = Path(tmp) / "clip.zip"
        write_video(clip, list(read_frames(video))[:frames], 25, "zip")
        for run in range(runs):
            start = time.perf_counter()
            with torch.inference_mode():
                run_video(clip, Path(tmp) / f"out{run}.mp4", "mp4", stylizer, FaceAligner(AlignerConfig()),
                          Path(tmp) / f"w{run}", VideoLimits())  # fmt: skip
            rates.append(frames / (time.perf_counter() - start))
            print(f"  {size} px run {run + 1}: {rates[-1]:.3f} frames/s", flush=True)
    return statistics.median(rates)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=60)
    parser.add_argument("--speed-frames", type=int, default=8)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--sizes", default="256,1024")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--skip-speed", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        video = Path(tmp) / "synthetic.zip"
        shifts = make_video(video, args.frames)
        jitter = crop_jitter(video, shifts)
        print(f"# {args.frames} frames: a 1 px/frame pan plus 2 px jitter")
        print("crop-centre deviation from the pan path (px): " + ", ".join(f"{k} {v:.2f}" for k, v in jitter.items()))
        still = Path(tmp) / "still.zip"
        still_video(still, min(args.frames, 30))
        change = flicker(still)
        print(
            "still clip, mean |frame-to-frame change| of the output (8-bit): "
            + ", ".join(f"{k} {v:.2f}" for k, v in change.items())
        )
        if not args.skip_speed:
            for size in (int(s) for s in args.sizes.split(",")):
                fps = speed(video, size, args.speed_frames, args.runs, args.device)
                print(f"end to end at {size} px on {args.device}: {fps:.3f} frames/s (median of {args.runs})")


if __name__ == "__main__":
    main()

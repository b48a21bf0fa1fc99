"""Does style training learn, and does it stop for the right reason? A functional benchmark on the CPU.

Usage:
    python bench/learning.py [--tint red|green|blue] [--seed N] [--size 32] [--exemplars 100]
                             [--max-steps 2000] [--eval-every 100] [--overfit] [--plot terms.png]
                             [--precision fp32|bf16]

A tiny source generator (the demo architecture, random weights: it draws abstract colour fields) is
the "FFHQ model"; the exemplars are its own samples under a known colour transform (`--tint`: that
channel raised, the others lowered), so how much of the style was learned is measurable: the colour
gap between the published model's renders and the exemplars (per-channel means), as a fraction of the
source's gap (1.0 = unchanged, 0 = matched). Training is the real trainer (`models.training.transfer`) with its
default settings apart from the image size and the schedule flags (and `--precision`: bf16 autocast
for the training passes, to check that it learns the same).

`--overfit` trains on very few exemplars (8: 4 to train on, 4 held out) for long, so that the held-out
score stops improving: early stopping must fire before `max_steps`, and the published step must be the
one with the best held-out score.

Prints the score terms and the EMA generator's colour-gap fraction at each evaluation, then the
published step's terms, and ends with one line: `published gap fraction F, stop REASON at step S of M`.
`--plot` writes the score terms over steps as a PNG (drawn with Pillow).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
from PIL import Image, ImageDraw  # noqa: E402

from models.networks.discriminator import Discriminator  # noqa: E402
from models.networks.stylegan2 import Generator  # noqa: E402
from models.training.exemplars import tensor_exemplars  # noqa: E402
from models.training.transfer_run import train_style  # noqa: E402
from models.weights import checkpoints  # noqa: E402
from service.portrait.configs import DiscriminatorConfig, TransferConfig  # noqa: E402
from workers.launcher.demo import demo_configs  # noqa: E402

TINTS = {"red": 0, "green": 1, "blue": 2}
TERMS = ("style", "overfit", "consistency")
COLOURS = {"score": (0, 0, 0), "style": (200, 40, 40), "overfit": (40, 140, 40), "consistency": (40, 60, 200)}


def tint(images: torch.Tensor, channel: int) -> torch.Tensor:
    """The known style: channel `channel` raised by 0.6, the others lowered by 0.3 (in [-1, 1])."""
    shift = torch.full((1, 3, 1, 1), -0.3)
    shift[0, channel] = 0.6
    return (images + shift).clamp(-1, 1)


@torch.no_grad()
def samples(g: Generator, n: int, seed: int) -> torch.Tensor:
    z = torch.randn(n, g.config.n_latent, g.config.style_dim, generator=torch.Generator().manual_seed(seed))
    w = g.style.map_per_layer(z)
    return torch.cat([g(chunk, space="wplus").clamp(-1, 1) for chunk in w.split(16)])


def colour_gap(images: torch.Tensor, target: torch.Tensor) -> float:
    """Distance between the mean colours (per channel) of two image sets [N, 3, S, S]."""
    return float((images.mean(dim=(0, 2, 3)) - target.mean(dim=(0, 2, 3))).norm())


def plot(curve: list[dict], best_step: int, path: Path) -> None:
    """Score and its terms over steps: one polyline each, a vertical line at the published step."""
    width, height, pad = 720, 360, 50
    steps = [c["step"] for c in curve]
    top = max(max(c["score"] for c in curve), 1e-9)
    image = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(image)
    draw.rectangle([pad, pad // 2, width - pad // 2, height - pad], outline=(120, 120, 120))

    def xy(step: float, value: float) -> tuple[float, float]:
        x = pad + (step - steps[0]) / max(steps[-1] - steps[0], 1) * (width - 1.5 * pad)
        y = height - pad - value / top * (height - 1.5 * pad)
        return x, y

    bx = xy(best_step, 0)[0]
    draw.line([(bx, pad // 2), (bx, height - pad)], fill=(160, 160, 160), width=1)
    for name, colour in COLOURS.items():
        values = [c["score"] if name == "score" else c["terms"][name] for c in curve]
        draw.line([xy(s, v) for s, v in zip(steps, values)], fill=colour, width=2)
    for i, (name, colour) in enumerate(COLOURS.items()):
        draw.text((pad + 10 + i * 130, height - pad + 20), name, fill=colour)
    draw.text((pad, height - pad + 5), f"step {steps[0]}", fill=(0, 0, 0))
    draw.text((width - pad - 40, height - pad + 5), f"{steps[-1]}", fill=(0, 0, 0))
    label_x = bx + 4 if bx < width - 150 else bx - 110
    draw.text((label_x, pad // 2 + 4), f"published: {best_step}", fill=(90, 90, 90))
    draw.text((5, pad // 2), f"{top:.3g}", fill=(0, 0, 0))
    image.save(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tint", choices=sorted(TINTS), default="red")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--exemplars", type=int, default=100)
    parser.add_argument("--max-steps", type=int, default=None, help="default: the recipe's (2000; --overfit 3000)")
    parser.add_argument("--eval-every", type=int, default=None, help="default: the recipe's (100)")
    parser.add_argument("--overfit", action="store_true", help="8 exemplars, a long schedule: must stop early")
    parser.add_argument("--plot", type=Path, help="write the score terms over steps to this PNG")
    parser.add_argument("--precision", choices=("fp32", "bf16"), default="fp32", help="the training passes' precision")
    args = parser.parse_args()

    torch.manual_seed(args.seed)
    torch.set_num_threads(min(2, torch.get_num_threads()))
    _, g_config = demo_configs(args.size, tiny=True)
    source = Generator(g_config).eval()
    source.compute_latent_avg(256, seed=args.seed)
    source_d = Discriminator(DiscriminatorConfig(size=args.size, channel_multiplier=1, channel_max=16))
    n = 8 if args.overfit else args.exemplars
    exemplars = tint(samples(source, n, seed=args.seed + 1), TINTS[args.tint])
    overrides: dict = {"max_steps": args.max_steps or (3000 if args.overfit else TransferConfig().max_steps)}
    if args.eval_every:
        overrides["eval_every"] = args.eval_every
    config = TransferConfig().with_overrides({**overrides, "seed": args.seed, "precision": args.precision})

    probe = samples(source, 64, seed=args.seed + 2)  # fresh latents: the measure is not the training set
    target = tint(probe, TINTS[args.tint])
    source_gap = colour_gap(probe, target)
    print(
        f"# {args.size} px, {n} exemplars tinted {args.tint}, seed {args.seed}; max_steps {config.max_steps}, "
        f"eval_every {config.eval_every}, patience {config.patience}, {config.precision}; "
        f"source colour gap {source_gap:.3f}",
        flush=True,
    )
    print(f"{'step':>6}{'score':>9}{'style':>9}{'overfit':>9}{'consist.':>9}{'kid':>10}{'gap':>7}", flush=True)
    started = time.monotonic()
    gaps: dict[int, float] = {}

    def progress(info: dict) -> None:  # the colour gap of the EMA generator at each evaluation
        if info["model"] is not None:
            gaps[info["step"]] = colour_gap(samples(info["model"], 64, seed=args.seed + 2), target) / source_gap

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "style"
        result = train_style(source, source_d, tensor_exemplars(exemplars), config, out, progress=progress)
        for c in result.curve:
            t = c["terms"]
            gap = f"{gaps[c['step']]:>7.3f}" if c["step"] in gaps else ""
            print(
                f"{c['step']:>6}{c['score']:>9.4f}{t['style']:>9.4f}{t['overfit']:>9.4f}{t['consistency']:>9.4f}"
                f"{c['kid']:>10.2e}{gap}",
                flush=True,
            )
        published = checkpoints.load(out, expected=Generator)
        gap_fraction = colour_gap(samples(published, 64, seed=args.seed + 2), target) / source_gap
        best = next(c for c in result.curve if c["step"] == result.best_step)
        terms = ", ".join(f"{k} {v:.4f}" for k, v in best["terms"].items())
        took = time.monotonic() - started
        print(f"published step {result.best_step}: score {best['score']:.4f} ({terms}); {took:.0f} s")
        warm_up = min(config.min_steps, config.max_steps)  # earlier evaluations are never published
        eligible = [c for c in result.curve if c["step"] >= warm_up] or result.curve[-1:]
        lowest = min(eligible, key=lambda c: c["score"])
        print(
            f"lowest held-out score after the {warm_up}-step warm-up: step {lowest['step']} ({lowest['score']:.4f}, "
            f"noise {lowest['score_noise']:.4f}); published step {result.best_step} ({best['score']:.4f}): "
            "no later evaluation beat it by more than its noise"
        )
        if args.plot:
            plot(result.curve, result.best_step, args.plot)
            print(f"plot: {args.plot}")
        print(
            f"published gap fraction {gap_fraction:.3f}, stop {result.stop_reason} at step {result.steps} "
            f"of {config.max_steps}"
        )


if __name__ == "__main__":
    main()

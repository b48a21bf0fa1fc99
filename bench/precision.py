"""bf16 autocast against fp32 in style training: the same run twice, in one process.

Usage:
    python bench/precision.py [--device cpu|cuda] [--size 32] [--steps 600] [--eval-every 100]
                              [--seed 0] [--tint red]

The run is bench/learning.py's (a tiny source generator, 100 exemplars made from its samples by a
known colour tint; `--size` 256 or more on a GPU for a speed figure that means something), through the
real trainer with `TransferConfig(precision=...)`, `--steps` steps each, with no warm-up and a
patience that never fires so both runs cover the same steps. Both start from the same weights and the
same seed: every random draw is the same, so the curves differ only by arithmetic.

Prints, per evaluation, each run's score and the mean D and G losses since the previous one; then
per run the final score, the published model's colour-gap fraction (1.0 = unchanged, 0 = matched) and
the median seconds per step; and the relative L2 distance between the two runs' final generator
weights. It ends with one line: `bf16 vs fp32: final score A vs B, gap fraction C vs D, step E s vs F s`.
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
sys.path.insert(0, str(ROOT / "bench"))

import torch  # noqa: E402
from learning import TINTS, colour_gap, samples, tint  # noqa: E402

from models.networks.discriminator import Discriminator  # noqa: E402
from models.networks.stylegan2 import Generator  # noqa: E402
from models.training.exemplars import tensor_exemplars  # noqa: E402
from models.training.transfer import Trainer  # noqa: E402
from service.portrait.configs import DiscriminatorConfig, TransferConfig  # noqa: E402
from workers.launcher.demo import demo_configs  # noqa: E402


def train(precision: str, source, source_d, exemplars, args) -> dict:
    """One run of `args.steps` steps; its curve, step times and final EMA generator."""
    config = TransferConfig.from_dict(
        {
            **TransferConfig().to_dict(),
            "precision": precision,
            "max_steps": args.steps,
            "eval_every": args.eval_every,
            "min_steps": 0,
            "patience": 10**6,
            "seed": args.seed,
        }
    )
    with tempfile.TemporaryDirectory() as tmp:
        trainer = Trainer(source, source_d, exemplars, config, Path(tmp), device=args.device)
        curve, times, losses = [], [], {"d": [], "g": []}
        while trainer.step < args.steps:
            if args.device == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
            step_losses = trainer.train_step()
            if args.device == "cuda":
                torch.cuda.synchronize()
            times.append(time.perf_counter() - start)
            for name in losses:
                losses[name].append(step_losses[name])
            if trainer.step % args.eval_every == 0:
                evaluated = trainer.evaluate()
                curve.append(
                    {
                        "step": trainer.step,
                        "score": evaluated["score"],
                        **{name: statistics.fmean(values) for name, values in losses.items()},
                    }
                )
                losses = {"d": [], "g": []}
        return {"curve": curve, "step_s": statistics.median(times[1:]), "g_ema": trainer.g_ema.cpu()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--eval-every", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--tint", choices=sorted(TINTS), default="red")
    args = parser.parse_args()

    torch.manual_seed(args.seed)
    if args.device == "cpu":
        torch.set_num_threads(min(2, torch.get_num_threads()))
    _, g_config = demo_configs(args.size, tiny=True)
    source = Generator(g_config).eval()
    source.compute_latent_avg(256, seed=args.seed)
    source_d = Discriminator(DiscriminatorConfig(size=args.size, channel_multiplier=1, channel_max=16))
    exemplars = tensor_exemplars(tint(samples(source, 100, seed=args.seed + 1), TINTS[args.tint]))
    probe = samples(source, 64, seed=args.seed + 2)
    target = tint(probe, TINTS[args.tint])
    source_gap = colour_gap(probe, target)
    print(f"# {args.size} px on {args.device}, {args.steps} steps, seed {args.seed}", flush=True)

    runs = {p: train(p, source, source_d, exemplars, args) for p in ("fp32", "bf16")}
    print(f"{'step':>6}" + "".join(f"{p + ' ' + k:>12}" for p in runs for k in ("score", "d", "g")))
    for rows in zip(*(r["curve"] for r in runs.values())):
        print(f"{rows[0]['step']:>6}" + "".join(f"{c[k]:>12.4f}" for c in rows for k in ("score", "d", "g")))
    gaps = {p: colour_gap(samples(r["g_ema"], 64, seed=args.seed + 2), target) / source_gap for p, r in runs.items()}
    for p, r in runs.items():
        print(f"{p}: final score {r['curve'][-1]['score']:.4f}, gap fraction {gaps[p]:.3f}, {r['step_s']:.3f} s/step")
    a = torch.cat([t.flatten() for t in runs["fp32"]["g_ema"].state_dict().values() if t.is_floating_point()])
    b = torch.cat([t.flatten() for t in runs["bf16"]["g_ema"].state_dict().values() if t.is_floating_point()])
    print(f"final generator weights: relative L2 distance bf16 vs fp32 {float((a - b).norm() / a.norm()):.2e}")
    f32, b16 = runs["fp32"], runs["bf16"]
    print(
        f"bf16 vs fp32: final score {b16['curve'][-1]['score']:.4f} vs {f32['curve'][-1]['score']:.4f}, "
        f"gap fraction {gaps['bf16']:.3f} vs {gaps['fp32']:.3f}, step {b16['step_s']:.3f} s vs {f32['step_s']:.3f} s"
    )


if __name__ == "__main__":
    main()

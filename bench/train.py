"""Style-training speed: steps per second and peak memory at 256 and 1024, and the projected time of
the default schedule.

Usage:
    python bench/train.py [--device cpu|cuda] [--steps 4] [--sizes 256,1024]

Random-weight config-f generator and discriminator (speed does not depend on the values), the default
`TransferConfig` (batch 4, lazy R1 every 16 steps, path length every 4, FreezeD 5, perceptual term in
source-D feature space), random exemplars. Each size runs in its own subprocess so peak memory is its
own (peak RSS growth on the CPU, torch.cuda.max_memory_allocated on CUDA). Steps/s is measured over
`--steps` steps after 2 warm-up steps and includes the periodic regularisers in proportion; "projected"
is the default schedule's `max_steps` at that rate (early stopping usually ends sooner).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _rss_mib() -> float:
    import os

    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def run(size: int, device: str, steps: int) -> dict:
    import torch

    from models.configs import DiscriminatorConfig, GeneratorConfig, TransferConfig
    from models.discriminator import Discriminator
    from models.exemplars import tensor_exemplars
    from models.stylegan2 import Generator
    from models.transfer import Trainer

    torch.manual_seed(0)
    g = Generator(GeneratorConfig(size=size)).eval()
    d = Discriminator(DiscriminatorConfig(size=size))
    exemplars = tensor_exemplars(torch.rand(24, 3, size, size) * 2 - 1)
    config = TransferConfig(eval_samples=16)
    with tempfile.TemporaryDirectory() as tmp:
        trainer = Trainer(g, d, exemplars, config, Path(tmp), device=device)
        base = _rss_mib()
        if device == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        for _ in range(2):
            trainer.train_step()
        if device == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        for _ in range(steps):
            trainer.train_step()
        if device == "cuda":
            torch.cuda.synchronize()
        seconds = (time.perf_counter() - start) / steps
        eval_start = time.perf_counter()
        trainer.evaluate()
        eval_s = time.perf_counter() - eval_start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 - base
    if device == "cuda":
        peak = torch.cuda.max_memory_allocated() / 2**20
    projected = config.max_steps * seconds + (config.max_steps / config.eval_every) * eval_s
    return {
        "size": size,
        "s_per_step": seconds,
        "steps_per_s": 1 / seconds,
        "eval_s": eval_s,
        "peak_mib": peak,
        "projected_min": projected / 60,
        "max_steps": config.max_steps,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--sizes", default="256,1024")
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(run(args.one, args.device, args.steps)))
        return
    import torch

    print(
        f"# torch {torch.__version__}, {args.device}, {torch.get_num_threads()} threads, batch 4, "
        f"{args.steps} timed steps after 2 warm-up steps"
    )
    print(f"{'size':>6}{'s/step':>9}{'steps/s':>9}{'eval s':>8}{'peak MiB':>10}{'projected min':>15}")
    for size in (int(s) for s in args.sizes.split(",")):
        out = subprocess.run(
            [sys.executable, __file__, "--one", str(size), "--device", args.device, "--steps", str(args.steps)],
            capture_output=True,
            text=True,
        )
        if out.returncode != 0:
            print(f"{size:>6}  failed: {out.stderr.strip().splitlines()[-1]}")
            continue
        r = json.loads(out.stdout.strip().splitlines()[-1])
        print(
            f"{size:>6}{r['s_per_step']:>9.2f}{r['steps_per_s']:>9.3f}{r['eval_s']:>8.1f}{r['peak_mib']:>10.0f}"
            f"{r['projected_min']:>15.0f}  (default max_steps {r['max_steps']})"
        )


if __name__ == "__main__":
    main()

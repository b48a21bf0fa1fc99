"""Style-training speed: seconds per step, peak memory and the projected time of the default schedule.

Usage:
    python bench/train.py [--device cpu|cuda] [--sizes 256,1024] [--micro-batch 0] [--repeats 3]
                          [--mem-cap-gb N] [--gradients gradfix,native] [--ada-p 0.3] [--precision fp32]
                          [--fold-blur off]

Random-weight config-f generator and discriminator (speed does not depend on the values), the default
`TransferConfig` (batch 4, lazy R1 every 16 steps, path length every 4, FreezeD 5, perceptual term in
source-D feature space, 64 evaluation samples), random exemplars. Each size runs in its own subprocess
so peak memory is its own: peak RSS growth over the process after the networks are built on the CPU,
`torch.cuda.max_memory_allocated` on CUDA.

A schedule has three kinds of step: plain, with the path-length term (every `pl_every` steps) and with
both R1 and path length (every `r1_every` steps, a multiple of `pl_every`). Each kind is timed
`--repeats` times after one warm-up step (the median is reported), so the average step of the default
schedule is their mix, `plain·(1 − 1/pl_every) + pl·(1/pl_every − 1/r1_every) + both·(1/r1_every)`,
without timing hundreds of steps. "projected" is `max_steps` average steps plus one evaluation every
`eval_every` steps; "ready" is the time to a ready style: the same up to the step where early stopping
typically ends a run, `--ready-steps` (default 1000: where bench/learning.py's default mode stopped in 2
of 3 seeds, README "Does it learn"). `--micro-batch N` runs the generator N
samples at a time (the same update; see `Trainer.train_step`). `--mem-cap-gb` caps the subprocess's
address space on the CPU so that a size that does not fit fails with an allocation error instead of
waking the kernel's OOM killer. Each kind's times and the peak so far are printed to stderr as they
are measured (shown when a size fails part-way).

`--ada-p` fixes the augmentation probability of the timed steps (ADA starts at 0 and a 100-exemplar run
settles around 0.2–0.4, so 0 times a step without augmentation); a comma-separated list runs each, so
`--ada-p 0,0.3` shows what the augmentation pipeline costs per step. `--precision` takes the training
precisions to compare (fp32, the default; bf16; `auto`: bf16 on CUDA). `--fold-blur on`
runs the discriminator with its downsampling blurs folded into its convolutions (`AGILEGAN_FOLD_BLUR=on`
for a training worker). Every combination of sizes, gradients, probabilities, precisions and folds runs
in this one script.
"""

from __future__ import annotations

import argparse
import itertools
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def run(
    size: int,
    device: str,
    repeats: int,
    micro_batch: int | None,
    gradients: str = "gradfix",
    ready_steps: int = 1000,
    ada_p: float = 0.3,
    precision: str = "fp32",
    fold_blur: bool = False,
) -> dict:
    import contextlib

    import torch

    from models.inference.speed_choices import set_flag
    from models.networks import gradfix
    from models.networks.discriminator import Discriminator
    from models.networks.stylegan2 import Generator
    from models.training.exemplars import tensor_exemplars
    from models.training.transfer import Trainer
    from service.portrait.configs import DiscriminatorConfig, GeneratorConfig, TransferConfig

    torch.manual_seed(0)
    g = Generator(GeneratorConfig(size=size)).eval()
    d = Discriminator(DiscriminatorConfig(size=size))
    set_flag(d, "fold_blur", fold_blur)
    exemplars = tensor_exemplars(torch.rand(24, 3, size, size) * 2 - 1)
    # ADA held at `ada_p`: no update lands among the timed steps
    config = TransferConfig(precision=precision, ada_p_init=ada_p, ada_every=10**9)
    if config.r1_every % config.pl_every:
        raise SystemExit("the step mix assumes r1_every is a multiple of pl_every")
    kinds = {"plain": 1, "pl": config.pl_every, "both": config.r1_every}  # a step index of each kind

    def sync() -> None:
        if device == "cuda":
            torch.cuda.synchronize()

    native = gradfix.native_gradients() if gradients == "native" else contextlib.nullcontext()
    with tempfile.TemporaryDirectory() as tmp, native:
        trainer = Trainer(g, d, exemplars, config, Path(tmp), device=device, micro_batch=micro_batch)
        base = _peak_mib()
        if device == "cuda":
            torch.cuda.reset_peak_memory_stats()
        trainer.step = kinds["plain"]
        trainer.train_step()  # warm-up
        seconds: dict[str, float] = {}
        for kind, step in kinds.items():
            times = []
            for _ in range(repeats):
                trainer.step = step
                sync()
                start = time.perf_counter()
                trainer.train_step()
                sync()
                times.append(time.perf_counter() - start)
            seconds[kind] = statistics.median(times)
            _note(f"{size} px {kind} step: {', '.join(f'{t:.2f}' for t in times)} s; peak RSS {_peak_mib():.0f} MiB")
        sync()
        start = time.perf_counter()
        trainer.evaluate()
        sync()
        eval_s = time.perf_counter() - start
        _note(f"{size} px evaluation: {eval_s:.1f} s; peak RSS {_peak_mib():.0f} MiB")
    peak = _peak_mib() - base
    if device == "cuda":
        peak = torch.cuda.max_memory_allocated() / 2**20
    mix = {
        "plain": 1 - 1 / config.pl_every,
        "pl": 1 / config.pl_every - 1 / config.r1_every,
        "both": 1 / config.r1_every,
    }
    step_s = sum(mix[k] * seconds[k] for k in kinds)
    projected = config.max_steps * step_s + (config.max_steps // config.eval_every) * eval_s
    ready = ready_steps * step_s + (ready_steps // config.eval_every) * eval_s
    return {
        "size": size,
        "gradients": gradients,
        "ada_p": ada_p,
        "precision": trainer.precision,
        "fold_blur": fold_blur,
        "micro_batch": micro_batch or config.batch_size,
        "seconds": seconds,
        "step_s": step_s,
        "eval_s": eval_s,
        "peak_mib": peak,
        "projected_min": projected / 60,
        "ready_min": ready / 60,
        "ready_steps": ready_steps,
        "max_steps": config.max_steps,
    }


def _peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _note(line: str) -> None:
    """Progress on stderr: shown by the parent when a size fails part-way."""
    print(f"# {line}", file=sys.stderr, flush=True)


def _cap_memory(gb: float | None):  # noqa: ANN202 - a preexec_fn
    if not gb:
        return None
    limit = int(gb * 2**30)
    return lambda: resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument("--sizes", default="256,1024")
    parser.add_argument("--micro-batch", type=int, default=0, help="generator samples per pass (0: whole batch)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--mem-cap-gb", type=float, help="address-space cap of each size's process (CPU)")
    parser.add_argument(
        "--gradients",
        default="gradfix",
        help="comma-separated: gradfix (models/networks/gradfix.py), native (PyTorch's own convolution "
        "gradients, as before issue 25); both run by this one script",
    )
    parser.add_argument("--ready-steps", type=int, default=1000, help="where early stopping typically ends a run")
    parser.add_argument("--ada-p", default="0.3", help="comma-separated augmentation probabilities of the timed steps")
    parser.add_argument("--precision", default="fp32", help="comma-separated: fp32 (the default), bf16, auto")
    parser.add_argument("--fold-blur", default="off", help="comma-separated: off, on (D's blurs folded)")
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        micro = args.micro_batch or None
        result = run(
            args.one,
            args.device,
            args.repeats,
            micro,
            args.gradients,
            args.ready_steps,
            ada_p=float(args.ada_p),
            precision=args.precision,
            fold_blur=args.fold_blur == "on",
        )
        print(json.dumps(result))
        return
    import torch

    print(
        f"# torch {torch.__version__}, {args.device}, {torch.get_num_threads()} threads, batch 4, "
        f"micro-batch {args.micro_batch or 'whole'}, median of {args.repeats} per kind of step"
    )
    print(
        f"{'size':>6}{'gradients':>10}{'ada p':>6}{'prec':>6}{'fold':>5}"
        f"{'plain s':>9}{'pl s':>8}{'R1+pl s':>9}{'avg s':>8}{'steps/s':>9}{'eval s':>8}"
        f"{'peak MiB':>10}{'projected min':>15}{'ready min':>11}"
    )
    runs = itertools.product(
        [int(size) for size in args.sizes.split(",")],
        args.gradients.split(","),
        args.ada_p.split(","),
        args.precision.split(","),
        args.fold_blur.split(","),
    )
    for size, grads, ada_p, precision, fold in runs:
        command = [sys.executable, __file__, "--one", str(size), "--device", args.device, "--gradients", grads]
        command += ["--repeats", str(args.repeats), "--micro-batch", str(args.micro_batch)]
        command += ["--ada-p", ada_p, "--precision", precision, "--fold-blur", fold]
        command += ["--ready-steps", str(args.ready_steps)]
        out = subprocess.run(command, capture_output=True, text=True, preexec_fn=_cap_memory(args.mem_cap_gb))
        if out.returncode != 0:
            lines = out.stderr.strip().splitlines() or [f"exit status {out.returncode}"]
            print("\n".join(line for line in lines if line.startswith("# ")))
            print(f"{size:>6}{grads:>10}{ada_p:>6}{precision:>6}{fold:>5}  failed: {lines[-1]}")
            continue
        r = json.loads(out.stdout.strip().splitlines()[-1])
        s = r["seconds"]
        print(
            f"{size:>6}{grads:>10}{r['ada_p']:>6}{r['precision']:>6}{fold:>5}{s['plain']:>9.2f}{s['pl']:>8.2f}{s['both']:>9.2f}{r['step_s']:>8.2f}"
            f"{1 / r['step_s']:>9.3f}"
            f"{r['eval_s']:>8.1f}{r['peak_mib']:>10.0f}{r['projected_min']:>15.1f}{r['ready_min']:>11.1f}"
            f"  (max_steps {r['max_steps']}, ready at {r['ready_steps']})"
        )


if __name__ == "__main__":
    main()

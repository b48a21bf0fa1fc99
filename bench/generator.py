"""Inference speed and peak memory of the generator (256, 1024) and the HVAE encoder (256 input).

Usage:
    python bench/generator.py [--device cpu|cuda] [--runs 3] [--threads 2] [--quick] [--tf32]
                              [--compile-mode reduce-overhead] [--cache-dir DIR] [--batches 1,32]

Each row runs in its own subprocess so that peak memory is that row's alone: peak RSS growth over
the process's footprint after the model is built (CPU), or torch.cuda.max_memory_allocated (CUDA).
Times are the median of --runs timed forward passes after one warm-up, in ms per image. Weights are
random (speed does not depend on their values); latents are w+, as in the stylize pipeline. For bf16
rows, "bf16 drift" is the relative L2 distance of the bf16-autocast output (the encoder: its w+) from
the fp32 output on the same input: with random weights it bounds the numeric effect, not image quality.
On CUDA, "vs CPU" is the relative L2 of each row's output from the same network in fp32 on the CPU (the
device's parity); fp32 rows run without TF32 (`configure_fp32`) unless `--tf32`.

The "no-opt" row renders the 1024 generator with this project's speed choices switched off
(contiguous NCHW features, out-of-place noise/activation, whole-batch activation modulation on the CPU):
the comparison runs both sides in one script.

With `--device cuda` the rows are those of issue 26: the 1024 generator and the encoder at batch 1, 8,
32 and 64 in bf16 and fp32, eager; the same networks through the worker's compiled programs
(`models/inference/compiled.py`, `--compile-mode`, CUDA graphs by default) at batch 1 and 32 in bf16;
and the whole encode + render ("stylize") at batch 32. "launches" is the kernels one forward launches
(the profiler's CUDA kernels; on the CPU the aten calls that do work, `models/inference/launches.py`).
A compiled row's "warm s" is its compile time; `--cache-dir` keeps inductor's cache there (as the worker
keeps it in its data folder), so a second run shows the warm start of a restarted worker.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

CUDA_ROWS = [
    *[("generator", 1024, b, d, "eager") for d in ("bf16", "fp32") for b in (1, 8, 32, 64)],
    *[("encoder", 256, b, d, "eager") for d in ("bf16", "fp32") for b in (1, 8, 32, 64)],
    *[(m, s, b, "bf16", "compiled") for m, s in (("generator", 1024), ("encoder", 256)) for b in (1, 32)],
    ("stylize", 1024, 32, "bf16", "eager"),
    ("stylize", 1024, 32, "bf16", "compiled"),
]
ROWS = [
    *[("generator", size, b, d, "eager") for size in (256, 1024) for d in ("fp32", "bf16") for b in (1, 4)],
    ("generator-no-opt", 1024, 1, "fp32", "eager"),
    *[("encoder", 256, b, d, "eager") for d in ("fp32", "bf16") for b in (1, 4)],
]


def _rss_mib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _build(model: str, size: int, device: str):
    import torch

    from models.networks.encoder import Inverter
    from models.networks.stylegan2 import Generator
    from service.portrait.configs import GeneratorConfig, InverterConfig

    if model == "encoder":
        with torch.device("meta"):
            net = Inverter(InverterConfig())
        net = net.to_empty(device=device)
        with torch.no_grad():
            for p in net.parameters():
                p.normal_(0, 0.02)
            for m in net.modules():
                if isinstance(m, torch.nn.BatchNorm2d):
                    m.running_mean.zero_()
                    m.running_var.fill_(1.0)
        return net.eval()
    torch.manual_seed(0)
    net = Generator(GeneratorConfig(size=size)).to(device).eval()
    if model == "generator-no-opt":
        net.channels_last = False
        net.per_sample_on_cpu = False
        for m in net.modules():
            if hasattr(m, "inplace"):
                m.inplace = False
    return net


def run_row(
    model: str,
    size: int,
    batch: int,
    dtype: str,
    device: str,
    runs: int,
    threads: int,
    tf32: bool = False,
    mode: str = "eager",
    compile_mode: str = "reduce-overhead",
) -> dict:
    import torch

    from models.inference.compiled import CompileConfig, Programs
    from models.inference.launches import count_launches
    from models.inference.stylizer import configure_fp32

    torch.set_num_threads(threads)
    configure_fp32(dtype, torch.device(device), allow_tf32=tf32)  # fp32 rows on CUDA: no TF32 unless --tf32
    encoder = _build("encoder", 256, device) if model in ("encoder", "stylize") else None
    generator = _build(model, size, device) if model != "encoder" else None
    if encoder is not None:
        x = torch.rand(batch, 3, 256, 256, device=device) * 2 - 1
    else:
        x = torch.randn(batch, generator.n_latent, 512, device=device)
    autocast = torch.autocast(device_type=device, dtype=torch.bfloat16, enabled=dtype == "bf16")
    warm_s = 0.0
    if mode == "compiled":  # the worker's programs: warmed once, then every call replays them
        programs = Programs(CompileConfig(compile_mode, (batch,)))
        started = time.perf_counter()
        if encoder is not None:
            programs.warm_encoder(encoder, dtype)
        if generator is not None:
            programs.warm_generator(generator, dtype)
        warm_s = time.perf_counter() - started

    def forward():
        if mode == "compiled":
            w = programs.encode(encoder, x, dtype) if encoder is not None else x
            out = programs.synthesize(generator, w, dtype) if generator is not None else w
            if out is None:
                raise RuntimeError("a warmed program ran eager")
            return out
        with autocast:
            w = encoder(x).wplus if encoder is not None else x
            return generator(w, space="wplus") if generator is not None else w

    base_rss = _rss_mib()
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
        base_cuda = torch.cuda.memory_allocated()
    times = []
    with torch.inference_mode():
        for i in range(runs + 1):
            if device == "cuda":
                torch.cuda.synchronize()
            t = time.perf_counter()
            forward()
            if device == "cuda":
                torch.cuda.synchronize()
            if i:
                times.append(time.perf_counter() - t)
        launches = count_launches(forward, device)
    peak_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    drift = None
    if dtype == "bf16" and model != "generator-no-opt":  # output drift of bf16 autocast vs fp32
        with torch.inference_mode():
            low = forward()
            w = encoder(x).wplus if encoder is not None else x
            high = generator(w, space="wplus") if generator is not None else w
        drift = float((low.float() - high).norm() / high.norm())
    ms = statistics.median(times) * 1000 / batch
    result = {
        "rel_l2_vs_cpu": _cpu_drift(encoder, generator, x, forward) if device != "cpu" else None,
        "model": model,
        "size": size,
        "batch": batch,
        "dtype": dtype,
        "mode": mode,
        "device": device,
        "ms_per_image": ms,
        "images_per_s": 1000 / ms,
        "runs_ms": [round(t * 1000, 1) for t in times],
        "peak_mib": peak_rss - base_rss,
        "rel_l2_vs_fp32": drift,
        "launches": launches,
        "warm_s": warm_s,
    }
    if device == "cuda":
        result["peak_mib"] = (torch.cuda.max_memory_allocated() - base_cuda) / 2**20
    return result


def _cpu_drift(encoder, generator, x, forward) -> float:  # noqa: ANN001 - networks and the row's call
    """Relative L2 of this device's output (the row's precision and mode) from the same networks' fp32
    output on the CPU: the parity of a device, which TF32 alone moves to ~1e-3. Over the batch's first
    two samples (each sample's output is its own), so that a batch-64 row costs the CPU two renders."""
    import copy

    import torch

    with torch.inference_mode():
        out = forward()[:2]
        w = x[:2].cpu()
        if encoder is not None:
            w = copy.deepcopy(encoder).to("cpu").float()(w).wplus
        ref = copy.deepcopy(generator).to("cpu").float()(w, space="wplus") if generator is not None else w
    return float((out.float().cpu() - ref).norm() / ref.norm())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="batch-1 rows only")
    parser.add_argument("--tf32", action="store_true", help="CUDA fp32 rows: allow TF32 (PyTorch's default)")
    parser.add_argument("--compile-mode", default="reduce-overhead", help="the compiled rows' torch.compile mode")
    parser.add_argument("--cache-dir", help="inductor's cache folder (default: a fresh one per run)")
    parser.add_argument("--batches", help="only the rows of these batch sizes, comma-separated")
    parser.add_argument("--row", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.row:
        model, size, batch, dtype, mode = args.row.split(",")
        row = run_row(
            model,
            int(size),
            int(batch),
            dtype,
            args.device,
            args.runs,
            args.threads,
            args.tf32,
            mode,
            args.compile_mode,
        )
        print(json.dumps(row))
        return
    import tempfile

    import torch

    table = CUDA_ROWS if args.device == "cuda" else ROWS
    batches = {int(b) for b in args.batches.split(",")} if args.batches else None
    rows = [r for r in table if (not args.quick or r[2] == 1) and (batches is None or r[2] in batches)]
    cache = Path(args.cache_dir or tempfile.mkdtemp(prefix="agilegan-inductor-"))
    env = {**os.environ, "TORCHINDUCTOR_CACHE_DIR": str(cache)}  # shared by the rows, as by a worker's restarts
    print(f"# torch {torch.__version__}, device {args.device}, threads {args.threads}, median of {args.runs} runs")
    header = (
        f"{'model':<18}{'size':>6}{'batch':>7}{'dtype':>7}{'mode':>10}{'ms/image':>10}{'images/s':>10}"
        f"{'launches':>10}{'peak MiB':>10}{'bf16 drift':>12}{'vs CPU':>10}{'warm s':>8}  runs (ms)"
    )
    print(header)
    print("-" * len(header))
    for model, size, batch, dtype, mode in rows:
        cmd = [sys.executable, __file__, "--row", f"{model},{size},{batch},{dtype},{mode}", "--device", args.device]
        cmd += ["--runs", str(args.runs), "--threads", str(args.threads), "--compile-mode", args.compile_mode]
        cmd += ["--tf32"] if args.tf32 else []
        out = subprocess.run(cmd, capture_output=True, text=True, env=env)
        label = f"{model:<18}{size:>6}{batch:>7}{dtype:>7}{mode:>10}"
        if out.returncode != 0:
            print(f"{label}  failed: {(out.stderr.strip().splitlines() or ['?'])[-1]}", flush=True)
            continue
        r = json.loads(out.stdout.strip().splitlines()[-1])
        drift = f"{r['rel_l2_vs_fp32']:.1e}" if r["rel_l2_vs_fp32"] is not None else "-"
        vs_cpu = f"{r['rel_l2_vs_cpu']:.1e}" if r["rel_l2_vs_cpu"] is not None else "-"
        ms = r["ms_per_image"]
        print(
            f"{label}{ms:>10.{1 if ms < 100 else 0}f}{r['images_per_s']:>10.1f}{r['launches']:>10}"
            f"{r['peak_mib']:>10.0f}"
            f"{drift:>12}{vs_cpu:>10}{r['warm_s']:>8.1f}  {r['runs_ms']}",
            flush=True,
        )


if __name__ == "__main__":
    main()

"""Inference speed and peak memory of the generator (256, 1024) and the HVAE encoder (256 input).

Usage:
    python bench/generator.py [--device cpu|cuda] [--runs 3] [--threads 2] [--quick] [--tf32]

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

ROWS = [
    ("generator", 256, 1, "fp32"),
    ("generator", 256, 4, "fp32"),
    ("generator", 256, 1, "bf16"),
    ("generator", 256, 4, "bf16"),
    ("generator", 1024, 1, "fp32"),
    ("generator", 1024, 4, "fp32"),
    ("generator", 1024, 1, "bf16"),
    ("generator", 1024, 4, "bf16"),
    ("generator-no-opt", 1024, 1, "fp32"),
    ("encoder", 256, 1, "fp32"),
    ("encoder", 256, 4, "fp32"),
    ("encoder", 256, 1, "bf16"),
    ("encoder", 256, 4, "bf16"),
]


def _rss_mib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _build(model: str, size: int, device: str):
    import torch

    from models.networks.encoder import Inverter
    from models.networks.stylegan2 import Generator
    from service.core.configs import GeneratorConfig, InverterConfig

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
    model: str, size: int, batch: int, dtype: str, device: str, runs: int, threads: int, tf32: bool = False
) -> dict:
    import torch

    from models.inference.stylizer import configure_fp32

    torch.set_num_threads(threads)
    configure_fp32(dtype, torch.device(device), allow_tf32=tf32)  # fp32 rows on CUDA: no TF32 unless --tf32
    net = _build(model, size, device)
    if model == "encoder":
        x = torch.rand(batch, 3, 256, 256, device=device) * 2 - 1
    else:
        x = torch.randn(batch, net.n_latent, 512, device=device)

    def forward() -> None:
        if model == "encoder":
            net(x)
        else:
            net(x, space="wplus")

    autocast = torch.autocast(device_type=device, dtype=torch.bfloat16, enabled=dtype == "bf16")
    base_rss = _rss_mib()
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
        base_cuda = torch.cuda.memory_allocated()
    times = []
    with torch.inference_mode(), autocast:
        for i in range(runs + 1):
            if device == "cuda":
                torch.cuda.synchronize()
            t = time.perf_counter()
            forward()
            if device == "cuda":
                torch.cuda.synchronize()
            if i:
                times.append(time.perf_counter() - t)
    peak_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    drift = None
    if dtype == "bf16" and model != "generator-no-opt":  # output drift of bf16 autocast vs fp32
        with torch.inference_mode():
            with autocast:
                low = net(x) if model == "encoder" else net(x, space="wplus")
            high = net(x) if model == "encoder" else net(x, space="wplus")
        low, high = (low.wplus, high.wplus) if model == "encoder" else (low, high)
        drift = float((low.float() - high).norm() / high.norm())
    result = {
        "rel_l2_vs_cpu": _cpu_drift(net, x, model, autocast) if device != "cpu" else None,
        "model": model,
        "size": size,
        "batch": batch,
        "dtype": dtype,
        "device": device,
        "ms_per_image": statistics.median(times) * 1000 / batch,
        "runs_ms": [round(t * 1000, 1) for t in times],
        "peak_mib": peak_rss - base_rss,
        "rel_l2_vs_fp32": drift,
    }
    if device == "cuda":
        result["peak_mib"] = (torch.cuda.max_memory_allocated() - base_cuda) / 2**20
    return result


def _cpu_drift(net, x, model: str, autocast) -> float:
    """Relative L2 of this device's output (the row's precision) from the same network's fp32 output on
    the CPU: the parity of a device, which TF32 alone moves to ~1e-3."""
    import copy

    import torch

    with torch.inference_mode():
        with autocast:
            out = net(x) if model == "encoder" else net(x, space="wplus")
        cpu_net = copy.deepcopy(net).to("cpu").float()
        ref = cpu_net(x.cpu()) if model == "encoder" else cpu_net(x.cpu(), space="wplus")
    out, ref = (out.wplus, ref.wplus) if model == "encoder" else (out, ref)
    return float((out.float().cpu() - ref).norm() / ref.norm())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="batch-1 rows only")
    parser.add_argument("--tf32", action="store_true", help="CUDA fp32 rows: allow TF32 (PyTorch's default)")
    parser.add_argument("--row", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.row:
        model, size, batch, dtype = args.row.split(",")
        row = run_row(model, int(size), int(batch), dtype, args.device, args.runs, args.threads, args.tf32)
        print(json.dumps(row))
        return
    import torch

    rows = [r for r in ROWS if not args.quick or r[2] == 1]
    print(f"# torch {torch.__version__}, device {args.device}, threads {args.threads}, median of {args.runs} runs")
    header = (
        f"{'model':<18}{'size':>6}{'batch':>7}{'dtype':>7}{'ms/image':>11}{'peak MiB':>11}{'bf16 drift':>12}"
        f"{'vs CPU':>10}  runs (ms)"
    )
    print(header)
    print("-" * len(header))
    for model, size, batch, dtype in rows:
        cmd = [
            sys.executable,
            __file__,
            "--row",
            f"{model},{size},{batch},{dtype}",
            "--device",
            args.device,
            "--runs",
            str(args.runs),
            "--threads",
            str(args.threads),
            *(["--tf32"] if args.tf32 else []),
        ]
        out = subprocess.run(cmd, capture_output=True, text=True)
        if out.returncode != 0:
            print(f"{model:<18}{size:>6}{batch:>7}{dtype:>7}  failed: {out.stderr.strip().splitlines()[-1]}")
            continue
        r = json.loads(out.stdout.strip().splitlines()[-1])
        drift = f"{r['rel_l2_vs_fp32']:.1e}" if r["rel_l2_vs_fp32"] is not None else "-"
        vs_cpu = f"{r['rel_l2_vs_cpu']:.1e}" if r["rel_l2_vs_cpu"] is not None else "-"
        print(
            f"{model:<18}{size:>6}{batch:>7}{dtype:>7}{r['ms_per_image']:>11.0f}{r['peak_mib']:>11.0f}{drift:>12}"
            f"{vs_cpu:>10}  {r['runs_ms']}"
        )


if __name__ == "__main__":
    main()

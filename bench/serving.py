"""Serving throughput, latency, compiled networks and bf16 drift (dynamic batching, issue 16).

Usage:
    python bench/serving.py [--limits 1,4,16] [--levels 1,8,32] [--jobs 24] [--repeats 3] [--size 256]
                            [--networks demo|real] [--device cpu|cuda] [--compile off[,default,…]] [--precision auto]
                            [--stages 1,8] [--drift-size 1024] [--skip queue,stages,drift]

Three tables, each with both sides of every comparison run by this one script:

1. queue: for each compile mode and batch limit (AGILEGAN_MAX_BATCH), its own API and one stylize worker
   (bench/service.py's stack, one Redis) on a random-weight registry at `--size` px (`--networks`: the
   narrow demo networks, or real-sized ones; see `make_registry`); then for
   each concurrency level that many client threads each post a portrait (`size=256` output) and fetch
   its result (`GET …/result?wait=60`), `--jobs` jobs after a warm-up of 4. Images per second (jobs /
   wall time), end-to-end latency p50 / p99 (POST to the result's last byte) and the mean batch the jobs
   ran in: the median of `--repeats` runs of each row.
2. stages: the encoder and the generator alone at `--size` px, per batch in `--stages`, in ms per image
   (median of 5 passes after the warm-up): eager against each compile mode (warmed first, not timed),
   with the compiled output's relative L2 distance from eager.
3. drift: bf16 autocast against fp32 on the real-sized networks (the full IR-SE-50 HVAE encoder and a
   `--drift-size` px config-f StyleGAN2, random weights) on the aligned test portraits: relative L2 of
   w+ and of the image, and the 8-bit image's PSNR.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import importlib.util  # noqa: E402

import httpx2 as httpx  # noqa: E402

from workers.launcher.redis_server import start_redis  # noqa: E402

_spec = importlib.util.spec_from_file_location("bench_registries", ROOT / "bench" / "registries.py")
_registries = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_registries)
make_registry = _registries.make_registry
_spec = importlib.util.spec_from_file_location("bench_service", ROOT / "bench" / "service.py")
_service = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_service)  # bench/service.py's stack (its name would shadow the service package)
KEY, Stack, free_port, one_megapixel_jpeg = (
    _service.KEY,
    _service.Stack,
    _service.free_port,
    _service.one_megapixel_jpeg,
)
PORTRAITS = ["obama.jpg", "biden.jpg", "alex-lacamoire.png", "two_people.jpg"]


# --- the registry the tables serve


# --- 1. through the queue


def one_job(client: httpx.Client, base: str, jpeg: bytes) -> tuple[float, int, bool]:
    headers = {"Authorization": f"Bearer {KEY}"}
    start = time.perf_counter()
    r = client.post(
        f"{base}/v1/stylize", files={"image": ("p.jpg", jpeg)}, data={"style": "demo", "size": "256"}, headers=headers
    )
    job = r.json()["id"]
    while True:
        result = client.get(f"{base}/v1/jobs/{job}/result", params={"wait": 60}, headers=headers)
        if result.status_code == 200:
            break
        if result.status_code != 202:
            raise RuntimeError(result.text)
    elapsed = time.perf_counter() - start
    record = client.get(f"{base}/v1/jobs/{job}", headers=headers).json()["result"]
    return elapsed, record.get("batch_size", 1), bool(record.get("compiled"))


def level(stack: Stack, jpeg: bytes, concurrency: int, jobs: int) -> dict[str, float]:
    local = threading.local()

    def run(_: int) -> tuple[float, int, bool]:
        if not hasattr(local, "client"):
            local.client = httpx.Client(timeout=120)
        return one_job(local.client, stack.base, jpeg)

    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(run, range(4)))  # warm-up
        start = time.perf_counter()
        results = list(pool.map(run, range(jobs)))
        wall = time.perf_counter() - start
    latencies = sorted(r[0] for r in results)
    return {
        "ips": jobs / wall,
        "p50": statistics.median(latencies) * 1000,
        "p99": latencies[min(len(latencies) - 1, round(0.99 * (len(latencies) - 1)))] * 1000,
        "batch": statistics.mean(r[1] for r in results),
        "compiled": sum(r[2] for r in results) / jobs,
    }


def queue_table(args: argparse.Namespace, tmp: Path) -> None:
    jpeg = one_megapixel_jpeg()
    port = free_port()
    redis = start_redis(f"redis://127.0.0.1:{port}/0", tmp / "redis")
    where = f"{args.networks} networks at {args.size} px on {args.device}, {args.precision} precision"
    print(f"\n## 1. through the queue: {where};")
    print(f"##    {args.jobs} jobs per run, median of {args.repeats} runs per row")
    print(
        f"{'compile':>15}{'max batch':>10}{'clients':>9}{'images/s':>10}{'p50 ms':>9}{'p99 ms':>9}"
        f"{'mean batch':>12}{'compiled':>10}"
    )
    try:
        db = 0
        for mode in args.compile.split(","):
            for limit in (int(v) for v in args.limits.split(",")):
                db += 1
                data = tmp / f"data-{mode}-{limit}"
                data.mkdir()
                make_registry(data / "registry", args.size, args.networks)
                env = {
                    "AGILEGAN_MAX_BATCH": str(limit),
                    "AGILEGAN_DEVICE": args.device,
                    "AGILEGAN_BATCH_WAIT_MS": "5",
                    "AGILEGAN_COMPILE": mode,
                    "AGILEGAN_INFERENCE_PRECISION": args.precision,
                }
                stack = Stack(f"redis://127.0.0.1:{port}/{db % 16}", data, env, ready_timeout=3600)
                try:
                    for clients in (int(v) for v in args.levels.split(",")):
                        runs = [level(stack, jpeg, clients, args.jobs) for _ in range(args.repeats)]
                        row = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
                        print(
                            f"{mode:>15}{limit:>10}{clients:>9}{row['ips']:>10.2f}{row['p50']:>9.0f}{row['p99']:>9.0f}"
                            f"{row['batch']:>12.1f}{row['compiled']:>10.0%}",
                            flush=True,
                        )
                finally:
                    stack.stop()
    finally:
        redis.terminate()
        redis.wait(timeout=30)


# --- 2 and 3. the networks alone


def _networks(registry_dir: Path, device: str):
    from models.networks.encoder import Inverter
    from models.networks.stylegan2 import Generator
    from models.weights import checkpoints
    from service.platform.registry import Registry

    registry = Registry(registry_dir)
    inverter = checkpoints.load(registry.encoder_dir, expected=Inverter, device=device)
    generator = checkpoints.load(registry.style_dir("demo"), expected=Generator, device=device)
    return inverter, generator


def _timed(fn, device: str, runs: int = 5) -> float:
    import torch

    times = []
    for _ in range(runs):
        if device == "cuda":
            torch.cuda.synchronize()
        started = time.perf_counter()
        fn()
        if device == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def stages_table(args: argparse.Namespace, tmp: Path) -> None:
    import torch

    from models.inference.compiled import CompileConfig, Programs
    from models.inference.stylizer import Stylizer, resolve_precision

    make_registry(tmp / "stages", args.size, args.networks)
    inverter, generator = _networks(tmp / "stages", args.device)
    precision = resolve_precision(args.precision, torch.device(args.device))
    batches = tuple(int(v) for v in args.stages.split(","))
    size = inverter.config.encoder.input_size
    where = f"encoder {size} px, generator {args.size} px, {precision}, {args.device}"
    print(f"\n## 2. the {args.networks} networks alone: {where};")
    print("##    ms per image, median of 5 passes; 'drift' = rel. L2 of the compiled output from eager")
    print(f"{'compile':>15}{'batch':>7}{'encoder ms':>12}{'generator ms':>14}{'enc drift':>11}{'gen drift':>11}")
    gen = torch.Generator().manual_seed(0)
    inputs = {b: torch.rand(b, 3, size, size, generator=gen).to(args.device) * 2 - 1 for b in batches}
    reference: dict[int, tuple] = {}
    for mode in ["off", *[m for m in args.compile.split(",") if m != "off"]]:
        # the service's own paths: Stylizer.encode / render, eager or through the warmed programs
        programs = Programs(CompileConfig(mode, batches)) if mode != "off" else None
        if programs is not None:
            programs.warm_encoder(inverter, precision)
            programs.warm_generator(generator, precision)
        stylizer = Stylizer(inverter, generator, precision=precision, programs=programs)
        for b in batches:
            x = inputs[b]
            with torch.inference_mode():
                w_out, encoded = stylizer.encode_flagged(x)
                w = reference[b][0] if programs is not None else w_out  # the generator alone: eager's w+
                image, rendered = stylizer.render_flagged(w)
                assert encoded == rendered == (programs is not None), "a compiled row ran eager"
                enc_ms = _timed(lambda x=x, s=stylizer: s.encode(x), args.device) * 1000 / b
                gen_ms = _timed(lambda w=w, s=stylizer: s.render(w), args.device) * 1000 / b
            if programs is None:
                reference[b] = (w_out, image)
                drifts = "-", "-"
            else:
                drifts = tuple(f"{_rel(a, r):.1e}" for a, r in zip((w_out, image), reference[b]))
            print(f"{mode:>15}{b:>7}{enc_ms:>12.1f}{gen_ms:>14.1f}{drifts[0]:>11}{drifts[1]:>11}", flush=True)


def _rel(a, b) -> float:
    return float((a.float() - b.float()).norm() / b.float().norm())


def drift_table(args: argparse.Namespace, tmp: Path) -> None:
    import numpy as np
    import torch
    from PIL import Image

    from models.inference.stylizer import Stylizer
    from service.portrait.configs import AlignerConfig
    from service.portrait.media.alignment import FaceAligner

    make_registry(tmp / "drift", args.drift_size, "real")
    inverter, generator = _networks(tmp / "drift", args.device)
    aligner = FaceAligner(AlignerConfig())
    print(f"\n## 3. bf16 autocast vs fp32: full HVAE encoder, {args.drift_size} px generator, {args.device}")
    print(f"{'portrait':>20}{'w+ rel L2':>11}{'image rel L2':>14}{'8-bit PSNR dB':>15}")
    fp32, bf16 = Stylizer(inverter, generator, precision="fp32"), Stylizer(inverter, generator, precision="bf16")
    rows = []
    for name in PORTRAITS:
        photo = Image.open(ROOT / "tests" / "data" / "faces" / name).convert("RGB")
        crop = aligner.align(photo, output_size=1024).image
        high, low = fp32(crop), bf16(crop)
        a, b = np.asarray(high.image, dtype=np.float64), np.asarray(low.image, dtype=np.float64)
        with torch.inference_mode():
            w_rel = _rel(low.wplus, high.wplus)
            to = lambda im: torch.from_numpy(np.asarray(im, dtype=np.float32))  # noqa: E731
            img_rel = _rel(to(low.image), to(high.image))
        psnr = 10 * np.log10(255.0**2 / max(np.mean((a - b) ** 2), 1e-12))
        rows.append((w_rel, img_rel, psnr))
        print(f"{name:>20}{w_rel:>11.2e}{img_rel:>14.2e}{psnr:>15.1f}", flush=True)
    w_med, img_med, psnr_med = (statistics.median(c) for c in zip(*rows))
    print(f"{'median':>20}{w_med:>11.2e}{img_med:>14.2e}{psnr_med:>15.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limits", default="1,4,16")
    parser.add_argument("--levels", default="1,8,32")
    parser.add_argument("--jobs", type=int, default=24)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--size", type=int, default=256, help="the served generator's resolution")
    parser.add_argument("--networks", default="demo", choices=("demo", "real"), help="narrow demo or real-sized")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--compile", default="off", help="compile modes to compare, comma-separated")
    parser.add_argument("--precision", default="auto", choices=("auto", "fp32", "bf16"))
    parser.add_argument("--stages", default="1,8", help="batch sizes of the networks-alone table")
    parser.add_argument("--drift-size", type=int, default=1024)
    parser.add_argument("--skip", default="", help="tables to leave out: queue, stages, drift")
    args = parser.parse_args()
    skip = set(args.skip.split(","))
    with tempfile.TemporaryDirectory() as tmp:
        if "queue" not in skip:
            queue_table(args, Path(tmp))
        if "stages" not in skip:
            stages_table(args, Path(tmp))
        if "drift" not in skip:
            drift_table(args, Path(tmp))


if __name__ == "__main__":
    main()

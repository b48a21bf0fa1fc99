"""Serving throughput and latency through the real queue, per batch limit (dynamic batching, issue 16).

Usage:
    python bench/serving.py [--limits 1,4,16] [--levels 1,8,32] [--jobs 24] [--size 256] [--device cpu]

For each batch limit (AGILEGAN_MAX_BATCH) its own Redis, API and one stylize worker (bench/service.py's
stack) on the random-weight demo registry at `--size` px; then, for each concurrency level, that many
client threads each post a portrait (`size=256` output) and fetch its result (`GET …/result?wait=60`),
`--jobs` jobs in all after a warm-up of 4. Prints images per second (jobs / wall time) and the
end-to-end latency p50 / p99 (POST to the result's last byte), and the batch sizes the jobs ran in.
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

from workers.commands import start_redis  # noqa: E402
from workers.demo import demo_registry  # noqa: E402

_spec = importlib.util.spec_from_file_location("bench_service", ROOT / "bench" / "service.py")
_service = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_service)  # bench/service.py's stack (its name would shadow the service package)
KEY, Stack, free_port, one_megapixel_jpeg = (
    _service.KEY,
    _service.Stack,
    _service.free_port,
    _service.one_megapixel_jpeg,
)


def one_job(client: httpx.Client, base: str, jpeg: bytes) -> tuple[float, int]:
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
    size = client.get(f"{base}/v1/jobs/{job}", headers=headers).json()["result"].get("batch_size", 1)
    return elapsed, size


def level(stack: Stack, jpeg: bytes, concurrency: int, jobs: int) -> dict[str, float]:
    local = threading.local()

    def run(_: int) -> tuple[float, int]:
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
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limits", default="1,4,16")
    parser.add_argument("--levels", default="1,8,32")
    parser.add_argument("--jobs", type=int, default=24)
    parser.add_argument("--size", type=int, default=256, help="the demo generator's resolution")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    jpeg = one_megapixel_jpeg()
    with tempfile.TemporaryDirectory() as tmp:
        port = free_port()
        redis = start_redis(f"redis://127.0.0.1:{port}/0", Path(tmp) / "redis")
        try:
            print(f"# demo networks at {args.size} px on {args.device}; {args.jobs} jobs per row")
            print(f"{'max batch':>10}{'clients':>9}{'images/s':>10}{'p50 ms':>9}{'p99 ms':>9}{'mean batch':>12}")
            for limit in (int(v) for v in args.limits.split(",")):
                data = Path(tmp) / f"data-{limit}"
                data.mkdir()
                demo_registry(data / "registry", size=args.size)
                env = {"AGILEGAN_MAX_BATCH": str(limit), "AGILEGAN_DEVICE": args.device, "AGILEGAN_BATCH_WAIT_MS": "5"}
                stack = Stack(f"redis://127.0.0.1:{port}/{limit % 16}", data, env)
                try:
                    for clients in (int(v) for v in args.levels.split(",")):
                        row = level(stack, jpeg, clients, args.jobs)
                        print(
                            f"{limit:>10}{clients:>9}{row['ips']:>10.2f}{row['p50']:>9.0f}{row['p99']:>9.0f}"
                            f"{row['batch']:>12.1f}",
                            flush=True,
                        )
                finally:
                    stack.stop()
        finally:
            redis.terminate()
            redis.wait(timeout=30)


if __name__ == "__main__":
    main()

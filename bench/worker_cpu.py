"""Worker CPU time per stylize job outside the networks (issue 24).

Usage:
    python bench/worker_cpu.py [--jobs 8] [--repeats 5] [--format png] [--size 1024] [--skip stages]

Two tables, both sides of each comparison run by this one script:

1. jobs: the real API, Redis, rq and one stylize worker (bench/service.py's stack) on a random-weight
   1024 px registry with narrow networks (the networks are not what this measures); `--jobs` portraits
   posted one at a time, as a client of `make run` would, each for a `--size` px `--format` result. Per
   job, from its record: finished − started − encode − synthesize (what the worker spends outside the
   networks: crop, post-processing, encoding, storage, Redis), and its stages; the median over the jobs.
   Two configurations: the reference's (the crop's quad transform at 4096, PNG at zlib level 6, as before
   issue 24) and today's defaults (1024, level 1).
2. stages: each CPU stage alone on a 1024 px crop of the test portrait, median of `--repeats` runs, ms.
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import httpx2 as httpx  # noqa: E402
import numpy as np  # noqa: E402

from service.portrait.configs import AlignerConfig  # noqa: E402
from service.portrait.media.alignment import FaceAligner, align_landmarks  # noqa: E402
from service.portrait.media.images import encode_image, load_image  # noqa: E402
from workers.launcher.demo import demo_registry  # noqa: E402
from workers.launcher.redis_server import start_redis  # noqa: E402

_spec = importlib.util.spec_from_file_location("bench_service", ROOT / "bench" / "service.py")
_service = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_service)  # bench/service.py's stack (its name would shadow the service package)

PORTRAIT = ROOT / "tests" / "data" / "faces" / "obama.jpg"
CONFIGS = {
    "reference (transform 4096, PNG zlib 6)": {"AGILEGAN_ALIGN_TRANSFORM_SIZE": "4096", "AGILEGAN_PNG_LEVEL": "6"},
    "defaults (transform 1024, PNG zlib 1)": {},
}


def run_jobs(redis_url: str, data_dir: Path, env: dict[str, str], jobs: int, size: int, fmt: str) -> list[dict]:
    """Post `jobs` portraits one at a time to a fresh stack; each job's record once it succeeded."""
    stack = _service.Stack(redis_url, data_dir, env)
    photo = PORTRAIT.read_bytes()
    records = []
    try:
        with httpx.Client(timeout=120) as client:
            auth = {"Authorization": f"Bearer {_service.KEY}"}
            for _ in range(jobs + 1):  # the first is a warm-up
                r = client.post(
                    f"{stack.base}/v1/stylize",
                    files={"image": ("p.jpg", photo, "image/jpeg")},
                    data={"style": "demo", "size": str(size), "format": fmt},
                    headers=auth,
                )
                r.raise_for_status()
                job = client.get(f"{stack.base}/v1/jobs/{r.json()['id']}?wait=60", headers=auth).json()
                while job["status"] not in ("succeeded", "failed"):
                    time.sleep(0.05)
                    job = client.get(f"{stack.base}/v1/jobs/{job['id']}", headers=auth).json()
                if job["status"] != "succeeded":
                    raise RuntimeError(job)
                records.append(job)
    finally:
        stack.stop()
    return records[1:]


def outside_networks_ms(job: dict) -> float:
    t = job["result"]["timings"]
    return 1000 * (job["finished_at"] - job["started_at"] - t["encode"] - t["synthesize"])


def jobs_table(args: argparse.Namespace) -> None:
    print(f"\n## jobs: worker time outside the networks per job, {args.size} px {args.format}, median of {args.jobs}")
    print("| configuration | outside the networks | align | postprocess (resize, encode) | store | Redis and rest |")
    print("|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        redis = start_redis("redis://127.0.0.1:6391/0", Path(tmp))
        try:
            for i, (name, env) in enumerate(CONFIGS.items()):
                data = Path(tmp) / f"data{i}"
                demo_registry(data / "registry", size=1024, tiny=True)
                records = run_jobs("redis://127.0.0.1:6391/0", data, env, args.jobs, args.size, args.format)
                outside = statistics.median(outside_networks_ms(j) for j in records)
                stage = {
                    k: statistics.median(1000 * j["result"]["timings"][k] for j in records)
                    for k in ("align", "postprocess", "store")
                }
                rest = outside - sum(stage.values())
                print(
                    f"| {name} | **{outside:.0f} ms** | {stage['align']:.0f} ms | {stage['postprocess']:.0f} ms "
                    f"| {stage['store']:.1f} ms | {rest:.0f} ms |"
                )
        finally:
            redis.terminate()
            redis.wait(timeout=10)


def timed(fn, repeats: int) -> float:
    runs = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        runs.append(1000 * (time.perf_counter() - start))
    return statistics.median(runs)


def stages_table(args: argparse.Namespace) -> None:
    data = PORTRAIT.read_bytes()
    photo = load_image(data).image
    landmarks = FaceAligner(AlignerConfig()).detect(photo)[0].landmarks
    crop = align_landmarks(photo, landmarks, 1024, 1024).image
    floats = np.asarray(crop, dtype=np.float32) / 127.5 - 1
    rows = [
        ("decode the upload (JPEG)", lambda: load_image(data)),
        *[
            (f"FFHQ crop, transform {t}", lambda t=t: align_landmarks(photo, landmarks, 1024, t))
            for t in (4096, 2048, 1024)
        ],
        ("[-1, 1] floats to 8-bit", lambda: ((np.clip(floats, -1, 1) + 1) * 127.5 + 0.5).astype(np.uint8)),
        *[(f"PNG, zlib level {lv}", lambda lv=lv: encode_image(crop, "png", lv)) for lv in (6, 1)],
        ("JPEG q92 4:4:4", lambda: encode_image(crop, "jpeg")),
        ("WebP q92", lambda: encode_image(crop, "webp")),
    ]
    print(f"\n## stages: one 1024 px crop of {PORTRAIT.name}, median of {args.repeats}, one thread")
    print("| stage | ms | bytes |")
    print("|---|---|---|")
    for name, fn in rows:
        out = fn()
        size = len(out) if isinstance(out, bytes) else ""
        print(f"| {name} | {timed(fn, args.repeats):.1f} | {size} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--format", default="png", choices=("png", "jpeg", "webp"))
    parser.add_argument("--size", type=int, default=1024, choices=(256, 512, 1024))
    parser.add_argument("--skip", default="", help="comma-separated: jobs, stages")
    args = parser.parse_args()
    skip = set(filter(None, args.skip.split(",")))
    print(f"# bench/worker_cpu.py {' '.join(sys.argv[1:])}")
    if "stages" not in skip:
        stages_table(args)
    if "jobs" not in skip:
        jobs_table(args)


if __name__ == "__main__":
    main()

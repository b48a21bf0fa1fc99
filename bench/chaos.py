"""Reliability under faults, load and abuse: what survives what, measured.

Usage:
    python bench/chaos.py [--jobs 24] [--requests 80] [--levels 8,32] [--skip-faults] [--skip-load]
                          [--skip-abuse] [--skip-store]

Starts everything itself on temporary data directories: a redis-server with AOF (appendfsync everysec,
as docker-compose runs it), one API process (`agilegan serve`) and one worker (`agilegan worker`, at
niceness 10 as `make run` starts it; AGILEGAN_WORKER_NICE in the environment overrides it), with
the full-size demo registry (real architectures, random weights, FFHQ 4096 crop), so that a job takes
long enough to be killed in the middle.

1. Faults. `--jobs` jobs are posted; while they run, three faults in turn, each after more jobs were
   posted: kill -9 of the worker mid-job (a new one is started at once, as a process supervisor or
   compose's restart policy would), a restart of the API process, and kill -9 of Redis (restarted on
   its AOF after 2 s). Clients keep polling and retry what fails. Reported: jobs lost (accepted, then
   never succeeded: must be 0), every job's seconds from the fault it lived through to its result,
   5xx answers (documented 503s apart from others), and the API's peak RSS.
2. Load. POST /v1/stylize (1 MP JPEG) and GET /v1/jobs/{id} at `--levels` concurrent clients: p50/p99
   of each, requests/s, and the API's peak RSS.
3. Abuse. /healthz is timed every 20 ms while, in turn: 3 unauthenticated 500 MB bodies, a zip bomb
   (1 GB of zeros in a small archive), 50 long-polls, 8 flat 40 MP PNGs and 16 faceless photos (the
   full detection pass) in parallel; then the cases of issue 22: 8 requests whose edit layers are
   "0-99999999" (46 bytes that once took 20 GB), a frame zip whose first entry inflates to 1.5 GiB
   on /v1/animate, the 7 hostile frame zips of tests/reliability/media_cases.py, and exemplar zips
   with corrupt and encrypted entries. Reported: /healthz p99 and max, the API's RSS after each case,
   and the answers (status codes: no 5xx).

4. Store faults (`--skip-store` skips them): storage=s3 on a real SeaweedFS (the dev extra's `weed`)
   behind a proxy that fails the network: kill -9 of the worker while a result upload is in flight, then
   a 5 s store outage while clients keep posting. Reported: jobs lost, results downloaded whole, whether
   the killed upload became visible, and the answers (503 `unavailable` is the documented one).

Targets (issue 11): 0 lost, 0 undocumented 5xx, API RSS under 1 GB throughout, /healthz p99 under
100 ms during the abuse, POST p99 at 8 clients under 300 ms.
"""

from __future__ import annotations

import argparse
import io
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import zipfile
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import httpx2 as httpx  # noqa: E402
import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from bench.service import faceless_jpeg, free_port, one_megapixel_jpeg, wait_until_ready  # noqa: E402
from tests.reliability import media_cases  # noqa: E402
from tests.s3_server import ACCESS_KEY, SECRET_KEY, s3_store, start_s3_server, wait_until_serving  # noqa: E402
from tests.store_proxy import StoreProxy  # noqa: E402
from workers.launcher.demo import demo_registry  # noqa: E402
from workers.launcher.redis_server import start_redis  # noqa: E402

KEY = "chaos-operator-key-000000001"
AUTH = {"Authorization": f"Bearer {KEY}"}
MB = 1024 * 1024


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def rss_mb(pid: int, field_name: str = "VmRSS") -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(f"{field_name}:"):
                return int(line.split()[1]) / 1024
    except FileNotFoundError:
        pass
    return 0.0


class Processes:
    """Redis (AOF), one API and one worker, each restartable or killable on its own."""

    def __init__(self, tmp: Path, data: Path, extra_env: dict[str, str] | None = None) -> None:
        self.redis_dir = tmp / "redis"
        self.redis_url = f"redis://127.0.0.1:{free_port()}/0"
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.env = {
            **os.environ,
            "AGILEGAN_REDIS_URL": self.redis_url,
            "AGILEGAN_DATA_DIR": str(data),
            "AGILEGAN_PORT": str(self.port),
            "AGILEGAN_API_KEYS": f"{KEY}:operator",
            "AGILEGAN_RATE_LIMIT_PER_MINUTE": "0",
            "AGILEGAN_FAILED_AUTH_PER_MINUTE": "0",
            "AGILEGAN_MAX_QUEUE_DEPTH": "100000",
            "AGILEGAN_MAX_STYLE_UPLOAD_BYTES": str(600 * MB),
            "AGILEGAN_HEARTBEAT_INTERVAL_S": "1",
            "AGILEGAN_HEARTBEAT_TTL_S": "6",
            "AGILEGAN_MAINTENANCE_INTERVAL_S": "2",
            "AGILEGAN_WORKER_TTL_S": "16",
            "AGILEGAN_WORKER_NICE": os.environ.get("AGILEGAN_WORKER_NICE", "10"),  # as `make run` runs it
            **(extra_env or {}),
        }
        tmp.mkdir(parents=True, exist_ok=True)
        self.log = open(tmp / "chaos.log", "ab")  # noqa: SIM115
        self.redis = start_redis(self.redis_url, self.redis_dir)
        self.api = self._start("serve")
        self.worker = self._start("worker", "--queues", "stylize,train")
        self.peak_api_rss = 0.0
        self.wait_ready()

    def _start(self, *args: str) -> subprocess.Popen:
        return subprocess.Popen(
            [sys.executable, "-m", "workers.launcher.cli", *args],
            env=self.env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )

    def wait_ready(self, timeout: float = 120) -> None:
        if not wait_until_ready(self.base, timeout):
            raise TimeoutError("the stack did not become ready")

    def sample_rss(self) -> float:
        now = rss_mb(self.api.pid)
        self.peak_api_rss = max(self.peak_api_rss, now)
        return now

    def kill_worker(self) -> None:
        os.kill(self.worker.pid, signal.SIGKILL)
        self.worker.wait()
        self.worker = self._start("worker", "--queues", "stylize,train")

    def restart_api(self) -> None:
        self.api.terminate()
        self.api.wait(timeout=30)
        self.api = self._start("serve")

    def kill_redis(self, down_s: float = 2.0) -> None:
        self.redis.kill()
        self.redis.wait()
        time.sleep(down_s)
        self.redis = start_redis(self.redis_url, self.redis_dir)

    def supervise(self) -> None:
        """A worker that exited (e.g. when Redis went away) is started again, like compose's restart."""
        if self.worker.poll() is not None:
            self.worker = self._start("worker", "--queues", "stylize,train")

    def stop(self) -> None:
        for proc in (self.api, self.worker):
            proc.terminate()
        for proc in (self.api, self.worker):
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
        self.redis.terminate()
        self.redis.wait(timeout=10)


@dataclass
class Tally:
    statuses: Counter = field(default_factory=Counter)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def count(self, status: int, code: str = "") -> None:
        with self.lock:
            self.statuses[(status, code)] += 1

    def five_xx(self) -> tuple[int, int]:
        documented = sum(n for (s, code), n in self.statuses.items() if s == 503)
        other = sum(n for (s, code), n in self.statuses.items() if s >= 500 and s != 503)
        return documented, other


def request(client: httpx.Client, tally: Tally, method: str, url: str, **kwargs) -> httpx.Response | None:
    """One call; transport errors (a restarting API) count as such, not as answers."""
    try:
        r = client.request(method, url, **kwargs)
    except httpx.HTTPError:
        tally.count(0, "transport")
        return None
    code = ""
    if r.headers.get("content-type", "").startswith("application/json"):
        try:
            body = r.json()
            code = body.get("code", "") if isinstance(body, dict) else ""
        except ValueError:
            pass
    tally.count(r.status_code, code)
    return r


def post_stylize(procs: Processes, client: httpx.Client, tally: Tally, jpeg: bytes) -> httpx.Response | None:
    """One POST /v1/stylize of the demo style at 256 px, counted in `tally`."""
    files = {"image": ("p.jpg", jpeg, "image/jpeg")}
    data = {"style": "demo", "size": "256"}
    return request(client, tally, "POST", f"{procs.base}/v1/stylize", files=files, data=data, headers=AUTH)


def submit(procs: Processes, client: httpx.Client, tally: Tally, jpeg: bytes, deadline: float) -> str:
    """POST until accepted (retrying 503s and transport errors): the job id."""
    while time.time() < deadline:
        r = post_stylize(procs, client, tally, jpeg)
        if r is not None and r.status_code == 202:
            return r.json()["id"]
        time.sleep(0.3)
    raise TimeoutError("no POST was accepted")


def faults(procs: Processes, jpeg: bytes, jobs: int) -> dict:
    tally = Tally()
    client = httpx.Client(timeout=30)
    deadline = time.time() + 900
    accepted: dict[str, float] = {}  # job id → when it was accepted
    fault_log: list[tuple[str, float]] = []
    per_round = max(1, jobs // 4)

    def post_some(n: int) -> None:
        for _ in range(n):
            job_id = submit(procs, client, tally, jpeg, deadline)
            accepted[job_id] = time.time()

    def wait_running() -> None:
        while time.time() < deadline:
            r = request(client, tally, "GET", f"{procs.base}/v1/jobs", headers=AUTH)
            if r is not None and r.status_code == 200 and any(j["status"] == "running" for j in r.json()):
                return
            time.sleep(0.05)

    post_some(per_round)
    wait_running()
    t = time.time()
    procs.kill_worker()
    fault_log.append(("kill -9 worker mid-job", t))
    post_some(per_round)
    t = time.time()
    procs.restart_api()
    fault_log.append(("API restart", t))
    post_some(per_round)  # retried until the new API answers
    wait_running()
    t = time.time()
    outage = threading.Thread(target=procs.kill_redis)  # clients go on posting while Redis is down
    outage.start()
    fault_log.append(("kill -9 Redis (2 s down)", t))
    time.sleep(0.2)
    post_some(jobs - 3 * per_round)
    outage.join()

    finished = follow(procs, client, tally, accepted, deadline)
    lost = [j for j in accepted if finished.get(j, ("lost",))[0] != "succeeded"]
    recovery = []  # for each job that was in flight at a fault: seconds from the last such fault to its result
    for job_id, (status, at) in finished.items():
        lived = [ft for _, ft in fault_log if accepted[job_id] <= ft <= at]
        if status == "succeeded" and lived:
            recovery.append(at - max(lived))
    documented, other = tally.five_xx()
    return {
        "accepted": len(accepted),
        "lost": len(lost),
        "lost_ids": lost,
        "recovery": recovery,
        "documented_503": documented,
        "other_5xx": other,
        "transport_errors": tally.statuses[(0, "transport")],
        "faults": [name for name, _ in fault_log],
        "statuses": {f"{s} {c}".strip(): n for (s, c), n in sorted(tally.statuses.items())},
    }


def follow(
    procs: Processes, client: httpx.Client, tally: Tally, accepted: dict[str, float], deadline: float
) -> dict[str, tuple[str, float]]:
    """Every accepted job followed to its end: job id → (final status, when it was seen)."""
    finished: dict[str, tuple[str, float]] = {}
    while len(finished) < len(accepted) and time.time() < deadline:
        procs.supervise()
        procs.sample_rss()
        for job_id in accepted:
            if job_id in finished:
                continue
            r = request(client, tally, "GET", f"{procs.base}/v1/jobs/{job_id}", headers=AUTH)
            if r is not None and r.status_code == 200 and r.json()["status"] in ("succeeded", "failed", "canceled"):
                finished[job_id] = (r.json()["status"], time.time())
        time.sleep(0.2)
    return finished


def store_faults(tmp: Path, jpeg: bytes, jobs: int) -> dict:
    """Issue 27's store faults, with storage=s3 on a real SeaweedFS behind a proxy that fails the network
    (tests/store_proxy.py): kill -9 of the worker while a result upload is in flight (held by the proxy after
    its headers), then a 5 s outage of the store while clients keep posting. Every accepted job is followed
    to its end and its result downloaded and decoded."""
    server = start_s3_server(tmp / "s3")
    wait_until_serving(server)
    proxy = StoreProxy(server.endpoint)
    data = tmp / "store-host"
    demo_registry(data / "registry", size=64, tiny=True)
    env = {
        "AGILEGAN_STORAGE": "s3",
        "AGILEGAN_S3_ENDPOINT_URL": proxy.endpoint,
        "AGILEGAN_S3_ACCESS_KEY": ACCESS_KEY,
        "AGILEGAN_S3_SECRET_KEY": SECRET_KEY,
        "AGILEGAN_S3_TIMEOUT_S": "2",
        "AGILEGAN_ALIGN_TRANSFORM_SIZE": "1024",
    }
    bucket = s3_store(server.endpoint, "")  # the bucket seen directly, not through the proxy
    procs = Processes(tmp / "s", data, env)
    tally, client, deadline = Tally(), httpx.Client(timeout=30), time.time() + 600
    accepted: dict[str, float] = {}
    try:
        # 1. kill -9 of the worker in the middle of a result upload.
        proxy.stall(b"/results/")
        for _ in range(max(1, jobs // 2)):
            accepted[submit(procs, client, tally, jpeg, deadline)] = time.time()
        if not proxy.stalled.wait(120):
            raise TimeoutError("no result upload was seen")
        procs.kill_worker()
        proxy.release()
        key = proxy.stalled_line.split(b" ")[1].decode().split("/results/")[1].split("?")[0]
        time.sleep(1.0)
        partial_visible = bucket.exists(f"results/{key}")
        # 2. A 5 s outage of the store while clients post for 8 s.
        outage = threading.Thread(target=lambda: (time.sleep(1.0), proxy.outage(5.0)))
        outage.start()
        started = time.monotonic()
        while time.monotonic() - started < 8:
            r = post_stylize(procs, client, tally, jpeg)
            if r is not None and r.status_code == 202:
                accepted[r.json()["id"]] = time.time()
            time.sleep(0.2)
        outage.join()
        # 3. Every job to its end, every result downloaded whole.
        finished = follow(procs, client, tally, accepted, deadline)
        complete = 0
        for job_id, (status, _) in finished.items():
            r = request(client, tally, "GET", f"{procs.base}/v1/jobs/{job_id}/result", headers=AUTH)
            if status == "succeeded" and r is not None and r.status_code == 200:
                Image.open(io.BytesIO(r.content)).load()  # a truncated result would raise here
                complete += 1
    finally:
        procs.stop()
        proxy.close()
        server.stop()
    documented, other = tally.five_xx()
    return {
        "accepted": len(accepted),
        "lost": len([j for j in accepted if finished.get(j, ("lost",))[0] != "succeeded"]),
        "complete_results": complete,
        "partial_visible": partial_visible,
        "documented_503": documented,
        "other_5xx": other,
        "statuses": {f"{s} {c}".strip(): n for (s, c), n in sorted(tally.statuses.items())},
    }


def load_level(procs: Processes, jpeg: bytes, clients: int, requests: int) -> dict:
    """POSTs then GETs of those jobs by `clients` threads, each with its own connection."""
    local = threading.local()
    ids: list[str] = []

    def client() -> httpx.Client:
        if not hasattr(local, "c"):
            local.c = httpx.Client(timeout=120)
        return local.c

    def post_one(_: int) -> float:
        start = time.perf_counter()
        r = client().post(
            f"{procs.base}/v1/stylize",
            files={"image": ("p.jpg", jpeg, "image/jpeg")},
            data={"style": "demo", "size": "256"},
            headers=AUTH,
        )
        if r.status_code != 202:
            raise RuntimeError(f"POST {r.status_code}: {r.text[:200]}")
        ids.append(r.json()["id"])
        procs.sample_rss()
        return time.perf_counter() - start

    def get_one(i: int) -> float:
        start = time.perf_counter()
        r = client().get(f"{procs.base}/v1/jobs/{ids[i % len(ids)]}", headers=AUTH)
        if r.status_code != 200:
            raise RuntimeError(f"GET {r.status_code}")
        return time.perf_counter() - start

    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(post_one, range(4)))  # warm-up
        start = time.perf_counter()
        posts = list(pool.map(post_one, range(requests)))
        post_wall = time.perf_counter() - start
        start = time.perf_counter()
        gets = list(pool.map(get_one, range(requests * 4)))
        get_wall = time.perf_counter() - start
    return {
        "clients": clients,
        "post_rps": requests / post_wall,
        "post_p50": statistics.median(posts) * 1000,
        "post_p99": percentile(posts, 0.99) * 1000,
        "get_rps": len(gets) / get_wall,
        "get_p50": statistics.median(gets) * 1000,
        "get_p99": percentile(gets, 0.99) * 1000,
        "rss": procs.peak_api_rss,
    }


class HealthProbe:
    """Times GET /healthz every 20 ms (and samples the API's RSS) while the block runs."""

    def __init__(self, procs: Processes) -> None:
        self.procs = procs
        self.samples: list[float] = []
        self.rss_peak = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run)

    def _run(self) -> None:
        with httpx.Client(timeout=60) as c:
            while not self._stop.is_set():
                start = time.perf_counter()
                c.get(f"{self.procs.base}/healthz")
                self.samples.append(time.perf_counter() - start)
                self.rss_peak = max(self.rss_peak, rss_mb(self.procs.api.pid))
                time.sleep(0.02)

    def __enter__(self) -> HealthProbe:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.procs.peak_api_rss = max(self.procs.peak_api_rss, self.rss_peak)


def _zip_bomb() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        with z.open("bomb/zeros.png", "w", force_zip64=True) as f:
            block = b"\0" * MB
            for _ in range(1024):
                f.write(block)
    return buf.getvalue()


def _flat_png(megapixels: int = 40) -> bytes:
    side = int((megapixels * 1e6) ** 0.5)
    buf = io.BytesIO()
    Image.fromarray(np.full((side, side, 3), 200, np.uint8)).save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


def abuse(procs: Processes) -> list[dict]:
    bomb, flat, dogs = _zip_bomb(), _flat_png(), faceless_jpeg()
    post = f"{procs.base}/v1/stylize"

    def unauth_body(_: int) -> None:
        def body():
            for _ in range(500):
                yield b"\0" * MB

        try:
            return httpx.post(
                post, content=body(), headers={"Content-Type": "application/octet-stream"}, timeout=120
            ).status_code
        except httpx.HTTPError:
            return 401  # answered 401 and closed while we were still sending

    def zip_bomb(_: int) -> int:
        return httpx.post(
            f"{procs.base}/v1/styles",
            files={"archive": ("bomb.zip", bomb)},
            data={"name": "bomb"},
            headers=AUTH,
            timeout=120,
        ).status_code

    procs.worker.send_signal(signal.SIGSTOP)  # the job below stays queued while clients long-poll it
    job_id = httpx.post(
        post, files={"image": ("p.jpg", one_megapixel_jpeg())}, data={"style": "demo"}, headers=AUTH, timeout=60
    ).json()["id"]

    def long_poll(_: int) -> int:
        return httpx.get(
            f"{procs.base}/v1/jobs/{job_id}/result", params={"wait": 8}, headers=AUTH, timeout=30
        ).status_code

    def big_png(_: int) -> int:
        form = {"image": ("flat.png", flat)}
        return httpx.post(post, files=form, data={"style": "demo"}, headers=AUTH, timeout=120).status_code

    def faceless(_: int) -> int:
        form = {"image": ("dogs.jpg", dogs)}
        return httpx.post(post, files=form, data={"style": "demo"}, headers=AUTH, timeout=120).status_code

    def edit_range(_: int) -> int:
        edits = '{"sefa":{"alpha":1,"layers":"0-99999999"}}'
        form = {"image": ("p.jpg", one_megapixel_jpeg())}
        data = {"style": "demo", "edits": edits}
        return httpx.post(post, files=form, data=data, headers=AUTH, timeout=120).status_code

    def animate(video: bytes) -> int:
        data = {"style": "demo", "format": "zip"}
        files = {"video": ("v.zip", video)}
        return httpx.post(f"{procs.base}/v1/animate", files=files, data=data, headers=AUTH, timeout=120).status_code

    frame_bomb = media_cases.bomb_frames()
    hostile = [factory() for factory, _ in media_cases.ANIMATE_CASES.values() if factory is not media_cases.bomb_frames]
    photo = media_cases.FACES.joinpath("obama.jpg").read_bytes()
    broken = [media_cases.encrypted_entry("a.jpg", photo), media_cases.corrupt_deflate("b.jpg", photo)]

    def broken_exemplars(i: int) -> int:
        files = {"archive": ("x.zip", broken[i])}
        return httpx.post(
            f"{procs.base}/v1/styles", files=files, data={"name": f"broken-{i}"}, headers=AUTH, timeout=120
        ).status_code

    cases = [
        ("3 unauthenticated 500 MB bodies", unauth_body, 3),
        ("zip bomb (1 GB of zeros)", zip_bomb, 1),
        ("50 long-polls (wait=8)", long_poll, 50),
        ("8 flat 40 MP PNGs at once", big_png, 8),
        ("16 faceless photos at once", faceless, 16),
        ('8 edits "layers": "0-99999999"', edit_range, 8),
        ("animate: 1.5 GiB frame zip bomb", lambda _: animate(frame_bomb), 1),
        (f"animate: {len(hostile)} hostile frame zips", lambda i: animate(hostile[i]), len(hostile)),
        ("styles: corrupt, encrypted entries", broken_exemplars, 2),
    ]
    rows = []
    try:
        for name, action, n in cases:
            start = time.perf_counter()
            with HealthProbe(procs) as probe, ThreadPoolExecutor(n) as pool:
                answers = Counter(pool.map(action, range(n)))
            rows.append(
                {
                    "case": name,
                    "seconds": time.perf_counter() - start,
                    "healthz_p99": percentile(probe.samples, 0.99) * 1000,
                    "healthz_max": max(probe.samples) * 1000,
                    "samples": len(probe.samples),
                    "rss_peak": probe.rss_peak,
                    "answers": " ".join(f"{n}×{code}" for code, n in sorted(answers.items())),
                }
            )
    finally:
        procs.worker.send_signal(signal.SIGCONT)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=24, help="jobs posted across the faults")
    parser.add_argument("--requests", type=int, default=80, help="POSTs per load level (GETs: 4x)")
    parser.add_argument("--levels", default="8,32")
    parser.add_argument("--skip-faults", action="store_true")
    parser.add_argument("--skip-load", action="store_true")
    parser.add_argument("--skip-abuse", action="store_true")
    parser.add_argument("--skip-store", action="store_true", help="skip the object-store faults (storage=s3)")
    parser.add_argument("--keep", type=Path, help="keep the data and logs in this folder (default: a temporary one)")
    args = parser.parse_args()
    jpeg = one_megapixel_jpeg()
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = args.keep or Path(tmp)
        print(f"# {os.cpu_count()} CPUs; Redis AOF everysec; 1 API process, 1 worker", flush=True)
        if not args.skip_faults:
            data = tmp_path / "full"
            demo_registry(data / "registry", size=1024)
            procs = Processes(tmp_path / "f", data)
            try:
                r = faults(procs, jpeg, args.jobs)
            finally:
                procs.stop()
            rec = r["recovery"]
            print(f"faults: {', '.join(r['faults'])}")
            print(f"  jobs accepted {r['accepted']}, lost {r['lost']} {r['lost_ids'] or ''}")
            if rec:
                print(
                    f"  seconds from the fault to the result: median {statistics.median(rec):.1f}, "
                    f"max {max(rec):.1f} over {len(rec)} jobs"
                )
            print(
                f"  5xx: documented 503 {r['documented_503']}, other {r['other_5xx']}; "
                f"transport errors (API restarting) {r['transport_errors']}; API peak RSS {procs.peak_api_rss:.0f} MB"
            )
            print(f"  answers: {r['statuses']}", flush=True)
        if not args.skip_store:
            r = store_faults(tmp_path / "store", jpeg, args.jobs)
            print("store faults (storage=s3, SeaweedFS): kill -9 worker mid result upload, 5 s store outage")
            print(
                f"  jobs accepted {r['accepted']}, lost {r['lost']}, results downloaded whole {r['complete_results']}; "
                f"the killed upload visible: {r['partial_visible']}"
            )
            print(f"  5xx: documented 503 {r['documented_503']}, other {r['other_5xx']}; answers: {r['statuses']}")
        data = tmp_path / "tiny"
        demo_registry(data / "registry", size=64, tiny=True)
        sefa = ["directions", "sefa", str(data / "registry/base/generator"), "--k", "4"]
        out = ["--out", str(data / "registry/directions/sefa.npz")]  # the edits abuse case needs a direction
        subprocess.run([sys.executable, "-m", "workers.launcher.cli", *sefa, *out], check=True, capture_output=True)
        procs = Processes(tmp_path / "l", data, {"AGILEGAN_ALIGN_TRANSFORM_SIZE": "1024"})
        try:
            if not args.skip_load:
                print(f"{'load':<10}{'clients':>8}{'POST/s':>8}{'p50':>7}{'p99':>7}{'GET/s':>8}{'p50':>7}{'p99':>7}")
                for clients in (int(x) for x in args.levels.split(",")):
                    row = load_level(procs, jpeg, clients, args.requests)
                    print(
                        f"{'':<10}{row['clients']:>8}{row['post_rps']:>8.1f}{row['post_p50']:>7.0f}"
                        f"{row['post_p99']:>7.0f}{row['get_rps']:>8.1f}{row['get_p50']:>7.0f}{row['get_p99']:>7.0f}"
                        f"   (ms; API peak RSS {row['rss']:.0f} MB)",
                        flush=True,
                    )
            if not args.skip_abuse:
                print(
                    f"{'abuse case':<36}{'s':>6}{'/healthz p99 ms':>16}{'max ms':>8}{'probes':>8}{'API RSS MB':>12}"
                    "  answers"
                )
                for row in abuse(procs):
                    print(
                        f"{row['case']:<36}{row['seconds']:>6.1f}{row['healthz_p99']:>16.1f}{row['healthz_max']:>8.1f}"
                        f"{row['samples']:>8}{row['rss_peak']:>12.0f}  {row['answers']}",
                        flush=True,
                    )
            print(f"API peak RSS over the load and abuse runs: {rss_mb(procs.api.pid, 'VmHWM'):.0f} MB")
        finally:
            procs.stop()


if __name__ == "__main__":
    main()

"""Dynamic batching of stylize jobs (issue 16) on the CPU, through the real queue and workers: byte-identical
images, grouping by style, a canceled job inside a batch, kill -9 mid-batch, and the bounded wait."""

from __future__ import annotations

import json
import os
import shutil
import signal
import time
from pathlib import Path

import pytest
from rq import Queue
from rq.job import Job

from service.platform.redis_keys import cancel_key
from tests.exemplar_data import FACES as FACES_DIR
from tests.service.conftest import auth, post_photo, wait_for
from workers.serving.batching import claim_more

pytestmark = pytest.mark.serial  # timing or memory bounds: run alone (Makefile), not beside other tests

PHOTOS = ["obama.jpg", "biden.jpg", "alex-lacamoire.png", "obama.jpg", "biden.jpg", "alex-lacamoire.png"]


@pytest.fixture
def second_style(tiny_data_dir: Path):
    """`demo2`: the demo style under another id (another group for the batcher)."""
    styles = tiny_data_dir / "registry" / "styles"
    shutil.copytree(styles / "demo", styles / "demo2")
    meta = json.loads((styles / "demo2" / "style.json").read_text())
    (styles / "demo2" / "style.json").write_text(json.dumps({**meta, "id": "demo2", "name": "demo2"}))
    yield "demo2"
    shutil.rmtree(styles / "demo2", ignore_errors=True)


def _submit(client, styles: list[str]) -> list[str]:
    ids = []
    for photo, style in zip(PHOTOS, styles):
        response = post_photo(client, photo, size=256, style=style)
        assert response.status_code == 202, response.text
        ids.append(response.json()["id"])
    return ids


def _results(client, ids: list[str]) -> list[tuple[dict, bytes]]:
    out = []
    for job_id in ids:
        done = wait_for(client, job_id, timeout=120)
        body = client.get(f"/v1/jobs/{job_id}/result", headers=auth()).content if done["status"] == "succeeded" else b""
        out.append((done, body))
    return out


def test_a_batch_is_byte_identical_grouped_by_style_and_leaves_a_canceled_job_out(
    make_client, make_settings, start_worker, redis, second_style
) -> None:
    client = make_client()
    styles = ["demo", "demo2", "demo", "demo2", "demo", "demo"]
    batched = _submit(client, styles)  # all queued before the worker starts: one batch
    redis.set(cancel_key(batched[2]), "1")  # canceled while its batch runs (its record still says queued)
    batching = start_worker(make_settings(max_batch=8, batch_wait_ms=50), queues="stylize")
    first = _results(client, batched)
    batching.stop()
    assert first[2][0]["status"] == "canceled"
    done = [r for i, r in enumerate(first) if i != 2]
    assert all(r[0]["status"] == "succeeded" for r in done), [r[0] for r in done]
    sizes = {batched[i]: first[i][0]["result"]["batch_size"] for i in range(6) if i != 2}
    # the demo group had 4 jobs, one canceled: it left the batch (3 rendered); the demo2 group 2
    assert [sizes[batched[i]] for i in (0, 4, 5)] == [3, 3, 3] and [sizes[batched[i]] for i in (1, 3)] == [2, 2]

    alone = _submit(client, styles)  # the same jobs, one at a time
    start_worker(make_settings(max_batch=1), queues="stylize")
    second = _results(client, alone)
    assert all(r[0]["result"]["batch_size"] == 1 for r in second)
    for i in (0, 1, 3, 4, 5):
        assert first[i][1] == second[i][1], f"job {i}: the batched image differs"


def test_the_next_batch_is_prepared_while_a_batch_finishes(make_client, make_settings, start_worker) -> None:
    """Six jobs waiting for a worker of batches of 3: the first three are one batch; the other three are
    claimed and prepared (crops, networks) while the first batch's jobs finish, and give the same bytes
    for the same photos."""
    client = make_client()
    ids = _submit(client, ["demo"] * 6)  # obama, biden, alex, then the same three again
    start_worker(make_settings(max_batch=3, batch_wait_ms=50), queues="stylize")
    results = _results(client, ids)
    assert all(r[0]["status"] == "succeeded" for r in results), [r[0] for r in results]
    assert [r[0]["result"]["batch_size"] for r in results] == [3] * 6
    assert [r[0]["result"]["prepared_ahead"] for r in results] == [False] * 3 + [True] * 3
    assert [r[1] for r in results[:3]] == [r[1] for r in results[3:]]


def test_a_long_backlog_is_served_in_order_without_losing_a_claim(make_client, make_settings, start_worker) -> None:
    """More waiting jobs than one chain of prepared-ahead batches takes (`MAX_CHAIN` batches of 2): every
    job starts in the queue's order, each prepared batch runs, and no claim is left for the orphan pass to
    requeue. (A chain's last batch used to claim its successor and end without running it: those two jobs
    waited for the orphan pass, a heartbeat TTL, 20 s by default, or rq's own cleanup, a minute.)"""
    from workers.worker import MAX_CHAIN

    client = make_client()
    jobs = 2 * MAX_CHAIN + 4
    ids = [post_photo(client, PHOTOS[i % 3], size=256).json()["id"] for i in range(jobs)]
    worker = start_worker(make_settings(max_batch=2, batch_wait_ms=50), queues="stylize")
    records = [wait_for(client, job_id, timeout=120) for job_id in ids]
    assert [r["status"] for r in records] == ["succeeded"] * jobs
    starts = [r["started_at"] for r in records]
    assert starts == sorted(starts), [i for i in range(1, jobs) if starts[i] < starts[i - 1]]
    assert [r["result"]["batch_size"] for r in records] == [2] * jobs
    # a chain: one batch claimed by rq's loop, then batches prepared ahead, MAX_CHAIN batches in all
    ahead = [r["result"]["prepared_ahead"] for r in records]
    chain = [False] * 2 + [True] * 2 * (MAX_CHAIN - 1)
    assert ahead == chain + [False] * 2 + [True] * 2
    assert "requeued" not in worker.log.read_text()


def test_kill_during_a_batch_recovers_every_job(make_client, make_settings, start_worker, redis) -> None:
    client = make_client()
    settings = make_settings(max_batch=16, batch_wait_ms=50)
    ids = []
    for i in range(16):
        ids.append(post_photo(client, PHOTOS[i % 3], size=256).json()["id"])
    queue = Queue("stylize", connection=redis)
    doomed = start_worker(settings, queues="stylize")
    deadline = time.time() + 60
    while queue.count > 0:  # the worker claimed the whole batch; it is preparing the images
        assert time.time() < deadline
        time.sleep(0.005)
    os.kill(doomed.proc.pid, signal.SIGKILL)
    doomed.proc.wait()
    finished = sum(client.get(f"/v1/jobs/{j}", headers=auth()).json()["status"] == "succeeded" for j in ids)
    assert finished < 16  # killed mid-batch
    rescuer = start_worker(settings, queues="stylize")
    results = [wait_for(client, j, timeout=120) for j in ids]
    assert all(r["status"] == "succeeded" for r in results), [r["status"] for r in results]
    # the claims that never started were requeued by our pass (a heartbeat TTL), not by rq's minute-long
    # intermediate-list cleanup ("stuck in intermediate queue" would fail them as an attempt)
    assert "died before starting it" in rescuer.log.read_text()


def test_the_bounded_wait(redis, make_client, make_settings, start_worker) -> None:
    queue = Queue("batch-test", connection=redis)
    queue.empty()

    class Worker:  # what claim_more reads of rq's worker
        connection, job_class, serializer = redis, Job, None

    started = time.monotonic()
    assert claim_more(Worker(), queue, 5, wait_s=0.5) == []  # an empty queue: no wait at all
    assert time.monotonic() - started < 0.05
    for _ in range(2):
        queue.enqueue("builtins.len", "ab")
    started = time.monotonic()
    claimed = claim_more(Worker(), queue, 5, wait_s=0.2)  # two waiting, then nothing more comes
    took = time.monotonic() - started
    assert len(claimed) == 2 and 0.15 < took < 0.3, took
    queue.empty()

    # a lone job through a batching worker starts at once, whatever the wait setting
    client = make_client()
    start_worker(make_settings(max_batch=8, batch_wait_ms=1000), queues="stylize")
    job = wait_for(client, post_photo(client, size=256).json()["id"])
    assert job["status"] == "succeeded" and job["result"]["batch_size"] == 1
    assert job["result"]["timings"]["wait"] < 1.0


def test_the_style_cache_is_sized_in_measured_bytes(make_settings, redis, second_style) -> None:
    from workers.context import JobContext
    from workers.serving.cache import ServingCache

    roomy = ServingCache(JobContext.from_settings(make_settings(style_cache_size=8), redis))
    roomy.stylizer("demo")
    one = roomy.style_cache_bytes()  # the demo style: its generator and its source generator
    generator = roomy.stylizer("demo").generator
    assert one >= sum(p.numel() * p.element_size() for p in generator.parameters())
    roomy.stylizer(second_style)
    assert list(roomy._styles) == ["demo", second_style] and roomy.style_cache_bytes() > one

    tight = ServingCache(
        JobContext.from_settings(make_settings(style_cache_size=8, style_cache_bytes=int(one * 1.5)), redis)
    )
    tight.stylizer("demo")
    tight.stylizer(second_style)  # two styles do not fit: the least recently used goes
    assert list(tight._styles) == [second_style] and tight.style_cache_bytes() <= int(one * 1.5)
    tight.stylizer("demo")
    assert list(tight._styles) == ["demo"]


def test_an_out_of_memory_batch_is_split_not_failed(make_settings, redis, monkeypatch, tiny_data_dir) -> None:
    """The CUDA path's OOM handling, on the CPU: a render that runs out of memory above 2 samples (the
    device's failure is injected; the splitting is what is tested) still prepares every job."""
    from PIL import Image
    from torch.cuda import OutOfMemoryError

    from service.platform.contract import StylizeJob
    from service.portrait.media.alignment import align_landmarks
    from workers.context import JobContext
    from workers.serving import stylize_pipeline
    from workers.serving.cache import ServingCache

    cache = ServingCache(JobContext.from_settings(make_settings(), redis))
    real_render, tried = stylize_pipeline.stylize_batch, []

    def render(stylizer, crops, request):
        tried.append(len(crops))
        if len(crops) > 2:
            raise OutOfMemoryError("CUDA out of memory (injected)")
        return real_render(stylizer, crops, request)

    monkeypatch.setattr(stylize_pipeline, "stylize_batch", render)
    photo = Image.open(FACES_DIR / "obama.jpg").convert("RGB")
    landmarks = _landmarks()
    aligned = align_landmarks(photo, landmarks, 256, 256)
    members = [
        stylize_pipeline._Member(StylizeJob(job_id=f"{i:032x}", style="demo", landmarks=landmarks), photo, aligned, 0.0)
        for i in range(5)
    ]
    prepared = stylize_pipeline._run_group(cache, members)
    assert tried == [5, 2, 3, 1, 2] and sorted(prepared) == [m.key for m in members]
    assert sorted(p[3] for p in prepared.values()) == [1, 2, 2, 2, 2]


def _landmarks() -> list[list[float]]:
    """Obama's 68 landmarks, found by the real aligner."""
    from PIL import Image

    from service.portrait.configs import AlignerConfig
    from service.portrait.media.alignment import FaceAligner

    photo = Image.open(FACES_DIR / "obama.jpg").convert("RGB")
    return FaceAligner(AlignerConfig()).detect(photo)[0].landmarks.tolist()


def test_a_batch_on_a_worker_of_several_queues_leaves_no_job_to_rerun(
    make_client, make_settings, start_worker, redis
) -> None:
    """rq parks a job dequeued from one queue in that queue's intermediate list; a worker of several queues
    never takes claimed jobs out of it, and rq's maintenance re-ran each of them a minute after it finished
    (the batch's networks ran again for nothing: half the throughput under load)."""
    client = make_client()
    ids = _submit(client, ["demo"] * 4)
    start_worker(make_settings(max_batch=8, batch_wait_ms=50), queues="stylize,train")
    results = _results(client, ids)
    assert [r[0]["result"]["batch_size"] for r in results] == [4, 4, 4, 4]
    queue = Queue("stylize", connection=redis)
    assert redis.lrange(queue.intermediate_queue_key, 0, -1) == []
    assert all(Job.fetch(j, connection=redis).get_status() == "finished" for j in ids)

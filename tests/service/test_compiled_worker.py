"""A stylize worker with `AGILEGAN_COMPILE` (issue 16): inductor compiles its programs before it takes
a job, every request then runs them (batched or alone, the same bytes) and none compiles; its images
match an eager worker's."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from tests.service.conftest import auth, post_photo, wait_for

PHOTOS = ["obama.jpg", "biden.jpg", "alex-lacamoire.png", "obama.jpg"]


def _run(client, photos: list[str]) -> list[tuple[dict, bytes]]:
    ids = [post_photo(client, p, size=256, format="png").json()["id"] for p in photos]
    out = []
    for job_id in ids:
        done = wait_for(client, job_id, timeout=120)
        assert done["status"] == "succeeded", done
        out.append((done["result"], client.get(f"/v1/jobs/{job_id}/result", headers=auth()).content))
    return out


def _pixels(png: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(png)), dtype=np.int16)


def test_a_compiling_worker_warms_at_start_and_serves_compiled(make_client, make_settings, start_worker, redis):
    client = make_client()
    settings = make_settings(compile="default", channels_last="measure", max_batch=4, batch_wait_ms=50)
    queued = [post_photo(client, p, size=256, format="png").json()["id"] for p in PHOTOS]  # waiting at start
    worker = start_worker(settings, queues="stylize", wait=False)
    worker.wait_ready(redis, timeout=600)  # registers only after compiling
    log = worker.log.read_text()
    assert "compiled 2 graphs" in log and "speed choice: channels_last" in log, log[-3000:]
    assert "speed choice: fold_blur" not in log  # auto: measured on CUDA only
    batched = []
    for job_id in queued:
        done = wait_for(client, job_id, timeout=120)
        assert done["status"] == "succeeded", done
        batched.append((done["result"], client.get(f"/v1/jobs/{job_id}/result", headers=auth()).content))
    assert [r["batch_size"] for r, _ in batched] == [4, 4, 4, 4]
    assert all(r["compiled"] for r, _ in batched)
    assert all(r["timings"]["encode"] > 0 and r["timings"]["synthesize"] > 0 for r, _ in batched)

    alone = [_run(client, [p])[0] for p in PHOTOS]  # one at a time through the same graphs
    assert all(r["compiled"] and r["batch_size"] == 1 for r, _ in alone)
    assert all(r["timings"]["encode"] > 0 and r["timings"]["synthesize"] > 0 for r, _ in alone)
    assert [png for _, png in alone] == [png for _, png in batched]
    assert "running eager" not in worker.log.read_text()  # no request found a graph missing
    worker.stop()
    assert "(0 from the cache)" in log

    # A restarted worker finds its graphs' kernels in the data folder's compile cache (issue 26), and takes the
    # memory format measured above (a new measurement under other load may pick the other layout: other graphs).
    restarted = start_worker(settings, queues="stylize", wait=False)
    restarted.wait_ready(redis, timeout=600)
    again_log = restarted.log.read_text()
    assert "compiled 2 graphs" in again_log and "(2 from the cache)" in again_log, again_log[-3000:]
    assert "kept from an earlier start" in again_log
    assert any((settings.data_dir / "compile-cache").iterdir())
    again = _run(client, PHOTOS[:1])
    assert again[0][0]["compiled"] and again[0][1] == alone[0][1]
    restarted.stop()

    start_worker(make_settings(), queues="stylize")  # eager
    eager = _run(client, PHOTOS[:1])
    assert not eager[0][0]["compiled"]
    diff = np.abs(_pixels(eager[0][1]) - _pixels(alone[0][1]))
    assert diff.max() <= 2 and diff.mean() < 0.05, (diff.max(), diff.mean())


def test_the_runtime_applies_its_memory_format_and_compiles_only_to_serve_images(make_settings) -> None:
    from models.inference.speed_choices import uses
    from workers.context import JobContext
    from workers.serving.cache import ServingCache

    rt = ServingCache(JobContext.from_settings(make_settings(compile="default", channels_last="off")))
    rt.warm_up(serves_images=False)  # a train-only worker: nothing to compile
    assert rt.programs.stats.warmed == [] and rt.speed_choices == {}
    stylizer = rt.stylizer("demo")
    assert not uses(stylizer.generator, "channels_last") and not uses(stylizer.inverter, "channels_last")
    rt.set_flag("channels_last", True)  # what a measurement decides reaches every loaded network
    assert uses(stylizer.generator, "channels_last") and uses(stylizer.inverter, "channels_last")
    rt.set_flag("fold_blur", True)
    assert (
        uses(stylizer.generator, "fold_blur")
        and not ServingCache(JobContext.from_settings(make_settings())).flags["fold_blur"]
    )
    assert ServingCache(JobContext.from_settings(make_settings())).flags[
        "channels_last"
    ]  # auto on the CPU: channels-last (measured faster)

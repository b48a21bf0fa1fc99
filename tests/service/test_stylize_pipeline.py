"""The worker side of the batch pipeline (workers/serving/stylize_pipeline.py), in-process on a real Redis and the
tiny registry: a job whose step fails (a corrupt upload decoded in the CPU pool) fails alone, with its
own code, while its batch goes on; a canceled job leaves the batch before its crop; each stage is marked
for the whole batch in one call (one Redis round trip), not once per job; each job's own run stores the
bytes its batch encoded."""

from __future__ import annotations

import io

from PIL import Image

from service.platform.jobstore import JobStore
from service.platform.redis_keys import cancel_key
from service.portrait.errors import InvalidImage
from tests.service.conftest import FACES, queue_stylize_job
from workers.kinds.stylize import run as run_stylize
from workers.lifecycle import JobCanceled
from workers.serving import stylize_pipeline


def test_a_failing_job_fails_alone_and_stages_are_marked_once_per_batch(
    job_ctx, serving, aligner, redis, monkeypatch
) -> None:
    ctx, cache = job_ctx, serving
    good = [queue_stylize_job(ctx, aligner, "obama.jpg"), queue_stylize_job(ctx, aligner, "biden.jpg", format="jpeg")]
    corrupt = queue_stylize_job(ctx, aligner, "obama.jpg", data=b"\xff\xd8\xff\xe0" + b"not a jpeg" * 50)
    canceled = queue_stylize_job(ctx, aligner, "biden.jpg")
    redis.set(cancel_key(canceled.job_id), 1)
    marks: list[tuple[str, list[str]]] = []
    real_advance = JobStore.advance

    def advance(self, job_ids, stage, fraction):
        marks.append((stage, list(job_ids)))
        return real_advance(self, job_ids, stage, fraction)

    monkeypatch.setattr(JobStore, "advance", advance)
    batch = [good[0], corrupt, canceled, good[1]]
    prepared = stylize_pipeline.prepare(ctx, cache, batch)

    # 1. The corrupt upload failed in the pool with its own error; the canceled job never reached its crop.
    assert isinstance(prepared[corrupt.job_id], InvalidImage)
    assert isinstance(prepared[canceled.job_id], JobCanceled)
    assert [prepared[j.job_id].batch_size for j in good] == [2, 2]
    # 2. One mark per stage for the jobs still in the batch.
    ids = [j.job_id for j in batch]
    assert marks == [("load", ids), ("align", [j.job_id for j in good]), ("generate", [j.job_id for j in good])]
    # 3. Each job's own run: the two good ones store what their batch encoded, the corrupt one fails
    # with its code, the canceled one is canceled; none of them ran the networks again.
    cache.prepared.update(prepared)
    monkeypatch.setattr(stylize_pipeline, "stylize_batch", None)  # a second network pass would fail
    results = {j.job_id: run_stylize(j.model_dump()) for j in batch}
    assert results[corrupt.job_id] == {"failed": "invalid_image"}
    assert ctx.jobs.get(corrupt.job_id)["error_code"] == "invalid_image"
    assert results[canceled.job_id] == {"canceled": True}
    for job, kind in zip(good, ("PNG", "JPEG")):
        assert results[job.job_id]["batch_size"] == 2 and ctx.jobs.get(job.job_id)["status"] == "succeeded"
        stored = Image.open(ctx.storage.result(job.job_id).path)
        assert (stored.format, stored.size) == (kind, (256, 256))


def test_a_group_photo_shares_a_batch_with_single_faces(job_ctx, serving, aligner) -> None:
    """faces=all: the group's faces are rows of the same network batch as the other jobs' faces; each job
    gets its own image back (the group's pasted into its whole photo) and the group its face listing."""
    from service.platform.contract import GroupFace

    ctx, cache = job_ctx, serving
    faces = aligner.detect(Image.open(FACES / "two_people.jpg").convert("RGB"), exhaustive=True)
    group = [GroupFace(box=list(f.box), landmarks=f.landmarks.tolist()) for f in faces]
    group.append(GroupFace(box=[1, 1, 20, 20], skipped="too_small"))
    single = queue_stylize_job(ctx, aligner, "obama.jpg")
    together = queue_stylize_job(ctx, aligner, "two_people.jpg", output="full", faces=group)
    prepared = stylize_pipeline.prepare(ctx, cache, [single, together])
    assert [prepared[j.job_id].batch_size for j in (single, together)] == [3, 3]
    listing = prepared[together.job_id].faces
    assert [f["status"] for f in listing] == ["stylized", "stylized", "skipped"] and listing[2]["reason"] == "too_small"
    assert prepared[single.job_id].faces == []
    image = Image.open(io.BytesIO(prepared[together.job_id].encoded.result().data))
    assert image.size == Image.open(FACES / "two_people.jpg").size

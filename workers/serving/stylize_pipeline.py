"""The stylize jobs of one batch through their steps: the worker side of `models.inference.pipeline`.

A batch of one is the single job; the dynamic batcher (workers/serving/batching.py) hands in more. Each step runs
for the whole batch:
1. What still needs work: each job's record and cancel key, one Redis round trip.
2. Decode and FFHQ-crop every photo in the serving cache's CPU pool (Pillow releases the GIL while it decodes
   and warps), then the stage mark ("align") of every job, one round trip.
3. The networks: one `stylize_batch` per group of jobs sharing a style and a `RenderRequest` (the style
   and its edits read once per group; a CUDA out-of-memory halves the group), then "generate", one round
   trip.
4. Resize or paste back (a group photo's faces, each in place), and encode the result, in the CPU pool:
   each job's bytes are a future that its own run (workers/kinds/stylize.py) waits on, so the batch's encodes run
   side by side. A crop is resized on the networks' device; JPEG crops are encoded there too when the
   worker has a device encoder (workers/serving/device_jpeg.py: nvJPEG on a GPU), the whole batch's in one call,
   and only their bytes come back to the host.

A job that fails a step gets its exception instead of a `Prepared`; its own run raises it, so it fails
alone, with its code, while the rest of the batch goes on.
"""

from __future__ import annotations

import json
import logging
import time
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

import torch
from PIL import Image
from torch.cuda import OutOfMemoryError as TorchOOM

from models.inference.pipeline import BatchResult, RenderRequest, resize_pixels, stylize_batch
from service.platform.contract import ALIGNED_SIZE, StylizeJob
from service.portrait.media.alignment import AlignedFace, align_landmarks, paste_faces
from service.portrait.media.images import encode_image, load_image
from workers.context import JobContext
from workers.lifecycle import JobCanceled
from workers.serving.cache import ServedStyle, ServingCache

log = logging.getLogger("agilegan.worker")


class JobGone(JobCanceled):
    """The job finished or was deleted before a step reached it: nothing more is done for it (its record,
    if any, is not recreated)."""


@dataclass(frozen=True)
class Encoded:
    data: bytes
    width: int
    height: int
    seconds: float  # the post-processing and encoding
    encoder: str = "pillow"  # or the device encoder's name (workers/serving/device_jpeg.py)


@dataclass
class Prepared:
    """A job's image made in a batch, with what its remaining steps need."""

    served: ServedStyle
    batch: BatchResult  # the group's networks' output (its row `index` is this job's first face)
    index: int
    encoded: Future[Encoded]  # post-processed and encoded in the CPU pool
    batch_size: int
    ahead: bool  # prepared while the previous batch finished (workers/worker.py)
    timings: dict[str, float] = field(default_factory=dict)
    faces: list[dict[str, Any]] = field(default_factory=list)  # faces=all: each face as the result lists it


@dataclass
class _Member:
    """One face of a job in the batch (a group photo has several, sharing the decoded photo)."""

    job: StylizeJob
    photo: Image.Image
    aligned: AlignedFace
    align_s: float
    face: int = 0  # its position among the job's faces to stylize

    @property
    def key(self) -> tuple[str, int]:
        return self.job.job_id, self.face


_Rendered = tuple[ServedStyle, BatchResult, int, int, float]  # style, batch, row, batch size, seconds


Outcome = dict[str, "Prepared | BaseException"]


def prepare(ctx: JobContext, cache: ServingCache, jobs: list[StylizeJob], ahead: bool = False) -> Outcome:
    """The batch's images by job id (see the module docs): a `Prepared`, or the exception of the step
    that failed for that job. `ahead`: prepared while the worker's previous batch finished."""
    out: Outcome = {}
    # 1. What still needs work.
    live = _advance(ctx, jobs, "load", 0.1, out)
    # 2. Decode and crop, in the pool.
    crops = {job.job_id: cache.cpu_pool.submit(_decode_and_crop, ctx, job) for job in live}
    by_job: dict[str, list[_Member]] = {}
    for job in live:
        try:
            by_job[job.job_id] = crops[job.job_id].result()
        except Exception as e:
            out[job.job_id] = e
    marked = _ids(_advance(ctx, [faces[0].job for faces in by_job.values()], "align", 0.3, out))
    aligned = [job_id for job_id in by_job if job_id in marked]  # in the batch's order
    members = [m for job_id in aligned for m in by_job[job_id]]
    # 3. The networks, per group of jobs (a group photo's faces are rows of the same batch).
    groups: dict[str, list[_Member]] = {}
    for m in members:
        groups.setdefault(_group_key(m.job), []).append(m)
    rendered: dict[tuple[str, int], _Rendered] = {}
    for group in groups.values():
        try:
            rendered.update(_run_group(cache, group))
        except Exception as e:  # the style or its edits: every job of the group fails with it
            out.update({m.job.job_id: e for m in group})
    finished = [by_job[i][0].job for i in aligned if i not in out]
    done = _ids(_advance(ctx, finished, "generate", 0.8, out))
    # 4. Post-process (resize, or paste back every face) and encode, in the pool; JPEG crops on the device.
    finishing = [i for i in aligned if i in done]
    on_device = [i for i in finishing if _device_encodable(by_job[i][0].job)]
    rows = {i: [(rendered[m.key][1], rendered[m.key][2]) for m in by_job[i]] for i in finishing}
    device_encoded = _encode_on_device(ctx, cache, [(by_job[i], rows[i]) for i in on_device])
    for job_id in finishing:
        faces = by_job[job_id]
        served, batch, index, size, seconds = rendered[faces[0].key]
        encoded = device_encoded.get(job_id) or cache.cpu_pool.submit(_finish, ctx, faces, rows[job_id])
        share = {name: s / size for name, s in batch.stages.items()}
        timings = {"align": sum(m.align_s for m in faces), "generate": seconds * len(faces) / size, **share}
        listing = _face_listing(faces[0].job, [rendered[m.key] for m in faces])
        out[job_id] = Prepared(served, batch, index, encoded, size, ahead, timings, listing)
    return out


def _advance(ctx: JobContext, jobs: list[StylizeJob], stage: str, fraction: float, out: Outcome) -> list[StylizeJob]:
    """The jobs still to work on after marking `stage` on all (one round trip); the others get JobCanceled
    or JobGone in `out`."""
    if not jobs:
        return []
    answers = ctx.jobs.advance([j.job_id for j in jobs], stage, fraction)
    for job in jobs:
        answer = answers[job.job_id]
        if answer == "canceled":
            out[job.job_id] = JobCanceled()
        elif answer != "ok":
            out[job.job_id] = JobGone(answer)
    return [j for j in jobs if answers[j.job_id] == "ok"]


def _ids(jobs: list[StylizeJob]) -> set[str]:
    return {j.job_id for j in jobs}


def _decode_and_crop(ctx: JobContext, job: StylizeJob) -> list[_Member]:
    """The photo decoded once, and the crop of each of its faces to stylize (one, or a group's)."""
    started = time.perf_counter()
    photo = load_image(ctx.storage.read_input(job.job_id), ctx.settings.max_pixels).image
    members = [
        _Member(job, photo, align_landmarks(photo, marks, ALIGNED_SIZE, ctx.settings.align_transform_size), 0.0, i)
        for i, marks in enumerate(job.face_landmarks)
    ]
    members[0].align_s = time.perf_counter() - started  # the decode and every crop of the job
    return members


def _face_listing(job: StylizeJob, rendered: list[_Rendered]) -> list[dict[str, Any]]:
    """faces=all: every face found, in the API's order (largest first), with what became of it."""
    if not job.faces:
        return []
    rows = iter(rendered)
    listing = []
    for face in job.faces:
        if face.landmarks is None:
            listing.append({"box": face.box, "status": "skipped", "reason": face.skipped})
            continue
        _, batch, index, _, _ = next(rows)
        branch = {"branch": batch.branches[index], "branch_source": batch.branch_sources[index]}
        listing.append({"box": face.box, "status": "stylized", **branch})
    return listing


def request_of(job: StylizeJob, served: ServedStyle) -> RenderRequest:
    """What the networks see of a job (a branch the style lacks is refused by `stylize_batch`)."""
    branch = None if job.attribute == "auto" else job.attribute
    return RenderRequest(branch, job.noise, 0, job.structure, job.strength, tuple(served.edits))


def _group_key(job: StylizeJob) -> str:
    edits = [e.model_dump() for e in job.edits]
    return json.dumps([job.style, job.attribute, job.noise, job.structure, job.strength, edits], sort_keys=True)


def _run_group(cache: ServingCache, group: list[_Member]) -> dict[tuple[str, int], _Rendered]:
    """The group's networks: the style and edits read once, one `stylize_batch`; a CUDA out-of-memory
    splits the group in halves (a group of one fails with it)."""
    served = cache.serve(group[0].job.style, group[0].job.edits)
    request = request_of(group[0].job, served)
    return _render(served, request, group)


def _render(served: ServedStyle, request: RenderRequest, group: list[_Member]) -> dict[tuple[str, int], _Rendered]:
    started = time.perf_counter()
    try:
        batch = stylize_batch(served.stylizer, [m.aligned.image for m in group], request)
    except TorchOOM:
        if len(group) == 1:
            raise
        torch.cuda.empty_cache()
        half = len(group) // 2
        log.warning("CUDA out of memory in a batch of %d: splitting it", len(group))
        return {**_render(served, request, group[:half]), **_render(served, request, group[half:])}
    seconds = time.perf_counter() - started
    return {m.key: (served, batch, i, len(group), seconds) for i, m in enumerate(group)}


def _finish(ctx: JobContext, faces: list[_Member], rows: list[tuple[BatchResult, int]]) -> Encoded:
    """Step 4 of one job on the host: its crop resized (on the device) and copied, or its faces copied and
    pasted back into the photo; then encoded by Pillow."""
    started = time.perf_counter()
    job = faces[0].job
    if job.output == "full":
        pairs = [(batch.image(row), m.aligned) for (batch, row), m in zip(rows, faces, strict=True)]
        image = paste_faces(faces[0].photo, pairs, ctx.aligner_config.feather)
    else:
        batch, row = rows[0]
        image = batch.image(row, job.size)
    data = encode_image(image, job.format, ctx.settings.png_level)
    return Encoded(data, image.size[0], image.size[1], time.perf_counter() - started)


def _device_encodable(job: StylizeJob) -> bool:
    """A JPEG crop: the device encoder's (a pasted-back photo is made on the host)."""
    return job.format == "jpeg" and job.output == "aligned"


def _encode_on_device(
    ctx: JobContext, cache: ServingCache, jobs: list[tuple[list[_Member], list[tuple[BatchResult, int]]]]
) -> dict[str, Future[Encoded]]:
    """Step 4 of the batch's JPEG crops (`_device_encodable`: one face each): each resized on the device,
    all encoded in one call of the device encoder, in a pool thread; a future per job. A job whose row the
    device encoder does not encode (the call failed, or it refused that row) is finished on the host
    instead (`_finish`, Pillow), so a GPU encoder's failure costs time, not the job. No futures when the
    worker has no device encoder: the jobs go to the pool as the others do."""
    encoder = cache.device_jpeg
    if not jobs or encoder is None:
        return {}
    futures: dict[str, Future[Encoded]] = {faces[0].job.job_id: Future() for faces, _ in jobs}

    def run() -> None:
        started = time.perf_counter()
        try:
            sized = [resize_pixels(batch.pixels[row], faces[0].job.size) for faces, [(batch, row)] in jobs]
            data: list[bytes | Exception] = list(encoder.encode(sized))
            if len(data) != len(jobs):
                raise RuntimeError(f"the device encoder gave {len(data)} results for {len(jobs)} images")
        except Exception as e:
            data = [e] * len(jobs)
        seconds = (time.perf_counter() - started) / len(jobs)
        for (faces, rows), out in zip(jobs, data, strict=True):
            job, future = faces[0].job, futures[faces[0].job.job_id]
            if not isinstance(out, Exception):
                future.set_result(Encoded(out, job.size, job.size, seconds, encoder.name))
                continue
            log.warning("job %s: the device JPEG encoder failed (%s); Pillow encodes it", job.job_id, out)
            try:
                future.set_result(_finish(ctx, faces, rows))
            except Exception as e:  # the host could not make it either: the job fails with this
                future.set_exception(e)

    def settled() -> None:
        """`run`, and whatever escapes it fails the jobs it left waiting (a job's run waits on its future)."""
        try:
            run()
        except BaseException as e:
            for future in futures.values():
                if not future.done():
                    future.set_exception(e)
            raise

    cache.cpu_pool.submit(settled)
    return futures


def payload_jobs(payloads: list[dict[str, Any]]) -> list[StylizeJob]:
    """The valid stylize payloads of a batch (an invalid one fails in its own run)."""
    jobs = []
    for payload in payloads:
        try:
            jobs.append(StylizeJob.model_validate(payload))
        except Exception:
            continue
    return jobs

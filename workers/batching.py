"""Dynamic batching of stylize jobs across requests, with rq's own semantics per job.

When a stylize worker takes a job and more stylize jobs wait on its queue, it claims up to
`max_batch − 1` more with rq's own `Queue.dequeue_any` (waiting at most `batch_wait_ms` for more, and
not at all when the queue is empty at that moment), registers every claimed job's execution (so each
has its heartbeat, and a worker killed mid-batch leaves every job to rq's abandoned-job recovery),
then `precompute` runs the networks once per group of jobs that share what changes the network
(style, attribute, noise, structure, strength, edits). Each job then runs through rq's `perform_job`
as usual: its function finds its image prepared, and does the rest of its steps (cancel checks,
post-processing, storing the result, recording success) on its own. A job whose preparation failed
simply runs the normal path.

On CUDA a group's crops go through the encoder and its codes through the generator as one batch; a
CUDA out-of-memory splits the group in halves and tries again. On the CPU each sample runs alone
(rendering sample by sample is faster there, measured in the README), so a batched job's image is
byte-identical to the same job run alone.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from typing import Any

import torch
from PIL import Image
from rq import Queue
from rq.job import Job
from torch.cuda import OutOfMemoryError as TorchOOM

from models.inference.directions import apply_edits
from models.inference.style_strength import quantise_strength
from models.inference.stylizer import Stylized, to_image
from models.networks.attribute_generator import AttributeAwareGenerator
from models.networks.encoder import image_to_tensor
from service.core.contract import ALIGNED_SIZE, FINISHED, STYLIZE_FUNCTION, StylizeJob, cancel_key
from service.core.media.alignment import AlignedFace, align_landmarks
from service.core.media.images import load_image
from workers.runtime import ServedStyle

log = logging.getLogger("agilegan.worker")
POLL_S = 0.001


@dataclass
class Prepared:
    """A job's image made in a batch, with what its remaining steps need."""

    photo: Image.Image
    aligned: AlignedFace
    stylized: Stylized
    served: ServedStyle  # the style and edits the job would otherwise read again
    batch_size: int
    timings: dict[str, float] = field(default_factory=dict)


def claim_more(worker: Any, queue: Queue, limit: int, wait_s: float) -> list[tuple[Job, Queue]]:
    """Up to `limit` more jobs from `queue` through rq's dequeue (no queue of our own): at once when
    they wait, for at most `wait_s` more while they keep coming, never when the queue is empty now."""
    claimed: list[tuple[Job, Queue]] = []
    deadline = time.monotonic() + wait_s
    while len(claimed) < limit:
        got = Queue.dequeue_any(
            [queue], None, connection=worker.connection, job_class=worker.job_class, serializer=worker.serializer
        )
        if got is not None:
            claimed.append(got)
            continue
        if not claimed or time.monotonic() >= deadline:
            break  # an empty queue: the job in hand does not wait
        time.sleep(POLL_S)
    return claimed


def batchable(job: Job) -> bool:
    return job.func_name == STYLIZE_FUNCTION


def _group_key(job: StylizeJob) -> str:
    edits = [e.model_dump() for e in job.edits]
    return json.dumps([job.style, job.attribute, job.noise, job.structure, job.strength, edits], sort_keys=True)


def precompute(rt: Any, payloads: list[dict[str, Any]]) -> dict[str, Prepared]:
    """The images of a batch of stylize payloads, by job id (see the module docs). Jobs that cannot be
    prepared here (unknown style, a bad photo, attribute-aware styles, random noise) are left out:
    their own job function handles them, errors included. So are jobs with nothing left to compute
    (canceled, deleted, or already succeeded in an earlier run): their own run cancels or skips them."""
    groups: dict[str, list[tuple[StylizeJob, Image.Image, AlignedFace, float]]] = {}
    for payload in payloads:
        try:
            job = StylizeJob.model_validate(payload)
            if job.noise == "random" or not _needs_work(rt, job.job_id):
                continue
            started = time.perf_counter()
            photo = load_image(rt.storage.read_input(job.job_id), rt.settings.max_pixels).image
            aligned = align_landmarks(photo, job.landmarks, ALIGNED_SIZE, rt.settings.align_transform_size)
            groups.setdefault(_group_key(job), []).append((job, photo, aligned, time.perf_counter() - started))
        except Exception:  # the job's own run reports it
            continue
    prepared: dict[str, Prepared] = {}
    for members in groups.values():
        try:
            prepared.update(_run_group(rt, members))
        except Exception:
            log.exception("batch preparation failed; the jobs run one by one")
    return prepared


def _needs_work(rt: Any, job_id: str) -> bool:
    record = rt.jobs.get(job_id)
    if not record or record.get("status") in FINISHED:
        return False
    return not rt.redis.exists(cancel_key(job_id))


def _run_group(rt: Any, members: list[tuple[StylizeJob, Image.Image, AlignedFace, float]]) -> dict[str, Prepared]:
    first = members[0][0]
    served = rt.serve(first.style, first.edits)
    return _render_group(rt, served, members)


def _render_group(rt: Any, served: ServedStyle, members: list) -> dict[str, Prepared]:
    """The group's images through `served` (the style and edits, read once for the group)."""
    stylizer, edits = served.stylizer, served.edits
    if isinstance(stylizer.generator, AttributeAwareGenerator):
        return {}
    try:
        images, stages, compiled = _render(stylizer, [m[2].image for m in members], members[0][0], edits)
    except TorchOOM:
        if len(members) == 1:
            return {}
        torch.cuda.empty_cache()
        half = len(members) // 2
        log.warning("CUDA out of memory in a batch of %d: splitting it", len(members))
        return {**_render_group(rt, served, members[:half]), **_render_group(rt, served, members[half:])}
    out = {}
    share = {name: seconds / len(members) for name, seconds in stages.items()}
    for (job, photo, aligned, align_s), (image, wplus) in zip(members, images):
        strength = quantise_strength(job.strength)
        stylized = Stylized(image, None, wplus, None, None, job.structure, strength, compiled, share)
        timings = {"align": align_s, "generate": share["encode"] + share["synthesize"], **share}
        out[job.job_id] = Prepared(photo, aligned, stylized, served, len(members), timings)
    return out


@torch.inference_mode()
def _render(
    stylizer, crops: list[Image.Image], job: StylizeJob, edits
) -> tuple[list[tuple[Image.Image, torch.Tensor]], dict[str, float], bool]:
    """Encoder → w+ → edits → the style's generator for a group's crops: one batch on CUDA, one sample
    at a time elsewhere (the same computation as a job alone, so the same bytes). Returns the images
    with their w+ [1, L, D], the seconds of each stage for the whole group, and whether every pass ran
    through compiled programs."""
    device = stylizer.generator.latent_avg.device
    size = stylizer.inverter.config.encoder.input_size
    chunks = [crops] if device.type == "cuda" else [[c] for c in crops]
    results, stages, compiled = [], {"encode": 0.0, "synthesize": 0.0}, True
    for chunk in chunks:
        started = time.perf_counter()
        x = torch.cat([image_to_tensor(c, size) for c in chunk]).to(device)
        wplus, encoded = stylizer.encode_flagged(x)
        wplus = apply_edits(wplus, edits)
        _sync(device)
        stages["encode"] += time.perf_counter() - started
        started = time.perf_counter()
        rng = torch.Generator().manual_seed(0)
        images, rendered = stylizer.render_flagged(wplus, job.structure, job.strength, job.noise, rng)
        _sync(device)
        stages["synthesize"] += time.perf_counter() - started
        compiled = compiled and encoded and rendered
        results += [(to_image(img), w[None]) for img, w in zip(images, wplus)]
    return results, stages, compiled


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)

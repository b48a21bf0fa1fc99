"""JPEG results encoded on the networks' device (workers/serving/device_jpeg.py), through the real nvImageCodec.

On this CPU-only machine nvImageCodec encodes with libjpeg-turbo, byte for byte what Pillow writes; a GPU
host runs the same calls on device tensors with nvJPEG. So: the encoder's bytes are Pillow's; a row it
cannot take fails alone; in a worker's batch the JPEG crops go through it (the result record names the
encoder) with the same bytes as the Pillow worker's, while PNG crops and pasted-back photos stay on
Pillow; a failed device encode falls back to Pillow, and a row neither can take fails only its job; a
worker asked for it where it cannot encode refuses to start, and `auto` keeps Pillow on the CPU.
"""

from __future__ import annotations

import dataclasses
import io
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from service.portrait.media.images import encode_image
from tests.service.conftest import FACES, queue_stylize_job
from workers.serving import stylize_pipeline
from workers.serving.device_jpeg import DeviceJpeg, open_device_jpeg

CPU = torch.device("cpu")


def _rows() -> list[torch.Tensor]:
    """Real photos as [S, S, 3] uint8 rows of a few sizes (odd ones too: JPEG pads to 8×8 blocks)."""
    rows = []
    for name, size in (("obama.jpg", 256), ("biden.jpg", 64), ("alex-lacamoire.png", 37)):
        image = Image.open(FACES / name).convert("RGB").resize((size, size), Image.Resampling.BICUBIC)
        rows.append(torch.from_numpy(np.asarray(image).copy()))
    return rows


def test_the_encoder_writes_pillows_bytes_and_a_bad_row_fails_alone() -> None:
    encoder = open_device_jpeg("nvimgcodec", CPU)
    assert isinstance(encoder, DeviceJpeg) and encoder.name == "nvimgcodec-cpu"
    rows = _rows()
    bad = rows[0].float()  # not uint8
    out = encoder.encode([rows[0], bad, rows[1], rows[2][:, :, :2].contiguous(), rows[2]])
    assert isinstance(out[1], ValueError) and isinstance(out[3], ValueError)
    for row, data in zip(rows, (out[0], out[2], out[4]), strict=True):
        assert data == encode_image(Image.fromarray(row.numpy()), "jpeg")  # the same quality and 4:4:4
    assert encoder.encode([]) == []


def test_auto_keeps_pillow_on_the_cpu_and_pillow_is_never_the_device() -> None:
    assert open_device_jpeg("auto", CPU) is None
    assert open_device_jpeg("pillow", CPU) is None


def test_a_worker_asked_for_it_refuses_to_start_where_it_cannot_encode(make_settings, redis) -> None:
    """Without nvImageCodec (hidden from the import system of a fresh process), `nvimgcodec` stops the
    runtime's construction with DeviceJpegUnavailable; `auto` starts on Pillow."""
    script = (
        "import sys; sys.modules['nvidia.nvimgcodec'] = None\n"
        "from workers.serving.device_jpeg import DeviceJpegUnavailable, open_device_jpeg\n"
        "import torch\n"
        "assert open_device_jpeg('auto', torch.device('cpu')) is None\n"
        "try:\n"
        "    open_device_jpeg('nvimgcodec', torch.device('cpu'))\n"
        "except DeviceJpegUnavailable as e:\n"
        "    print('refused:', e)\n"
    )
    root = Path(__file__).parents[2]
    done = subprocess.run([sys.executable, "-c", script], cwd=root, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "refused: AGILEGAN_JPEG_ENCODER=nvimgcodec" in done.stdout and "not installed" in done.stdout


@pytest.fixture
def workers(make_settings, redis, monkeypatch):
    """Two workers' (job context, serving cache) on the tiny registry: Pillow's, and one encoding JPEG on its
    device."""
    from workers.context import JobContext
    from workers.serving.cache import ServingCache

    made = {}
    for name in ("pillow", "nvimgcodec"):
        ctx = JobContext.from_settings(make_settings(jpeg_encoder=name), redis)
        made[name] = (ctx, ServingCache(ctx))
    yield made
    for _, cache in made.values():
        cache.cpu_pool.shutdown()


def test_a_batch_encodes_its_jpeg_crops_on_the_device_with_pillows_bytes(workers, aligner) -> None:
    results = {}
    for name, (ctx, cache) in workers.items():
        jobs = [
            queue_stylize_job(ctx, aligner, "obama.jpg", format="jpeg"),
            queue_stylize_job(ctx, aligner, "biden.jpg", format="png"),
            queue_stylize_job(ctx, aligner, "biden.jpg", format="jpeg", size=512),
            queue_stylize_job(ctx, aligner, "obama.jpg", format="jpeg", output="full"),
        ]
        prepared = stylize_pipeline.prepare(ctx, cache, jobs)
        results[name] = [prepared[j.job_id].encoded.result() for j in jobs]
    device, pillow = results["nvimgcodec"], results["pillow"]
    assert [e.encoder for e in device] == ["nvimgcodec-cpu", "pillow", "nvimgcodec-cpu", "pillow"]
    assert {e.encoder for e in pillow} == {"pillow"}
    assert [e.data for e in device] == [e.data for e in pillow]  # the same pixels, the same encoder settings
    assert [(e.width, e.height) for e in device[:3]] == [(256, 256), (256, 256), (512, 512)]
    for encoded, kind in zip(device, ("JPEG", "PNG", "JPEG", "JPEG")):
        image = Image.open(io.BytesIO(encoded.data))
        assert image.format == kind and image.size == (encoded.width, encoded.height)


def test_the_result_record_names_the_encoder(workers, aligner, monkeypatch) -> None:
    from workers import context
    from workers.kinds.stylize import run as run_stylize
    from workers.serving import cache as cache_module

    ctx, cache = workers["nvimgcodec"]
    monkeypatch.setattr(context, "_CONTEXT", ctx)
    monkeypatch.setattr(cache_module, "_CACHE", cache)
    jobs = [queue_stylize_job(ctx, aligner, "obama.jpg", format=f) for f in ("jpeg", "png")]
    results = [run_stylize(j.model_dump()) for j in jobs]
    assert [r["encoder"] for r in results] == ["nvimgcodec-cpu", "pillow"]
    stored = Image.open(ctx.storage.result(jobs[0].job_id).path)
    assert (stored.format, stored.size) == ("JPEG", (256, 256))


def test_a_failed_device_encode_falls_back_to_pillow(workers, aligner, monkeypatch) -> None:
    """The device encoder failing for a whole call (injected: a GPU out of memory, say) costs the batch's
    JPEG crops time, not their jobs: Pillow makes the same bytes on the host."""
    ctx, cache = workers["nvimgcodec"]

    def out_of_memory(rows):
        raise RuntimeError("nvJPEG: out of device memory")

    monkeypatch.setattr(cache.device_jpeg, "encode", out_of_memory)
    jobs = [queue_stylize_job(ctx, aligner, p, format="jpeg") for p in ("obama.jpg", "biden.jpg")]
    prepared = stylize_pipeline.prepare(ctx, cache, jobs)
    encoded = [prepared[j.job_id].encoded.result(timeout=60) for j in jobs]
    assert [e.encoder for e in encoded] == ["pillow", "pillow"]
    host, host_cache = workers["pillow"]
    again = [queue_stylize_job(host, aligner, p, format="jpeg") for p in ("obama.jpg", "biden.jpg")]
    expected = stylize_pipeline.prepare(host, host_cache, again)
    assert [e.data for e in encoded] == [expected[j.job_id].encoded.result().data for j in again]


def test_a_row_neither_encoder_can_take_fails_only_its_job(workers, aligner) -> None:
    """The batch's device encodes are one call: a row it refuses (here four channels, as a broken render
    would give) goes to Pillow, which refuses it too, so its job fails with that error alone; the other
    rows keep the device's bytes."""
    ctx, cache = workers["nvimgcodec"]
    jobs = [queue_stylize_job(ctx, aligner, p, format="jpeg") for p in ("obama.jpg", "biden.jpg")]
    prepared = stylize_pipeline.prepare(ctx, cache, jobs)
    batch = prepared[jobs[0].job_id].batch
    broken = dataclasses.replace(batch, pixels=torch.cat([batch.pixels, batch.pixels[..., :1]], -1))
    members = [stylize_pipeline._Member(j, Image.new("RGB", (8, 8)), None, 0.0) for j in jobs]  # type: ignore[arg-type]
    items = [
        ([members[0]], [(broken, prepared[jobs[0].job_id].index)]),
        ([members[1]], [(batch, prepared[jobs[1].job_id].index)]),
    ]
    futures = stylize_pipeline._encode_on_device(ctx, cache, items)
    with pytest.raises(ValueError):
        futures[jobs[0].job_id].result(timeout=30)
    good = futures[jobs[1].job_id].result(timeout=30)
    assert good.encoder == "nvimgcodec-cpu" and good.data == prepared[jobs[1].job_id].encoded.result().data

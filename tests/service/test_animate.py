"""Video jobs through the service (issue 14): POST /v1/animate, header limits, retarget, cancel, and a
worker killed mid-video resuming from its finished chunks; real Redis, workers, dlib, PyAV, tiny models."""

from __future__ import annotations

import io
import os
import signal
import time
import zipfile
from pathlib import Path

import av
import numpy as np
from PIL import Image

from service.portrait.media.video_io import probe, read_frames
from tests.exemplar_data import FACES
from tests.service.conftest import auth, wait_for


def _video(path: Path, frames: int, audio: bool = True) -> bytes:
    """A portrait panning slowly with jitter, 25 fps, with a tone when `audio`."""
    face = Image.open(FACES / "obama.jpg").convert("RGB").resize((240, 288))
    rng = np.random.RandomState(0)
    with av.open(str(path), "w") as out:
        video = out.add_stream("libx264", rate=25)
        video.width, video.height, video.pix_fmt = 240, 288, "yuv420p"
        sound = out.add_stream("aac", rate=16000) if audio else None
        for t in range(frames):
            dx, dy = rng.normal(0, 1.5, 2) + (0.5 * t, 0)
            frame = face.transform(face.size, Image.AFFINE, (1, 0, dx, 0, 1, dy), Image.BILINEAR)
            for packet in video.encode(av.VideoFrame.from_ndarray(np.asarray(frame), format="rgb24")):
                out.mux(packet)
        for packet in video.encode(None):
            out.mux(packet)
        if sound is not None:
            tone = (np.sin(np.arange(16000 * frames // 25) / 8) * 0.3).astype(np.float32)[None]
            chunk = av.AudioFrame.from_ndarray(tone, format="fltp", layout="mono")
            chunk.sample_rate = 16000
            for packet in [*sound.encode(chunk), *sound.encode(None)]:
                out.mux(packet)
    return path.read_bytes()


def _post(client, video: bytes, **fields: object):
    files = {"video": ("in.mp4", video)}
    if "portrait" in fields:
        files["portrait"] = ("p.jpg", fields.pop("portrait"))
    data = {"style": "demo", **{k: str(v) for k, v in fields.items()}}
    return client.post("/v1/animate", files=files, data=data, headers=auth())


def test_a_video_is_stylized_with_its_audio(
    make_client, make_settings, start_worker, tmp_path: Path, tiny_data_dir: Path
) -> None:
    client = make_client()
    video = _video(tmp_path / "in.mp4", 12)
    before = set((tiny_data_dir / "video").glob("*"))
    # refusals from the header and the form, before anything is queued
    limited = make_client(max_video_frames=5)
    too_many = _post(limited, video)
    assert too_many.status_code == 413 and too_many.json()["code"] == "too_many_frames"
    too_long = _post(make_client(max_video_seconds=0.2), video)
    assert too_long.status_code == 413 and too_long.json()["code"] == "video_too_long"
    not_video = _post(client, b"hello, not a video")
    assert not_video.status_code == 415 and not_video.json()["code"] == "unsupported_video"
    no_portrait = _post(client, video, mode="retarget")
    assert no_portrait.status_code == 422 and no_portrait.json()["code"] == "portrait_required"
    dog = _post(client, video, mode="retarget", portrait=(FACES / "dogs.jpg").read_bytes())
    assert dog.status_code == 422 and dog.json()["code"] == "no_face"
    assert set((tiny_data_dir / "video").glob("*")) == before  # a refused upload leaves nothing behind

    start_worker(make_settings(video_chunk_frames=4), queues="video")
    job = _post(client, video, format="mp4", output="full")
    assert job.status_code == 202, job.text
    done = wait_for(client, job.json()["id"], timeout=120)
    assert done["status"] == "succeeded", done
    assert done["result"]["frames"] == 12 and done["result"]["stylized"] == 12 and done["result"]["passed_through"] == 0
    assert done["detail"]["frames_total"] == 12
    result = client.get(f"/v1/jobs/{done['id']}/result", headers=auth())
    assert result.headers["content-type"] == "video/mp4"
    (tmp_path / "out.mp4").write_bytes(result.content)
    info = probe(tmp_path / "out.mp4")
    assert (info.frames, info.width, info.height, info.fps, info.has_audio) == (12, 240, 288, 25.0, True)

    # retarget, as a GIF of aligned crops
    retarget = _post(
        client, video, mode="retarget", output="aligned", format="gif", portrait=(FACES / "biden.jpg").read_bytes()
    )
    assert retarget.status_code == 202, retarget.text
    done = wait_for(client, retarget.json()["id"], timeout=120)
    assert done["status"] == "succeeded", done
    gif = client.get(f"/v1/jobs/{done['id']}/result", headers=auth())
    assert gif.headers["content-type"] == "image/gif"
    (tmp_path / "out.gif").write_bytes(gif.content)
    frames = list(read_frames(tmp_path / "out.gif"))
    assert len(frames) == 12 and frames[0].shape == (256, 256, 3)


def test_a_killed_worker_resumes_from_finished_chunks_and_cancel_stops(
    make_client, make_settings, start_worker, tmp_path: Path, tiny_data_dir: Path
) -> None:
    client = make_client()
    settings = make_settings(video_chunk_frames=4)
    video = _video(tmp_path / "in.mp4", 80, audio=False)
    job_id = _post(client, video, format="zip", output="aligned", size=256).json()["id"]
    work = tiny_data_dir / "video" / job_id / "work"
    doomed = start_worker(settings, queues="video")
    deadline = time.time() + 120
    while not (work / "chunk-00001.npz").exists():
        assert time.time() < deadline and doomed.proc.poll() is None
        time.sleep(0.01)
    os.kill(doomed.proc.pid, signal.SIGKILL)
    doomed.proc.wait()
    finished = len(list(work.glob("chunk-*.npz")))
    assert 2 <= finished < 20  # killed mid-video
    start_worker(settings, queues="video")
    done = wait_for(client, job_id, timeout=180)
    assert done["status"] == "succeeded", done
    assert done["attempts"] == 2 and done["result"]["chunks_resumed"] >= finished
    archive = client.get(f"/v1/jobs/{job_id}/result", headers=auth()).content

    assert len(zipfile.ZipFile(io.BytesIO(archive)).namelist()) == 80
    assert not (tiny_data_dir / "video" / job_id).exists()  # the work files went with the success

    # cancel mid-video: the job stops at its next chunk
    job_id = _post(client, video, format="zip", output="aligned").json()["id"]
    work = tiny_data_dir / "video" / job_id / "work"
    deadline = time.time() + 120
    while not (work / "chunk-00000.npz").exists():
        assert time.time() < deadline
        time.sleep(0.01)
    assert client.post(f"/v1/jobs/{job_id}/cancel", headers=auth()).status_code in (200, 202)
    stopped = wait_for(client, job_id, timeout=60)
    assert (
        stopped["status"] == "canceled" and client.get(f"/v1/jobs/{job_id}/result", headers=auth()).status_code == 409
    )


def test_every_face_of_a_group_video_through_the_service(make_client, make_settings, start_worker, tmp_path) -> None:
    """faces=all on /v1/animate: the two people of the clip tracked and stylized, their tracks listed."""
    from tests.models.test_video import _two_people_video

    source, frames = _two_people_video(tmp_path / "group.zip")
    client = make_client()
    refused = _post(client, source.read_bytes(), faces="all", output="aligned", format="zip")
    assert refused.status_code == 422 and refused.json()["code"] == "faces_need_full_output"
    retarget = _post(
        client, source.read_bytes(), faces="all", mode="retarget", portrait=(FACES / "obama.jpg").read_bytes()
    )
    assert retarget.status_code == 422 and retarget.json()["code"] == "faces_need_stylize_mode"
    start_worker(make_settings(), queues="video")
    job = _post(client, source.read_bytes(), faces="all", format="zip")
    assert job.status_code == 202, job.text
    done = wait_for(client, job.json()["id"], timeout=120)
    assert done["status"] == "succeeded", done
    assert [(t["first_frame"], t["last_frame"], t["stylized"]) for t in done["result"]["tracks"]] == [(0, 9, 10)] * 2
    archive = client.get(f"/v1/jobs/{done['id']}/result", headers=auth()).content
    names = sorted(zipfile.ZipFile(io.BytesIO(archive)).namelist())
    assert len(names) == 10
    first = np.asarray(Image.open(io.BytesIO(zipfile.ZipFile(io.BytesIO(archive)).read(names[0]))).convert("RGB"))
    assert first.shape == np.asarray(frames[0]).shape and not np.array_equal(first, np.asarray(frames[0]))

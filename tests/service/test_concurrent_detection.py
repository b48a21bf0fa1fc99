"""Hardening finding 1: concurrent full detection passes must not corrupt the API process's heap.

dlib's object detectors keep scratch buffers inside them; the API shared one detector between the
threads of its pool, and parallel uploads that take the full detection pass (no face, or face_index > 0)
crashed the process (`double free or corruption`). Uploads of different sizes reallocate those buffers
on every call, which made the crash certain on the old code (5 of 5 runs of this load in a script).
"""

from __future__ import annotations

import io
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx2 as httpx
import numpy as np
import pytest
from PIL import Image

from service.portrait.configs import AlignerConfig
from service.portrait.media.alignment import FaceAligner
from tests.service.conftest import FACES, auth, free_port, serve_api, stop_process

pytestmark = pytest.mark.serial  # timing or memory bounds: run alone (Makefile), not beside other tests

SIDES = (160, 200, 240, 280, 320, 400, 520, 640)


def _faceless_uploads() -> list[bytes]:
    """The dog photo (no human face) at several sizes, as JPEGs."""
    dogs = Image.open(FACES / "dogs.jpg").convert("RGB")
    blobs = []
    for side in SIDES:
        buf = io.BytesIO()
        dogs.resize((side, side * dogs.size[1] // dogs.size[0])).save(buf, format="JPEG", quality=90)
        blobs.append(buf.getvalue())
    return blobs


def test_parallel_full_detection_passes_leave_the_api_alive(make_settings, tmp_path: Path) -> None:
    settings = make_settings(min_face_size=16, detect_concurrency=8, max_queue_depth=10_000)
    port = free_port()
    api = serve_api(settings, port, tmp_path / "api.log")
    base = f"http://127.0.0.1:{port}"
    uploads = _faceless_uploads()

    def post(i: int) -> tuple[int, str]:
        try:
            r = httpx.post(
                f"{base}/v1/stylize",
                files={"image": ("dogs.jpg", uploads[i % len(uploads)])},
                data={"style": "demo", "face_index": "1"},
                headers=auth(),
                timeout=60,
            )
            return r.status_code, r.json().get("code", "")
        except httpx.HTTPError as e:
            return 0, type(e).__name__

    try:
        with ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(post, range(160)))
        alive = api.poll() is None
        log = (tmp_path / "api.log").read_text()
        assert alive, f"the API died (exit {api.returncode}): {log[-1500:]}"
        assert set(answers) == {(422, "no_face")}, {a: answers.count(a) for a in set(answers)}
        assert httpx.get(f"{base}/healthz", timeout=5).status_code == 200
    finally:
        stop_process(api)


def test_a_shared_aligner_gives_every_thread_the_sequential_answer() -> None:
    """Detection from 6 threads at once equals detection one at a time, photo by photo."""
    aligner = FaceAligner(AlignerConfig())
    photos = []
    for name in ("two_people.jpg", "obama.jpg", "biden.jpg"):
        image = Image.open(FACES / name).convert("RGB")
        photos += [image, image.resize((image.size[0] * 3 // 4, image.size[1] * 3 // 4))]
    expected = [[f.landmarks for f in aligner.detect(p, exhaustive=True)] for p in photos]
    with ThreadPoolExecutor(6) as pool:
        got = list(pool.map(lambda i: [f.landmarks for f in aligner.detect(photos[i % 6], exhaustive=True)], range(36)))
    for i, faces in enumerate(got):
        assert len(faces) == len(expected[i % 6])
        for a, b in zip(faces, expected[i % 6]):
            np.testing.assert_array_equal(a, b)
    assert 1 < aligner.detector_sets <= 6  # one detector set per concurrent caller, not one per call

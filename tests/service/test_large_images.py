"""Hardening finding 5: a 40-megapixel upload costs the API what a small one does.

Faces are found on a copy at most 2048 px on its longer side: JPEG decodes straight at reduced scale
(draft mode), other formats are reduced right after decoding, and the landmarks are scaled back to the
full photo (the worker crops from it). Before, a flat 40 MP PNG cost 7 s and +517 MB per request.
"""

from __future__ import annotations

import io
import threading
from pathlib import Path

import httpx2 as httpx
import numpy as np
import pytest
from PIL import Image

from service.api.faces import face_landmarks
from service.portrait.media.alignment import FaceAligner
from tests.service.conftest import FACES, auth, free_port, serve_api, stop_process
from tests.service.test_upload_abuse import peak_rss_mb

pytestmark = pytest.mark.serial  # timing or memory bounds: run alone (Makefile), not beside other tests


def _encoded(image: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format=fmt, **kw)
    return buf.getvalue()


def test_landmarks_from_the_reduced_copy_match_full_resolution(aligner: FaceAligner) -> None:
    photo = Image.open(FACES / "obama.jpg").convert("RGB")
    big = _encoded(photo.resize((photo.size[0] * 6, photo.size[1] * 6), Image.Resampling.BICUBIC), "JPEG")
    reduced = np.array(face_landmarks(aligner, big, 40_000_000, 128))
    full = np.array(face_landmarks(aligner, big, 40_000_000, 128, max_side=100_000))
    face = full[:, 0].max() - full[:, 0].min()
    assert np.abs(reduced - full).mean() < 0.005 * face  # 3 px on a 1,450 px face


def test_eight_forty_megapixel_uploads_at_once_stay_small(make_settings, tmp_path: Path) -> None:
    flat = Image.new("RGB", (8000, 5000), (200, 180, 160))
    uploads = [_encoded(flat, "PNG"), _encoded(flat, "JPEG", quality=90)]
    port = free_port()
    api = serve_api(make_settings(max_upload_bytes=50_000_000), port, tmp_path / "api.log")
    base = f"http://127.0.0.1:{port}"
    try:
        before = peak_rss_mb(api.pid)
        answers: list[tuple[int, str]] = []

        def post(data: bytes) -> None:
            r = httpx.post(
                f"{base}/v1/stylize", files={"image": ("p", data)}, data={"style": "demo"}, headers=auth(), timeout=120
            )
            answers.append((r.status_code, r.json()["code"]))

        threads = [threading.Thread(target=post, args=(uploads[i % 2],)) for i in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert answers == [(422, "no_face")] * 8  # deterministic under concurrency
        assert peak_rss_mb(api.pid) - before < 600  # the old code: 8 × ~517 MB, 4.3 GB seen
    finally:
        stop_process(api)

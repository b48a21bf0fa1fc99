"""`faces=all` (issue 28): every face of a group photo stylized in one batch and pasted back in place,
through the real API, Redis, a worker process, dlib and the tiny demo style. The two-person photo of the
test data and a made photo of five faces (one too small); the pixels outside every face's crop square are
the photo's, bit for bit; inside each, the face is stylized."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from service.api.faces import group_faces
from service.portrait.configs import AlignerConfig
from service.portrait.media.alignment import AlignedFace, FaceAligner, align_landmarks
from tests.group_photos import STYLIZED, group_photo
from tests.service.conftest import FACES, auth, post_photo, wait_for


def _png(image: Image.Image) -> bytes:
    out = io.BytesIO()
    image.save(out, "PNG")
    return out.getvalue()


def _squares(photo: Image.Image, data: bytes) -> list[AlignedFace]:
    """The crop square of every face the API stylizes (found as it finds them)."""
    faces = group_faces(FaceAligner(AlignerConfig()), data, 40_000_000, 128, 8)
    return [align_landmarks(photo, f["landmarks"], 64, 1024) for f in faces if f["landmarks"] is not None]


def _inside(face: AlignedFace, size: tuple[int, int], grow: float) -> np.ndarray:
    ys, xs = np.mgrid[: size[1], : size[0]]
    crop = face.photo_to_crop(np.stack([xs.ravel(), ys.ravel()], 1)) / face.size - 0.5
    return (np.abs(crop).max(1) <= 0.5 * grow).reshape(size[1], size[0])


@pytest.mark.parametrize("photo_name", ["two_people.jpg", "group"])
def test_every_face_of_a_group_photo_is_stylized_in_place(make_client, start_worker, make_settings, photo_name) -> None:
    client = make_client()
    start_worker(make_settings(), queues="stylize")
    photo = group_photo() if photo_name == "group" else Image.open(FACES / photo_name).convert("RGB")
    data = _png(photo)
    job = post_photo(client, data, output="full", faces="all", format="png", size=256)
    assert job.status_code == 202, job.text
    done = wait_for(client, job.json()["id"], timeout=90)
    assert done["status"] == "succeeded", done
    listing = done["result"]["faces"]
    expected = STYLIZED if photo_name == "group" else 2
    assert [f["status"] for f in listing].count("stylized") == expected
    if photo_name == "group":  # the one too small is listed, with its reason, and left as it was
        assert listing[-1]["status"] == "skipped" and listing[-1]["reason"] == "too_small"
    assert all(len(f["box"]) == 4 for f in listing) and done["result"]["batch_size"] == expected
    result = Image.open(io.BytesIO(client.get(f"/v1/jobs/{done['id']}/result", headers=auth()).content))
    assert result.size == photo.size
    before, after = np.asarray(photo, dtype=np.int16), np.asarray(result.convert("RGB"), dtype=np.int16)
    squares = _squares(photo, data)
    outside = np.ones(before.shape[:2], bool)
    for face in squares:
        outside &= ~_inside(face, photo.size, 1.02)
        inner = _inside(face, photo.size, 0.7)
        assert np.abs(after[inner] - before[inner]).mean() > 10  # stylized (the tiny style's noise-like faces)
    assert np.array_equal(after[outside], before[outside])


def test_group_requests_are_checked(make_client) -> None:
    client = make_client(max_faces=3)
    data = _png(group_photo())
    many = post_photo(client, data, output="full", faces="all")
    assert many.status_code == 422 and many.json()["code"] == "too_many_faces", many.text
    aligned = post_photo(client, FACES.joinpath("two_people.jpg").read_bytes(), faces="all")
    assert aligned.status_code == 422 and aligned.json()["code"] == "faces_need_full_output"
    nobody = post_photo(client, FACES.joinpath("dogs.jpg").read_bytes(), output="full", faces="all")
    assert nobody.status_code == 422 and nobody.json()["code"] == "no_face"

"""Pasting several stylized faces back into one photo (`paste_faces`, for `faces=all`), on the made group
photo of tests/group_photos.py with its real landmarks: each face a solid colour, so every pixel of the
result can be checked against the ideal composite."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from service.api.faces import group_faces
from service.portrait.configs import AlignerConfig
from service.portrait.media.alignment import FaceAligner, align_landmarks, face_layer, paste_faces
from tests.group_photos import STYLIZED, group_photo

COLOURS = [(230, 20, 20), (20, 20, 230), (20, 200, 20), (240, 240, 20)]


@pytest.fixture(scope="module")
def group():
    photo = group_photo()
    data = io.BytesIO()
    photo.save(data, "PNG")
    faces = group_faces(FaceAligner(AlignerConfig()), data.getvalue(), 40_000_000, 128, 8)
    aligned = [align_landmarks(photo, f["landmarks"], 256, 1024) for f in faces if f["landmarks"] is not None]
    assert len(aligned) == STYLIZED and [f["skipped"] for f in faces][-1] == "too_small"
    crops = [Image.new("RGB", (256, 256), c) for c in COLOURS]
    return photo, aligned, crops


def _layers(photo: Image.Image, aligned, crops) -> list[tuple[np.ndarray, np.ndarray]]:
    """Each face's warped colour and mask on the photo's full grid (mask in 0…1)."""
    out = []
    for crop, face in zip(crops, aligned, strict=True):
        (x0, y0), warped, mask = face_layer(photo.size, crop, face)
        colour, alpha = np.zeros((photo.size[1], photo.size[0], 3)), np.zeros((photo.size[1], photo.size[0], 1))
        colour[y0 : y0 + warped.size[1], x0 : x0 + warped.size[0]] = np.asarray(warped)
        alpha[y0 : y0 + mask.size[1], x0 : x0 + mask.size[0], 0] = np.asarray(mask) / 255.0
        out.append((colour, alpha))
    return out


def test_every_face_lands_in_place_with_the_larger_on_top_and_no_seam(group) -> None:
    photo, aligned, crops = group
    result = np.asarray(paste_faces(photo, list(zip(crops, aligned))), dtype=np.float64)
    before = np.asarray(photo, dtype=np.float64)
    layers = _layers(photo, aligned, crops)  # aligned is largest first
    # 1. Outside every mask: the photo, bit for bit.
    covered = np.zeros(before.shape[:2], bool)
    for _, alpha in layers:
        covered |= alpha[..., 0] > 0
    assert np.array_equal(result[~covered], before[~covered]) and covered.mean() < 0.4
    # 2. The ideal composite: each face "over" what is below it, smallest first.
    ideal = before.copy()
    for colour, alpha in reversed(layers):
        ideal = alpha * colour + (1 - alpha) * ideal
    error = np.abs(result - ideal).max(-1)
    assert error.max() <= 2.0, error.max()  # 8-bit rounding of each composite, nothing else
    # 3. Where the two largest overlap: the larger on top; under its feathered edge the smaller face shows
    #    through, not the photo (a seam would be photo pixels between them), and no colour twice.
    (big, big_alpha), (small, small_alpha) = layers[0], layers[1]
    both = (big_alpha[..., 0] == 1) & (small_alpha[..., 0] == 1)
    band = (big_alpha[..., 0] > 0) & (big_alpha[..., 0] < 1) & (small_alpha[..., 0] == 1)
    assert both.sum() > 100 and band.sum() > 100  # the made photo does overlap them
    assert np.abs(result[both] - COLOURS[0]).max() <= 1
    leak = np.abs(result[band] - (big_alpha * big + (1 - big_alpha) * small)[band]).max()
    assert leak <= 2.0, leak
    # 4. The order given does not matter.
    reordered = paste_faces(photo, list(zip(crops, aligned))[::-1])
    assert np.array_equal(np.asarray(reordered), result.astype(np.uint8))

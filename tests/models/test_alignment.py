"""Face alignment on real photos: FFHQ invariants, several faces, EXIF, bad inputs, paste-back."""

from __future__ import annotations

import io
import struct
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from skimage import data as skdata

from service.portrait.configs import AlignerConfig
from service.portrait.errors import (
    FaceIndexOutOfRange,
    FaceTooSmall,
    ImageTooLarge,
    InvalidImage,
    NoFaceFound,
    UnsupportedFormat,
)
from service.portrait.media.alignment import AlignedFace, FaceAligner, ffhq_quad, packaged_model_dir, paste_back
from service.portrait.media.images import load_image

pytestmark = pytest.mark.serial  # timing or memory bounds: run alone (Makefile), not beside other tests

FACES = Path(__file__).parents[1] / "data" / "faces"
PORTRAITS = ["obama.jpg", "biden.jpg", "alex-lacamoire.png"]


@pytest.fixture(scope="module")
def aligner() -> FaceAligner:
    return FaceAligner(AlignerConfig())


def photo(name: str) -> Image.Image:
    if name == "astronaut":
        return Image.fromarray(skdata.astronaut())
    return load_image(FACES / name).image


def ffhq_geometry(landmarks: np.ndarray, size: int) -> dict[str, float]:
    """The FFHQ construction measured on landmarks of an aligned crop, as fractions of the frame."""
    lm = landmarks
    eye_left, eye_right = lm[36:42].mean(0), lm[42:48].mean(0)
    eye_avg, eye_to_eye = (eye_left + eye_right) / 2, eye_right - eye_left
    eye_to_mouth = (lm[48] + lm[54]) / 2 - eye_avg
    centre = eye_avg + 0.1 * eye_to_mouth
    half = max(2 * np.hypot(*eye_to_eye), 1.8 * np.hypot(*eye_to_mouth))
    x_axis = eye_to_eye - np.flipud(eye_to_mouth) * [-1, 1]
    return {
        "centre_x": (centre[0] + 0.5) / size,
        "centre_y": (centre[1] + 0.5) / size,
        "half_side": half / size,
        "tilt_deg": float(np.degrees(np.arctan2(x_axis[1], x_axis[0]))),
        "eye_left_x": (eye_left[0] + 0.5) / size,
        "eye_right_x": (eye_right[0] + 0.5) / size,
        "eye_y": (eye_avg[1] + 0.5) / size,
    }


@pytest.mark.parametrize("name", ["astronaut", *PORTRAITS])
def test_aligned_crop_satisfies_the_ffhq_invariants(aligner: FaceAligner, name: str) -> None:
    """Tolerances: centre within 1.5 % of the frame, scale within 4 %, tilt within 2°, eyes within 2.5 %."""
    aligned = aligner.align(photo(name))
    assert aligned.image.size == (1024, 1024) and aligned.image.mode == "RGB"
    again = aligner.detect(aligned.image)
    assert again, "no face found again on the aligned crop"
    g = ffhq_geometry(again[0].landmarks, 1024)
    assert g["centre_x"] == pytest.approx(0.5, abs=0.015)
    assert g["centre_y"] == pytest.approx(0.5, abs=0.015)
    assert g["half_side"] == pytest.approx(0.5, rel=0.04)
    assert abs(g["tilt_deg"]) < 2.0
    assert g["eye_left_x"] == pytest.approx(0.375, abs=0.025)
    assert g["eye_right_x"] == pytest.approx(0.625, abs=0.025)
    assert g["eye_y"] == pytest.approx(0.475, abs=0.025)


def test_two_people_yield_two_faces_largest_first(aligner: FaceAligner) -> None:
    image = photo("two_people.jpg")
    faces = aligner.detect(image)
    assert len(faces) == 2
    assert faces[0].size >= faces[1].size
    crops = aligner.align_all(image)  # the exhaustive pass
    assert [c.face.box for c in crops] == [f.box for f in aligner.detect(image, exhaustive=True)]
    assert len(crops) == 2
    second = aligner.align(image, face_index=1)
    assert second.face.box == faces[1].box
    assert np.abs(np.asarray(second.image, float) - np.asarray(crops[0].image, float)).mean() > 10
    with pytest.raises(FaceIndexOutOfRange, match="face_index 2 asked, but 2 face"):
        aligner.align(image, face_index=2)


@pytest.mark.parametrize("source", ["dogs.jpg", "noise"])
def test_no_human_face(aligner: FaceAligner, source: str) -> None:
    if source == "noise":
        image = Image.fromarray(np.random.RandomState(0).randint(0, 256, (600, 800, 3), dtype=np.uint8))
    else:
        image = photo(source)
    with pytest.raises(NoFaceFound) as err:
        aligner.align(image)
    assert err.value.code == "no_face"


def test_a_tiny_face_is_too_small(aligner: FaceAligner) -> None:
    image = photo("obama-240p.jpg")
    assert aligner.detect(image), "the face is found..."
    with pytest.raises(FaceTooSmall, match="at least 128 px") as err:
        aligner.align(image)
    assert err.value.code == "face_too_small"
    # and a lower configured minimum accepts it
    small_ok = FaceAligner(AlignerConfig(min_face_size=64, transform_size=1024, output_size=256))
    assert small_ok.align(image).image.size == (256, 256)
    # every face of a photo: none large enough is the group's error; a large one keeps only itself
    with pytest.raises(FaceTooSmall, match=r"no face is at least 128 px across \(1 smaller found\)"):
        aligner.align_all(image)
    two = photo("two_people.jpg")
    faces = aligner.detect(two, exhaustive=True)
    between = FaceAligner(AlignerConfig(min_face_size=(faces[0].size + faces[1].size) / 2))
    assert [c.face.box for c in between.align_all(two, faces=faces)] == [faces[0].box]
    assert [f.large_enough(between.config.min_face_size) for f in faces] == [True, False]
    assert faces[1].large_enough(between.config.min_face_size, scale=2.0)  # found on a half-size copy


def test_exif_rotated_copy_aligns_to_the_same_crop(aligner: FaceAligner, tmp_path: Path) -> None:
    upright = photo("obama.jpg")
    # Store the pixels rotated and tag them "rotate 90° clockwise to display" (orientation 6), as phones do.
    stored = upright.transpose(Image.Transpose.ROTATE_90)
    exif = Image.Exif()
    exif[0x0112] = 6
    stored.save(tmp_path / "rotated.png", exif=exif)  # lossless: the very same pixels once upright
    stored.save(tmp_path / "rotated.jpg", quality=95, exif=exif)  # what a phone sends
    reference = aligner.align(upright)
    for name in ("rotated.png", "rotated.jpg"):
        loaded = load_image(tmp_path / name)
        assert loaded.exif_orientation == 6 and loaded.image.size == upright.size
        aligned = aligner.align(loaded.image)
        # PNG: the same pixels, the same quad; JPEG: re-compressed pixels move landmarks by about a pixel
        tolerance = 0.01 if name.endswith("png") else 0.015 * reference.face.quad()[1]
        assert np.abs(aligned.quad - reference.quad).max() < tolerance
    diff = np.abs(
        np.asarray(aligner.align(load_image(tmp_path / "rotated.png").image).image, dtype=np.float64)
        - np.asarray(reference.image, dtype=np.float64)
    )
    assert diff.max() == 0
    # without applying the tag, the sideways pixels hold no detectable upright face
    with pytest.raises(NoFaceFound):
        aligner.align(stored)


def test_truncated_file_is_invalid(tmp_path: Path) -> None:
    raw = (FACES / "obama.jpg").read_bytes()
    with pytest.raises(InvalidImage, match="truncated or corrupt") as err:
        load_image(raw[: len(raw) // 2])
    assert err.value.code == "invalid_image"
    with pytest.raises(UnsupportedFormat, match="not an image in an accepted format") as err:
        load_image(b"definitely not a photo")
    assert err.value.code == "unsupported_format"
    gif = io.BytesIO()
    Image.new("RGB", (8, 8)).save(gif, format="GIF")
    with pytest.raises(UnsupportedFormat):
        load_image(gif.getvalue())


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header claims width×height but carries one tiny compressed row."""

    def chunk(kind: bytes, payload: bytes) -> bytes:
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b"")
    )


def test_pixel_bomb_is_refused_from_the_header() -> None:
    bomb = _png_header_only(60_000, 60_000)  # 3.6 gigapixels, ~100 bytes
    assert len(bomb) < 200
    start = time.perf_counter()
    with pytest.raises(ImageTooLarge) as err:
        load_image(bomb)
    assert time.perf_counter() - start < 0.5  # never decoded: 10.8 GB of RGB would take minutes
    assert err.value.code == "image_too_large"
    with pytest.raises(ImageTooLarge, match="limit is 1.0 MP"):
        load_image(_png_header_only(2000, 1000), max_pixels=1_000_000)


@pytest.mark.parametrize("mode", ["P", "L", "CMYK", "RGBA", "LA", "I;16"])
def test_every_input_mode_becomes_rgb(mode: str) -> None:
    base = photo("alex-lacamoire.png")
    if mode == "I;16":
        gray = np.asarray(base.convert("L"), dtype=np.uint16) * 257
        image = Image.fromarray(gray)
        assert image.mode.startswith("I;16")
    elif mode == "P":
        image = base.convert("RGB").quantize(256, dither=Image.Dither.NONE)
    else:
        image = base.convert(mode)
    buf = io.BytesIO()
    image.save(buf, format="JPEG" if mode in ("L", "CMYK") else "PNG")
    loaded = load_image(buf.getvalue())
    assert loaded.image.mode == "RGB" and loaded.image.size == base.size
    expected = np.asarray(base.convert("RGB").convert("L"), dtype=np.float64)
    got = np.asarray(loaded.image.convert("L"), dtype=np.float64)
    if mode in ("RGBA", "LA"):
        alpha = np.asarray(image.getchannel("A"), dtype=np.float64) / 255
        expected = expected * alpha + 255 * (1 - alpha)  # composited on white
    assert np.abs(got - expected).mean() < 6.0


def test_the_source_rgba_photo_is_composited_on_white() -> None:
    raw = Image.open(FACES / "alex-lacamoire.png")
    assert raw.mode == "RGBA"
    rgba = np.asarray(raw, dtype=np.float64)
    clear = rgba[..., 3] == 0
    if clear.any():
        assert np.all(np.asarray(load_image(FACES / "alex-lacamoire.png").image)[clear] == 255)


def test_landmarks_at_full_resolution_of_a_large_photo(aligner: FaceAligner) -> None:
    small = photo("astronaut")
    big = small.resize((small.size[0] * 5, small.size[1] * 5), Image.Resampling.BICUBIC)  # 2560², 6.5 MP
    f_small, f_big = aligner.detect(small)[0], aligner.detect(big)[0]
    assert np.abs(f_big.landmarks / 5 - f_small.landmarks).mean() < 1.5


def test_paste_back_of_the_unmodified_crop_restores_the_photo(aligner: FaceAligner) -> None:
    image = photo("obama.jpg")
    aligned = aligner.align(image)
    pasted = paste_back(image, aligned.image, aligned, feather=0.08)
    assert pasted.size == image.size
    before, after = np.asarray(image, dtype=np.float64), np.asarray(pasted, dtype=np.float64)
    # inside the quad, away from the feathered edge: the face is reproduced
    inner = _quad_mask(aligned, image.size, shrink=0.8)
    assert np.abs(after[inner] - before[inner]).mean() < 4.0
    # far from the face: untouched, bit for bit
    outer = ~_quad_mask(aligned, image.size, shrink=1.05)
    assert np.array_equal(after[outer], before[outer])
    # and a modified crop really lands on the face
    inverted = Image.fromarray(255 - np.asarray(aligned.image))
    changed = np.asarray(paste_back(image, inverted, aligned), dtype=np.float64)
    assert np.abs(changed[inner] - before[inner]).mean() > 50


def test_crop_and_photo_coordinates_round_trip(aligner: FaceAligner) -> None:
    aligned = aligner.align(photo("astronaut"))
    points = np.array([[0.0, 0.0], [511.5, 300.0], [1023.0, 1023.0]])
    assert np.allclose(aligned.photo_to_crop(aligned.crop_to_photo(points)), points)
    quad, _ = ffhq_quad(aligned.face.landmarks)
    assert np.allclose(aligned.crop_to_photo(np.array([[-0.5, -0.5]])), quad[0])


def _quad_mask(aligned: AlignedFace, size: tuple[int, int], shrink: float) -> np.ndarray:
    ys, xs = np.mgrid[: size[1], : size[0]]
    crop = aligned.photo_to_crop(np.stack([xs.ravel(), ys.ravel()], 1)) / aligned.size - 0.5
    inside = np.abs(crop).max(1) <= 0.5 * shrink
    return inside.reshape(size[1], size[0])


def test_the_landmark_model_ships_with_face_recognition_models() -> None:
    folder = packaged_model_dir()
    assert folder is not None and (folder / "shape_predictor_68_face_landmarks.dat").stat().st_size > 90e6
    with pytest.raises(FileNotFoundError, match="dlib model file not found"):
        FaceAligner(AlignerConfig(predictor_path="/nonexistent/model.dat"))


def test_the_cnn_detector_is_the_fallback_for_faces_hog_misses(aligner: FaceAligner) -> None:
    cameraman = Image.fromarray(skdata.camera()).convert("RGB")  # a three-quarter profile
    assert aligner.detect(cameraman, exhaustive=True) == []
    fallback = FaceAligner(AlignerConfig(detector="hog+cnn", min_face_size=64, transform_size=1024))
    faces = fallback.detect(cameraman)
    assert len(faces) == 1 and faces[0].score > 0
    left, top, right, bottom = faces[0].box
    assert 150 < (left + right) / 2 < 350 and 50 < (top + bottom) / 2 < 250  # on the cameraman's head

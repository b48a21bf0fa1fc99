"""Face detection (dlib), FFHQ alignment and paste-back.

Every input photo and every style exemplar goes through `FaceAligner`: AgileGAN's encoder and
generators only understand faces cropped exactly the way FFHQ was. Torch-free (the API aligns uploads
to reject faceless photos at once).

Coordinates are dlib's pixel-index coordinates (pixel (x, y) has its centre at (x, y)) in the upright
photo (EXIF applied). The FFHQ quad is [top-left, bottom-left, bottom-right, top-right].
"""

from __future__ import annotations

import importlib.util
import math
import queue
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import dlib
import numpy as np
import scipy.ndimage
from PIL import Image

from service.portrait.configs import AlignerConfig
from service.portrait.errors import FaceIndexOutOfRange, FaceTooSmall, NoFaceFound

PREDICTOR_68 = "shape_predictor_68_face_landmarks.dat"
MMOD_CNN = "mmod_human_face_detector.dat"


def packaged_model_dir() -> Path | None:
    """The `models/` folder of the face-recognition-models package, located without importing it.

    (Importing it fails beside setuptools ≥ 81, which dropped the pkg_resources it uses.)
    """
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or spec.origin is None:
        return None
    return Path(spec.origin).parent / "models"


def _model_path(configured: str | None, name: str) -> Path:
    if configured:
        path = Path(configured)
    else:
        folder = packaged_model_dir()
        if folder is None:
            raise FileNotFoundError(f"{name}: install face-recognition-models or configure the model path")
        path = folder / name
    if not path.is_file():
        raise FileNotFoundError(f"dlib model file not found: {path}")
    return path


@dataclass(frozen=True, eq=False)
class Face:
    """A detected face: box (left, top, right, bottom) and 68 landmarks [68, 2], photo coordinates."""

    box: tuple[float, float, float, float]
    score: float
    landmarks: np.ndarray = field(repr=False)

    @property
    def area(self) -> float:
        left, top, right, bottom = self.box
        return max(0.0, right - left) * max(0.0, bottom - top)

    def quad(self) -> tuple[np.ndarray, float]:
        """FFHQ's oriented crop square from eyes and mouth corners: (quad [4, 2], side length)."""
        return ffhq_quad(self.landmarks)

    @property
    def size(self) -> float:
        """Side of the FFHQ crop in photo pixels: how large the face is for our purposes."""
        return self.quad()[1]

    def large_enough(self, minimum: float, scale: float = 1.0) -> bool:
        """Whether the face's FFHQ crop is at least `minimum` px across in the full photo (`scale`: full
        photo px per px of the image it was found in)."""
        return self.size * scale >= minimum

    def check_size(self, minimum: float, scale: float = 1.0) -> None:
        """FaceTooSmall unless `large_enough`."""
        if not self.large_enough(minimum, scale):
            raise FaceTooSmall(f"the face is {self.size * scale:.0f} px across; at least {minimum} px is needed")


def none_large_enough(found: int, minimum: float) -> FaceTooSmall:
    """The error of a photo whose `found` faces are all under `minimum` px across."""
    return FaceTooSmall(f"no face is at least {minimum} px across ({found} smaller found)")


def ffhq_quad(landmarks: np.ndarray) -> tuple[np.ndarray, float]:
    """The FFHQ crop square (reference §5): centre eye_avg + 0.1·eye_to_mouth, half-side
    max(2·|eye_to_eye|, 1.8·|eye_to_mouth|), x axis along eye_to_eye − rot90(eye_to_mouth)."""
    lm = np.asarray(landmarks, dtype=np.float64)
    eye_left, eye_right = lm[36:42].mean(0), lm[42:48].mean(0)
    eye_avg, eye_to_eye = (eye_left + eye_right) * 0.5, eye_right - eye_left
    mouth_avg = (lm[48] + lm[54]) * 0.5
    eye_to_mouth = mouth_avg - eye_avg
    x = eye_to_eye - np.flipud(eye_to_mouth) * [-1, 1]
    x /= np.hypot(*x)
    x *= max(np.hypot(*eye_to_eye) * 2.0, np.hypot(*eye_to_mouth) * 1.8)
    y = np.flipud(x) * [-1, 1]
    c = eye_avg + eye_to_mouth * 0.1
    quad = np.stack([c - x - y, c - x + y, c + x + y, c + x - y])
    return quad, float(np.hypot(*x) * 2)


@dataclass(frozen=True)
class AlignedFace:
    """An FFHQ-aligned crop and the transform back to the photo it came from."""

    image: Image.Image  # RGB, output_size × output_size
    face: Face
    quad: np.ndarray = field(repr=False)  # [4, 2] photo coordinates (TL, BL, BR, TR)

    @property
    def size(self) -> int:
        return self.image.size[0]

    @property
    def quad_side(self) -> float:
        """The crop square's side in photo pixels (how large the face is in the photo)."""
        return float(np.linalg.norm(self.quad[3] - self.quad[0]))

    def _frame(self, size: int | None = None) -> tuple[np.ndarray, np.ndarray, int]:
        """(origin, [ex ey] columns, size): photo = origin + M · (crop + 0.5) / size."""
        s = size or self.size
        tl, bl, tr = self.quad[0], self.quad[1], self.quad[3]
        return tl, np.stack([tr - tl, bl - tl], axis=1), s

    def crop_to_photo(self, points: np.ndarray, size: int | None = None) -> np.ndarray:
        """Crop pixel coordinates [N, 2] (of a crop of `size`, default ours) → photo coordinates."""
        origin, m, s = self._frame(size)
        return origin + ((np.asarray(points, dtype=np.float64) + 0.5) / s) @ m.T

    def photo_to_crop(self, points: np.ndarray, size: int | None = None) -> np.ndarray:
        origin, m, s = self._frame(size)
        return (np.asarray(points, dtype=np.float64) - origin) @ np.linalg.inv(m).T * s - 0.5


class _Detectors:
    """One caller's dlib face detectors. dlib's object detectors keep scratch buffers inside them and are
    not safe to share between threads (concurrent `run` calls corrupted the heap of the API process)."""

    def __init__(self, config: AlignerConfig) -> None:
        self.hog = dlib.get_frontal_face_detector() if config.detector in ("hog", "hog+cnn") else None
        self.cnn = (
            dlib.cnn_face_detection_model_v1(str(_model_path(config.cnn_model_path, MMOD_CNN)))
            if config.detector in ("cnn", "hog+cnn")
            else None
        )


class FaceAligner:
    """dlib detector + 68-point landmarks + the FFHQ crop. Building it loads the models (~0.8 s).

    Thread-safe: the landmark predictor is one shared instance (dlib documents `shape_predictor` as safe
    for concurrent use), and each concurrent `detect` call borrows a detector set of its own from a pool
    that grows to the highest concurrency seen (a HOG detector costs ~0.2 s to build and ~1 MB; `warm`
    builds them ahead).
    Callers bound that concurrency themselves (the API does, see `service.api.faces`).
    """

    def __init__(self, config: AlignerConfig) -> None:
        self.config = config
        self.predictor = dlib.shape_predictor(str(_model_path(config.predictor_path, PREDICTOR_68)))
        self._idle: queue.SimpleQueue[_Detectors] = queue.SimpleQueue()
        self._idle.put(_Detectors(config))
        self._count_lock = threading.Lock()
        self.detector_sets = 1  # built so far, idle or in use

    def warm(self, count: int) -> None:
        """Build detector sets until `count` exist, so the first bursts do not pay ~0.2 s each."""
        while self.detector_sets < count:
            with self._count_lock:
                self.detector_sets += 1
            self._idle.put(_Detectors(self.config))

    @contextmanager
    def _detectors(self) -> Iterator[_Detectors]:
        """Borrow an idle detector set, building a new one when every set is in use."""
        try:
            detectors = self._idle.get_nowait()
        except queue.Empty:
            detectors = _Detectors(self.config)
            with self._count_lock:
                self.detector_sets += 1
        try:
            yield detectors
        finally:
            self._idle.put(detectors)

    # ------------------------------------------------------------------------------ detection

    def detect(self, image: Image.Image, exhaustive: bool = False) -> list[Face]:
        """All faces, largest (FFHQ crop size) first. Detection on a downscaled copy, landmarks at full size.

        exhaustive: skip the fast first pass (it may miss small faces beside a large one).
        """
        rgb = np.asarray(image.convert("RGB"))
        boxes: list[tuple[tuple[float, float, float, float], float]] = []
        with self._detectors() as detectors:
            if detectors.hog is not None and self.config.fast_detect_side > 0 and not exhaustive:
                boxes = self._detect_scaled(detectors, image, self.config.fast_detect_side, upsample=0)
            if not boxes:
                boxes = self._detect_scaled(
                    detectors, image, self.config.detect_max_side, upsample=self.config.hog_upsample
                )
        faces = []
        for (left, top, right, bottom), score in boxes:
            rect = dlib.rectangle(round(left), round(top), round(right), round(bottom))
            shape = self.predictor(rgb, rect)
            landmarks = np.array([[p.x, p.y] for p in shape.parts()], dtype=np.float64)
            faces.append(Face((rect.left(), rect.top(), rect.right(), rect.bottom()), score, landmarks))
        # Rank by the FFHQ crop size (from landmarks), which is steadier than the detector's box:
        # two near-equal faces keep their order whichever pass found them.
        return sorted(faces, key=lambda f: f.size, reverse=True)

    def _detect_scaled(
        self, detectors: _Detectors, image: Image.Image, max_side: int, upsample: int
    ) -> list[tuple[tuple[float, float, float, float], float]]:
        """Boxes in photo coordinates, detected on a copy whose longer side is at most `max_side`."""
        scale = min(1.0, max_side / max(image.size))
        small = image.convert("RGB")
        if scale < 1.0:
            size = (max(1, round(image.size[0] * scale)), max(1, round(image.size[1] * scale)))
            small = small.resize(size, Image.Resampling.BILINEAR, reducing_gap=2.0)
        found = self._detect_boxes(detectors, np.asarray(small), upsample)
        return [(tuple(v / scale for v in box), score) for box, score in found]  # type: ignore[misc]

    def _detect_boxes(
        self, detectors: _Detectors, rgb: np.ndarray, upsample: int | None = None
    ) -> list[tuple[tuple[int, int, int, int], float]]:
        found: list[tuple[tuple[int, int, int, int], float]] = []
        up = self.config.hog_upsample if upsample is None else upsample
        if detectors.hog is not None:
            rects, scores, _ = detectors.hog.run(rgb, up, self.config.min_detection_score)
            found = [((r.left(), r.top(), r.right(), r.bottom()), float(s)) for r, s in zip(rects, scores)]
        if not found and detectors.cnn is not None:
            found = [
                ((d.rect.left(), d.rect.top(), d.rect.right(), d.rect.bottom()), float(d.confidence))
                for d in detectors.cnn(rgb, 0)
            ]
        return found

    # ------------------------------------------------------------------------------ alignment

    def align(
        self, image: Image.Image, face_index: int = 0, output_size: int | None = None, faces: list[Face] | None = None
    ) -> AlignedFace:
        """Align one face: the largest by default, or the `face_index`-th largest (`faces`: from `detect`)."""
        faces = self.detect(image) if faces is None else faces
        if not faces:
            raise NoFaceFound("no human face was found in the image")
        if not 0 <= face_index < len(faces):
            raise FaceIndexOutOfRange(f"face_index {face_index} asked, but {len(faces)} face(s) were found")
        return self.align_face(image, faces[face_index], output_size)

    def align_all(
        self, image: Image.Image, output_size: int | None = None, faces: list[Face] | None = None
    ) -> list[AlignedFace]:
        """Every face large enough, largest first; FaceTooSmall when faces exist but none qualifies."""
        faces = self.detect(image, exhaustive=True) if faces is None else faces
        if not faces:
            raise NoFaceFound("no human face was found in the image")
        chosen = [face for face in faces if face.large_enough(self.config.min_face_size)]
        if not chosen:
            raise none_large_enough(len(faces), self.config.min_face_size)
        return [self.align_face(image, face, output_size) for face in chosen]

    def align_face(self, image: Image.Image, face: Face, output_size: int | None = None) -> AlignedFace:
        face.check_size(self.config.min_face_size)
        quad, qsize = face.quad()
        out = output_size or self.config.output_size
        crop = ffhq_crop(
            image.convert("RGB"), quad, qsize, out, max(out, self.config.transform_size), self.config.enable_padding
        )
        return AlignedFace(crop, face, quad)


def align_landmarks(
    photo: Image.Image, landmarks: np.ndarray | list, output_size: int, transform_size: int
) -> AlignedFace:
    """The FFHQ crop of a face already located (68 landmarks, e.g. found when it was uploaded)."""
    face = Face(box=(0, 0, 0, 0), score=0.0, landmarks=np.asarray(landmarks, dtype=np.float64))
    quad, qsize = face.quad()
    rgb = photo if photo.mode == "RGB" else photo.convert("RGB")
    return AlignedFace(ffhq_crop(rgb, quad, qsize, output_size, max(output_size, transform_size)), face, quad)


def ffhq_crop(
    image: Image.Image,
    quad: np.ndarray,
    qsize: float,
    output_size: int,
    transform_size: int,
    enable_padding: bool = True,
) -> Image.Image:
    """The FFHQ crop (NVlabs ffhq-dataset `recreate_aligned_images`): shrink, crop, reflect-pad with
    blur and median fill, quad transform to transform_size, antialiased resize to output_size.

    One speed change: the photo is cropped to the face (with margin, on the shrink grid) *before*
    the shrink, so a 12 MP photo is not resized whole.
    """
    quad = quad.copy()
    # 1. Pre-crop to the face on the shrink grid, then shrink.
    image, quad, qsize = _shrink(image, quad, qsize, output_size)
    # 2. Crop to the quad plus a border.
    border = max(int(np.rint(qsize * 0.1)), 3)
    image, quad = _crop_to_quad(image, quad, border)
    # 3. Reflect-pad where the quad leaves the photo, blurring and median-filling the padding.
    if enable_padding:
        image, quad = _reflect_pad(image, quad, qsize, border)
    # 4. Quad transform, then antialiased resize.
    image = image.transform(
        (transform_size, transform_size), Image.Transform.QUAD, (quad + 0.5).flatten(), Image.Resampling.BILINEAR
    )
    if output_size < transform_size:
        image = image.resize((output_size, output_size), Image.Resampling.LANCZOS)
    return image


def _shrink(image: Image.Image, quad: np.ndarray, qsize: float, output_size: int):
    """Step 1 of `ffhq_crop`: (image, quad, qsize) shrunk by the integer factor FFHQ uses (quad in place)."""
    shrink = int(np.floor(qsize / output_size * 0.5))
    if shrink <= 1:
        return image, quad, qsize
    margin = (max(int(np.rint(qsize / shrink * 0.3)), 3) + 2) * shrink
    x0 = max(int(np.floor(quad[:, 0].min())) - margin, 0) // shrink * shrink
    y0 = max(int(np.floor(quad[:, 1].min())) - margin, 0) // shrink * shrink
    x1 = min(int(np.ceil(quad[:, 0].max())) + margin, image.size[0])
    y1 = min(int(np.ceil(quad[:, 1].max())) + margin, image.size[1])
    image = image.crop((x0, y0, x1, y1))
    quad -= (x0, y0)
    rsize = (max(1, int(np.rint(image.size[0] / shrink))), max(1, int(np.rint(image.size[1] / shrink))))
    image = image.resize(rsize, Image.Resampling.LANCZOS)
    quad /= shrink
    return image, quad, qsize / shrink


def _crop_to_quad(image: Image.Image, quad: np.ndarray, border: int):
    """Step 2 of `ffhq_crop`: the photo cropped to the quad plus `border` px (quad in place)."""
    crop = (
        max(int(np.floor(quad[:, 0].min())) - border, 0),
        max(int(np.floor(quad[:, 1].min())) - border, 0),
        min(int(np.ceil(quad[:, 0].max())) + border, image.size[0]),
        min(int(np.ceil(quad[:, 1].max())) + border, image.size[1]),
    )
    if crop[2] - crop[0] < image.size[0] or crop[3] - crop[1] < image.size[1]:
        image = image.crop(crop)
        quad -= crop[0:2]
    return image, quad


def _reflect_pad(image: Image.Image, quad: np.ndarray, qsize: float, border: int):
    """Step 3 of `ffhq_crop`: where the quad leaves the photo, reflect-padded, the padding blurred and
    filled towards the median colour (quad in place)."""
    pad = (
        max(-int(np.floor(quad[:, 0].min())) + border, 0),
        max(-int(np.floor(quad[:, 1].min())) + border, 0),
        max(int(np.ceil(quad[:, 0].max())) - image.size[0] + border, 0),
        max(int(np.ceil(quad[:, 1].max())) - image.size[1] + border, 0),
    )
    if max(pad) <= border - 4:
        return image, quad
    pad = tuple(np.maximum(pad, int(np.rint(qsize * 0.3))))
    img = np.pad(np.float32(image), ((pad[1], pad[3]), (pad[0], pad[2]), (0, 0)), "reflect")
    h, w, _ = img.shape
    y, x, _ = np.ogrid[:h, :w, :1]
    with np.errstate(divide="ignore"):
        mask = np.maximum(
            1.0 - np.minimum(np.float32(x) / pad[0], np.float32(w - 1 - x) / pad[2]),
            1.0 - np.minimum(np.float32(y) / pad[1], np.float32(h - 1 - y) / pad[3]),
        )
    blur = qsize * 0.02
    img += (scipy.ndimage.gaussian_filter(img, [blur, blur, 0]) - img) * np.clip(mask * 3.0 + 1.0, 0.0, 1.0)
    img += (np.median(img, axis=(0, 1)) - img) * np.clip(mask, 0.0, 1.0)
    quad += pad[:2]
    return Image.fromarray(np.uint8(np.clip(np.rint(img), 0, 255)), "RGB"), quad


def paste_back(photo: Image.Image, crop: Image.Image, aligned: AlignedFace, feather: float = 0.08) -> Image.Image:
    """Put `crop` (e.g. the stylized face, any square size) back into `photo` through the inverse of
    the alignment transform, blended with a mask that fades to 0 over `feather`·size at the crop's
    edges. Only pixels under the quad change; the photo keeps its resolution and orientation."""
    return paste_faces(photo, [(crop, aligned)], feather)


def paste_faces(
    photo: Image.Image, faces: Sequence[tuple[Image.Image, AlignedFace]], feather: float = 0.08
) -> Image.Image:
    """Several faces pasted back into one photo (a group photo), each with its own feathered mask.

    The faces are composited one over the other, smallest first, so where two masks overlap the larger
    face is on top, and under its feathered edge the face below shows, not the photo: no seam of
    original pixels between two faces, and no pixel gets a face twice (each paste is an "over" of one
    face onto what is there). Pixels outside every mask are the photo's, untouched."""
    out = photo.convert("RGB").copy()
    for crop, aligned in sorted(faces, key=lambda f: f[1].quad_side):
        placed = face_layer(out.size, crop, aligned, feather)
        if placed is None:
            continue
        (x0, y0), warped, mask = placed
        region = out.crop((x0, y0, x0 + warped.size[0], y0 + warped.size[1]))
        out.paste(Image.composite(warped, region, mask), (x0, y0))
    return out


def face_layer(
    photo_size: tuple[int, int], crop: Image.Image, aligned: AlignedFace, feather: float = 0.08
) -> tuple[tuple[int, int], Image.Image, Image.Image] | None:
    """`crop` warped back onto the photo's pixel grid, with its feathered mask: ((x0, y0), warped RGB,
    mask L), both the size of the quad's bounding box clipped to the photo (None when outside it)."""
    s = crop.size[0]
    corners = aligned.quad
    x0, y0 = (max(0, int(math.floor(v))) for v in corners.min(0))
    x1 = min(photo_size[0], int(math.ceil(corners[:, 0].max())) + 1)
    y1 = min(photo_size[1], int(math.ceil(corners[:, 1].max())) + 1)
    if x1 <= x0 or y1 <= y0:
        return None
    # photo continuous (x + x0, y + y0) → crop continuous (u, v): solve photo = TL + 0.5 + M · (u, v) / s
    origin, m, _ = aligned._frame(s)
    inv = np.linalg.inv(m) * s
    offset = inv @ (np.array([x0, y0], dtype=np.float64) - (origin + 0.5))
    coeffs = (inv[0, 0], inv[0, 1], offset[0], inv[1, 0], inv[1, 1], offset[1])
    size = (x1 - x0, y1 - y0)
    warped = crop.convert("RGB").transform(size, Image.Transform.AFFINE, coeffs, Image.Resampling.BICUBIC)
    ramp = np.arange(s, dtype=np.float32) + 0.5
    edge = np.minimum(ramp, s - ramp)
    width = max(feather * s, 1.0)
    profile = np.clip(edge / width, 0.0, 1.0)
    mask = Image.fromarray(np.uint8(np.rint(np.minimum.outer(profile, profile) * 255)), "L")
    mask = mask.transform(size, Image.Transform.AFFINE, coeffs, Image.Resampling.BILINEAR)
    return (x0, y0), warped, mask

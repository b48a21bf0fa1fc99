"""Decoding user photos safely into upright 8-bit RGB, and encoding results.

Torch-free (the API process uses it to validate uploads). The pixel limit is checked from the header,
before any pixel is decoded, so a decompression bomb costs nothing; truncated files fail with a typed
error instead of a half-grey image; EXIF orientation is applied (phone photos are stored sideways);
palette, grayscale, CMYK, 16-bit and alpha images become RGB (alpha composited on white).
"""

from __future__ import annotations

import io
import os
import warnings
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from service.portrait.errors import ImageTooLarge, InvalidImage, UnsupportedFormat

FORMATS = ("JPEG", "PNG", "WEBP")


@dataclass(frozen=True)
class LoadedImage:
    image: Image.Image  # upright RGB, 8-bit
    format: str  # "JPEG", "PNG", …
    original_mode: str
    exif_orientation: int  # 1 = upright; 2–8 were applied


def read_header(data: bytes, max_pixels: int, formats: tuple[str, ...] | None = FORMATS) -> Image.Image:
    """Open (without decoding) and check format and pixel count; returns the lazy PIL image.

    Only the decoders of `formats` are tried (Pillow's own advice against bombs in exotic formats).
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data), formats=list(formats) if formats else None)
    except Image.DecompressionBombError as e:
        raise ImageTooLarge(f"image has too many pixels ({e})") from e
    except UnidentifiedImageError as e:
        accepted = ", ".join(formats or FORMATS)
        raise UnsupportedFormat(f"not an image in an accepted format ({accepted})") from e
    except (OSError, ValueError) as e:
        raise InvalidImage("not a readable image (JPEG, PNG or WebP expected)") from e
    w, h = image.size
    if w * h > max_pixels:
        raise ImageTooLarge(f"image is {w}×{h} = {w * h / 1e6:.1f} MP; the limit is {max_pixels / 1e6:.1f} MP")
    if w < 1 or h < 1:
        raise InvalidImage("image has no pixels")
    return image


def load_image(
    source: bytes | str | os.PathLike[str], max_pixels: int = 40_000_000, formats: tuple[str, ...] | None = FORMATS
) -> LoadedImage:
    """Decode a photo to upright RGB; raises InvalidImage or ImageTooLarge."""
    data = source if isinstance(source, bytes) else _read(source)
    image = read_header(data, max_pixels, formats)
    fmt, mode = image.format or "", image.mode
    _decode(image)
    orientation = int(image.getexif().get(0x0112, 1) or 1)
    image = ImageOps.exif_transpose(image) or image
    return LoadedImage(image=to_rgb(image), format=fmt, original_mode=mode, exif_orientation=orientation)


def _read(path: str | os.PathLike[str]) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as e:
        raise InvalidImage(f"{path}: cannot read ({e.strerror})") from e


def to_rgb(image: Image.Image) -> Image.Image:
    """Any PIL mode → 8-bit RGB. 16-bit and float data are scaled, alpha is composited on white."""
    if image.mode == "RGB":
        return image
    if image.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        array = np.asarray(image, dtype=np.float64)
        top = 65535.0 if image.mode.startswith("I;16") or array.max() > 255 else 255.0
        gray = np.clip(array / top * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return Image.fromarray(gray, "L").convert("RGB")
    if image.mode == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


@dataclass(frozen=True)
class AnalysisImage:
    """A photo decoded at reduced size for face detection, and how to map points back to full size."""

    image: Image.Image  # upright RGB, longer side at most the asked `max_side`
    full_size: tuple[int, int]  # (width, height) of the upright photo at full resolution

    def to_full(self, points: np.ndarray) -> np.ndarray:
        """Pixel coordinates [N, 2] in `image` → in the full-resolution upright photo (centres kept)."""
        sx = self.full_size[0] / self.image.size[0]
        sy = self.full_size[1] / self.image.size[1]
        return (np.asarray(points, dtype=np.float64) + 0.5) * [sx, sy] - 0.5

    @property
    def scale(self) -> float:
        """Full-resolution pixels per analysis pixel (along x)."""
        return self.full_size[0] / self.image.size[0]


def load_for_analysis(
    data: bytes,
    max_pixels: int,
    max_side: int,
    full_decode_gate: AbstractContextManager[object] | None = None,
) -> AnalysisImage:
    """Decode a photo no larger than needed for finding faces: JPEG decodes straight at 1/2, 1/4 or 1/8
    scale (draft mode: a 40 MP JPEG never exists in memory at full size); other formats are decoded,
    then reduced at once, inside `full_decode_gate` when one is given (a semaphore bounding how many
    such full decodes run at once). Same checks and errors as `load_image`."""
    image = read_header(data, max_pixels)
    w, h = image.size
    big = max(w, h) > max_side
    if image.format == "JPEG" and big:
        s = max_side / max(w, h)
        image.draft("RGB", (max(1, int(w * s)), max(1, int(h * s))))
    gate = full_decode_gate if big and image.format != "JPEG" and full_decode_gate is not None else nullcontext()
    with gate:
        _decode(image)
        orientation = int(image.getexif().get(0x0112, 1) or 1)
        if orientation != 1:
            image = ImageOps.exif_transpose(image) or image
        full = (h, w) if orientation in (5, 6, 7, 8) else (w, h)
        if max(image.size) > max_side:
            s = max_side / max(image.size)
            size = (max(1, round(image.size[0] * s)), max(1, round(image.size[1] * s)))
            image = image.resize(size, Image.Resampling.BILINEAR, reducing_gap=2.0)
    return AnalysisImage(to_rgb(image), full)


def _decode(image: Image.Image) -> None:
    """Decode the pixels (the header was checked against the pixel limit already)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image.load()
    except (OSError, ValueError, SyntaxError) as e:
        raise InvalidImage(f"image data is truncated or corrupt ({e})") from e


JPEG_QUALITY = 92  # JPEG results, 4:4:4 (no chroma subsampling): here and on the GPU (workers/serving/device_jpeg.py)


def encode_image(image: Image.Image, fmt: str, png_level: int = 1) -> bytes:
    """A result image as `fmt` ("png", "jpeg", "webp") bytes: deterministic and without metadata (no EXIF
    or GPS from the upload reaches a result). PNG at zlib level `png_level`: level 1 encodes a 1024 px
    portrait about 4x faster than Pillow's default 6 for about 15 % more bytes (README "Worker CPU")."""
    buf = io.BytesIO()
    if fmt == "png":
        image.save(buf, format="PNG", optimize=False, compress_level=png_level)
    elif fmt == "jpeg":
        image.save(buf, format="JPEG", quality=JPEG_QUALITY, subsampling=0)
    elif fmt == "webp":
        image.save(buf, format="WEBP", quality=92, method=4)
    else:
        raise ValueError(f"unknown result format {fmt!r}")
    return buf.getvalue()

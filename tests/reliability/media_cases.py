"""Hostile media for every upload endpoint (issue 22): zips that are bombs, corrupt, encrypted or lying
about their frames. Shared by the reliability tests and bench/chaos.py's abuse table."""

from __future__ import annotations

import functools
import io
import os
import struct
import zipfile
import zlib
from pathlib import Path

from PIL import Image

FACES = Path(__file__).parents[1] / "data" / "faces"
MB = 1 << 20


def png(width: int, height: int, colour: tuple[int, int, int] = (90, 120, 150)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (width, height), colour).save(buf, format="PNG")
    return buf.getvalue()


def png_header(width: int, height: int) -> bytes:
    """A PNG that claims width×height (its IHDR) over one tiny row of data: what a decompression bomb
    looks like to a header check, built in microseconds instead of encoding the pixels."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def zip_of(entries: dict[str, bytes], compression: int = zipfile.ZIP_STORED) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression) as z:
        for name, data in entries.items():
            z.writestr(name, data)
    return buf.getvalue()


@functools.cache
def bomb_frames(inflated_mb: int = 1536) -> bytes:
    """A zip whose first frame entry inflates to `inflated_mb` MB of zeros (~1.5 MB compressed)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        with z.open("frame-00000.png", "w", force_zip64=True) as f:
            block = b"\0" * MB
            for _ in range(inflated_mb):
                f.write(block)
        z.writestr("frame-00001.png", png(64, 64))
    return buf.getvalue()


def garbage_after_magic() -> bytes:
    return b"PK\x03\x04" + os.urandom(4096)


def not_an_image_entry() -> bytes:
    return zip_of({"frame-00000.png": b"this is not a PNG at all" * 100, "frame-00001.png": png(64, 64)})


def encrypted_entry(name: str = "frame-00000.png", data: bytes | None = None) -> bytes:
    """An entry flagged encrypted (in its local header and the directory): zipfile raises RuntimeError."""
    raw = bytearray(zip_of({name: data if data is not None else png(64, 64)}))
    raw[6] |= 0x1
    raw[raw.find(b"PK\x01\x02") + 8] |= 0x1
    return bytes(raw)


def corrupt_deflate(name: str = "frame-00000.png", data: bytes | None = None) -> bytes:
    """A deflated entry whose compressed bytes were damaged (zlib.error or a CRC error on reading)."""
    payload = data if data is not None else os.urandom(60_000) + b"a" * 60_000
    raw = bytearray(zip_of({name: payload}, zipfile.ZIP_DEFLATED))
    start = 30 + len(name)
    for i in range(start + 100, start + 600):
        raw[i] ^= 0x5A
    return bytes(raw)


def huge_png_header(side: int = 20000) -> bytes:
    """A frame whose PNG header claims side×side pixels."""
    return zip_of({"frame-00000.png": png_header(side, side)})


def big_second_frame(side: int = 8000) -> bytes:
    return zip_of({"frame-00000.png": png(64, 64), "frame-00001.png": png_header(side, side)})


def big_frame_behind_a_long_header(side: int = 4000) -> bytes:
    """A zip whose second frame is a JPEG of side×side with 200 KB of ICC profile before its size: the
    API's header check cannot see it, so only the worker's per-frame check can refuse it."""
    buf = io.BytesIO()
    Image.new("RGB", (side, side), (90, 120, 150)).save(buf, format="JPEG", icc_profile=os.urandom(200_000))
    return zip_of({"frame-00000.png": png(64, 64), "frame-00001.jpg": buf.getvalue()})


def broken_mp4() -> bytes:
    """An MP4 signature over garbage: FFmpeg's error names the file, which is a server path."""
    return b"\x00\x00\x00\x18ftypisom" + os.urandom(4096)


# name → (upload bytes factory, the codes /v1/animate may answer with)
ANIMATE_CASES = {
    "an MP4 signature over garbage": (broken_mp4, {"invalid_video"}),
    "garbage after the zip magic": (garbage_after_magic, {"invalid_video"}),
    "a .png entry that is not an image": (not_an_image_entry, {"invalid_video"}),
    "an entry flagged encrypted": (encrypted_entry, {"invalid_video"}),
    "corrupt deflate data": (corrupt_deflate, {"invalid_video"}),
    "a PNG header claiming 20000×20000": (huge_png_header, {"frame_too_large"}),
    "a second frame of 8000×8000": (big_second_frame, {"frame_too_large"}),
    "a 1.5 GiB frame entry (zip bomb)": (bomb_frames, {"frame_too_large"}),
}

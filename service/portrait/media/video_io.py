"""Video in and out with PyAV (FFmpeg's libraries in a wheel: no system ffmpeg), and image-sequence zips.

Formats, in and out: MP4 (H.264 through libx264 when the wheel has it, else MPEG-4 Part 2; yuv420p,
so odd sides are padded by one pixel), WebM (VP9), GIF (a 256-colour palette per frame), and a zip
of PNG/JPEG frames (sorted by name; `fps` given, default 25). The frame rate is kept; audio, when
the input has it, is decoded and encoded again into the output (AAC in MP4, Opus in WebM; GIF and
zips carry none).

`probe` reads only the container header (duration, frame count, size, rate, audio), so the API refuses
a too-long or too-large video before decoding a frame (`check_limits`: typed errors with the codes of
`service.portrait.errors.InputError`). A header can lie, so `read_frames` checks every decoded frame again: its
pixels, and that it has the first frame's size (a permanent `frame_too_large` / `invalid_video`, never
a retried crash). Zips of frames go through the bounded reader of service/portrait/media/archive.py (entries, expanded
bytes, ratio), parsed once. Torch-free: the API process imports it.
"""

from __future__ import annotations

import dataclasses
import io
import zipfile
from collections.abc import Iterable, Iterator
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from PIL import Image

from service.portrait.errors import InputError as _InputError
from service.portrait.media.archive import Archive, ArchiveError, ArchiveLimits, Member

FORMATS = ("mp4", "webm", "gif", "zip")
SUFFIXES = {"mp4": ".mp4", "webm": ".webm", "gif": ".gif", "zip": ".zip"}
ZIP_FPS = 25.0
IMAGE_NAMES = (".png", ".jpg", ".jpeg", ".webp")
ZIP_EXTRA_ENTRIES = 64  # entries a frame zip may have besides its frames (folders, a readme, thumbnails)
HEADER_PREFIX = 64 * 1024  # bytes of a zipped frame the API reads to check its size without decoding it
# an archive refusal, as the video code the API answers with
ARCHIVE_CODES = {
    "too_many_files": "too_many_frames",
    "payload_too_large": "frame_too_large",
    "file_too_large": "frame_too_large",
    "suspicious_compression": "frame_too_large",
}


class InputError(_InputError):
    """A video the service cannot take; `code`: unsupported_video, invalid_video, video_too_long,
    too_many_frames, frame_too_large."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclasses.dataclass(frozen=True)
class VideoInfo:
    format: str  # one of FORMATS
    frames: int
    fps: float
    width: int
    height: int
    duration_s: float
    has_audio: bool


@dataclasses.dataclass(frozen=True)
class VideoLimits:
    max_duration_s: float = 60.0
    max_frames: int = 1800
    max_frame_pixels: int = 1920 * 1080
    max_archive_bytes: int = 1 << 30  # what a zip of frames may expand to, all frames together

    @property
    def max_frame_file_bytes(self) -> int:
        """The largest file one frame may be: uncompressed RGBA plus room for the image's own header."""
        return 4 * self.max_frame_pixels + (1 << 20)

    def archive(self) -> ArchiveLimits:
        return ArchiveLimits(
            max_total=self.max_archive_bytes,
            max_entry=self.max_frame_file_bytes,
            max_files=self.max_frames + ZIP_EXTRA_ENTRIES,
        )


# what probe and read_frames check when given no limits (our own outputs, tools): no frame bounds,
# the archive bounds of a zip still apply
UNLIMITED = VideoLimits(max_duration_s=float("inf"), max_frames=10**9, max_frame_pixels=1 << 40)


def detect_format(path: Path) -> str:
    """mp4 / webm / gif / zip from the file's first bytes (not its name)."""
    head = Path(path).read_bytes()[:64]
    if head.startswith(b"PK\x03\x04"):
        return "zip"
    if head.startswith((b"GIF87a", b"GIF89a")):
        return "gif"
    if head.startswith(b"\x1a\x45\xdf\xa3"):
        return "webm"
    if head[4:8] == b"ftyp":
        return "mp4"
    raise InputError("unsupported_video", "not an MP4, WebM, GIF or zip of images")


def probe(path: Path, fps: float | None = None, limits: VideoLimits | None = None) -> VideoInfo:
    """The video's header facts (no frame is decoded). A zip is parsed once, within `limits`; each of its
    frames' image headers is read (the first `HEADER_PREFIX` bytes) and checked against the frame
    limit, and its size is the first frame's."""
    kind = detect_format(path)
    if kind == "zip":
        limits = limits or UNLIMITED
        with _frame_archive(path, limits) as archive:
            frames = _zip_frames(archive)
            if not frames:
                raise InputError("invalid_video", "the zip holds no PNG, JPEG or WebP frames")
            sizes = [_zipped_frame_size(archive, member, limits) for member in frames]
        width, height = next((s for s in sizes if s is not None), (0, 0))
        if not width:
            raise InputError("invalid_video", f"{frames[0].name}: not a readable image")
        rate = fps or ZIP_FPS
        return VideoInfo(kind, len(frames), rate, width, height, len(frames) / rate, False)
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise InputError("invalid_video", "the file has no video stream")
            stream = container.streams.video[0]
            rate = float(stream.average_rate or stream.guessed_rate or 25)
            duration = container.duration / 1_000_000 if container.duration else 0.0
            if not duration and stream.duration and stream.time_base:
                duration = float(stream.duration * stream.time_base)
            frames = int(stream.frames) or round(duration * rate)
            width, height = stream.codec_context.width, stream.codec_context.height
            return VideoInfo(kind, frames, rate, width, height, duration, bool(container.streams.audio))
    except av.error.FFmpegError as e:
        raise InputError("invalid_video", _unreadable(e)) from e


def check_limits(info: VideoInfo, limits: VideoLimits) -> None:
    """Typed refusals from the header: video_too_long, too_many_frames, frame_too_large."""
    if info.duration_s > limits.max_duration_s:
        raise InputError("video_too_long", f"{info.duration_s:.1f} s; at most {limits.max_duration_s:g} s")
    if info.frames > limits.max_frames:
        raise InputError("too_many_frames", f"{info.frames} frames; at most {limits.max_frames}")
    if info.width * info.height > limits.max_frame_pixels:
        raise InputError(
            "frame_too_large", f"{info.width}×{info.height} frames; at most {limits.max_frame_pixels} pixels each"
        )
    if info.frames < 1 or info.width < 1:
        raise InputError("invalid_video", "the video has no frames")


def read_frames(path: Path, limits: VideoLimits | None = None) -> Iterator[np.ndarray]:
    """RGB frames [H, W, 3] uint8, in order. Each decoded frame is checked, whatever the header said:
    too_many_frames past `limits.max_frames`, frame_too_large past `limits.max_frame_pixels`, and
    invalid_video when a frame is unreadable or its size is not the first frame's."""
    limits = limits or UNLIMITED
    first: tuple[int, int] | None = None
    for count, frame in enumerate(_decoded(path, limits), start=1):
        if count > limits.max_frames:
            raise InputError("too_many_frames", f"more than {limits.max_frames} frames")
        size = (frame.shape[1], frame.shape[0])
        first = first or size
        if size != first:
            raise InputError(
                "invalid_video", f"frame {count} is {size[0]}×{size[1]}; the first is {first[0]}×{first[1]}"
            )
        yield frame


def _decoded(path: Path, limits: VideoLimits) -> Iterator[np.ndarray]:
    if detect_format(path) == "zip":
        with _frame_archive(path, limits) as archive:
            for member in _zip_frames(archive):
                yield _decode_image(_read_member(archive, member), member.name, limits)
        return
    try:
        with av.open(str(path)) as container:
            for frame in container.decode(video=0):
                _check_pixels(frame.width, frame.height, limits, "a frame")
                yield frame.to_ndarray(format="rgb24")
    except av.error.FFmpegError as e:
        raise InputError("invalid_video", _unreadable(e)) from e


def _check_pixels(width: int, height: int, limits: VideoLimits, what: str) -> None:
    if width * height > limits.max_frame_pixels:
        raise InputError(
            "frame_too_large", f"{what} is {width}×{height}; at most {limits.max_frame_pixels} pixels each"
        )


def _decode_image(data: bytes, name: str, limits: VideoLimits) -> np.ndarray:
    """One zipped frame, its size checked from its header before it is decoded."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            _check_pixels(image.width, image.height, limits, name)
            return np.asarray(image.convert("RGB"))
    except InputError:
        raise
    except Image.DecompressionBombError as e:  # Pillow's own refusal, far above our limit
        raise InputError("frame_too_large", f"{name}: {e}") from e
    except Exception as e:  # noqa: BLE001 (PIL raises many types for a broken file: all mean the same here)
        raise InputError("invalid_video", f"{name}: not a readable image ({type(e).__name__})") from e


def _zipped_frame_size(archive: Archive, member: Member, limits: VideoLimits) -> tuple[int, int] | None:
    """A zipped frame's size from the start of its file (checked against the limit). A file read whole
    that is no image is refused; None when a longer file's start does not say (its header lies beyond
    the prefix: the worker checks it as it decodes)."""
    data = _read_member(archive, member, HEADER_PREFIX)
    try:
        with Image.open(io.BytesIO(data)) as image:
            size = image.size
    except Image.DecompressionBombError as e:  # Pillow's own refusal, far above our limit
        raise InputError("frame_too_large", f"{member.name}: {e}") from e
    except Exception as e:  # noqa: BLE001 (PIL raises many types for what is not an image)
        if len(data) < HEADER_PREFIX:
            raise InputError("invalid_video", f"{member.name}: not a readable image") from e
        return None
    _check_pixels(*size, limits, member.name)
    return size


def _frame_archive(path: Path, limits: VideoLimits) -> Archive:
    try:
        return Archive(path, limits.archive(), keep=_is_frame)
    except ArchiveError as e:
        raise _video_error(e) from e


def _read_member(archive: Archive, member: Member, limit: int | None = None) -> bytes:
    try:
        return archive.read(member, limit)
    except ArchiveError as e:
        raise _video_error(e) from e


def _video_error(e: ArchiveError) -> InputError:
    """An archive refusal as the video code the API answers with."""
    return InputError(ARCHIVE_CODES.get(e.code, "invalid_video"), e.message)


def _is_frame(name: str) -> bool:
    return name.lower().endswith(IMAGE_NAMES) and not name.startswith(("__MACOSX", "."))


def _zip_frames(archive: Archive) -> list[Member]:
    """The frames, sorted by name (refused entries too: reading one raises its typed error)."""
    return sorted((m for m in archive.members if _is_frame(m.name)), key=lambda m: m.name)


def _unreadable(e: av.error.FFmpegError) -> str:
    """FFmpeg's reason without the file name (a server path the client must not see)."""
    return f"unreadable video ({getattr(e, 'strerror', None) or type(e).__name__})"


def write_video(path: Path, frames: Iterable[np.ndarray], fps: float, kind: str, audio_from: Path | None = None) -> int:
    """Encode RGB frames [H, W, 3] uint8 (all one size) into `kind`; returns the frame count. Audio of
    `audio_from` (when it has any and `kind` carries audio) is encoded into the output."""
    if kind not in FORMATS:
        raise ValueError(f"format must be one of {FORMATS}")
    if kind == "zip":
        return _write_zip(path, frames)
    rate = Fraction(fps).limit_denominator(1001)
    frames = iter(frames)
    first = next(frames, None)
    if first is None:
        raise ValueError("no frames to write")
    count = 0
    with av.open(str(path), "w", format={"mp4": "mp4", "webm": "webm", "gif": "gif"}[kind]) as out:
        # every stream is added before the first packet (the header is written then)
        stream = _video_stream(out, kind, rate, first.shape[1], first.shape[0])
        audio = _audio_source(audio_from, out, kind) if audio_from is not None and kind != "gif" else None
        for frame in _chain(first, frames):
            video_frame = (
                _gif_frame(frame) if kind == "gif" else av.VideoFrame.from_ndarray(_even(frame), format="rgb24")
            )
            for packet in stream.encode(video_frame):
                out.mux(packet)
            count += 1
        for packet in stream.encode(None):
            out.mux(packet)
        if audio is not None:
            audio(out)
    return count


def _chain(first: np.ndarray, rest: Iterator[np.ndarray]) -> Iterator[np.ndarray]:
    yield first
    yield from rest


def _video_stream(out, kind: str, rate: Fraction, width: int, height: int):
    if kind == "gif":
        stream = out.add_stream("gif", rate=rate)
        stream.pix_fmt = "pal8"
    else:
        codec = "libvpx-vp9" if kind == "webm" else ("libx264" if "libx264" in av.codecs_available else "mpeg4")
        stream = out.add_stream(codec, rate=rate)
        stream.pix_fmt = "yuv420p"
        if codec == "libx264":
            stream.options = {"crf": "18", "preset": "medium"}
        width, height = width + width % 2, height + height % 2
    stream.width, stream.height = width, height
    return stream


def _gif_frame(frame: np.ndarray) -> av.VideoFrame:
    """A pal8 frame with its own 256-colour palette (Pillow's median cut): far truer than a fixed one."""
    image = Image.fromarray(frame).quantize(256)
    palette = np.asarray(image.getpalette()[:768], np.uint8).reshape(-1, 3)
    palette = np.concatenate([palette, np.zeros((256 - len(palette), 3), np.uint8)])
    argb = np.concatenate([np.full((256, 1), 255, np.uint8), palette], axis=1)  # FFmpeg's pal8 byte order here
    return av.VideoFrame.from_ndarray((np.ascontiguousarray(np.asarray(image)), argb), format="pal8")


def _even(frame: np.ndarray) -> np.ndarray:
    """yuv420p needs even sides: pad the last row/column by repetition."""
    h, w = frame.shape[:2]
    if h % 2 or w % 2:
        frame = np.pad(frame, ((0, h % 2), (0, w % 2), (0, 0)), mode="edge")
    return np.ascontiguousarray(frame)


def _audio_source(source: Path, out, kind: str):
    """When `source` has audio: add an audio stream to `out` (AAC for MP4, Opus for WebM) and return a
    function that decodes the source's audio and encodes it into that stream; else None."""
    if detect_format(source) == "zip":
        return None
    with av.open(str(source)) as container:
        if not container.streams.audio:
            return None
        context = container.streams.audio[0].codec_context
        rate = 48000 if kind == "webm" else (context.sample_rate or 44100)
        layout = "mono" if context.channels == 1 else "stereo"
    stream = out.add_stream("libopus" if kind == "webm" else "aac", rate=rate)
    stream.layout = layout

    def encode(out) -> None:
        resampler = av.AudioResampler(format=stream.codec_context.format.name, layout=layout, rate=rate)
        with av.open(str(source)) as container:
            for frame in container.decode(container.streams.audio[0]):
                frame.pts = None
                for chunk in resampler.resample(frame):
                    for packet in stream.encode(chunk):
                        out.mux(packet)
        for chunk in resampler.resample(None):
            for packet in stream.encode(chunk):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)

    return encode


def _write_zip(path: Path, frames: Iterable[np.ndarray]) -> int:
    count = 0
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as z:
        for i, frame in enumerate(frames):
            buf = io.BytesIO()
            Image.fromarray(frame).save(buf, format="PNG")
            z.writestr(f"frame-{i:05d}.png", buf.getvalue())
            count += 1
    if not count:
        raise ValueError("no frames to write")
    return count

"""Video: codec round trips, header limits, no-face frames, retargeting, resumable chunks, smoothing."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest
import torch
from PIL import Image

from models.inference.pipeline import RenderRequest, render_latents
from models.inference.stylizer import Stylizer
from models.inference.video import VideoConfig, VideoStylizer, crop_centres, fill_gaps, smooth_tracks
from models.inference.video_run import VideoCanceled, run_video
from models.networks.encoder import Inverter
from models.networks.stylegan2 import Generator
from models.weights import checkpoints
from service.portrait.configs import AlignerConfig
from service.portrait.media.alignment import FaceAligner
from service.portrait.media.video_io import InputError, VideoLimits, check_limits, probe, read_frames, write_video
from tests.cli import agilegan
from tests.exemplar_data import FACES


def _with_audio(path: Path, frames: int = 12, fps: int = 25, size: tuple[int, int] = (64, 48)) -> Path:
    """An MP4 with a sine tone, written by PyAV directly (the reference input)."""
    with av.open(str(path), "w") as out:
        video = out.add_stream("libx264", rate=fps)
        video.width, video.height, video.pix_fmt = size[0], size[1], "yuv420p"
        audio = out.add_stream("aac", rate=16000)
        for i in range(frames):
            image = np.full((size[1], size[0], 3), (i * 10) % 256, np.uint8)
            for packet in video.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                out.mux(packet)
        for packet in video.encode(None):
            out.mux(packet)
        tone = (np.sin(np.arange(16000 * frames // fps) / 10) * 0.3).astype(np.float32)[None]
        frame = av.AudioFrame.from_ndarray(tone, format="fltp", layout="mono")
        frame.sample_rate = 16000
        for packet in [*audio.encode(frame), *audio.encode(None)]:
            out.mux(packet)
    return path


@pytest.mark.parametrize("kind", ["mp4", "webm", "gif", "zip"])
def test_every_format_round_trips(kind: str, tmp_path: Path) -> None:
    source = _with_audio(tmp_path / "in.mp4")
    frames = [np.full((47, 63, 3), i * 12, np.uint8) for i in range(12)]  # odd sides: padded for yuv420p
    out = tmp_path / f"out.{kind}"
    assert write_video(out, frames, 12.5 if kind != "gif" else 10, kind, audio_from=source) == 12
    info = probe(out)
    decoded = list(read_frames(out))
    assert len(decoded) == 12 and info.format == kind
    expected = (48, 64) if kind in ("mp4", "webm") else (47, 63)
    assert decoded[0].shape[:2] == expected and (info.height, info.width) == expected
    assert abs(info.fps - (10 if kind == "gif" else 12.5 if kind != "zip" else 25)) < 1e-6 or kind == "zip"
    assert info.has_audio == (kind in ("mp4", "webm"))  # audio kept where the container carries it
    error = np.abs(decoded[5][:47, :63].astype(int) - frames[5]).mean()
    assert error == 0 if kind in ("zip", "gif") else error < 4  # GIF: these flat greys fit its palette


def test_limits_are_typed_errors_from_the_header(tmp_path: Path) -> None:
    info = probe(_with_audio(tmp_path / "in.mp4", frames=50))
    assert info.frames == 50 and info.duration_s >= 1.9
    for limits, code in [
        (VideoLimits(max_duration_s=1.0), "video_too_long"),
        (VideoLimits(max_frames=20), "too_many_frames"),
        (VideoLimits(max_frame_pixels=1000), "frame_too_large"),
    ]:
        with pytest.raises(InputError) as caught:
            check_limits(info, limits)
        assert caught.value.code == code
    check_limits(info, VideoLimits())
    (tmp_path / "x.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"\x00" * 100)
    with pytest.raises(InputError) as caught:
        probe(tmp_path / "x.mp4")
    assert caught.value.code == "invalid_video"
    (tmp_path / "y.bin").write_bytes(b"hello")
    with pytest.raises(InputError) as caught:
        probe(tmp_path / "y.bin")
    assert caught.value.code == "unsupported_video"


def test_gaps_are_bridged_when_short_and_passed_through_when_long() -> None:
    tracks = np.zeros((12, 68, 2))
    tracks[:, :, 0] = np.arange(12)[:, None]
    tracks[3:5] = np.nan  # 2 frames: bridged linearly
    tracks[7:11] = np.nan  # 4 frames: too long for max_gap 3
    filled, usable = fill_gaps(tracks, max_gap=3)
    assert usable.tolist() == [True] * 7 + [False] * 4 + [True]
    assert np.allclose(filled[3:5, 0, 0], [3, 4])


def test_smoothing_removes_jitter_and_follows_motion() -> None:
    rng = np.random.RandomState(0)
    t = np.arange(60)
    truth = np.zeros((60, 68, 2))
    truth[..., 0] = 200 + 2.0 * t[:, None] + 40 * np.arange(68)[None] / 68  # a slow pan
    truth[..., 1] = 240 + 60 * np.arange(68)[None] / 68
    noisy = truth + rng.normal(0, 2.0, truth.shape)
    usable = np.ones(60, bool)
    # Savitzky–Golay (the default): zero-phase, so it follows the pan without lag
    smooth = smooth_tracks(noisy, usable, VideoConfig(landmark_filter="savgol"), fps=25)
    assert np.abs(smooth - truth)[5:-5].mean() < 0.6 * np.abs(noisy - truth)[5:-5].mean()
    # One-Euro (causal): removes jitter on a still face; under a pan it lags (bench/video.py measures it)
    still = truth[:1].repeat(60, 0)
    shaky = still + rng.normal(0, 2.0, still.shape)
    smooth = smooth_tracks(shaky, usable, VideoConfig(landmark_filter="one_euro"), fps=25)
    assert np.abs(smooth - still)[10:].mean() < 0.6 * np.abs(shaky - still)[10:].mean()
    centre = crop_centres(noisy)
    assert centre.shape == (60, 2)


def _stylizer(tiny_registry: Path, config: VideoConfig, portrait: Image.Image | None = None) -> VideoStylizer:
    inverter = checkpoints.load(tiny_registry / "base" / "encoder", expected=Inverter)
    g = checkpoints.load(tiny_registry / "styles" / "demo", expected=Generator)
    aligned = FaceAligner(AlignerConfig()).align(portrait) if portrait is not None else None
    return VideoStylizer(Stylizer(inverter, g), RenderRequest(), config, aligned, portrait)


def _photo_video(path: Path, frames: list[Image.Image], kind: str = "zip") -> Path:
    write_video(path, [np.asarray(f) for f in frames], 25, kind)
    return path


def test_no_face_frames_pass_through(tiny_registry: Path, tmp_path: Path) -> None:
    face = Image.open(FACES / "obama.jpg").convert("RGB").resize((300, 360))
    dogs = Image.open(FACES / "dogs.jpg").convert("RGB").resize((300, 360))
    source = _photo_video(tmp_path / "in.zip", [face] * 3 + [dogs] + [face] * 2 + [dogs] * 4 + [face])
    config = VideoConfig(output="full", size=64, max_gap=2, batch=2)
    seen: list[dict] = []
    result = run_video(
        source, tmp_path / "out.zip", "zip", _stylizer(tiny_registry, config), FaceAligner(AlignerConfig()),
        tmp_path / "work", VideoLimits(), progress=seen.append,
    )  # fmt: skip
    assert (result.frames, result.bridged, result.passed_through) == (11, 1, 4)
    stylizing = [s for s in seen if s["stage"] == "stylizing"]
    assert [s["done"] for s in stylizing] == [2, 4, 6, 8, 10, 11] and all(s["eta_s"] >= 0 for s in stylizing)
    out = list(read_frames(tmp_path / "out.zip"))
    assert all(np.array_equal(out[i], np.asarray(dogs)) for i in range(6, 10))  # unstylized
    assert not np.array_equal(out[0], np.asarray(face)) and not np.array_equal(out[3], np.asarray(dogs))


def test_retargeting_a_still_driver_renders_the_portrait_on_every_frame(tiny_registry: Path, tmp_path: Path) -> None:
    portrait = Image.open(FACES / "biden.jpg").convert("RGB")
    source = _photo_video(tmp_path / "in.zip", [portrait] * 6)
    config = VideoConfig(mode="retarget", output="aligned", size=64)
    stylizer = _stylizer(tiny_registry, config, portrait)
    limits = VideoLimits(max_frame_pixels=4096 * 4096)  # the photo is 970×2204, over the default 1920×1080
    run_video(source, tmp_path / "out.zip", "zip", stylizer, FaceAligner(AlignerConfig()), tmp_path / "w", limits)
    own = np.asarray(render_latents(stylizer.stylizer, stylizer.w_src).images[0])
    frames = list(read_frames(tmp_path / "out.zip"))
    assert len(frames) == 6 and all(np.array_equal(f, own) for f in frames)


def test_a_stopped_run_resumes_from_its_finished_chunks(tiny_registry: Path, tmp_path: Path) -> None:
    face = Image.open(FACES / "obama.jpg").convert("RGB").resize((300, 360))
    frames = [face.transform(face.size, Image.AFFINE, (1, 0, i, 0, 1, 0), Image.BILINEAR) for i in range(10)]
    source = _photo_video(tmp_path / "in.zip", frames)
    config = VideoConfig(output="aligned", size=64, latent_smoothing=0.5)
    aligner = FaceAligner(AlignerConfig())
    whole = run_video(
        source, tmp_path / "whole.zip", "zip", _stylizer(tiny_registry, config), aligner, tmp_path / "a", VideoLimits(),
        chunk_frames=4,
    )  # fmt: skip

    def stop_after_two_chunks() -> bool:  # asked before every frame and chunk
        return len(list((tmp_path / "b").glob("chunk-*.npz"))) >= 2

    with pytest.raises(VideoCanceled):
        run_video(
            source, tmp_path / "part.zip", "zip", _stylizer(tiny_registry, config), aligner, tmp_path / "b",
            VideoLimits(), should_stop=stop_after_two_chunks, chunk_frames=4,
        )  # fmt: skip
    finished = sorted(p.name for p in (tmp_path / "b").glob("chunk-*.npz"))
    assert finished == ["chunk-00000.npz", "chunk-00001.npz"]
    resumed = run_video(
        source, tmp_path / "part.zip", "zip", _stylizer(tiny_registry, config), aligner, tmp_path / "b", VideoLimits(),
        chunk_frames=4,
    )  # fmt: skip
    assert resumed.chunks_resumed == len(finished) and whole.chunks_resumed == 0
    a, b = list(read_frames(tmp_path / "whole.zip")), list(read_frames(tmp_path / "part.zip"))
    assert len(a) == len(b) == 10 and all(np.array_equal(x, y) for x, y in zip(a, b))  # the same video


def test_torch_is_not_needed_to_probe() -> None:
    import service.portrait.media.video_io as io_module

    assert "torch" not in io_module.__dict__ and torch is not None


def test_the_animate_command(tiny_registry: Path, tmp_path: Path) -> None:

    face = Image.open(FACES / "obama.jpg").convert("RGB").resize((240, 288))
    source = _photo_video(tmp_path / "in.mp4", [face] * 5, kind="mp4")
    common = ["animate", tiny_registry / "styles" / "demo", source]
    encoder = ["--encoder", tiny_registry / "base" / "encoder"]
    done = agilegan(*common, *encoder, "--out", tmp_path / "out.webm")
    assert done.returncode == 0, done.stderr
    assert "5 frames at 25 fps, 5 stylized" in done.stdout and "stylizing" in done.stderr  # the progress bar
    assert probe(tmp_path / "out.webm").width == 240 and not (tmp_path / "out.webm.work").exists()
    portrait = [*encoder, "--portrait", FACES / "biden.jpg", "--output", "aligned", "--size", "64"]
    done = agilegan(*common, *portrait, "--out", tmp_path / "me.zip")
    assert done.returncode == 0, done.stderr
    assert [f.shape for f in read_frames(tmp_path / "me.zip")] == [(64, 64, 3)] * 5
    bad = agilegan(*common, "--out", tmp_path / "x.avi")
    assert bad.returncode == 1 and "suffix" in bad.stderr


def test_every_decoded_frame_is_checked_not_only_the_header(tmp_path: Path) -> None:
    """Issue 22, finding 4: a header can lie, so each decoded frame meets the pixel limit and has the
    first frame's size (typed, permanent errors; the worker never retries them)."""
    from tests.reliability.media_cases import png, png_header, zip_of

    big = tmp_path / "big.zip"  # over the service's default frame limit: bounded only when limits are given
    big.write_bytes(zip_of({"a.png": png_header(2000, 1200)}))
    assert probe(big).width == 2000
    with pytest.raises(InputError) as caught:
        probe(big, limits=VideoLimits())
    assert caught.value.code == "frame_too_large"

    clip = tmp_path / "clip.mp4"
    write_video(clip, [np.zeros((64, 96, 3), np.uint8)] * 3, 25, "mp4")
    with pytest.raises(InputError) as caught:
        list(read_frames(clip, VideoLimits(max_frame_pixels=64 * 64)))
    assert caught.value.code == "frame_too_large"
    changing = tmp_path / "changing.zip"
    changing.write_bytes(zip_of({"a.png": png(64, 64), "b.png": png(32, 32)}))
    with pytest.raises(InputError) as caught:
        list(read_frames(changing))
    assert caught.value.code == "invalid_video" and "the first is 64×64" in str(caught.value)


TWO_PEOPLE_SCALE = 0.6  # faces of about 160 px (over the 128 px minimum), frames of 676×397: a quicker test
TWO_PEOPLE_BOXES = [  # the two faces' boxes in the first frame
    tuple(round(v * TWO_PEOPLE_SCALE) for v in box) for box in ((240, 52, 410, 222), (788, 70, 959, 241))
]


def _two_people_video(path: Path) -> tuple[Path, list[Image.Image]]:
    """Ten frames of tests/data/faces/two_people.jpg (at TWO_PEOPLE_SCALE) panning 2 px a frame; in frames 5
    and 6 a grey card hides the left person (a gap the left track bridges, keeping its id)."""
    photo = Image.open(FACES / "two_people.jpg").convert("RGB")
    photo = photo.resize((round(photo.size[0] * TWO_PEOPLE_SCALE), round(photo.size[1] * TWO_PEOPLE_SCALE)))
    frames = []
    for i in range(10):
        frame = photo.transform(photo.size, Image.AFFINE, (1, 0, -2 * i, 0, 1, 0), Image.BILINEAR)
        if i in (5, 6):
            frame.paste((128, 128, 128), (90, 0, 300, 240))
        frames.append(frame)
    return _photo_video(path, frames), frames


def test_every_face_of_a_group_video_is_tracked_and_stylized(tiny_registry: Path, tmp_path: Path) -> None:
    source, frames = _two_people_video(tmp_path / "in.zip")
    config = VideoConfig(output="full", size=64, max_gap=3, batch=4)
    aligner = FaceAligner(AlignerConfig())
    run = lambda out, work, **kw: run_video(  # noqa: E731
        source, out, "zip", _stylizer(tiny_registry, config), aligner, work, VideoLimits(), max_faces=8, chunk_frames=4,
        **kw,
    )  # fmt: skip
    result = run(tmp_path / "out.zip", tmp_path / "w")
    # 1. Two tracks, ids kept across the pan and the left person's gap (bridged, not a new track).
    assert result.tracks == [
        {"id": 0, "first_frame": 0, "last_frame": 9, "stylized": 10},
        {"id": 1, "first_frame": 0, "last_frame": 9, "stylized": 10},
    ]
    assert result.stylized == 10 and result.passed_through == 0
    marks = np.load(tmp_path / "w" / "landmarks.npy")
    hidden = np.isnan(marks).any(axis=(2, 3))  # [track, frame]: no face found
    assert marks.shape == (2, 10, 68, 2) and hidden.sum() == 2 and hidden[:, 5:7].sum() == 2
    left = int(hidden[1].any())  # the track of the hidden (left) person
    assert marks[left, 0, :, 0].mean() < 300 < marks[1 - left, 0, :, 0].mean()
    # 2. Both faces stylized in every frame; far from both, the frame as it was.
    out = list(read_frames(tmp_path / "out.zip"))
    for frame, original in zip(out, frames, strict=True):
        before = np.asarray(original, dtype=np.int16)
        for left, top, right, bottom in TWO_PEOPLE_BOXES:  # each person's face in the first frame
            inner = (slice(top + 24, bottom - 24), slice(left + 36, right - 24))
            assert np.abs(frame[inner].astype(np.int16) - before[inner]).mean() > 10
        assert np.array_equal(frame[360:, :], np.asarray(original)[360:, :])  # below every face
    # 3. A run stopped after a chunk resumes with each track's moving average: the same frames.
    with pytest.raises(VideoCanceled):
        run(tmp_path / "part.zip", tmp_path / "b", should_stop=lambda: any((tmp_path / "b").glob("chunk-*.npz")))
    resumed = run(tmp_path / "part.zip", tmp_path / "b")
    assert resumed.chunks_resumed == 1
    assert all(np.array_equal(a, b) for a, b in zip(out, read_frames(tmp_path / "part.zip"), strict=True))

"""One video from input file to output file, in resumable chunks (the CLI and the video job share it).

Steps, each leaving files in `workdir` so a run killed at any point resumes where it stopped:
1. Landmarks of every frame (the largest face; NaN where none) → `landmarks.npy`.
2. Gaps filled, tracks smoothed (models/inference/video.py).
3. Chunks of `chunk_frames` frames stylized → `chunk-00012.npz` (the output frames and the state the
   next chunk needs: the latent moving average, w̃_0). A chunk file that exists is not redone.
4. The chunks encoded into the output container, with the input's audio.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from models.inference.video import VideoState, VideoStylizer, fill_gaps, smooth_tracks
from service.core.media.alignment import FaceAligner
from service.core.media.video_io import InputError, VideoLimits, probe, read_frames, write_video

CHUNK_FRAMES = 16
Progress = Callable[[dict[str, Any]], None]


class VideoCanceled(Exception):
    """`should_stop` asked the run to stop; the finished chunks stay for a resume."""


@dataclasses.dataclass(frozen=True)
class VideoResult:
    frames: int
    stylized: int
    bridged: int  # frames without a face, bridged from their neighbours
    passed_through: int  # frames left unstylized (no face for longer than max_gap)
    fps: float
    chunks_resumed: int
    seconds: float


def find_tracks(aligner: FaceAligner, frames: Iterator[np.ndarray]) -> np.ndarray:
    """[T, 68, 2] landmarks of each frame's largest face, NaN rows where none was found."""
    tracks = []
    for frame in frames:
        faces = aligner.detect(Image.fromarray(frame))
        tracks.append(faces[0].landmarks if faces else np.full((68, 2), np.nan))
    return np.stack(tracks) if tracks else np.zeros((0, 68, 2))


@dataclasses.dataclass
class _Reporter:
    """Progress and cancel checks of one run (a run's callbacks, with the time it started)."""

    progress: Progress | None
    should_stop: Callable[[], bool] | None
    on_saved: Callable[[Path], None] | None = None
    started: float = dataclasses.field(default_factory=time.monotonic)

    def saved(self, path: Path) -> None:
        if self.on_saved is not None:
            self.on_saved(path)

    def report(self, stage: str, done: int, total: int, **extra: float) -> None:
        if self.progress is not None:
            elapsed = time.monotonic() - self.started
            self.progress({"stage": stage, "done": done, "total": total, **extra, "elapsed_s": elapsed})

    def check_stop(self) -> None:
        if self.should_stop is not None and self.should_stop():
            raise VideoCanceled("canceled")


def run_video(
    source: Path,
    out: Path,
    kind: str,
    stylizer: VideoStylizer,
    aligner: FaceAligner,
    workdir: Path,
    limits: VideoLimits,
    progress: Progress | None = None,
    should_stop: Callable[[], bool] | None = None,
    chunk_frames: int = CHUNK_FRAMES,
    fps: float | None = None,
    saved: Callable[[Path], None] | None = None,
) -> VideoResult:
    """`fps`: the frame rate of a zip of frames (default 25); containers carry their own. `saved`: called
    with each work file once it is complete (the landmarks, each chunk), to checkpoint it elsewhere."""
    run = _Reporter(progress, should_stop, saved)
    info = probe(source, fps, limits)
    workdir.mkdir(parents=True, exist_ok=True)
    # 1. Landmarks of every frame (kept: a resumed run does not detect again).
    tracks = _landmarks(source, aligner, workdir, limits, info.frames, run)
    total = len(tracks)
    if total == 0:
        raise InputError("invalid_video", "the video has no frames")
    # 2. Fill gaps, smooth over time.
    filled, usable = fill_gaps(tracks, stylizer.config.max_gap)
    smooth = smooth_tracks(filled, usable, stylizer.config, info.fps)
    found_mask = ~np.isnan(tracks).any(axis=(1, 2))
    # 3. Chunks (a finished chunk is not redone; its state seeds the next).
    n_chunks = (total + chunk_frames - 1) // chunk_frames
    resumed = _stylize_chunks(source, stylizer, workdir, limits, smooth, usable, chunk_frames, run)
    # 4. Encode, with the input's audio.
    run.report("encoding", total, total)

    def chunks() -> Iterator[np.ndarray]:
        for c in range(n_chunks):
            with np.load(_chunk_path(workdir, c)) as saved:
                yield from saved["frames"]

    write_video(out, chunks(), info.fps, kind, audio_from=source)
    return VideoResult(
        frames=total,
        stylized=int(usable.sum()),
        bridged=int((usable & ~found_mask).sum()),
        passed_through=int((~usable).sum()),
        fps=info.fps,
        chunks_resumed=resumed,
        seconds=round(time.monotonic() - run.started, 3),
    )


def _chunk_path(workdir: Path, chunk: int) -> Path:
    return workdir / f"chunk-{chunk:05d}.npz"


def _landmarks(
    source: Path, aligner: FaceAligner, workdir: Path, limits: VideoLimits, frames: int, run: _Reporter
) -> np.ndarray:
    """Step 1: [T, 68, 2] landmarks, read from `landmarks.npy` when an earlier run found them."""
    marks = workdir / "landmarks.npy"
    if marks.is_file():
        return np.load(marks)

    def frames_with_progress() -> Iterator[np.ndarray]:
        for i, frame in enumerate(read_frames(source, limits)):
            run.check_stop()
            if i % 8 == 0:
                run.report("finding faces", i, frames)
            yield frame

    tracks = find_tracks(aligner, frames_with_progress())
    np.save(workdir / ".landmarks.tmp.npy", tracks)
    (workdir / ".landmarks.tmp.npy").replace(marks)
    run.saved(marks)
    return tracks


def _stylize_chunks(
    source: Path,
    stylizer: VideoStylizer,
    workdir: Path,
    limits: VideoLimits,
    smooth: np.ndarray,
    usable: np.ndarray,
    chunk_frames: int,
    run: _Reporter,
) -> int:
    """Step 3: every chunk not on disk yet, stylized and written atomically; returns the chunks resumed."""
    total = len(smooth)
    state, resumed = VideoState(), 0
    frames = read_frames(source, limits)
    chunk_started = time.monotonic()
    done_frames = 0
    for c in range((total + chunk_frames - 1) // chunk_frames):
        lo, hi = c * chunk_frames, min((c + 1) * chunk_frames, total)
        path = _chunk_path(workdir, c)
        batch = [next(frames) for _ in range(lo, hi)]
        if path.is_file():
            with np.load(path) as saved:
                state = VideoState.from_arrays({k: saved[k] for k in saved.files if k != "frames"})
            resumed += 1
            continue
        run.check_stop()

        def on_batch(done_in_chunk: int, lo: int = lo, before: int = done_frames) -> None:  # after every batch
            rate = (before + done_in_chunk) / max(time.monotonic() - chunk_started, 1e-6)
            eta = (total - lo - done_in_chunk) / rate
            run.report("stylizing", lo + done_in_chunk, total, eta_s=eta)

        outputs, state = stylizer.chunk(batch, smooth[lo:hi], usable[lo:hi], state, on_batch)
        tmp = workdir / f".chunk-{c:05d}.tmp.npz"
        with open(tmp, "wb") as f:
            np.savez(f, frames=np.stack(outputs), **state.to_arrays())
        tmp.replace(path)
        run.saved(path)
        done_frames += hi - lo
    return resumed

"""One video from input file to output file, in resumable chunks (the CLI and the video job share it).

Steps, each leaving files in `workdir` so a run killed at any point resumes where it stopped:
1. Landmarks of every frame → `landmarks.npy` [K, T, 68, 2] (NaN where a track has no face): the
   largest face (K = 1), or, for a group video, every face, tracked from frame to frame by box overlap
   (`find_face_tracks`).
2. Gaps filled, tracks smoothed, each track on its own (models/inference/video.py).
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
from service.portrait.media.alignment import Face, FaceAligner
from service.portrait.media.video_io import InputError, VideoLimits, probe, read_frames, write_video

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
    tracks: list[dict[str, int]] = dataclasses.field(default_factory=list)  # a group video's faces


def find_tracks(aligner: FaceAligner, frames: Iterator[np.ndarray]) -> np.ndarray:
    """[T, 68, 2] landmarks of each frame's largest face, NaN rows where none was found."""
    tracks = []
    for frame in frames:
        faces = aligner.detect(Image.fromarray(frame))
        tracks.append(faces[0].landmarks if faces else np.full((68, 2), np.nan))
    return np.stack(tracks) if tracks else np.zeros((0, 68, 2))


def box_iou(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    """Intersection over union of two (left, top, right, bottom) boxes."""
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - w * h
    return w * h / union if union > 0 else 0.0


def find_face_tracks(
    aligner: FaceAligner, frames: Iterator[np.ndarray], max_faces: int, max_gap: int, min_iou: float = 0.3
) -> np.ndarray:
    """[K, T, 68, 2]: every face of every frame (of at least the aligner's `min_face_size`), as tracks.

    A face joins the live track whose last box overlaps it most (IoU ≥ `min_iou`, best pairs first, one
    face per track); a face that joins none starts a new track, up to `max_faces` tracks in the video
    (further faces are left alone); a track unseen for more than `max_gap` frames ends (its face, if it
    comes back, is a new track). NaN where a track has no face."""
    tracks: list[_Track] = []
    t = -1
    for t, frame in enumerate(frames):
        found = aligner.detect(Image.fromarray(frame), exhaustive=True)
        faces = [f for f in found if f.large_enough(aligner.config.min_face_size)]
        live = [track for track in tracks if t - track.last_seen <= max_gap + 1]
        joined = _match(live, faces, min_iou)
        for track, face in joined.items():
            track.add(t, face)
        for face in faces:  # largest first: new faces get the free tracks
            if all(face is not f for f in joined.values()) and len(tracks) < max_faces:
                tracks.append(_Track(t, face))
    out = np.full((len(tracks), t + 1, 68, 2), np.nan)
    for k, track in enumerate(tracks):
        for frame, landmarks in track.points.items():
            out[k, frame] = landmarks
    return out


class _Track:
    def __init__(self, t: int, face: Face) -> None:
        self.points: dict[int, np.ndarray] = {}
        self.add(t, face)

    def add(self, t: int, face: Face) -> None:
        self.box, self.last_seen, self.points[t] = face.box, t, face.landmarks


def _match(tracks: list[_Track], faces: list[Face], min_iou: float) -> dict[_Track, Face]:
    """Greedy matching by box overlap: the best-overlapping pair first, one face per track."""
    pairs = sorted(
        ((box_iou(track.box, face.box), k, i) for k, track in enumerate(tracks) for i, face in enumerate(faces)),
        key=lambda p: p[0],
        reverse=True,
    )
    joined: dict[_Track, Face] = {}
    used: set[int] = set()
    for overlap, k, i in pairs:
        if overlap < min_iou:
            break
        if tracks[k] not in joined and i not in used:
            joined[tracks[k]] = faces[i]
            used.add(i)
    return joined


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
    max_faces: int = 0,
) -> VideoResult:
    """`fps`: the frame rate of a zip of frames (default 25); containers carry their own. `saved`: called
    with each work file once it is complete (the landmarks, each chunk), to checkpoint it elsewhere.
    `max_faces` > 0: a group video, every face up to that many tracks (else the largest face)."""
    run = _Reporter(progress, should_stop, saved)
    info = probe(source, fps, limits)
    workdir.mkdir(parents=True, exist_ok=True)
    # 1. Landmarks of every frame (kept: a resumed run does not detect again).
    tracks = _landmarks(source, aligner, workdir, limits, info.frames, run, max_faces, stylizer.config.max_gap)
    total = tracks.shape[1]
    if total == 0:
        raise InputError("invalid_video", "the video has no frames")
    # 2. Fill gaps, smooth over time, track by track.
    filled, usable = np.empty_like(tracks), np.zeros(tracks.shape[:2], bool)
    for k, track in enumerate(tracks):
        filled[k], usable[k] = fill_gaps(track, stylizer.config.max_gap, hold_ends=not max_faces)
        filled[k] = smooth_tracks(filled[k], usable[k], stylizer.config, info.fps)
    found = ~np.isnan(tracks).any(axis=(2, 3))  # [K, T]
    # 3. Chunks (a finished chunk is not redone; its state seeds the next).
    n_chunks = (total + chunk_frames - 1) // chunk_frames
    resumed = _stylize_chunks(source, stylizer, workdir, limits, filled, usable, chunk_frames, run)
    # 4. Encode, with the input's audio.
    run.report("encoding", total, total)

    def chunks() -> Iterator[np.ndarray]:
        for c in range(n_chunks):
            with np.load(_chunk_path(workdir, c)) as saved:
                yield from saved["frames"]

    write_video(out, chunks(), info.fps, kind, audio_from=source)
    any_usable = usable.any(0)
    return VideoResult(
        frames=total,
        stylized=int(any_usable.sum()),
        bridged=int((any_usable & ~(usable & found).any(0)).sum()),
        passed_through=int((~any_usable).sum()),
        fps=info.fps,
        chunks_resumed=resumed,
        seconds=round(time.monotonic() - run.started, 3),
        tracks=[_track_summary(k, u, f) for k, (u, f) in enumerate(zip(usable, found))] if max_faces else [],
    )


def _track_summary(k: int, usable: np.ndarray, found: np.ndarray) -> dict[str, int]:
    frames = np.flatnonzero(found)
    first, last = (int(frames[0]), int(frames[-1])) if len(frames) else (-1, -1)
    return {"id": k, "first_frame": first, "last_frame": last, "stylized": int(usable.sum())}


def _chunk_path(workdir: Path, chunk: int) -> Path:
    return workdir / f"chunk-{chunk:05d}.npz"


def _landmarks(
    source: Path,
    aligner: FaceAligner,
    workdir: Path,
    limits: VideoLimits,
    frames: int,
    run: _Reporter,
    max_faces: int,
    max_gap: int,
) -> np.ndarray:
    """Step 1: [K, T, 68, 2] landmarks, read from `landmarks.npy` when an earlier run found them (a file of
    one track, [T, 68, 2], from before group videos, is read as K = 1)."""
    marks = workdir / "landmarks.npy"
    if marks.is_file():
        found = np.load(marks)
        return found[None] if found.ndim == 3 else found

    def frames_with_progress() -> Iterator[np.ndarray]:
        for i, frame in enumerate(read_frames(source, limits)):
            run.check_stop()
            if i % 8 == 0:
                run.report("finding faces", i, frames)
            yield frame

    if max_faces:
        tracks = find_face_tracks(aligner, frames_with_progress(), max_faces, max_gap)
    else:
        tracks = find_tracks(aligner, frames_with_progress())[None]
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
    """Step 3: every chunk not on disk yet, stylized and written atomically; returns the chunks resumed.
    `smooth` [K, T, 68, 2] and `usable` [K, T]: the tracks."""
    total = smooth.shape[1]
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

        outputs, state = stylizer.chunk(batch, smooth[:, lo:hi], usable[:, lo:hi], state, on_batch)
        tmp = workdir / f".chunk-{c:05d}.tmp.npz"
        with open(tmp, "wb") as f:
            np.savez(f, frames=np.stack(outputs), **state.to_arrays())
        tmp.replace(path)
        run.saved(path)
        done_frames += hi - lo
    return resumed

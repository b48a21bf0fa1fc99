"""Stylized video and motion retargeting (AgileGAN's second application), temporally stable.

Two modes, one pipeline:
- `stylize`: every frame's own face stylized (FaceStylor's "video toonify").
- `retarget`: a portrait's identity driven by a video: the portrait is inverted once (w_src), every
  frame too (w_t), and `w_src + (w̃_t − w̃_0)` is rendered on `retarget_layers` (w+ indices; w_src
  elsewhere), w̃ the smoothed frame codes. The default, "0-7", is the layers of the 4…32 px blocks at
  1024 (pose, face shape, expression); the finer ones carry colour and texture, which stay the
  portrait's. A driver that does not move reproduces the portrait's own render on every frame.

Temporal stability (bench/video.py measures each step):
1. Landmarks are found in every frame first, then the tracks are filled and smoothed over time:
   gaps (no face) of at most `max_gap` frames are bridged linearly (held at the ends), longer gaps
   pass through unstylized; `landmark_filter` "savgol" (Savitzky–Golay, zero-phase, window
   `savgol_window`, order 2: the whole video is known, so no lag), "one_euro" (causal, adaptive) or
   "none". The FFHQ crop transform is a function of the landmarks, so it is smoothed with them.
2. The codes are smoothed by an exponential moving average (`latent_smoothing` = weight of the past).
3. Noise is constant across frames; the face is pasted back into each full frame with the feathered
   paste-back (`output` "full"), or the aligned crops are the output ("aligned").

Frames run in batches of `batch` through the stylize pipeline (models/inference/pipeline.py).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from functools import partial

import numpy as np
import torch
from PIL import Image
from scipy.signal import savgol_filter

from models.inference.directions import parse_layers
from models.inference.pipeline import RenderRequest, check_request, encode_crops, render_latents, stylize_batch
from models.inference.stylizer import Stylizer
from service.portrait.media.alignment import AlignedFace, align_landmarks, paste_back, paste_faces

MODES = ("stylize", "retarget")
FILTERS = ("savgol", "one_euro", "none")


@dataclasses.dataclass(frozen=True)
class VideoConfig:
    mode: str = "stylize"
    output: str = "full"  # "full": pasted back into each frame; "aligned": the stylized crops
    size: int = 256  # side of the aligned output (and of the crop pasted back)
    landmark_filter: str = "savgol"
    savgol_window: int = 9
    one_euro_min_cutoff: float = 1.0
    one_euro_beta: float = 0.05
    latent_smoothing: float = 0.3
    max_gap: int = 12
    retarget_layers: str = "0-7"
    batch: int = 8
    transform_size: int = 1024

    def __post_init__(self) -> None:
        if self.mode not in MODES or self.output not in ("full", "aligned"):
            raise ValueError(f"mode must be one of {MODES} and output full or aligned")
        if self.landmark_filter not in FILTERS:
            raise ValueError(f"landmark_filter must be one of {FILTERS}")
        if self.savgol_window < 3 or self.savgol_window % 2 == 0:
            raise ValueError("savgol_window must be an odd number ≥ 3")
        if not 0.0 <= self.latent_smoothing < 1.0 or self.batch < 1 or self.max_gap < 0:
            raise ValueError("latent_smoothing in [0, 1), batch ≥ 1, max_gap ≥ 0")


# ----------------------------------------------------------------------------------- landmarks


def fill_gaps(tracks: np.ndarray, max_gap: int, hold_ends: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """tracks [T, 68, 2] with NaN where no face was found → (filled tracks, usable [T] bool).

    A gap of at most `max_gap` frames between two found faces is bridged linearly; at the start and
    end of the video it is held from the nearest face (`hold_ends`; a face of a group video that enters
    late or leaves early is not held). Longer gaps stay unusable (passed through)."""
    found = ~np.isnan(tracks).any(axis=(1, 2))
    out, usable = tracks.copy(), found.copy()
    t = np.flatnonzero(found)
    if len(t) == 0:
        return out, usable
    i = 0
    while i < len(tracks):
        if found[i]:
            i += 1
            continue
        j = i
        while j < len(tracks) and not found[j]:
            j += 1
        before, after = (i - 1 if i > 0 else None), (j if j < len(tracks) else None)
        if j - i <= max_gap and (hold_ends or (before is not None and after is not None)):
            for k in range(i, j):
                if before is not None and after is not None:
                    a = (k - before) / (after - before)
                    out[k] = (1 - a) * tracks[before] + a * tracks[after]
                else:
                    out[k] = tracks[before if before is not None else after]
            usable[i:j] = True
        i = j
    return out, usable


def smooth_tracks(tracks: np.ndarray, usable: np.ndarray, config: VideoConfig, fps: float = 25.0) -> np.ndarray:
    """Smooth each contiguous usable run of tracks [T, 68, 2] over time (see the module docs)."""
    out = tracks.copy()
    if config.landmark_filter == "none":
        return out
    for start, stop in _runs(usable):
        run = tracks[start:stop]
        if config.landmark_filter == "savgol":
            window = min(config.savgol_window, len(run) - (1 - len(run) % 2))
            if window >= 3:
                out[start:stop] = savgol_filter(
                    run, window, 2, axis=0, mode="interp" if len(run) > window else "nearest"
                )
        else:
            out[start:stop] = one_euro(run, fps, config.one_euro_min_cutoff, config.one_euro_beta)
    return out


def one_euro(x: np.ndarray, fps: float, min_cutoff: float, beta: float, d_cutoff: float = 1.0) -> np.ndarray:
    """The One-Euro filter (Casiez et al. 2012) along axis 0 of x [T, …]: a low-pass whose cutoff rises
    with the speed, so slow jitter is removed and fast motion is followed."""

    def alpha(cutoff: np.ndarray | float) -> np.ndarray | float:
        tau = 1.0 / (2 * np.pi * cutoff)
        return 1.0 / (1.0 + tau * fps)

    out = np.empty_like(x)
    out[0], dx = x[0], np.zeros_like(x[0])
    for t in range(1, len(x)):
        dx = dx + alpha(d_cutoff) * ((x[t] - x[t - 1]) * fps - dx)
        a = alpha(min_cutoff + beta * np.abs(dx))
        out[t] = out[t - 1] + a * (x[t] - out[t - 1])
    return out


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    runs, start = [], None
    for i, v in enumerate(list(mask) + [False]):
        if v and start is None:
            start = i
        elif not v and start is not None:
            runs.append((start, i))
            start = None
    return runs


def crop_centres(tracks: np.ndarray) -> np.ndarray:
    """[T, 68, 2] → [T, 2]: the centre of each frame's FFHQ crop quad (what jitters on screen)."""
    from service.portrait.media.alignment import Face

    return np.stack([Face((0, 0, 0, 0), 0.0, t.astype(np.float64)).quad()[0].mean(0) for t in tracks])


# ------------------------------------------------------------------------------------- latents


@dataclasses.dataclass
class VideoState:
    """What carries over from one chunk of frames to the next (saved with each chunk, for resume)."""

    smoothed: dict[int, torch.Tensor] = dataclasses.field(default_factory=dict)  # per track: w̃ of its last frame
    first: torch.Tensor | None = None  # w̃_0 (retarget)

    def to_arrays(self) -> dict[str, np.ndarray]:
        """Track 0's code as "smoothed" (as chunks saved before group videos have it), others "smoothed_<k>"."""
        out = {("smoothed" if k == 0 else f"smoothed_{k}"): v.cpu().numpy() for k, v in self.smoothed.items()}
        return {**out, **({"first": self.first.cpu().numpy()} if self.first is not None else {})}

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray]) -> VideoState:
        smoothed = {}
        for name, value in arrays.items():
            if name == "smoothed" or name.startswith("smoothed_"):
                smoothed[int(name.partition("_")[2] or 0)] = torch.from_numpy(value)
        first = arrays.get("first")
        return cls(smoothed, torch.from_numpy(first) if first is not None else None)


def retarget(w_src: torch.Tensor, w: torch.Tensor, w_first: torch.Tensor, layers: Sequence[int]) -> torch.Tensor:
    """w_src [1, L, D] driven by codes w [B, L, D] relative to w_first [1, L, D] on `layers`."""
    out = w_src.expand(len(w), -1, -1).clone()
    idx = list(layers)
    out[:, idx] = w_src[:, idx] + (w[:, idx] - w_first[:, idx])
    return out


class VideoStylizer:
    """Runs chunks of frames through the batch pipeline (models/inference/pipeline.py) with the state of
    the video so far: the moving average and the retarget are the pipeline's latent step, so a frame gets
    the same networks, edits and controls as a photo. `request`: the style's controls (an attribute-aware
    style renders one branch for the whole video: the asked one, else its default); `portrait`
    (retarget) is the portrait's aligned face."""

    def __init__(
        self,
        stylizer: Stylizer,
        request: RenderRequest,
        config: VideoConfig,
        portrait: AlignedFace | None = None,
        portrait_photo: Image.Image | None = None,
    ) -> None:
        if config.mode == "retarget" and portrait is None:
            raise ValueError("retarget needs a portrait")
        if stylizer.branches and request.branch is None:  # no flicker between branches from frame to frame
            request = dataclasses.replace(request, branch=stylizer.default_branch)
        check_request(stylizer, request)
        self.stylizer, self.request, self.config = stylizer, request, config
        self.n_latent = stylizer.generator.n_latent
        self.portrait, self.portrait_photo = portrait, portrait_photo
        self.layers = parse_layers(config.retarget_layers, self.n_latent) or tuple(range(self.n_latent))
        self.w_src = encode_crops(stylizer, [portrait.image])[0] if portrait is not None else None

    @torch.no_grad()
    def chunk(
        self,
        frames: list[np.ndarray],
        landmarks: np.ndarray,
        usable: np.ndarray,
        state: VideoState,
        on_batch: Callable[[int], None] | None = None,
    ) -> tuple[list[np.ndarray], VideoState]:
        """Frames [H, W, 3] uint8 with their smoothed landmarks and usable flags → output frames: one face
        track ([n, 68, 2], [n]) or several ([K, n, 68, 2], [K, n]: every face of a group video, each
        track with its own moving average, every face of a frame pasted back into it). `on_batch(frames
        done in this chunk)` after each batch (per-frame progress)."""
        if landmarks.ndim == 3:
            landmarks, usable = landmarks[None], usable[None]
        cfg = self.config
        out: list[np.ndarray] = []
        for start in range(0, len(frames), cfg.batch):
            rows = range(start, min(start + cfg.batch, len(frames)))
            photos = [Image.fromarray(frames[i]) for i in rows]
            faces = [(i, k) for i in rows for k in range(len(landmarks)) if usable[k, i]]  # frame by frame
            aligned = {
                (i, k): align_landmarks(photos[i - start], landmarks[k, i], cfg.size, cfg.transform_size)
                for i, k in faces
            }
            rendered: dict[tuple[int, int], Image.Image] = {}
            if faces:
                crops = [aligned[f].image for f in faces]
                step = partial(self._latent_step, state=state, tracks=[k for _, k in faces])
                batch = stylize_batch(self.stylizer, crops, self.request, step)
                rendered = {f: batch.image(j, cfg.size) for j, f in enumerate(faces)}  # resized on the device
            for i in rows:
                mine = [(rendered[(i, k)], aligned[(i, k)]) for k in range(len(landmarks)) if (i, k) in rendered]
                out.append(self._compose(mine, photos[i - start]))
            if on_batch is not None:
                on_batch(len(out))
        return out, state

    def _latent_step(self, w: torch.Tensor, state: VideoState, tracks: list[int]) -> torch.Tensor:
        """Codes w [B, L, D] of faces in frame order, row j of track `tracks[j]` → the codes to render: each
        track's moving average (it carries over in `state`), then, retargeting, the portrait's codes moved by
        the frames' motion."""
        cfg, smoothed = self.config, []
        for row, track in zip(w, tracks, strict=True):
            row = row[None]
            past = state.smoothed.get(track)
            if past is not None and cfg.latent_smoothing:
                row = cfg.latent_smoothing * past.to(row) + (1 - cfg.latent_smoothing) * row
            state.smoothed[track] = row
            if state.first is None:
                state.first = row
            smoothed.append(row)
        codes = torch.cat(smoothed)
        if cfg.mode == "retarget":
            codes = retarget(self.w_src, codes, state.first.to(codes), self.layers)
        return codes

    def _portrait_render(self) -> Image.Image:
        """The portrait's own render (retarget, when no driver frame is usable)."""
        return render_latents(self.stylizer, self.w_src, self.request).image(0, self.config.size)

    def _compose(self, faces: list[tuple[Image.Image, AlignedFace]], photo: Image.Image) -> np.ndarray:
        """One output frame from its rendered faces (none: no usable face in it)."""
        cfg = self.config
        if cfg.mode == "retarget":
            face = faces[0][0] if faces else self._portrait_render()  # no usable driver frame: unmoved
            if cfg.output == "full" and self.portrait_photo is not None:
                return np.asarray(paste_back(self.portrait_photo, face, self.portrait))
            return np.asarray(face)
        if not faces:  # passed through unstylized
            return np.asarray(photo if cfg.output == "full" else photo.resize((cfg.size, cfg.size)))
        if cfg.output == "full":
            return np.asarray(paste_faces(photo, faces))
        return np.asarray(faces[0][0])

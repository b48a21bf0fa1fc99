"""The files jobs share: uploads and results in the object store (service/platform/objectstore.py: the data
directory by default, or an S3-compatible bucket), the rest in the data directory (a volume in compose).

    inputs/<job_id>/upload                the uploaded bytes, as received (object store)
    results/<job_id>.<ext>                the finished image or video (object store)
    <data_dir>/video/<job_id>/            a video job's upload and resumable work files
    <data_dir>/style-uploads/<style_id>/  a style's exemplars, until its training ends (object store)
    style-previews/<style_id>.png         a training style's preview grid (remote object stores only)
    <data_dir>/registry/                  models (see service/platform/registry.py)

Paths are built only from ids we generate or validate (`contract.JOB_ID`), never from user input.
Writes are atomic (temporary file + rename), so a reader never sees half a result. `sweep` deletes
results older than the result TTL, and inputs as old whose job is no longer waiting or running (a job
queued for longer than the TTL, while the workers were down, keeps its upload).
"""

from __future__ import annotations

import json
import os
import shutil
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from service.platform.contract import JOB_ID, STYLE_ID
from service.platform.objectstore import LocalStore, ObjectMissing, ObjectStore, ObjectStream
from service.portrait.checkpoint_files import atomic_write_bytes as atomic_write

VIDEO_INPUTS = ("video", "portrait")  # a video job's uploads, in its folder and (remote stores) under video/<job>/
RESULT_EXTENSIONS = ("png", "jpeg", "webp", "mp4", "webm", "gif", "zip")


class InputMissing(Exception):
    """A job's upload is not in storage (deleted by hand, or a data directory not shared): permanent."""

    code = "input_missing"


@dataclass(frozen=True)
class StoredResult:
    """A job's result: a file of the data directory (`path`), or an object of a remote store (`key`)."""

    job_id: str
    fmt: str
    path: Path | None = None
    key: str | None = None

    @property
    def filename(self) -> str:
        return f"{self.job_id}.{self.fmt}"


class Storage:
    def __init__(self, data_dir: Path, store: ObjectStore | None = None) -> None:
        """`store`: where uploads and results go (default: the data directory itself)."""
        self.root = Path(data_dir)
        self.store = store or LocalStore(self.root)
        self.videos = self.root / "video"  # per video job: the upload, a portrait, landmarks, chunks
        self.videos.mkdir(parents=True, exist_ok=True)

    @staticmethod
    def _check(job_id: str) -> str:
        if not JOB_ID.fullmatch(job_id):
            raise ValueError(f"not a job id: {job_id!r}")
        return job_id

    # The store's key prefixes of a job, each spelled once.
    def _input_prefix(self, job_id: str) -> str:
        return f"inputs/{self._check(job_id)}/"

    def _video_prefix(self, job_id: str) -> str:
        return f"video/{self._check(job_id)}/"

    def _results_prefix(self, job_id: str) -> str:
        """Every result of the job, whatever its format."""
        return f"results/{self._check(job_id)}."

    def _input_key(self, job_id: str) -> str:
        return f"{self._input_prefix(job_id)}upload"

    def write_input(self, job_id: str, data: bytes) -> None:
        self.store.put(self._input_key(job_id), data)

    def delete_input(self, job_id: str) -> None:
        self.store.delete_prefix(self._input_prefix(job_id))

    def video_dir(self, job_id: str) -> Path:
        """A video job's folder: `video` (the upload), `portrait`, and its resumable work files."""
        return self.videos / self._check(job_id)

    def publish_video_inputs(self, job_id: str) -> None:
        """After the API wrote and checked them in the job's folder: the upload and the portrait into a
        remote store, and the folder gone from this machine (a local store's folder is the data directory
        itself: nothing to do)."""
        if self.store.local_root is not None:
            return
        folder = self.video_dir(job_id)
        for name in VIDEO_INPUTS:
            if (folder / name).is_file():
                self.store.put_file(f"{self._video_prefix(job_id)}{name}", folder / name)  # multipart, streamed
        shutil.rmtree(folder, ignore_errors=True)

    def fetch_video_inputs(self, job_id: str) -> Path:
        """The job's folder on this machine with its upload, its portrait and the work files (landmarks,
        finished chunks) that an earlier run checkpointed, fetched from a remote store when missing: a job
        re-run on another machine goes on from its last chunk."""
        folder = self.video_dir(job_id)
        if self.store.local_root is not None:
            return folder
        prefix = self._video_prefix(job_id)
        wanted = [f"{prefix}{name}" for name in VIDEO_INPUTS] + [i.key for i in self.store.list(f"{prefix}work/")]
        for key in wanted:
            path = folder / key[len(prefix) :]
            if path.is_file():
                continue
            path.parent.mkdir(parents=True, exist_ok=True)
            try:
                self.store.get_file(key, path)
            except ObjectMissing:
                continue
        return folder

    def checkpoint_video_work(self, job_id: str, path: Path) -> None:
        """A finished work file of the job's folder (`work/landmarks.npy`, `work/chunk-00003.npz`) onto a
        remote store, so that a re-run on another machine resumes from it."""
        if self.store.local_root is None:
            name = path.relative_to(self.video_dir(job_id)).as_posix()
            self.store.put_file(f"{self._video_prefix(job_id)}{name}", path)

    def delete_video_work(self, job_id: str) -> None:
        shutil.rmtree(self.video_dir(job_id), ignore_errors=True)
        if self.store.local_root is None:
            self.store.delete_prefix(self._video_prefix(job_id))

    def delete_job_files(self, job_id: str) -> None:
        """A deleted job's upload and result."""
        self.delete_input(job_id)
        self.delete_video_work(job_id)
        self.store.delete_prefix(self._results_prefix(job_id))

    def read_input(self, job_id: str) -> bytes:
        try:
            return self.store.get(self._input_key(job_id))
        except ObjectMissing:
            raise InputMissing(f"the upload of job {job_id} is not in storage; submit the photo again") from None

    def _result_key(self, job_id: str, fmt: str) -> str:
        if fmt not in RESULT_EXTENSIONS:
            raise ValueError(f"unknown result format {fmt!r}")
        return f"{self._results_prefix(job_id)}{fmt}"

    def write_result(self, job_id: str, fmt: str, data: bytes) -> None:
        self.store.put(self._result_key(job_id, fmt), data)

    def write_result_file(self, job_id: str, fmt: str, path: Path) -> None:
        """A large result (a video) from its file, streamed (multipart on S3)."""
        self.store.put_file(self._result_key(job_id, fmt), path)

    def result(self, job_id: str) -> StoredResult | None:
        """The job's result (its file on a local store, its key on a remote one); None when there is none
        (expired or deleted)."""
        job_id = self._check(job_id)
        if self.store.local_root is not None:  # a file per format to look at: no listing
            for fmt in RESULT_EXTENSIONS:
                path = self.store.local_root / self._result_key(job_id, fmt)
                if path.is_file():
                    return StoredResult(job_id, fmt, path=path)
            return None
        for info in self.store.list(self._results_prefix(job_id)):
            fmt = info.key.rsplit(".", 1)[1]
            if fmt in RESULT_EXTENSIONS:
                return StoredResult(job_id, fmt, key=info.key)
        return None

    def open_result(self, result: StoredResult) -> ObjectStream:
        """A remote result's size and chunks (ObjectMissing: deleted since `result` found it)."""
        return self.store.open(result.key or self._result_key(result.job_id, result.fmt))

    def result_url(self, result: StoredResult, ttl_s: int) -> str | None:
        """A presigned URL of a remote result, valid for `ttl_s` (None: the store has none)."""
        if result.key is None:
            return None
        return self.store.presigned_url(result.key, ttl_s, result.filename)

    # style-training uploads: <data_dir>/style-uploads/<style_id>/{0000.png, …, manifest.json}

    def style_upload_dir(self, style_id: str) -> Path:
        if not STYLE_ID.fullmatch(style_id):
            raise ValueError(f"not a style id: {style_id!r}")
        return self.root / "style-uploads" / style_id

    def _style_upload_prefix(self, style_id: str) -> str:
        """The store's key prefix of a style's upload (its folder in the data directory)."""
        return f"style-uploads/{self.style_upload_dir(style_id).name}/"

    def style_staging_dir(self) -> Path:
        """A fresh folder for the exemplars of an upload being checked (published or discarded)."""
        folder = self.root / "style-uploads" / f".staging-{uuid.uuid4().hex}"
        folder.mkdir(parents=True)
        return folder

    @staticmethod
    def stage_file(staging: Path, index: int, data: bytes) -> None:
        atomic_write(staging / f"in-{index:04d}", data)

    def publish_staging(self, staging: Path, style_id: str, indices: list[int], manifest: dict) -> None:
        """Staged files `indices` (report positions) become the style's upload 0000, 0001, … with its
        manifest: in the data directory one rename publishes the folder; in a remote store every file goes
        up, then the manifest, which readers start from (an upload cut off mid-publish stays invisible)."""
        for n, index in enumerate(indices):
            os.replace(staging / f"in-{index:04d}", staging / f"{n:04d}")
        for leftover in staging.glob("in-*"):
            leftover.unlink()
        atomic_write(staging / "manifest.json", json.dumps(manifest).encode())
        if self.store.local_root is not None:
            os.replace(staging, self.style_upload_dir(style_id))
            return
        prefix = self._style_upload_prefix(style_id)
        for n in range(len(indices)):
            self.store.put(f"{prefix}{n:04d}", (staging / f"{n:04d}").read_bytes())
        self.store.put(f"{prefix}manifest.json", (staging / "manifest.json").read_bytes())
        self.discard_staging(staging)

    def delete_style_upload(self, style_id: str) -> None:
        """The exemplars of a style whose training ended (ready, failed or canceled): no longer needed."""
        self.store.delete_prefix(self._style_upload_prefix(style_id))

    def delete_style_files(self, style_id: str) -> None:
        """A removed style's upload and its preview on the store."""
        self.delete_style_upload(style_id)
        if self.store.local_root is None:
            self.store.delete(self._preview_key(style_id))

    def _preview_key(self, style_id: str) -> str:
        return f"style-previews/{self.style_upload_dir(style_id).name}.png"

    def write_preview(self, style_id: str, data: bytes) -> None:
        """A training style's preview grid, for APIs on other machines (a remote store; on one machine the
        registry's preview.png is the API's)."""
        if self.store.local_root is None:
            self.store.put(self._preview_key(style_id), data)

    def preview(self, style_id: str) -> bytes | None:
        if self.store.local_root is None:
            try:
                return self.store.get(self._preview_key(style_id))
            except ObjectMissing:
                return None
        return None

    @staticmethod
    def discard_staging(staging: Path) -> None:
        shutil.rmtree(staging, ignore_errors=True)

    def read_style_upload(self, style_id: str) -> tuple[dict, list[bytes]]:
        """The manifest and the files of a published upload; ObjectMissing if there is none."""
        prefix = self._style_upload_prefix(style_id)
        manifest = json.loads(self.store.get(f"{prefix}manifest.json"))
        return manifest, [self.store.get(f"{prefix}{i:04d}") for i in range(len(manifest["files"]))]

    def sweep(self, max_age_s: float, job_active: Callable[[str], bool], now: float | None = None) -> int:
        """Delete results older than max_age_s, and inputs as old unless `job_active(job_id)` (the job
        is queued or running); returns how many entries went."""
        cutoff = (now or time.time()) - max_age_s
        removed = 0
        for info in [*self.store.list("inputs/"), *self.store.list("results/")]:
            job_id = info.key.split("/")[1].split(".")[0]
            if info.modified >= cutoff or (info.key.startswith("inputs/") and job_active(job_id)):
                continue
            if info.key.startswith("inputs/"):
                self.store.delete_prefix(f"inputs/{job_id}/")  # a listed key: deleted whatever its id
            else:
                self.store.delete(info.key)
            removed += 1
        if self.store.local_root is None:  # video inputs of a remote store
            for info in self.store.list("video/"):
                job_id = info.key.split("/")[1]
                if info.modified < cutoff and not job_active(job_id):
                    removed += self.store.delete_prefix(f"video/{job_id}/")
        for entry in list(self.videos.iterdir()):
            try:
                if entry.stat().st_mtime >= cutoff or job_active(entry.name):
                    continue
                shutil.rmtree(entry) if entry.is_dir() else entry.unlink()
                removed += 1
            except FileNotFoundError:
                continue
        return removed

"""The data directory shared by the API and the workers (a volume in compose).

    <data_dir>/inputs/<job_id>/upload     the uploaded bytes, as received
    <data_dir>/results/<job_id>.<ext>     the finished image
    <data_dir>/registry/                  models (see service/core/registry.py)

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
from pathlib import Path

from service.core.checkpoint_files import atomic_write_bytes as atomic_write
from service.core.contract import JOB_ID, STYLE_ID

RESULT_EXTENSIONS = ("png", "jpeg", "webp", "mp4", "webm", "gif", "zip")


class InputMissing(Exception):
    """A job's upload is not in storage (deleted by hand, or a data directory not shared): permanent."""

    code = "input_missing"


class Storage:
    def __init__(self, data_dir: Path) -> None:
        self.root = Path(data_dir)
        self.inputs = self.root / "inputs"
        self.results = self.root / "results"
        self.videos = self.root / "video"  # per video job: the upload, a portrait, landmarks, chunks
        for folder in (self.inputs, self.results, self.videos):
            folder.mkdir(parents=True, exist_ok=True)

    @staticmethod
    def _check(job_id: str) -> str:
        if not JOB_ID.fullmatch(job_id):
            raise ValueError(f"not a job id: {job_id!r}")
        return job_id

    def write_input(self, job_id: str, data: bytes) -> Path:
        folder = self.inputs / self._check(job_id)
        folder.mkdir(parents=True, exist_ok=True)
        return atomic_write(folder / "upload", data)

    def delete_input(self, job_id: str) -> None:
        shutil.rmtree(self.inputs / self._check(job_id), ignore_errors=True)

    def video_dir(self, job_id: str) -> Path:
        """A video job's folder: `video` (the upload), `portrait`, and its resumable work files."""
        return self.videos / self._check(job_id)

    def delete_video_work(self, job_id: str) -> None:
        shutil.rmtree(self.video_dir(job_id), ignore_errors=True)

    def delete_job_files(self, job_id: str) -> None:
        """A deleted job's upload and result."""
        self.delete_input(job_id)
        self.delete_video_work(job_id)
        for ext in RESULT_EXTENSIONS:
            (self.results / f"{self._check(job_id)}.{ext}").unlink(missing_ok=True)

    def read_input(self, job_id: str) -> bytes:
        path = self.inputs / self._check(job_id) / "upload"
        try:
            return path.read_bytes()
        except FileNotFoundError:
            raise InputMissing(f"the upload of job {job_id} is not in storage; submit the photo again") from None

    def write_result(self, job_id: str, fmt: str, data: bytes) -> Path:
        if fmt not in RESULT_EXTENSIONS:
            raise ValueError(f"unknown result format {fmt!r}")
        return atomic_write(self.results / f"{self._check(job_id)}.{fmt}", data)

    def result_path(self, job_id: str) -> Path | None:
        for ext in RESULT_EXTENSIONS:
            path = self.results / f"{self._check(job_id)}.{ext}"
            if path.is_file():
                return path
        return None

    # style-training uploads: <data_dir>/style-uploads/<style_id>/{0000.png, …, manifest.json}

    def style_upload_dir(self, style_id: str) -> Path:
        if not STYLE_ID.fullmatch(style_id):
            raise ValueError(f"not a style id: {style_id!r}")
        return self.root / "style-uploads" / style_id

    def style_staging_dir(self) -> Path:
        """A fresh folder for the exemplars of an upload being checked (published or discarded)."""
        folder = self.root / "style-uploads" / f".staging-{uuid.uuid4().hex}"
        folder.mkdir(parents=True)
        return folder

    @staticmethod
    def stage_file(staging: Path, index: int, data: bytes) -> None:
        atomic_write(staging / f"in-{index:04d}", data)

    def publish_staging(self, staging: Path, style_id: str, indices: list[int], manifest: dict) -> Path:
        """Staged files `indices` (report positions) become the style's upload 0000, 0001, …"""
        for n, index in enumerate(indices):
            os.replace(staging / f"in-{index:04d}", staging / f"{n:04d}")
        for leftover in staging.glob("in-*"):
            leftover.unlink()
        atomic_write(staging / "manifest.json", json.dumps(manifest).encode())
        folder = self.style_upload_dir(style_id)
        os.replace(staging, folder)
        return folder

    def delete_style_upload(self, style_id: str) -> None:
        """The exemplars of a style whose training ended (ready, failed or canceled): no longer needed."""
        shutil.rmtree(self.style_upload_dir(style_id), ignore_errors=True)

    @staticmethod
    def discard_staging(staging: Path) -> None:
        shutil.rmtree(staging, ignore_errors=True)

    def read_style_upload(self, style_id: str) -> tuple[dict, list[bytes]]:
        folder = self.style_upload_dir(style_id)
        manifest = json.loads((folder / "manifest.json").read_text())
        return manifest, [(folder / f"{i:04d}").read_bytes() for i in range(len(manifest["files"]))]

    def sweep(self, max_age_s: float, job_active: Callable[[str], bool], now: float | None = None) -> int:
        """Delete results older than max_age_s, and inputs as old unless `job_active(job_id)` (the job
        is queued or running); returns how many entries went."""
        cutoff = (now or time.time()) - max_age_s
        removed = 0
        for entry in list(self.inputs.iterdir()) + list(self.results.iterdir()) + list(self.videos.iterdir()):
            try:
                if entry.stat().st_mtime >= cutoff:
                    continue
                if entry.parent in (self.inputs, self.videos) and job_active(entry.name):
                    continue
                shutil.rmtree(entry) if entry.is_dir() else entry.unlink()
                removed += 1
            except FileNotFoundError:
                continue
        return removed

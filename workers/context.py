"""What every job function gets: its records, its storage, the registry and the settings (`JobContext`).

A job reads and writes through these and nothing else; the warm networks and speed choices are the serving
cache's (workers/serving/cache.py), which only the kinds that run the networks see. rq calls job functions by
dotted path, so the process's context is found here (`job_context`): the one deliberate global of the
workers, set once by the worker's main (`workers/worker.py`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import torch
from redis import Redis

from models.inference.device import pick_device
from service.platform.jobstore import JobStore
from service.platform.objectstore import open_store
from service.platform.registry import Registry
from service.platform.registry_sync import RegistryMirror
from service.platform.settings import Settings
from service.platform.storage import Storage
from service.platform.style_records import StyleRecords
from service.portrait.configs import AlignerConfig


@dataclass
class JobContext:
    """The worker process's job records (`jobs`), files (`storage`), registry (and its `mirror` on a remote
    store), settings and device. `worker`: the rq worker running the jobs (None in tests and tools)."""

    settings: Settings
    redis: Redis
    jobs: JobStore
    storage: Storage
    registry: Registry
    mirror: RegistryMirror
    device: torch.device
    worker_name: str = "worker"
    worker: Any = field(default=None, repr=False)

    @classmethod
    def from_settings(cls, settings: Settings, redis: Redis | None = None) -> JobContext:
        """Opened from the settings: the Redis connection, the store, the registry (its records in Redis
        when the store is remote, so that every host sees one state)."""
        if settings.torch_threads:
            torch.set_num_threads(settings.torch_threads)
        redis = redis or Redis.from_url(settings.redis_url)
        storage = Storage(settings.data_dir, open_store(settings))
        remote = storage.store if storage.store.local_root is None else None
        registry = Registry(settings.registry_dir, StyleRecords(redis) if remote else None)
        return cls(
            settings=settings,
            redis=redis,
            jobs=JobStore(redis, settings.result_ttl_s),
            storage=storage,
            registry=registry,
            mirror=RegistryMirror(remote, registry.root),
            device=pick_device(settings.device),
        )

    @property
    def shutting_down(self) -> bool:
        """SIGTERM arrived while a job runs (rq's warm shutdown): long jobs should checkpoint and stop."""
        return bool(getattr(self.worker, "_stop_requested", False))

    @cached_property
    def aligner_config(self) -> AlignerConfig:
        """How this worker crops faces (the settings' transform size, minimum face, pixel cap)."""
        return AlignerConfig(
            transform_size=self.settings.align_transform_size,
            min_face_size=self.settings.min_face_size,
            max_pixels=self.settings.max_pixels,
        )


_CONTEXT: JobContext | None = None


def configure_context(settings: Settings, redis: Redis | None = None) -> JobContext:
    """The process's context, made once by the worker's main."""
    global _CONTEXT
    _CONTEXT = JobContext.from_settings(settings, redis)
    return _CONTEXT


def job_context() -> JobContext:
    """The process's context (a job function's first call)."""
    if _CONTEXT is None:
        raise RuntimeError("the worker is not configured (start workers with `agilegan worker`)")
    return _CONTEXT

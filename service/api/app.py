"""The HTTP API: `create_app(settings)` builds it; `agilegan serve` (or `uvicorn --factory
service.api.app:create_app`) serves it with settings from the environment.

Never imports torch: jobs are enqueued by dotted path and the registry is read from JSON files.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio.to_thread
from fastapi import FastAPI
from redis import Redis
from redis.asyncio import Redis as AsyncRedis

from service.api import console, docs, errors
from service.api.faces import FaceFinder, default_concurrency
from service.api.memory import return_large_allocations
from service.api.middleware import AuthGate, BodyLimit, RequestContext, RequestMetrics, SecurityHeaders
from service.api.routes import animate, directions, health, jobs, style_training, styles
from service.api.routes import keys as key_routes
from service.platform.auth import KeyStore
from service.platform.jobstore import JobStore
from service.platform.objectstore import open_store
from service.platform.queueing import JobQueues
from service.platform.registry import Registry
from service.platform.registry_sync import RegistryMirror
from service.platform.settings import Settings, get_settings
from service.platform.storage import Storage
from service.platform.style_records import StyleRecords
from service.portrait.configs import AlignerConfig
from service.portrait.media.alignment import FaceAligner

log = logging.getLogger("agilegan.api")

DESCRIPTION = """
Portrait stylization (AgileGAN). `POST /v1/stylize` a photo with a `style`; the answer is `202` with a
job; poll `GET /v1/jobs/{id}` until `succeeded`, then `GET /v1/jobs/{id}/result`.
Authenticate with `Authorization: Bearer KEY`. Every error body is `{"code", "message", "request_id"}`.
"""


def create_app(settings: Settings | None = None, aligner: FaceAligner | None = None) -> FastAPI:
    """The app: 1. its shared resources on `app.state`, 2. the routes, the docs and the console, 3. the
    middleware. `aligner`: a face aligner to share (tests); else one is made at start-up."""
    settings = settings or get_settings()
    return_large_allocations()
    redis = Redis.from_url(settings.redis_url, socket_connect_timeout=2, socket_timeout=5)
    aredis = AsyncRedis.from_url(settings.redis_url, socket_connect_timeout=2, socket_timeout=5)
    keys = KeyStore.from_settings(settings)
    if settings.auth_disabled:
        log.warning("AGILEGAN_AUTH_DISABLED is set: every request is treated as an operator")
    elif len(keys) == 0:
        log.warning("no API keys configured: every authenticated request will get 401")

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.aligner = aligner or FaceAligner(
            AlignerConfig(
                min_face_size=settings.min_face_size,
                predictor_path=settings.landmarks_path,
                max_pixels=settings.max_pixels,
            )
        )
        app.state.faces = FaceFinder(app.state.aligner, settings.detect_concurrency or default_concurrency())
        mirror = app.state.mirror
        puller = asyncio.create_task(_mirror_loop(mirror, settings.registry_sync_s)) if mirror.enabled else None
        yield
        if puller is not None:
            puller.cancel()
        redis.close()
        await aredis.aclose()

    app = FastAPI(
        title="AgileGAN service",
        version="0.1.0",
        description=DESCRIPTION,
        lifespan=lifespan,
        docs_url=None,  # served from local files by service.api.docs (no CDN)
        redoc_url=None,
    )
    # 1. Shared resources.
    app.state.settings, app.state.redis, app.state.aredis, app.state.keys = settings, redis, aredis, keys
    app.state.jobs = JobStore(redis, settings.result_ttl_s)
    app.state.job_queues = JobQueues(redis, app.state.jobs, settings)
    app.state.storage = Storage(settings.data_dir, open_store(settings))
    remote = app.state.storage.store if app.state.storage.store.local_root is None else None
    app.state.registry = Registry(settings.registry_dir, StyleRecords(redis) if remote else None)
    app.state.mirror = RegistryMirror(remote, app.state.registry.root)
    # 2. Routes, docs, console.
    errors.install(app)
    for module in (jobs, key_routes, styles, style_training, directions, animate, health):
        app.include_router(module.router)
    docs.install(app)
    console.install(app)
    # 3. Middleware.
    _add_middleware(app, settings, keys, redis)
    return app


async def _mirror_loop(mirror: RegistryMirror, every_s: float) -> None:
    """The styles other hosts published or retired (a remote store), pulled every `every_s`."""
    while True:
        await anyio.to_thread.run_sync(mirror.pull)
        await asyncio.sleep(every_s)


def _add_middleware(app: FastAPI, settings: Settings, keys: KeyStore, redis: Redis) -> None:
    """Outermost first: request id, security headers, metrics, authentication (headers only), the body cap."""
    app.add_middleware(
        BodyLimit,
        max_bytes=settings.max_upload_bytes,
        per_path={"/v1/styles": settings.max_style_upload_bytes, "/v1/animate": settings.max_video_bytes},
    )
    app.add_middleware(
        AuthGate,
        keys=keys,
        redis=redis,
        failed_per_minute=settings.failed_auth_per_minute,
        disabled=settings.auth_disabled,
    )
    app.add_middleware(RequestMetrics, redis=redis)
    app.add_middleware(SecurityHeaders)
    app.add_middleware(RequestContext)

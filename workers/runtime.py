"""What a worker process keeps warm: the encoder, an LRU cache of style generators, the aligner.

The one deliberate global of the project (`get_runtime`): rq calls job functions by dotted path, so
the job function finds the process's runtime here. `configure` is called once by the worker's main.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from pathlib import Path
from typing import Any

import torch
from redis import Redis

from models import checkpoints, directions
from models.attribute_classifier import AttributeClassifier
from models.attribute_generator import AttributeAwareGenerator
from models.configs import AlignerConfig
from models.encoder import Inverter
from models.stylegan2 import Generator
from models.stylizer import Stylizer, resolve_precision
from service.config import Settings
from service.jobstore import JobStore
from service.registry import BASE_ENCODER, Registry
from service.storage import Storage

log = logging.getLogger("agilegan.worker")


class StyleUnavailable(Exception):
    """The style asked for is not (or no longer) servable."""


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


class Runtime:
    def __init__(self, settings: Settings, redis: Redis | None = None) -> None:
        self.settings = settings
        self.device = pick_device(settings.device)
        if settings.torch_threads:
            torch.set_num_threads(settings.torch_threads)
        self.redis = redis or Redis.from_url(settings.redis_url)
        self.jobs = JobStore(self.redis, settings.result_ttl_s)
        self.storage = Storage(settings.data_dir)
        self.registry = Registry(settings.registry_dir)
        self.aligner_config = AlignerConfig(
            transform_size=settings.align_transform_size,
            min_face_size=settings.min_face_size,
            max_pixels=settings.max_pixels,
        )
        self._inverters: dict[str, Inverter] = {}
        self._styles: OrderedDict[str, tuple[tuple[float, float], Stylizer]] = OrderedDict()
        self._classifier_cache: tuple[float, AttributeClassifier | None] = (0.0, None)
        self._directions: dict[str, tuple[int, directions.DirectionSet]] = {}
        self.prepared: dict[str, Any] = {}  # job id → workers.batching.Prepared, for the batch being run
        self._lock = threading.Lock()
        self.worker_name = "worker"
        self.worker: Any = None  # the rq worker running this runtime (set by run_worker)

    @property
    def shutting_down(self) -> bool:
        """SIGTERM arrived while a job runs (rq's warm shutdown): long jobs should checkpoint and stop."""
        return bool(getattr(self.worker, "_stop_requested", False))

    @property
    def inverter(self) -> Inverter:
        """The registry's default encoder (base/encoder)."""
        return self.inverter_for(BASE_ENCODER)

    def inverter_for(self, encoder: str) -> Inverter:
        """An encoder by registry id, loaded once (a handful exist: one per public base resolution)."""
        if encoder not in self._inverters:
            if not self.registry.has_encoder(encoder):
                raise StyleUnavailable(f"encoder {encoder!r} is not in the registry ({self.registry.root})")
            directory = self.registry.encoder_dir_for(encoder)
            self._inverters[encoder] = checkpoints.load(directory, expected=Inverter, device=self.device)
        return self._inverters[encoder]

    def stylizer(self, style_id: str) -> Stylizer:
        """The style's stylizer, loaded once and reloaded when its files change (LRU-bounded)."""
        info = self.registry.style(style_id)
        if info is None or info.status != "ready":
            raise StyleUnavailable(f"style {style_id!r} is not available")
        directory = self.registry.style_dir(style_id)
        classifier, classifier_stamp = self._classifier()
        stamp = (max(p.stat().st_mtime for p in Path(directory).glob("*") if p.is_file()), classifier_stamp)
        with self._lock:
            cached = self._styles.get(style_id)
            if cached is not None and cached[0] == stamp:
                self._styles.move_to_end(style_id)
                return cached[1]
            generator = checkpoints.load(directory, expected=(Generator, AttributeAwareGenerator), device=self.device)
            source = None
            if info.source is not None and isinstance(generator, Generator):
                source = checkpoints.load(self.registry.root / info.source, expected=Generator, device=self.device)
            precision = resolve_precision(self.settings.inference_precision, self.device)
            stylizer = Stylizer(self.inverter_for(info.encoder), generator, classifier, source, precision)
            self._styles[style_id] = (stamp, stylizer)
            self._styles.move_to_end(style_id)
            budget = self.settings.style_cache_bytes
            while len(self._styles) > 1 and (
                len(self._styles) > self.settings.style_cache_size or (budget and self.style_cache_bytes() > budget)
            ):
                evicted, _ = self._styles.popitem(last=False)
                log.info("evicted style %s from the cache (%d bytes loaded)", evicted, self.style_cache_bytes())
            return stylizer

    def style_cache_bytes(self) -> int:
        """Bytes the loaded styles hold on the device: each style's generator, its source generator and
        its cached interpolations, measured from their tensors (the shared encoders not counted)."""
        seen: set[int] = set()
        total = 0
        for _, stylizer in self._styles.values():
            models = [stylizer.generator, stylizer.source, *stylizer._interpolated.values()]
            for model in models:
                if model is None:
                    continue
                for t in [*model.parameters(), *model.buffers()]:
                    if t.data_ptr() not in seen:
                        seen.add(t.data_ptr())
                        total += t.numel() * t.element_size()
        return total

    def edits(self, style_id: str, specs: list) -> list[directions.Edit]:
        """The edits of a job (`service.contract.EditSpec`s) as `models.directions.Edit`s for this style:
        each set loaded once (reloaded when its file changes) and checked against the w space of the
        style's encoder (the API checked too; a set may have been replaced since). DirectionError if not."""
        if not specs:
            return []
        info = self.registry.style(style_id)
        w_space = self.registry.w_space(info.encoder) if info else None
        generator = self.stylizer(style_id).generator
        out = []
        for spec in specs:
            path = self.registry.direction_path(spec.direction)
            try:
                stamp = path.stat().st_mtime_ns
            except OSError:
                raise directions.DirectionError(f"direction {spec.direction!r} is no longer in the registry") from None
            cached = self._directions.get(spec.direction)
            if cached is None or cached[0] != stamp:
                cached = (stamp, directions.load(path))
                self._directions[spec.direction] = cached
            layers = tuple(spec.layers) if spec.layers is not None else None
            edit = directions.Edit(cached[1], spec.alpha, spec.index, layers)
            edit.check(generator.n_latent, generator.config.style_dim, w_space)
            out.append(edit)
        return out

    def _classifier(self) -> tuple[AttributeClassifier | None, float]:
        """The registry's attribute classifier (reloaded when it changes), or None."""
        config = self.registry.attribute_classifier_dir / "config.json"
        if not config.is_file():
            return None, 0.0
        stamp = config.stat().st_mtime
        if self._classifier_cache[0] != stamp:
            model = checkpoints.load(config.parent, expected=AttributeClassifier, device=self.device)
            self._classifier_cache = (stamp, model)
        return self._classifier_cache[1], stamp

    def warm_up(self) -> float:
        """Load the encoder and every ready style (up to the cache size) and run one pass; seconds."""
        start = time.perf_counter()
        from PIL import Image

        blank = Image.new("RGB", (256, 256), (128, 128, 128))
        for info in self.registry.styles()[: self.settings.style_cache_size]:
            if info.status == "ready":
                try:
                    self.stylizer(info.id)(blank)
                except Exception:  # a broken style must not stop the worker
                    log.exception("warm-up of style %s failed", info.id)
        return time.perf_counter() - start


_RUNTIME: Runtime | None = None


def configure(settings: Settings) -> Runtime:
    global _RUNTIME
    _RUNTIME = Runtime(settings)
    return _RUNTIME


def get_runtime() -> Runtime:
    if _RUNTIME is None:
        raise RuntimeError("the worker runtime is not configured (start workers with `agilegan worker`)")
    return _RUNTIME

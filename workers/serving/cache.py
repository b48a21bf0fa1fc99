"""What a worker process keeps warm for the kinds that run networks: the encoders, an LRU cache of style
generators, direction sets, the compiled programs and the speed choices, the CPU pool and the device JPEG
encoder (`ServingCache`).

Beside the job context (workers/context.py), a process global (`serving_cache`): rq calls job functions by
dotted path, so a stylize, animate or fit_direction job finds the cache here. `configure_serving` is called
once by the worker's main.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from models.inference import directions
from models.inference.compiled import (
    CompileConfig,
    Programs,
    default_buckets,
    keep_compile_cache,
    resolve_compile_mode,
)
from models.inference.speed_choices import (
    FLAGS,
    PREFERRED,
    KeptChoices,
    SpeedChoice,
    initial_flag,
    measure,
    set_flag,
)
from models.inference.stylizer import Stylizer, configure_fp32, resolve_precision
from models.networks.attribute_classifier import AttributeClassifier
from models.networks.attribute_generator import AttributeAwareGenerator
from models.networks.derived import kept_tensors
from models.networks.encoder import Inverter
from models.networks.stylegan2 import Generator
from models.weights import checkpoints
from service.platform.contract import StyleState
from service.platform.registry import BASE_ENCODER, StyleInfo
from workers.context import JobContext
from workers.serving.device_jpeg import open_device_jpeg

log = logging.getLogger("agilegan.worker")


class StyleUnavailable(Exception):
    """The style asked for is not (or no longer) servable."""


@dataclass(frozen=True)
class ServedStyle:
    """What one job uses of a style, read from the registry once (`ServingCache.serve`)."""

    info: StyleInfo
    stylizer: Stylizer
    edits: list[directions.Edit]


class ServingCache:
    """The warm networks of a worker (see the module docs), made from the job context's settings, registry
    and device; the kinds that run networks (stylize, animate, fit_direction) take it beside their context."""

    def __init__(self, ctx: JobContext) -> None:
        settings = self.settings = ctx.settings
        self.registry, self.mirror, self.device = ctx.registry, ctx.mirror, ctx.device
        # Dynamic batching (workers/serving/batching.py): 0 = auto, 8 on CUDA, 1 on the CPU.
        self.max_batch = settings.max_batch or (8 if self.device.type == "cuda" else 1)
        self.precision = resolve_precision(settings.inference_precision, self.device)
        configure_fp32(self.precision, self.device, settings.allow_tf32)  # fp32 means fp32 on CUDA
        buckets = settings.compile_bucket_sizes or default_buckets(self.max_batch, self.device.type == "cpu")
        compile_mode = resolve_compile_mode(settings.compile, self.device.type)  # auto: CUDA graphs on CUDA
        if compile_mode != "off":
            keep_compile_cache(settings.compile_cache)  # compiled once per machine, not once per start
        self.programs = Programs(CompileConfig(compile_mode, buckets))
        # The speed flags (models/inference/speed_choices.py): NHWC feature maps, the upsampling blur folded
        # into its convolution. Fixed by their settings, or measured in `warm_up`.
        self.flags = {flag: initial_flag(flag, getattr(settings, flag)) for flag in FLAGS}
        self.speed_choices: dict[str, SpeedChoice] = {}
        self._inverters: dict[str, Inverter] = {}
        self._styles: OrderedDict[str, tuple[tuple[float, float], Stylizer]] = OrderedDict()
        self._classifier_cache: tuple[float, AttributeClassifier | None] = (0.0, None)
        self._directions: dict[str, tuple[int, directions.DirectionSet]] = {}
        self.prepared: dict[str, Any] = {}  # job id → stylize_pipeline.Prepared (or its error), this batch
        # decoding, crops and result encoding of a batch, side by side (Pillow releases the GIL)
        self.cpu_pool = ThreadPoolExecutor(settings.cpu_threads or os.cpu_count() or 1, thread_name_prefix="cpu")
        # JPEG results encoded on the device (workers/serving/device_jpeg.py); None: Pillow in the CPU pool
        self.device_jpeg = open_device_jpeg(settings.jpeg_encoder, self.device)
        self._lock = threading.Lock()

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
            inverter = checkpoints.load(directory, expected=Inverter, device=self.device)
            self._apply_flags(inverter)
            self._inverters[encoder] = inverter
        return self._inverters[encoder]

    def serve(self, style_id: str, edit_specs: list | None = None) -> ServedStyle:
        """What one job uses of a style, with the registry read once: its record, its stylizer (loaded once
        and reloaded when its files change) and the job's edits. StyleUnavailable / DirectionError if not."""
        info = self.registry.style(style_id)
        if not self._servable(info) and self.mirror.enabled:  # published on another host since the last pass
            self.mirror.pull_style(style_id)  # its bundle alone: one GET when it is not there either
            info = self.registry.style(style_id)
            if info is not None and not self._servable(info):
                self.mirror.pull()  # what else it needs (its encoder), or a state the listing knows better
                info = self.registry.style(style_id)
        stylizer = self._stylizer(style_id, info)
        return ServedStyle(info, stylizer, self._edits(info, stylizer, edit_specs or []))

    def _servable(self, info: StyleInfo | None) -> bool:
        """Ready, with weights and its encoder on this host."""
        return (
            info is not None
            and info.status == StyleState.READY
            and info.model_class is not None
            and self.registry.has_encoder(info.encoder)
        )

    def stylizer(self, style_id: str) -> Stylizer:
        """The style's stylizer (warm-up, tests); a job takes `serve`."""
        return self._stylizer(style_id, self.registry.style(style_id))

    def _stylizer(self, style_id: str, info: StyleInfo | None) -> Stylizer:
        """The style's stylizer, loaded once and reloaded when its files change (LRU-bounded)."""
        if info is None or info.status != StyleState.READY or info.model_class is None:
            raise StyleUnavailable(f"style {style_id!r} is not available")
        directory = self.registry.style_dir(style_id)
        classifier, classifier_stamp = self._classifier()
        stamp = (max(p.stat().st_mtime for p in Path(directory).glob("*") if p.is_file()), classifier_stamp)
        with self._lock:
            cached = self._styles.get(style_id)
            if cached is not None and cached[0] == stamp:
                self._styles.move_to_end(style_id)
                return cached[1]
            stylizer = self._load_stylizer(info, directory, classifier)
            self._styles[style_id] = (stamp, stylizer)
            self._styles.move_to_end(style_id)
            self._evict()
            return stylizer

    def _load_stylizer(self, info: StyleInfo, directory: Path, classifier: AttributeClassifier | None) -> Stylizer:
        generator = checkpoints.load(directory, expected=(Generator, AttributeAwareGenerator), device=self.device)
        self._apply_flags(generator)
        source = None
        if info.source is not None and isinstance(generator, Generator):
            source = checkpoints.load(self.registry.root / info.source, expected=Generator, device=self.device)
            self._apply_flags(source)
        inverter = self.inverter_for(info.encoder)
        return Stylizer(inverter, generator, classifier, source, self.precision, self.programs)

    def _evict(self) -> None:
        """Least recently used styles out while the cache holds more than its count or byte budget."""
        budget = self.settings.style_cache_bytes
        while len(self._styles) > 1 and (
            len(self._styles) > self.settings.style_cache_size or (budget and self.style_cache_bytes() > budget)
        ):
            evicted, _ = self._styles.popitem(last=False)
            log.info("evicted style %s from the cache (%d bytes loaded)", evicted, self.style_cache_bytes())

    def style_cache_bytes(self) -> int:
        """Bytes the loaded styles hold on the device: each style's generator, its source generator and
        its cached interpolations, measured from their tensors and the values kept from their weights
        (`models/networks/derived.py`; the shared encoders not counted)."""
        seen: set[int] = set()
        total = 0
        for _, stylizer in self._styles.values():
            for model in stylizer.style_networks():
                for t in [*model.parameters(), *model.buffers(), *kept_tensors(model)]:
                    if t.data_ptr() not in seen:
                        seen.add(t.data_ptr())
                        total += t.numel() * t.element_size()
        return total

    def _edits(self, info: StyleInfo, stylizer: Stylizer, specs: list) -> list[directions.Edit]:
        """The edits of a job (`service.platform.contract.EditSpec`s) as `models.inference.directions.Edit`s for
        this style: each set loaded once (reloaded when its file changes) and checked against the w space of
        the style's encoder (the API checked too; a set may have been replaced since). DirectionError if not."""
        if not specs:
            return []
        w_space = self.registry.w_space(info.encoder)
        generator = stylizer.generator
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

    def warm_up(self, serves_images: bool = True) -> float:
        """Before the first job: load the encoder and every ready style (up to the cache size); choose the
        memory format (measured when the setting asks); compile the programs for every bucket when
        compiling is on and the worker serves images (`serves_images`: a stylize or video queue), so no
        request ever compiles; run one pass of each style. Returns seconds."""
        start = time.perf_counter()
        from PIL import Image

        # 0. A remote store: share what this host installed, take what the others published.
        self.mirror.publish_local()
        self.mirror.pull()

        stylizers = []
        for info in self.registry.styles()[: self.settings.style_cache_size]:
            if info.status == StyleState.READY:
                try:
                    stylizers.append(self.stylizer(info.id))
                except Exception:  # a broken style must not stop the worker
                    log.exception("loading style %s failed", info.id)
        # 1. The speed choices: fixed by their settings, kept from an earlier start, or measured now.
        kept = KeptChoices(self.settings.compile_cache / "speed-choices.json")
        for flag in FLAGS:
            setting = getattr(self.settings, flag)
            if stylizers and (setting == "measure" or (setting == "auto" and self.device.type == "cuda")):
                key = self._speed_key(flag, stylizers[0])
                choice = kept.get(key)
                if choice is None:  # measured once per machine, torch and networks; then kept
                    choice = self._measure(flag, stylizers[0])
                    kept.put(key, choice)
                self.speed_choices[flag] = choice
                self.set_flag(flag, choice.on)
                log.info("speed choice: %s", choice.describe())
        # 2. The compiled programs: the encoders, and each generator architecture, per bucket.
        if self.programs.config.enabled and serves_images:
            for stylizer in stylizers:
                self.programs.warm_encoder(stylizer.inverter, self.precision)
                if isinstance(stylizer.generator, Generator):
                    self.programs.warm_generator(stylizer.generator, self.precision)
            stats = self.programs.stats
            log.info(
                "compiled %d graphs in %.1f s (%d from the cache)", len(stats.warmed), stats.warm_s, stats.cache_hits
            )
        # 3. One pass of each style.
        blank = Image.new("RGB", (256, 256), (128, 128, 128))
        for stylizer in stylizers:
            try:
                stylizer(blank)
            except Exception:
                log.exception("warm-up pass failed")
        return time.perf_counter() - start

    def set_flag(self, flag: str, on: bool) -> None:
        """A speed flag of every loaded network and of those loaded later."""
        self.flags[flag] = on
        with self._lock:
            loaded = [*self._inverters.values()]
            for _, stylizer in self._styles.values():
                loaded += stylizer.style_networks()
        for module in loaded:
            set_flag(module, flag, on)

    def _apply_flags(self, module: torch.nn.Module) -> None:
        for flag in FLAGS:
            set_flag(module, flag, self.flags[flag])

    def _speed_key(self, flag: str, stylizer: Stylizer) -> str:
        """What a measurement of `flag` depends on: the device, torch, the precision, the batch, the networks."""
        device = torch.cuda.get_device_name(self.device) if self.device.type == "cuda" else "cpu"
        nets = f"{stylizer.inverter.config.encoder.input_size}px encoder, {stylizer.generator.config.size}px generator"
        return f"{flag} | {device} | torch {torch.__version__} | {self.precision} | batch {self.max_batch} | {nets}"

    @torch.inference_mode()
    def _measure(self, flag: str, stylizer: Stylizer) -> SpeedChoice:
        """Encoder + generator at the largest batch this worker runs, at its precision, `flag` both ways
        (a tie keeps its `PREFERRED` side)."""
        batch = self.max_batch if self.device.type == "cuda" else 1
        size = stylizer.inverter.config.encoder.input_size
        x = torch.zeros(batch, 3, size, size, device=self.device)

        def run() -> None:
            with stylizer.autocast():
                wplus = stylizer.inverter(x).wplus[:, : stylizer.generator.n_latent]
                stylizer.generator(wplus, space="wplus")

        return measure([stylizer.inverter, stylizer.generator], flag, run, prefer=PREFERRED[flag])


_CACHE: ServingCache | None = None


def configure_serving(ctx: JobContext) -> ServingCache:
    """The process's serving cache, made once by the worker's main."""
    global _CACHE
    _CACHE = ServingCache(ctx)
    return _CACHE


def serving_cache() -> ServingCache:
    """The process's serving cache (the first call of a job that runs networks)."""
    if _CACHE is None:
        raise RuntimeError("the worker is not configured (start workers with `agilegan worker`)")
    return _CACHE

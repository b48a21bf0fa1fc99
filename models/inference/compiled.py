"""Compiled inference programs: `torch.compile` (optionally CUDA graphs) for the encoder and the
synthesis network, compiled when the worker starts and never while it serves a request.

Why programs take the weights as inputs: a program is one compiled graph per (network config, batch
bucket, precision, memory format, noise mode), run with `torch.func.functional_call` on a weightless
copy of the network on the meta device. Any weights of that config run through it, so a style
trained after the worker started, another cached style or an interpolated strength (the same
architecture, other weights) uses the graph compiled at start-up: a worker compiles once per
architecture, not once per style.

Why buckets: compiled graphs have fixed shapes. A batch of B is padded to the smallest warmed bucket
≥ B by repeating its last sample (the padding rows are dropped from the output), and a batch larger
than the largest bucket runs in chunks of it. Only warmed shapes are ever called: every call runs under
`torch.compiler.set_stance("fail_on_recompile")`, and a call that would compile (a shape or an
architecture that was not warmed, another noise mode) returns None so that the caller runs eager;
`stats.eager_calls` counts those.

Modes: "default" (inductor kernels), "reduce-overhead" (inductor + CUDA graphs: launch overhead gone
at small batches; the outputs are cloned because the next replay overwrites them) and
"max-autotune" (CUDA graphs plus autotuned GEMM/conv choices: the slowest to warm). On the CPU the
modes compile inductor C++ kernels and CUDA graphs do not apply.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import os
import threading
import time
import weakref
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn
from torch.func import functional_call

from models.inference.speed_choices import uses

log = logging.getLogger("agilegan.compiled")

COMPILE_MODES = ("off", "default", "reduce-overhead", "max-autotune")
GRAPH_MODES = ("reduce-overhead", "max-autotune")  # modes that replay CUDA graphs on CUDA


@dataclass(frozen=True)
class CompileConfig:
    """What to compile. `buckets`: the batch sizes compiled (ascending); a batch is padded up to one."""

    mode: str = "off"
    buckets: tuple[int, ...] = (1,)
    backend: str = "inductor"  # torch.compile's backend; "aot_eager" traces without generating kernels

    def __post_init__(self) -> None:
        if self.mode not in COMPILE_MODES:
            raise ValueError(f"compile mode must be one of {COMPILE_MODES}, got {self.mode!r}")
        if not self.buckets or any(b < 1 for b in self.buckets) or list(self.buckets) != sorted(set(self.buckets)):
            raise ValueError(f"buckets must be distinct positive batch sizes in ascending order, got {self.buckets}")

    @property
    def enabled(self) -> bool:
        return self.mode != "off"


def resolve_compile_mode(setting: str, device_type: str) -> str:
    """`auto`: CUDA graphs (`reduce-overhead`) on CUDA, where a batch-1 forward is bound by kernel
    launches; off on the CPU, where compiling buys little for a long start. Other settings as named."""
    if setting == "auto":
        return "reduce-overhead" if device_type == "cuda" else "off"
    return setting


def keep_compile_cache(folder: Path) -> None:
    """Keep inductor's compiled kernels (and Triton's) in `folder`, so that a restarted worker loads its
    graphs' code instead of generating and compiling it again: the compile time is paid once per
    machine and torch version. Dynamo still traces each graph at start (seconds)."""
    folder.mkdir(parents=True, exist_ok=True)
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(folder.resolve())
    os.environ.setdefault("TRITON_CACHE_DIR", str((folder / "triton").resolve()))
    torch._inductor.config.fx_graph_cache = True


def default_buckets(max_batch: int, per_sample: bool) -> tuple[int, ...]:
    """Powers of two up to `max_batch`, and `max_batch` itself: (1, 2, 4, 8) for 8, (1, 2, 4, 6) for 6.
    `per_sample` (the CPU, where batches run sample by sample): only 1."""
    if per_sample or max_batch <= 1:
        return (1,)
    out = [b for b in (2**i for i in range(max_batch.bit_length())) if b < max_batch]
    return (*out, max_batch)


@dataclass
class ProgramStats:
    """Counters of a worker's programs (reported by `agilegan` and in the README's figures)."""

    warmed: list[str] = field(default_factory=list)  # "encoder ×4 bf16", … one per compiled graph
    warm_s: float = 0.0
    cache_hits: int = 0  # graphs whose kernels came from the compile cache (a restart), not a compiler
    compiled_calls: int = 0  # calls that ran a compiled graph
    eager_calls: int = 0  # calls that found no warmed graph and ran eager


_WEIGHTS: weakref.WeakKeyDictionary[nn.Module, dict[str, torch.Tensor]] = weakref.WeakKeyDictionary()


def _weights(module: nn.Module) -> dict[str, torch.Tensor]:
    """Every parameter and buffer, persistent or not (the inputs of a program); served weights do not
    change, so the dict is made once per module."""
    weights = _WEIGHTS.get(module)
    if weights is None:
        weights = {k: v.detach() for k, v in [*module.named_parameters(), *module.named_buffers()]}
        _WEIGHTS[module] = weights
    return weights


class _Program:
    """One compiled function for one architecture (`run` closes over its weightless template); its graphs
    are the buckets warmed so far."""

    def __init__(self, run: Callable[..., torch.Tensor], config: CompileConfig) -> None:
        self.warmed: set[tuple[int, ...]] = set()
        mode = None if config.mode == "default" or config.backend != "inductor" else config.mode
        self.fn = torch.compile(run, mode=mode, backend=config.backend, dynamic=False, fullgraph=True)


class Programs:
    """The compiled encoder and synthesis programs of one worker (see the module docs)."""

    def __init__(self, config: CompileConfig) -> None:
        self.config = config
        self.stats = ProgramStats()
        self._programs: dict[tuple, _Program] = {}
        self._lock = threading.Lock()

    # --- warming (worker start)

    def warm_encoder(self, inverter: nn.Module, precision: str) -> None:
        """Compile the encoder (image [B, 3, S, S] → w+ [B, L, D]) for every bucket."""
        size = inverter.config.encoder.input_size
        device = _device(inverter)
        program = self._encoder_program(inverter, precision)
        for b in self.config.buckets:
            self._warm(
                program,
                inverter,
                (b, 3, size, size),
                device,
                f"encoder {size}px ×{b} {precision}",
            )

    def warm_generator(self, generator: nn.Module, precision: str, noise: str = "const") -> None:
        """Compile the synthesis (w+ [B, L, D] → image [B, 3, S, S]) for every bucket."""
        device = _device(generator)
        shape = (generator.n_latent, generator.config.style_dim)
        program = self._generator_program(generator, precision, noise)
        for b in self.config.buckets:
            self._warm(
                program,
                generator,
                (b, *shape),
                device,
                f"generator {generator.config.size}px ×{b} {precision} {noise} noise",
            )

    def _warm(
        self, program: _Program, module: nn.Module, shape: tuple[int, ...], device: torch.device, name: str
    ) -> None:
        if shape in program.warmed:
            return
        started = time.perf_counter()
        hits = _cache_hits()
        raise_recompile_limit(len(self._programs) * len(self.config.buckets) + 8)
        with _serving_state(device):
            x = torch.zeros(shape, device=device)
            for _ in range(3 if self._graphs(device) else 1):  # CUDA graph trees record on the 2nd/3rd call
                program.fn(_weights(module), x)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        program.warmed.add(shape)
        seconds = time.perf_counter() - started
        cached = _cache_hits() > hits
        self.stats.warmed.append(name)
        self.stats.warm_s += seconds
        self.stats.cache_hits += cached
        log.info("compiled %s in %.1f s (%s%s)", name, seconds, self.config.mode, ", from the cache" if cached else "")

    # --- serving (requests)

    def encode(self, inverter: nn.Module, x: torch.Tensor, precision: str) -> torch.Tensor | None:
        """image [B, 3, S, S] → w+ [B, L, D] (fp32) through the warmed encoder graphs, or None."""
        if not self.config.enabled:
            return None
        return self._call(self._programs.get(self._encoder_key(inverter, precision)), inverter, x)

    def synthesize(
        self, generator: nn.Module, wplus: torch.Tensor, precision: str, noise: str = "const"
    ) -> torch.Tensor | None:
        """w+ [B, L, D] → image [B, 3, S, S] (fp32) through the warmed synthesis graphs, or None."""
        if not self.config.enabled:
            return None
        return self._call(self._programs.get(self._generator_key(generator, precision, noise)), generator, wplus)

    def _call(self, program: _Program | None, module: nn.Module, x: torch.Tensor) -> torch.Tensor | None:
        largest = self.config.buckets[-1]
        chunks = [x[i : i + largest] for i in range(0, len(x), largest)]
        if program is None or any(self._bucket(len(c), x.shape[1:]) not in program.warmed for c in chunks):
            self.stats.eager_calls += 1
            return None
        weights = _weights(module)
        outputs = []
        with _serving_state(x.device), torch.compiler.set_stance("fail_on_recompile"):
            for chunk in chunks:
                n = len(chunk)
                padded = self._bucket(n, x.shape[1:])[0]
                inp = chunk
                if n < padded:
                    inp = torch.cat([chunk, chunk[-1:].expand(padded - n, *chunk.shape[1:])])
                elif not chunk.is_inference():
                    inp = chunk.clone()  # the graphs were warmed on inference tensors (a guard)
                try:
                    out = program.fn(weights, inp.contiguous())
                except RuntimeError as e:
                    if "recompile" not in str(e):
                        raise  # a real failure (CUDA OOM included) is the caller's
                    log.warning("a warmed program refused its input (%s); running eager", str(e).splitlines()[0])
                    self.stats.eager_calls += 1
                    return None
                outputs.append(out[:n].clone() if self._graphs(out.device) or n < padded else out)
        self.stats.compiled_calls += 1
        return torch.cat(outputs) if len(outputs) > 1 else outputs[0]

    def _bucket(self, n: int, rest: Sequence[int]) -> tuple[int, ...]:
        return (next(b for b in self.config.buckets if b >= n), *rest)

    def _graphs(self, device: torch.device) -> bool:
        return device.type == "cuda" and self.config.mode in GRAPH_MODES

    # --- the programs

    def _encoder_key(self, inverter: nn.Module, precision: str) -> tuple:
        return ("encoder", inverter.config, uses(inverter, "channels_last"), precision, str(_device(inverter)))

    def _generator_key(self, generator: nn.Module, precision: str, noise: str) -> tuple:
        cpu_batch = getattr(generator, "per_sample_on_cpu", True)
        return (
            "generator",
            generator.config,
            uses(generator, "channels_last"),
            uses(generator, "fold_blur"),
            cpu_batch,
            precision,
            noise,
            str(_device(generator)),
        )

    def _encoder_program(self, inverter: nn.Module, precision: str) -> _Program:
        def build() -> Callable[..., torch.Tensor]:
            template = _template(inverter)
            device = _device(inverter).type
            n = template.config.encoder.n_styles

            def encode(weights: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
                with torch.autocast(device, dtype=torch.bfloat16, enabled=precision == "bf16"):
                    return functional_call(template, weights, (x,)).wplus[:, :n].float()

            return encode

        return self._program(self._encoder_key(inverter, precision), build)

    def _generator_program(self, generator: nn.Module, precision: str, noise: str) -> _Program:
        def build() -> Callable[..., torch.Tensor]:
            template = _template(generator)
            device = _device(generator).type

            def synthesize(weights: dict[str, torch.Tensor], wplus: torch.Tensor) -> torch.Tensor:
                with torch.autocast(device, dtype=torch.bfloat16, enabled=precision == "bf16"):
                    return functional_call(template, weights, (wplus,), {"space": "wplus", "noise": noise}).float()

            return synthesize

        return self._program(self._generator_key(generator, precision, noise), build)

    def _program(self, key: tuple, build: Callable[[], Callable[..., torch.Tensor]]) -> _Program:
        """The program of `key`, built (a weightless template copied once) only when it is new."""
        with self._lock:
            if key not in self._programs:
                self._programs[key] = _Program(build(), self.config)
            return self._programs[key]


@contextlib.contextmanager
def _serving_state(device: torch.device) -> Iterator[None]:
    """The global state every program call runs in, warm-up and requests alike (dynamo guards on it):
    inference mode, and the callers' autocast off (each program sets its own precision inside)."""
    with torch.inference_mode(), torch.autocast(device.type, enabled=False):
        yield


def _template(module: nn.Module) -> nn.Module:
    """A weightless copy on the meta device: the program's structure, its run-time flags included."""
    return copy.deepcopy(module).to("meta").eval()


def _device(module: nn.Module) -> torch.device:
    return next(module.parameters()).device


def _cache_hits() -> int:
    """Inductor's count of graphs whose code its cache served, so far in this process."""
    return int(torch._dynamo.utils.counters["inductor"]["fxgraph_cache_hit"])


def raise_recompile_limit(graphs: int) -> None:
    """Dynamo keeps the graphs of one Python function in one cache of `recompile_limit` entries (8 by
    default); every program shares that function, so the limit must cover every warmed graph."""
    config = torch._dynamo.config
    name = "recompile_limit" if hasattr(config, "recompile_limit") else "cache_size_limit"
    if getattr(config, name) < graphs:
        setattr(config, name, graphs)

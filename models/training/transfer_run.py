"""Running a style's transfer learning to the end: the loop around `models.training.transfer.Trainer`.

`train_style` resumes from the last checkpoint, steps, evaluates every `eval_every` steps (keeping
the best EMA generator with the state), reports progress with an ETA from measured step and
evaluation times (`StepClock`), stops early, at the time budget or at `max_steps`, and publishes the
best generator with `training.json`.
"""

from __future__ import annotations

import contextlib
import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from models.networks.discriminator import Discriminator
from models.networks.stylegan2 import Generator
from models.training.exemplars import ExemplarSet
from models.training.transfer import BEST_DIR, REPORT_FILE, Trainer, log
from service.portrait.checkpoint_files import atomic_write_bytes
from service.portrait.configs import TransferConfig


class TrainingCanceled(Exception):
    """`should_stop` asked the run to stop; its last checkpoint stays for a later resume."""


@dataclass
class TrainingResult:
    out_dir: Path
    steps: int
    best_step: int
    best_score: float
    stop_reason: str
    curve: list[dict[str, float]]
    perceptual: str
    branches: list[str] = field(default_factory=list)
    precision: str = "fp32"  # what the run trained in (the config's `auto` resolved on its device)


class StepClock:
    """Measured seconds of training steps and evaluations: the ETA is what the remaining schedule costs
    at the measured rates (the latest ones weigh most), capped by the time left, never negative."""

    def __init__(self, smoothing: float = 0.9) -> None:
        self.smoothing = smoothing
        self._mean: dict[str, float] = {}

    @contextlib.contextmanager
    def timing(self, kind: str):
        start = time.monotonic()
        yield
        took = time.monotonic() - start
        old = self._mean.get(kind)
        self._mean[kind] = took if old is None else self.smoothing * old + (1 - self.smoothing) * took

    def mean(self, kind: str) -> float:
        return self._mean.get(kind, 0.0)

    def eta(self, steps_left: int, eval_every: int, time_left_s: float) -> float:
        schedule = steps_left * self.mean("step") + (steps_left // eval_every) * self.mean("eval")
        return max(0.0, min(schedule, time_left_s))


def train_style(
    source_g: Generator,
    source_d: Discriminator,
    exemplars: ExemplarSet,
    config: TransferConfig,
    out_dir: Path,
    device: str | torch.device = "cpu",
    progress: Callable[[dict[str, Any]], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    micro_batch: int | None = None,
) -> TrainingResult:
    """Train (or resume) a style into `out_dir`; the best generator is published there at the end.

    `out_dir` ends up as a checkpoint directory (model.safetensors + config.json) plus training.json
    (config, curve, stop reason). Until then it only holds `train_state/` and `best/`, so a canceled or
    crashed run never leaves a loadable half-trained style.
    """
    trainer = Trainer(source_g, source_d, exemplars, config, out_dir, device, micro_batch)
    if trainer.load_state():
        log.info("resumed from step %d", trainer.step)
    started = time.monotonic() - trainer.elapsed
    budget_s = config.minutes * 60
    clock = StepClock()
    stop_reason = "max_steps"
    while trainer.step < config.max_steps:
        if should_stop is not None and should_stop():
            trainer.save_state()
            raise TrainingCanceled(f"canceled at step {trainer.step}")
        # no step that no evaluation could score within the budget: stop with the best so far
        if clock.mean("eval") and trainer.elapsed + clock.mean("step") + clock.mean("eval") > budget_s:
            stop_reason = "time_budget"
            break
        with clock.timing("step"):
            losses = trainer.train_step()
        trainer.elapsed = time.monotonic() - started
        if not all(math.isfinite(v) for v in losses.values()):
            raise FloatingPointError(f"non-finite loss at step {trainer.step}: {losses}")
        evaluated = None
        if trainer.step % config.eval_every == 0:
            with clock.timing("eval"):
                evaluated = _evaluate(trainer)
            trainer.elapsed = time.monotonic() - started
        if trainer.step % config.checkpoint_every == 0:
            trainer.save_state()
        if progress is not None:
            eta_s = clock.eta(config.max_steps - trainer.step, config.eval_every, budget_s - trainer.elapsed)
            progress(_progress_info(trainer, losses, evaluated, eta_s))
        if trainer.stopper.should_stop:
            stop_reason = "early_stopping"
            break
        if trainer.elapsed >= budget_s:
            stop_reason = "time_budget"
            break
    return _finish(trainer, stop_reason, exemplars)


def _evaluate(trainer: Trainer) -> dict[str, Any]:
    """An evaluation of the current step, onto the curve; the best generator kept when it is the best."""
    evaluated = trainer.evaluate()
    trainer.curve.append(evaluated)
    if trainer.stopper.update(evaluated["score"], trainer.step, evaluated["score_noise"]):
        trainer.save_best()
    return evaluated


def _progress_info(trainer: Trainer, losses: dict, evaluated: dict | None, eta_s: float) -> dict[str, Any]:
    """What the progress callback gets after a step."""
    return {
        "step": trainer.step,
        "max_steps": trainer.config.max_steps,
        "losses": losses,
        "score": evaluated["score"] if evaluated else None,
        # the EMA generator just scored (for previews; read it in the callback, don't keep it)
        "model": trainer.g_ema if evaluated else None,
        "best_score": trainer.stopper.best,
        "elapsed_s": trainer.elapsed,
        "eta_s": eta_s,
    }


def _finish(trainer: Trainer, stop_reason: str, exemplars: ExemplarSet) -> TrainingResult:
    """The last step scored (unless the time budget ran out), a best generator chosen, the style published."""
    if not trainer.curve or (trainer.curve[-1]["step"] != trainer.step and stop_reason != "time_budget"):
        _evaluate(trainer)
    if trainer.stopper.best_step < 0:  # the time budget ended the run in its warm-up: its last step is the best
        if trainer.curve[-1]["step"] != trainer.step:
            trainer.curve.append(trainer.evaluate())
        trainer.stopper.accept(trainer.curve[-1]["score"], trainer.step)
        trainer.save_best()
    trainer.save_state()
    return _publish(trainer, stop_reason, exemplars)


def _publish(trainer: Trainer, stop_reason: str, exemplars: ExemplarSet) -> TrainingResult:
    """Copy the best checkpoint into out_dir (config.json last) and write training.json."""
    out, best = trainer.out_dir, trainer.out_dir / BEST_DIR
    report = {
        "stop_reason": stop_reason,
        "steps": trainer.step,
        "best_step": trainer.stopper.best_step,
        "best_score": trainer.stopper.best,
        "curve": trainer.curve,
        "perceptual": trainer.perceptual,
        "branches": trainer.branches,
        "elapsed_s": trainer.elapsed,
        "micro_batch": trainer.micro_batch or trainer.config.batch_size,
        "precision": trainer.precision,
        "config": trainer.config.to_dict(),
        "exemplars": {
            "total": len(exemplars),
            "train": sum(len(t) for t in trainer.train_sets),
            "holdout": sum(len(h) for h in trainer.holdout_sets),
        },
        "score": "kid/kid_reference + score_overfit_weight·relu(gap) "
        "+ score_consistency_weight·consistency/consistency_reference (models/training/transfer_eval.py)",
    }
    atomic_write_bytes(out / REPORT_FILE, (json.dumps(report, indent=2) + "\n").encode())
    (out / "model.safetensors").write_bytes((best / "model.safetensors").read_bytes())
    (out / "config.json").write_bytes((best / "config.json").read_bytes())
    return TrainingResult(
        out,
        trainer.step,
        trainer.stopper.best_step,
        trainer.stopper.best,
        stop_reason,
        trainer.curve,
        trainer.perceptual,
        trainer.branches,
        trainer.precision,
    )

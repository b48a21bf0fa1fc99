"""Style transfer learning on tiny models on the CPU: losses, checkpoints, early stopping, resume."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from models.networks.attribute_generator import AttributeAwareGenerator
from models.networks.discriminator import Discriminator
from models.networks.stylegan2 import Generator
from models.training.exemplars import tensor_exemplars
from models.training.transfer import Trainer, _split, ema_beta, training_precision
from models.training.transfer_eval import EarlyStopping
from models.training.transfer_run import StepClock, TrainingCanceled, train_style
from models.weights import checkpoints
from service.portrait.configs import DiscriminatorConfig, GeneratorConfig, TransferConfig
from service.portrait.exemplar_files import MIN_EXEMPLARS
from tests.conftest import seeded
from tests.exemplar_data import exemplar_zip_bytes

FAST = {
    "min_steps": 0,
    "batch_size": 4,
    "eval_samples": 8,
    "r1_every": 4,
    "pl_every": 2,
    "min_holdout": 2,
    "holdout_fraction": 0.25,
}


@pytest.fixture
def source() -> tuple[Generator, Discriminator]:
    g = seeded(Generator(GeneratorConfig.tiny(32)), 1)
    d = seeded(Discriminator(DiscriminatorConfig.tiny(32)), 2)
    return g, d


def exemplars(n: int = 12, labels: list[str] | None = None):
    gen = torch.Generator().manual_seed(5)
    # a "style": smooth colour gradients unlike the random source generator's output
    ramp = torch.linspace(-1, 1, 32)
    base = torch.stack(
        [ramp.view(1, 32).expand(32, 32), ramp.view(32, 1).expand(32, 32), -ramp.view(1, 32).expand(32, 32)]
    )
    images = (base.unsqueeze(0) * 0.8 + 0.2 * torch.randn(n, 3, 32, 32, generator=gen)).clamp(-1, 1)
    return tensor_exemplars(images, labels)


def test_a_training_run_moves_the_generator_and_publishes_the_best(source, tmp_path: Path) -> None:
    g, d = source
    config = TransferConfig(max_steps=12, eval_every=4, checkpoint_every=4, **FAST)
    seen: list[dict] = []
    result = train_style(g, d, exemplars(), config, tmp_path, progress=seen.append)
    assert result.steps == 12 and result.stop_reason == "max_steps"
    assert [c["step"] for c in result.curve] == [4, 8, 12]
    assert all(torch.isfinite(torch.tensor(list(s["losses"].values()))).all() for s in seen)
    assert {"d", "g", "perceptual", "r1", "pl"} <= set().union(*(s["losses"] for s in seen))
    assert seen[-1]["eta_s"] >= 0 and seen[3]["score"] is not None
    # the EMA generator travels with every evaluation's progress report (the live preview), only there
    assert [s["step"] for s in seen if s["model"] is not None] == [4, 8, 12]
    assert all(s["model"] is None for s in seen if s["score"] is None)
    # checkpoints written: resumable state, the best EMA generator, the published style
    assert (tmp_path / "train_state" / "tensors.safetensors").is_file()
    report = json.loads((tmp_path / "training.json").read_text())
    assert report["best_step"] == result.best_step and len(report["curve"]) == 3
    assert report["perceptual"] == "source-discriminator-features" and report["config"]["max_steps"] == 12
    style = checkpoints.load(tmp_path, expected=Generator)
    moved = [
        float((a - b).abs().max())
        for (name, a), b in zip(style.state_dict().items(), g.state_dict().values())
        if name.startswith("convs.")
    ]
    assert max(moved) > 1e-4  # the synthesis weights moved
    assert all(
        torch.equal(a, b)
        for (name, a), b in zip(style.state_dict().items(), g.state_dict().values())
        if name.startswith("style.")
    )  # the mapping stayed frozen


def test_early_stopping_logic() -> None:
    stopper = EarlyStopping(patience=2)
    verdicts = [stopper.update(score, step) for step, score in enumerate([5.0, 4.0, 4.5, 3.0, 3.1, 3.2], 1)]
    assert verdicts == [True, True, False, True, False, False]
    assert stopper.best == 3.0 and stopper.best_step == 4 and stopper.should_stop


def test_evaluations_in_the_warm_up_are_reported_but_never_published() -> None:
    stopper = EarlyStopping(patience=2, min_steps=300)
    verdicts = [stopper.update(score, step) for step, score in [(100, 0.1), (200, 0.2), (300, 0.5), (400, 0.6)]]
    assert verdicts == [False, False, True, False]
    assert stopper.best_step == 300 and stopper.bad == 1 and not stopper.should_stop  # warm-up not counted


def test_a_run_stopped_in_its_warm_up_publishes_its_last_step(source, tmp_path: Path) -> None:
    g, d = source
    config = TransferConfig(max_steps=6, eval_every=2, **{**FAST, "min_steps": 500})
    result = train_style(g, d, exemplars(), config, tmp_path)  # the warm-up is capped at max_steps
    assert result.best_step == 6 and result.stop_reason == "max_steps"
    config = TransferConfig(max_steps=1000, eval_every=2, minutes=0.05, **{**FAST, "min_steps": 500})
    timed = train_style(g, d, exemplars(), config, tmp_path / "timed")  # 3 s: ends inside the warm-up
    assert timed.stop_reason == "time_budget" and timed.steps < 500
    assert timed.best_step == timed.steps == timed.curve[-1]["step"]
    assert checkpoints.load(tmp_path / "timed", expected=Generator) is not None


def test_a_run_whose_score_stops_improving_stops_on_patience(source, tmp_path: Path) -> None:
    g, d = source
    frozen = TransferConfig(max_steps=100, eval_every=2, patience=2, g_lr=0.0, d_lr=0.0, **FAST)
    result = train_style(g, d, exemplars(), frozen, tmp_path)
    assert result.stop_reason == "early_stopping"
    assert result.steps == 6 and result.best_step == 2  # evals at 2 (best), 4 and 6 (no better)
    assert len({round(c["score"], 9) for c in result.curve}) == 1


@pytest.mark.parametrize("labels", [None, ["female"] * 6 + ["male"] * 6], ids=["plain", "attribute-aware"])
def test_micro_batches_give_the_whole_batch_update(source, tmp_path: Path, labels) -> None:
    """Gradient accumulation over micro-batches of 1 is the whole-batch step up to float summation
    order, on steps with R1, path length and augmentation (ADA p = 0.5) all active."""
    g, d = source
    config = TransferConfig(max_steps=4, ada_p_init=0.5, **FAST)
    whole = Trainer(g, d, exemplars(12, labels), config, tmp_path / "whole")
    micro = Trainer(g, d, exemplars(12, labels), config, tmp_path / "micro", micro_batch=1)
    seen: set[str] = set()
    for _ in range(3):  # step 0: R1 + path length, 1: neither, 2: path length; branch 0, 1, 0
        a, b = whole.train_step(), micro.train_step()
        assert a.keys() == b.keys()
        seen |= a.keys()
        for name in a:
            assert a[name] == pytest.approx(b[name], rel=1e-4, abs=1e-6), name
    assert {"r1", "pl"} <= seen and whole.ada.p > 0
    for x, y in ((whole.g, micro.g), (whole.g_ema, micro.g_ema), (whole.ds, micro.ds)):
        for (name, p), q in zip(x.state_dict().items(), y.state_dict().values()):
            torch.testing.assert_close(p, q, rtol=1e-4, atol=1e-5, msg=name)
    torch.testing.assert_close(whole.pl_mean, micro.pl_mean)
    moved = max(
        float((p - q).detach().abs().max()) for p, q in zip(micro.g.parameters(), g.parameters()) if p.shape == q.shape
    )
    assert moved > 1e-4  # the comparison is between runs that trained


class Killed(Exception):
    pass


def kill_at(step: int) -> Callable[[dict], None]:
    """A progress callback that stops the run (like a killed process) when it reports `step`."""

    def progress(info: dict) -> None:
        if info["step"] == step:
            raise Killed()

    return progress


def test_a_run_resumes_with_another_micro_batch(source, tmp_path: Path) -> None:
    g, d = source
    config = TransferConfig(max_steps=6, eval_every=3, checkpoint_every=3, **FAST)
    with pytest.raises(Killed):
        train_style(g, d, exemplars(), config, tmp_path, progress=kill_at(4))
    result = train_style(g, d, exemplars(), config, tmp_path, micro_batch=2)
    assert result.steps == 6
    assert json.loads((tmp_path / "training.json").read_text())["micro_batch"] == 2


def test_micro_batch_must_be_positive(source, tmp_path: Path) -> None:
    g, d = source
    with pytest.raises(ValueError, match="micro_batch"):
        Trainer(g, d, exemplars(), TransferConfig(**FAST), tmp_path, micro_batch=0)


def test_a_killed_run_resumes_from_its_last_checkpoint(source, tmp_path: Path) -> None:
    g, d = source
    config = TransferConfig(max_steps=8, eval_every=4, checkpoint_every=4, **FAST)
    with pytest.raises(Killed):
        train_style(g, d, exemplars(), config, tmp_path / "a", progress=kill_at(6))
    assert not (tmp_path / "a" / "model.safetensors").exists()  # nothing published
    resumed_steps: list[int] = []
    result = train_style(g, d, exemplars(), config, tmp_path / "a", progress=lambda i: resumed_steps.append(i["step"]))
    assert resumed_steps[0] == 5 and result.steps == 8  # continued after the checkpoint at step 4
    straight = train_style(g, d, exemplars(), config, tmp_path / "b")
    assert straight.steps == 8
    a, b = checkpoints.load(tmp_path / "a"), checkpoints.load(tmp_path / "b")
    for (name, x), y in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(x, y), name  # bit for bit the run it would have been without the interruption


def test_cancel_leaves_no_style(source, tmp_path: Path) -> None:
    g, d = source
    calls = iter(range(100))
    with pytest.raises(TrainingCanceled):
        train_style(
            g,
            d,
            exemplars(),
            TransferConfig(max_steps=50, eval_every=5, **FAST),
            tmp_path,
            should_stop=lambda: next(calls) >= 3,
        )
    assert not (tmp_path / "config.json").exists()
    assert json.loads((tmp_path / "train_state" / "state.json").read_text())["step"] == 3


def test_labelled_exemplars_train_an_attribute_aware_generator(source, tmp_path: Path) -> None:
    g, d = source
    labels = ["female"] * 6 + ["male"] * 6
    result = train_style(g, d, exemplars(12, labels), TransferConfig(max_steps=6, eval_every=3, **FAST), tmp_path)
    assert result.branches == ["female", "male"]
    style = checkpoints.load(tmp_path, expected=AttributeAwareGenerator)
    assert style.branch_names == ("female", "male")
    z = torch.randn(2, 32)
    with torch.no_grad():
        assert not torch.allclose(style(z, branch="female"), style(z, branch="male"))


def test_the_train_style_command(source, tmp_path: Path) -> None:
    import subprocess
    import sys

    g, d = source
    checkpoints.save(tmp_path / "base", g)
    checkpoints.save(tmp_path / "base" / "discriminator", d)
    archive = tmp_path / "style.zip"
    archive.write_bytes(exemplar_zip_bytes())
    overrides = {
        "max_steps": 4,
        "eval_every": 2,
        "batch_size": 2,
        "eval_samples": 4,
        "min_holdout": 2,
        "holdout_fraction": 0.25,
        "r1_every": 2,
        "pl_every": 2,
    }
    (tmp_path / "config.json").write_text(json.dumps(overrides))
    agilegan = Path(sys.executable).with_name("agilegan")
    base_args = [
        str(agilegan),
        "train-style",
        "--exemplars",
        str(archive),
        "--base",
        str(tmp_path / "base"),
        "--config",
        str(tmp_path / "config.json"),
        "--device",
        "cpu",
        "--min-exemplars",
        "8",
    ]
    dry = subprocess.run(
        [*base_args, "--out", str(tmp_path / "dry"), "--dry-run"], capture_output=True, text=True, timeout=300
    )
    assert dry.returncode == 0, dry.stderr
    assert "12 accepted, 2 rejected" in dry.stdout and "rejected dog.jpg: no_face" in dry.stdout
    assert "rejected readme.txt" in dry.stdout
    assert '"max_steps": 4' in dry.stdout and not (tmp_path / "dry").exists()
    bad = subprocess.run(
        [*base_args, "--out", str(tmp_path / "bad"), "--micro-batch", "0"], capture_output=True, text=True, timeout=300
    )
    assert bad.returncode == 1 and "--micro-batch must be at least 1" in bad.stderr and not (tmp_path / "bad").exists()
    few = subprocess.run(  # the CLI's default minimum is the API's (MIN_EXEMPLARS)
        [*base_args[:-2], "--out", str(tmp_path / "few")], capture_output=True, text=True, timeout=300
    )
    assert few.returncode == 1 and f"12 usable exemplars; at least {MIN_EXEMPLARS} are needed" in few.stderr, few.stderr
    run = subprocess.run(
        [*base_args, "--out", str(tmp_path / "style"), "--minutes", "5", "--micro-batch", "1"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr
    assert "after 4 steps" in run.stdout and "step 4/4" in run.stderr
    style = checkpoints.load(tmp_path / "style", expected=Generator)
    assert style.config == g.config
    report = json.loads((tmp_path / "style" / "training.json").read_text())
    assert report["config"]["minutes"] == 5 and report["micro_batch"] == 1


def test_the_ema_ramps_up_like_stylegan2_ada() -> None:
    """Issue 12, finding 1: beta = 0.5 ** (batch / min(ema_kimg · 1000, seen · ema_rampup)); a fixed
    decay of 0.999 left the EMA 90 % source weights at step 100."""
    cfg = TransferConfig(batch_size=4)  # ema_kimg 0.5, ema_rampup 0.05
    assert ema_beta(cfg, 0) == 0.0  # the EMA starts as the trained generator
    assert ema_beta(cfg, 100) == pytest.approx(0.5 ** (4 / 20))  # 400 images seen → half-life 20
    assert ema_beta(cfg, 5000) == pytest.approx(0.5 ** (4 / 500))  # capped at 0.5 kimg
    betas = [ema_beta(cfg, s) for s in range(0, 5000, 50)]
    assert betas == sorted(betas)
    source_share_at_100 = math.prod(ema_beta(cfg, s) for s in range(100))
    assert source_share_at_100 < 1e-6  # vs 0.999 ** 100 = 0.905 with the old fixed decay
    assert ema_beta(TransferConfig(ema_decay=0.999), 7) == 0.999  # a fixed decay on request
    assert ema_beta(TransferConfig(batch_size=4, ema_rampup=None), 0) == pytest.approx(0.5 ** (4 / 500))


def test_the_first_update_leaves_the_ema_equal_to_the_generator(source, tmp_path: Path) -> None:
    g, d = source
    trainer = Trainer(g, d, exemplars(), TransferConfig(**FAST), tmp_path)
    losses = trainer.train_step()
    assert losses["ema_beta"] == 0.0
    for a, b in zip(trainer.g_ema.parameters(), trainer.g.parameters()):
        assert torch.equal(a, b)


def test_the_generator_step_draws_fresh_latents(source, tmp_path: Path, monkeypatch) -> None:
    """Finding 5: the D step, the G step and the path-length term each draw their own latents."""
    g, d = source
    trainer = Trainer(g, d, exemplars(), TransferConfig(**FAST), tmp_path)
    drawn: list[torch.Tensor] = []
    latents = trainer._latents
    monkeypatch.setattr(trainer, "_latents", lambda n, rng: drawn.append(latents(n, rng)) or drawn[-1])
    trainer.train_step()  # step 0: path length too
    assert [len(w) for w in drawn] == [4, 4, 2]
    assert not torch.equal(drawn[0], drawn[1]) and not torch.equal(drawn[1][:2], drawn[2])


def test_the_score_terms_are_normalised_per_run(source, tmp_path: Path) -> None:
    """Finding 2: each term on a scale of its own run, and reported. At step 0 the EMA generator is the
    source: the style term is 1 (nothing learned), consistency 0."""
    g, d = source
    cfg = TransferConfig(**FAST)
    trainer = Trainer(g, d, exemplars(), cfg, tmp_path)
    first = trainer.evaluate()
    assert first["terms"]["style"] == pytest.approx(1.0, rel=1e-6)
    assert first["consistency"] == pytest.approx(0.0, abs=1e-9) and first["terms"]["consistency"] == 0.0
    assert first["kid_reference"] > 0 and first["consistency_reference"] > 0
    assert first["score"] == pytest.approx(sum(first["terms"].values()))
    for _ in range(6):
        trainer.train_step()
    later = trainer.evaluate()
    assert later["terms"]["consistency"] == pytest.approx(
        cfg.score_consistency_weight * later["consistency"] / later["consistency_reference"]
    )
    assert later["consistency"] > 0 and later["terms"]["style"] != first["terms"]["style"]


def test_the_best_generator_is_saved_with_the_training_state(source, tmp_path: Path) -> None:
    """Finding 7: best/ was saved outside the training state; killed after a new best but before the
    next checkpoint, a resumed run published weights of another step than the best step it reported.
    Now a new best is saved with the state, as one unit, and best/ is rewritten from it on resume."""
    g, d = source
    config = TransferConfig(checkpoint_every=100, **FAST)
    trainer = Trainer(g, d, exemplars(), config, tmp_path)
    for _ in range(3):
        trainer.train_step()
    assert trainer.stopper.update(trainer.evaluate()["score"], trainer.step)
    trainer.save_best()
    best = {k: v.clone() for k, v in trainer.g_ema.state_dict().items()}
    trainer.train_step()  # then the process dies, before any checkpoint_every save
    (tmp_path / "best" / "model.safetensors").write_bytes(b"a later, unrelated best")  # a stray write

    resumed = Trainer(g, d, exemplars(), config, tmp_path)
    assert resumed.load_state() and resumed.step == 3 and resumed.stopper.best_step == 3
    for name, tensor in checkpoints.load(tmp_path / "best").state_dict().items():
        assert torch.equal(tensor, best[name]), name
    for name, tensor in resumed.best_model().state_dict().items():
        assert torch.equal(tensor, best[name]), name


def test_the_eta_comes_from_measured_rates_and_is_never_negative() -> None:
    """Finding 9: the ETA was derived from the time budget and went negative."""
    clock = StepClock(smoothing=0.0)  # the latest measurement only
    for kind, seconds in (("step", 0.01), ("eval", 0.02)):
        with clock.timing(kind):
            time.sleep(seconds)
    eta = clock.eta(steps_left=100, eval_every=10, time_left_s=1e6)
    expected = 100 * clock.mean("step") + 10 * clock.mean("eval")
    assert eta == pytest.approx(expected) and 1.0 < eta < 3.0
    assert clock.eta(100, 10, time_left_s=0.5) == 0.5  # capped by the time left
    assert clock.eta(100, 10, time_left_s=-30.0) == 0.0  # past the budget: 0, never negative


def test_the_time_budget_holds_and_no_evaluation_starts_that_cannot_finish(source, tmp_path: Path, monkeypatch) -> None:
    """Finding 9: a 20-minute budget overran by 4 minutes (an evaluation after the budget, then another
    for the final step). Now no step or evaluation starts that the measured rates say cannot finish in
    time: the budget holds, except when the very first evaluation (not yet measured) overruns it."""
    g, d = source
    slow, evaluations = Trainer.evaluate, []

    def evaluate(self):
        evaluations.append(self.step)
        time.sleep(1.5)
        return slow(self)

    monkeypatch.setattr(Trainer, "evaluate", evaluate)
    budget_s = 4.0
    config = TransferConfig(max_steps=100, eval_every=1, patience=100, minutes=budget_s / 60, **FAST)
    etas: list[float] = []
    result = train_style(g, d, exemplars(), config, tmp_path, progress=lambda i: etas.append(i["eta_s"]))
    assert result.stop_reason == "time_budget" and result.steps < 100
    elapsed = json.loads((tmp_path / "training.json").read_text())["elapsed_s"]
    # the old loop evaluated at every step until past the budget: 3 evaluations, about 4.8 s
    assert elapsed <= budget_s or len(evaluations) == 1, (elapsed, evaluations)
    assert evaluations == [c["step"] for c in result.curve]  # no extra evaluation after stopping
    assert min(etas) >= 0.0 and etas[-1] <= budget_s


def test_improvements_must_beat_the_measured_noise_of_the_score(source, tmp_path: Path) -> None:
    """Finding 6: KID from few renders and held-out images is noisy, and any decrease reset patience.
    Each evaluation measures the noise of its style term across quarters of its renders; only a larger
    improvement counts."""
    g, d = source
    config = TransferConfig(**{**FAST, "eval_samples": 16})
    trainer = Trainer(g, d, exemplars(), config, tmp_path)
    first = trainer.evaluate()
    noise = first["score_noise"]
    assert noise > 0
    stopper = trainer.stopper
    assert stopper.update(1.0, 1, noise) and not stopper.update(1.0 - noise / 2, 2, noise)  # within the noise
    assert stopper.bad == 1 and stopper.update(1.0 - 2 * noise, 3, noise) and stopper.best_step == 3
    floor = EarlyStopping(patience=2, min_delta=10.0)  # a configured floor above the noise wins
    assert floor.update(5.0, 1, noise) and not floor.update(1.0, 2, noise)
    for _ in range(4):
        trainer.train_step()
    assert trainer.evaluate()["score_noise"] != noise  # measured anew at each evaluation


def test_the_held_out_set_is_big_enough_for_kid_but_at_most_half() -> None:
    gen = torch.Generator().manual_seed(0)
    for n, expected in ((100, 15), (30, 8), (12, 6), (6, 3)):
        train, held = _split(n, 0.15, 8, gen)
        assert len(held) == expected and len(train) == n - expected
    assert TransferConfig().min_holdout == 8


def test_bf16_training_follows_fp32_on_the_same_run(source, tmp_path: Path) -> None:
    """Finding 10: bf16 autocast (the default on CUDA); with the same seed its steps stay close to
    fp32's, augmentation runs in fp32 under it, and the weights and EMA stay fp32."""
    g, d = source
    with pytest.raises(ValueError, match="precision"):
        TransferConfig(precision="fp16")
    runs = {}
    for precision in ("fp32", "bf16"):
        config = TransferConfig(precision=precision, ada_p_init=0.3, **FAST)
        trainer = Trainer(g, d, exemplars(), config, tmp_path / precision)
        runs[precision] = [trainer.train_step() for _ in range(3)], trainer
    (f32, a), (b16, b) = runs["fp32"], runs["bf16"]
    assert all(p.dtype == torch.float32 for p in b.g.parameters()) and b.evaluate()["score"] > 0
    for x, y in zip(f32, b16):
        assert abs(x["d"] - y["d"]) < 0.05 * abs(x["d"]) + 0.05 and abs(x["g"] - y["g"]) < 0.05 * abs(x["g"]) + 0.05
    changed = [float((p - q).norm() / p.norm()) for p, q in zip(a.g_ema.parameters(), b.g_ema.parameters())]
    assert 0 < max(changed) < 0.05  # different arithmetic, the same run


def test_precision_auto_is_bf16_on_cuda_devices_that_have_it_and_fp32_elsewhere(source, tmp_path: Path) -> None:
    """Issue 25: `auto` is bf16 on CUDA (Ampere and later) and fp32 on the CPU and older GPUs; bf16 asked
    for where the device has none is refused; the report says what the run trained in. The default stays
    fp32: bench/learning.py learned less in bf16 (README "Mixed precision")."""
    assert TransferConfig().precision == "fp32"
    assert training_precision("auto", "cuda", bf16_ok=True) == "bf16"
    assert training_precision("auto", "cuda", bf16_ok=False) == "fp32"  # a V100 or T4
    assert training_precision("auto", "cpu", bf16_ok=True) == "fp32"
    assert training_precision("fp32", "cuda", bf16_ok=True) == "fp32"
    with pytest.raises(ValueError, match="bfloat16"):
        training_precision("bf16", "cuda", bf16_ok=False)
    g, d = source
    config = TransferConfig(**{**FAST, "max_steps": 2, "eval_every": 2})
    result = train_style(g, d, exemplars(), config, tmp_path / "style")
    assert result.precision == "fp32"
    assert json.loads((tmp_path / "style" / "training.json").read_text())["precision"] == "fp32"


def test_augmentation_runs_in_fp32_under_autocast() -> None:
    from models.training.augment import augment

    x = torch.rand(2, 3, 16, 16) * 2 - 1
    with torch.autocast(device_type="cpu", dtype=torch.bfloat16):
        out = augment(x.bfloat16(), 0.9, torch.Generator().manual_seed(0))
    assert out.dtype == torch.float32
    assert torch.allclose(out, augment(x.bfloat16().float(), 0.9, torch.Generator().manual_seed(0)))

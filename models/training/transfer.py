"""Style transfer learning (AgileGAN §4) with early stopping: the FFHQ generator → a style generator.

Recipe (FaceStylor's, the only runnable public one; every value in `TransferConfig`): z+ ~ N(0, I) per
layer, mapped by the *frozen source mapping* (the path the encoder's inversion uses: what makes
stylization inversion-consistent); hinge or non-saturating loss; lazy R1; path-length regularisation;
a source-consistency term (LPIPS-VGG when configured, else source-discriminator features); FreezeD;
adaptive augmentation; Adam with the lazy-regularisation ratio; an EMA generator.

What no public trainer has: **early stopping** (`models.training.transfer_eval`; the loop that runs a style
to the end is `models.training.transfer_run`): a held-out part of the exemplars; every `eval_every` steps
the EMA generator is scored on fixed latents (style match, the discriminator memorising, losing
the portrait; each term normalised by a reference of its own run).
The best-scoring EMA generator is kept; training stops after `patience` evaluations without
improvement, at the time budget or at `max_steps`. With exemplar labels, the attribute-aware generator
trains one branch per label (each branch against its own discriminator, the shared blocks from all).

The EMA follows StyleGAN2-ADA's ramp-up: its half-life is `ema_kimg` thousand images, but never more
than `ema_rampup` × the images seen so far, so the early evaluations score what the generator has
learned rather than a copy of the source (a fixed decay of 0.999 left the EMA 90 % source weights at
step 100). `ema_decay`, when set, restores a fixed decay.

Every random draw of step s comes from a generator seeded by (seed, s), so a run resumed from its
last checkpoint continues exactly as the uninterrupted run would have (on the same device).
"""

from __future__ import annotations

import contextlib
import copy
import json
import logging
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from models.networks.attribute_generator import AttributeAwareGenerator
from models.networks.discriminator import Discriminator
from models.networks.host_copy import to_device
from models.networks.lpips import LPIPS
from models.networks.stylegan2 import Generator
from models.networks.synthesis import noise_rows
from models.training.augment import AdaptiveP, augment
from models.training.exemplars import ExemplarSet
from models.training.losses import d_loss, g_loss, path_lengths, path_projection, r1_penalty
from models.training.metrics import SourceFeatures, downsample_to
from models.training.transfer_eval import EarlyStopping, Evaluator
from models.weights import checkpoints
from service.portrait.checkpoint_files import Provenance, atomic_write_bytes
from service.portrait.configs import AttributeGeneratorConfig, TransferConfig

log = logging.getLogger("agilegan.train")
STATE_DIR, BEST_DIR, REPORT_FILE = "train_state", "best", "training.json"


def _split(n: int, fraction: float, minimum: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """(train, held-out) indices: `fraction` of n held out, at least `minimum` (KID needs a few), at
    most half (the rest trains)."""
    order = torch.randperm(n, generator=gen)
    held = max(minimum, int(round(n * fraction)))
    held = min(held, n // 2, n - 2)
    if held < 2:
        raise ValueError(f"{n} exemplars are too few: at least 4 per branch are needed")
    return order[held:], order[:held]


def sample_reals(pool: torch.Tensor, batch: int, rng: torch.Generator, mirror: bool) -> torch.Tensor:
    """`batch` exemplars drawn from pool [N, 3, S, S], each mirrored with probability 0.5 when `mirror`
    (FaceStylor's `ffhq_flip`: a portrait style does not depend on which way the face looks)."""
    real = pool[to_device(torch.randint(len(pool), (batch,), generator=rng), pool.device)]
    if mirror:
        flip = to_device(torch.rand(batch, generator=rng) < 0.5, pool.device).view(batch, 1, 1, 1)
        real = torch.where(flip, real.flip(3), real)
    return real


def read_scalars(values: dict[str, torch.Tensor]) -> dict[str, float]:
    """Scalar tensors (on one device) → floats, in one device → host transfer."""
    if not values:
        return {}
    numbers = torch.stack([v.float().reshape(()) for v in values.values()]).tolist()
    return dict(zip(values, numbers))


def training_precision(setting: str, device_type: str, bf16_ok: bool) -> str:
    """The precision a run trains in: `auto` is bf16 on a CUDA device with bfloat16 (Ampere and later)
    and fp32 elsewhere (a CPU's bf16 is emulated by most, and slower); `bf16` where the device has none
    is refused."""
    if setting == "auto":
        return "bf16" if device_type == "cuda" and bf16_ok else "fp32"
    if setting == "bf16" and not bf16_ok:
        raise ValueError(f"precision bf16: this {device_type} device does not support bfloat16; use fp32")
    return setting


def bf16_supported(device: torch.device) -> bool:
    """Whether bf16 autocast can run on `device` (CPUs always can, if slowly without AMX/AVX512-BF16)."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return device.type in ("cpu", "xpu", "mps")


def ema_beta(config: TransferConfig, step: int) -> float:
    """The EMA's decay for the update after step `step` (0-based): StyleGAN2-ADA's ramp-up,
    beta = 0.5 ** (batch / min(ema_kimg · 1000, images seen · ema_rampup)); 0 at step 0, so the EMA
    starts as the trained generator. A fixed `ema_decay`, when set, wins."""
    if config.ema_decay is not None:
        return config.ema_decay
    ema_nimg = config.ema_kimg * 1000
    if config.ema_rampup is not None:
        ema_nimg = min(ema_nimg, step * config.batch_size * config.ema_rampup)
    return 0.5 ** (config.batch_size / max(ema_nimg, 1e-8))


class Trainer:
    """Holds the networks, optimisers and state of one transfer-learning run (see the module docs)."""

    def __init__(
        self,
        source_g: Generator,
        source_d: Discriminator,
        exemplars: ExemplarSet,
        config: TransferConfig,
        out_dir: Path,
        device: str | torch.device = "cpu",
        micro_batch: int | None = None,
    ) -> None:
        """micro_batch: samples per forward/backward pass (None: the whole batch). A run-time memory
        choice, not part of the recipe: the update is the same (see `train_step`), so a run may
        resume with a different one, e.g. on a smaller GPU."""
        if micro_batch is not None and micro_batch < 1:
            raise ValueError(f"micro_batch must be at least 1, got {micro_batch}")
        self.config, self.out_dir, self.device = config, Path(out_dir), torch.device(device)
        self.micro_batch = micro_batch
        self.precision = training_precision(config.precision, self.device.type, bf16_supported(self.device))
        if exemplars.images.shape[-1] != source_g.config.size:
            raise ValueError(f"exemplars are {exemplars.images.shape[-1]} px; the generator is {source_g.config.size}")
        # 1. Exemplars: per branch, a training and a held-out split.
        self.branches = exemplars.branches if len(exemplars.branches) >= 2 else []
        self.train_sets, self.holdout_sets = self._split_exemplars(exemplars)
        # 2. Networks: the frozen source, the trained copy (mapping frozen), its EMA, one D per branch.
        self._build_networks(source_g, source_d)
        # 3. Optimisers with the lazy-regularisation ratio.
        g_ratio = config.pl_every / (config.pl_every + 1)
        d_ratio = config.r1_every / (config.r1_every + 1)
        g_params = [p for p in self.g.parameters() if p.requires_grad]
        fused = self.device.type == "cuda"  # one kernel per update on CUDA; the CPU keeps its reference loop
        g_betas, d_betas = (0.0, config.beta2**g_ratio), (0.0, config.beta2**d_ratio)
        self.g_opt = torch.optim.Adam(g_params, lr=config.g_lr * g_ratio, betas=g_betas, fused=fused)
        self.d_opt = torch.optim.Adam(self.d_params, lr=config.d_lr * d_ratio, betas=d_betas, fused=fused)
        # 4. State.
        self.step, self.elapsed = 0, 0.0
        self.ada = AdaptiveP(config.ada_target, config.ada_kimg, config.ada_p_init)
        self.pl_mean = torch.zeros((), device=self.device)
        self.curve: list[dict[str, float]] = []
        self.best_tensors: dict[str, torch.Tensor] | None = None  # g_ema at the best step, saved with the state
        latent_gen = torch.Generator().manual_seed(config.seed + 7)
        n, d = source_g.config.n_latent, source_g.config.style_dim
        z = torch.randn(config.eval_samples, n, d, generator=latent_gen).to(self.device)
        with torch.no_grad():
            self.eval_w = self.source_g.style.map_per_layer(z)
        # 5. What every evaluation compares against, computed once.
        self.evaluator = Evaluator(
            self.features,
            self.source_g,
            self.eval_w,
            self.holdout_sets,
            lambda model, w, k: self._render(model, w, k, model.noise("const", 1, None)),
            config,
        )
        # an evaluation is better only by more than its measured noise (models.training.transfer_eval)
        self.stopper = EarlyStopping(config.patience, config.min_delta, min(config.min_steps, config.max_steps))

    def _split_exemplars(self, exemplars: ExemplarSet) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Per branch (or the one group), the training and the held-out images [N, 3, S, S], seeded."""
        gen = torch.Generator().manual_seed(self.config.seed)
        images = exemplars.images.to(self.device)
        train_sets, holdout_sets = [], []
        for label in self.branches or [None]:
            idx = [i for i, lab in enumerate(exemplars.labels) if label is None or lab == label]
            train, held = _split(len(idx), self.config.holdout_fraction, self.config.min_holdout, gen)
            chosen = torch.tensor(idx)
            train_sets.append(images[chosen[train]])
            holdout_sets.append(images[chosen[held]])
        return train_sets, holdout_sets

    def _build_networks(self, source_g: Generator, source_d: Discriminator) -> None:
        """The frozen source, the trained copy (an attribute-aware one when there are branches; its mapping
        frozen), its EMA, one FreezeD discriminator per branch, and the source-consistency network."""
        self.source_g = copy.deepcopy(source_g).to(self.device).eval().requires_grad_(False)
        if self.branches:
            size = source_g.config.size
            attr = AttributeGeneratorConfig(
                generator=source_g.config,
                branches=tuple(self.branches),
                split_resolution=min(64, size // 2),
                default_branch=self.branches[0],
            )
            self.g: nn.Module = AttributeAwareGenerator.from_generator(self.source_g, attr)
        else:
            self.g = copy.deepcopy(self.source_g)
        self.g.to(self.device).train().requires_grad_(True)
        self.g.style.requires_grad_(False)
        self.g_ema = copy.deepcopy(self.g).eval().requires_grad_(False)
        self.ds = nn.ModuleList(copy.deepcopy(source_d) for _ in self.branches or [None]).to(self.device).train()
        self.d_params = [p for d in self.ds for p in self._freeze_d(d)]
        self.features = SourceFeatures(source_d).to(self.device)
        self.perceptual, self.lpips = "source-discriminator-features", None
        lpips_path = self.config.lpips_path
        if lpips_path and (Path(lpips_path) / "config.json").is_file():
            self.lpips = checkpoints.load(lpips_path, expected=LPIPS, device=self.device).requires_grad_(False)
            self.perceptual = "lpips-vgg"
        elif lpips_path:
            log.warning("no LPIPS checkpoint at %s; the consistency term uses %s", lpips_path, self.perceptual)
        log.info("source-consistency term: %s", self.perceptual)

    def _freeze_d(self, d: Discriminator) -> list[nn.Parameter]:
        """FreezeD: only the `freeze_d` lowest-resolution blocks and the final layers train."""
        d.requires_grad_(False)
        trainable = [*list(d.convs)[-self.config.freeze_d :], d.final_conv, d.final_linear]
        for module in trainable:
            module.requires_grad_(True)
        return [p for m in trainable for p in m.parameters()]

    # ------------------------------------------------------------------------------------- steps

    def _render(self, model: nn.Module, w: torch.Tensor, k: int, noises: list[torch.Tensor | None]) -> torch.Tensor:
        """w+ [B, L, D] → images [B, 3, S, S] through `model` (branch k of an attribute-aware one)."""
        attribute_aware = isinstance(model, AttributeAwareGenerator)
        branch_idx = torch.full((w.shape[0],), k, device=w.device) if attribute_aware else None
        return model.render(w, noises, branch_idx)

    def _render_batch(
        self, model: nn.Module, w: torch.Tensor, k: int, noises: list[torch.Tensor | None]
    ) -> torch.Tensor:
        """`_render` one micro-batch at a time (for renders without a graph)."""
        parts = [self._render(model, w[rows], k, noise_rows(noises, rows, len(w))) for rows in self._chunks(len(w))]
        return torch.cat(parts)

    def _autocast(self) -> contextlib.AbstractContextManager:
        """bf16 autocast for the training passes when the run's precision is bf16 (a no-op for fp32)."""
        enabled = self.precision == "bf16"
        return torch.autocast(device_type=self.device.type, dtype=torch.bfloat16, enabled=enabled)

    def _chunks(self, batch: int) -> list[slice]:
        """The rows of each micro-batch."""
        step = self.micro_batch or batch
        return [slice(a, min(a + step, batch)) for a in range(0, batch, step)]

    def _latents(self, n: int, rng: torch.Generator) -> torch.Tensor:
        """n fresh w+ [n, L, D]: z+ per layer through the frozen source mapping."""
        z = torch.randn(n, self.g.config.n_latent, self.g.config.style_dim, generator=rng)
        with torch.no_grad():
            return self.source_g.style.map_per_layer(to_device(z, self.device))

    def train_step(self) -> dict[str, float]:
        """One discriminator and one generator update on `batch_size` samples.

        With `micro_batch`, the generator runs `micro_batch` samples at a time while the
        discriminator always sees the whole batch (its minibatch-stddev layer mixes samples): the
        generator step renders the batch without a graph, takes the gradient of the losses with
        respect to the images, then re-renders each micro-batch with a graph and backpropagates its
        rows of that gradient (the noise inputs are drawn once, so the re-render is the same image).
        The update equals the whole-batch one up to float summation order, for one extra forward
        pass of the generator, and the generator's activation memory is that of one micro-batch.
        """
        cfg, s, batch = self.config, self.step, self.config.batch_size
        rng = torch.Generator().manual_seed(cfg.seed * 1_000_003 + s)
        k = s % len(self.ds)
        d, real_pool = self.ds[k], self.train_sets[k]
        real = sample_reals(real_pool, batch, rng, cfg.mirror_exemplars)
        w = self._latents(batch, rng)
        losses: dict[str, torch.Tensor] = {}  # read once, at the end of the step (one host synchronisation)
        # 1. Discriminator step (R1 every r1_every steps, lazily scaled).
        self._d_step(d, real, w, k, rng, losses)
        # 2. Generator step on fresh latents (as rosinality and FaceStylor): adversarial + source
        #    consistency (+ path length every pl_every steps, on latents of its own).
        self._g_step(d, k, rng, losses)
        # 3. EMA of the generator (StyleGAN2-ADA's ramp-up: see `ema_beta`).
        beta = ema_beta(cfg, s)
        with torch.no_grad():  # one multi-tensor kernel on CUDA
            torch._foreach_lerp_(list(self.g_ema.parameters()), list(self.g.parameters()), 1 - beta)
        self.step += 1
        return {**read_scalars(losses), "ema_beta": beta, "ada_p": self.ada.p}

    def _d_step(
        self,
        d: Discriminator,
        real: torch.Tensor,
        w: torch.Tensor,
        k: int,
        rng: torch.Generator,
        losses: dict[str, torch.Tensor],
    ) -> None:
        """One update of discriminator `d` (of branch `k`) on `real` against renders of `w`; its losses
        into `losses`; the ADA probability observed and adjusted."""
        cfg, s, batch = self.config, self.step, self.config.batch_size
        for p in self.d_params:
            p.requires_grad_(True)
        with torch.no_grad(), self._autocast():
            fake = self._render_batch(self.g, w, k, self.g.noise("random", batch, rng))
        real_in = real.detach().requires_grad_(s % cfg.r1_every == 0)
        with self._autocast():
            real_logits = d(augment(real_in, self.ada.p, rng)).float()
            fake_logits = d(augment(fake, self.ada.p, rng)).float()
        loss = d_loss(real_logits, fake_logits, cfg.loss)
        losses["d"] = loss.detach()
        if s % cfg.r1_every == 0:
            r1 = r1_penalty(real_logits, real_in)
            loss = loss + cfg.r1_gamma / 2 * r1 * cfg.r1_every
            losses["r1"] = r1.detach()
        self.d_opt.zero_grad(set_to_none=True)
        loss.backward()
        self.d_opt.step()
        self.ada.observe(real_logits)
        if (s + 1) % cfg.ada_every == 0:
            self.ada.update(batch * cfg.ada_every)

    def _g_step(self, d: Discriminator, k: int, rng: torch.Generator, losses: dict[str, torch.Tensor]) -> None:
        """One update of the generator against `d` (branch `k`), whole or in micro-batches (see
        `train_step`); its losses into `losses`."""
        cfg, s, batch = self.config, self.step, self.config.batch_size
        for p in self.d_params:
            p.requires_grad_(False)
        w = self._latents(batch, rng)
        noise = self.g.noise("random", batch, rng)  # the same noise for source and target
        self.g_opt.zero_grad(set_to_none=True)
        if self.micro_batch is None or self.micro_batch >= batch:
            with self._autocast():
                objective = self._g_objective(self._render(self.g, w, k, noise), w, noise, d, rng, losses)
            objective.backward()
        else:
            with torch.no_grad(), self._autocast():
                fake = self._render_batch(self.g, w, k, noise)
            fake.requires_grad_(True)
            with self._autocast():
                objective = self._g_objective(fake, w, noise, d, rng, losses)
            (grad,) = torch.autograd.grad(objective, fake)
            for rows in self._chunks(batch):
                with self._autocast():
                    part = self._render(self.g, w[rows], k, noise_rows(noise, rows, batch))
                part.backward(grad[rows].to(part.dtype))
        if cfg.pl_weight > 0 and s % cfg.pl_every == 0:
            shrunk = max(1, batch // cfg.pl_batch_shrink)
            losses["pl"] = self._path_length_step(self._latents(shrunk, rng), k, rng)
        self.g_opt.step()

    def _g_objective(
        self,
        fake: torch.Tensor,
        w: torch.Tensor,
        noise: list[torch.Tensor | None],
        d: Discriminator,
        rng: torch.Generator,
        losses: dict[str, torch.Tensor],
    ) -> torch.Tensor:
        """The generator's loss on its images `fake` [B, 3, S, S]: adversarial + source consistency."""
        cfg = self.config
        loss = g_loss(d(augment(fake, self.ada.p, rng)).float(), cfg.loss)
        losses["g"] = loss.detach()
        if cfg.perceptual_weight > 0:
            with torch.no_grad():
                source = self._render_batch(self.source_g, w, 0, noise)
            if self.lpips is not None:  # on ≤ 256 px, as FaceStylor (avg-pooled)
                side = min(256, fake.shape[-1])
                perc = self.lpips(downsample_to(source, side), downsample_to(fake, side)).mean()
            else:
                perc = self.features.distance(source, fake)
            loss = loss + cfg.perceptual_weight * perc.float()
            losses["perceptual"] = perc.detach().float()
        return loss

    def _path_length_step(self, w: torch.Tensor, k: int, rng: torch.Generator) -> torch.Tensor:
        """Accumulate the lazy path-length gradient on latents `w` [batch/pl_batch_shrink, L, D]; returns
        the penalty (a scalar on the device) and updates the running mean.

        The penalty is measured against the running mean *before* this step's update (rosinality uses
        the updated one: they differ by pl_decay·(mean length − running mean), 1 % of it), which is
        what lets micro-batches backpropagate without waiting for the other micro-batches' lengths.
        """
        cfg = self.config
        shrunk = len(w)
        size = self.g.config.size
        noise = self.g.noise("random", shrunk, rng)
        projection = path_projection((shrunk, 3, size, size), rng)
        lengths = []
        for rows in self._chunks(shrunk):
            w_pl = w[rows].detach().requires_grad_(True)
            chunk = path_lengths(self._render(self.g, w_pl, k, noise_rows(noise, rows, shrunk)), w_pl, projection[rows])
            penalty_sum = (chunk - self.pl_mean).pow(2).sum()  # the per-sample terms are independent
            (cfg.pl_weight * cfg.pl_every * penalty_sum / shrunk).backward()
            lengths.append(chunk.detach())
        all_lengths = torch.cat(lengths)
        penalty_value = (all_lengths - self.pl_mean).pow(2).mean()
        self.pl_mean = self.pl_mean + cfg.pl_decay * (all_lengths.mean() - self.pl_mean)
        return penalty_value

    # -------------------------------------------------------------------------------- evaluation

    def evaluate(self) -> dict[str, Any]:
        """The EMA generator's score now, with its terms (`models.training.transfer_eval`)."""
        result = self.evaluator.evaluate(self.g_ema, self.ds, self.train_sets, self.holdout_sets)
        return {"step": self.step, **result, "ada_p": self.ada.p}

    # ------------------------------------------------------------------------------ persistence

    def save_state(self) -> None:
        """Checkpoint everything needed to resume (safetensors + JSON), atomically enough: the JSON,
        written last, names the step the tensors belong to."""
        folder = self.out_dir / STATE_DIR
        folder.mkdir(parents=True, exist_ok=True)
        tensors = {}
        for name, module in (("g", self.g), ("g_ema", self.g_ema), ("d", self.ds)):
            tensors.update({f"{name}.{k}": v for k, v in checkpoints.model_tensors(module).items()})
        meta: dict[str, Any] = {}
        for name, opt in (("g_opt", self.g_opt), ("d_opt", self.d_opt)):
            t, m = _flatten_optimizer(name, opt)
            tensors.update(t)
            meta[name] = m
        tensors["pl_mean"] = self.pl_mean.detach().cpu().reshape(1).clone()
        if self.best_tensors is not None:  # the best generator travels with the state it belongs to
            tensors.update({f"best.{k}": v for k, v in self.best_tensors.items()})
        tmp = folder / ".tensors.safetensors.tmp"
        save_file(tensors, str(tmp))
        tmp.replace(folder / "tensors.safetensors")
        meta.update(
            {
                "step": self.step,
                "elapsed": self.elapsed,
                "ada_p": self.ada.p,
                "curve": self.curve,
                "stopper": asdict(self.stopper),
                "config": self.config.to_dict(),
                "branches": self.branches,
            }
        )
        atomic_write_bytes(folder / "state.json", json.dumps(meta).encode())

    def load_state(self) -> bool:
        folder = self.out_dir / STATE_DIR
        if not (folder / "state.json").is_file():
            return False
        meta = json.loads((folder / "state.json").read_text())
        if meta["config"] != self.config.to_dict() or meta["branches"] != self.branches:
            raise ValueError(f"{folder}: a checkpoint of a different configuration; remove it to start afresh")
        tensors = load_file(str(folder / "tensors.safetensors"), device=str(self.device))
        for name, module in (("g", self.g), ("g_ema", self.g_ema), ("d", self.ds)):
            sub = {k[len(name) + 1 :]: v for k, v in tensors.items() if k.startswith(f"{name}.")}
            module.load_state_dict({k: v for k, v in sub.items() if k in module.state_dict()}, strict=True)
            if "latent_avg" in sub and hasattr(module, "latent_avg"):
                module.latent_avg.copy_(sub["latent_avg"])
        for name, opt in (("g_opt", self.g_opt), ("d_opt", self.d_opt)):
            opt.load_state_dict(_unflatten_optimizer(name, tensors, meta[name]))
        self.pl_mean = tensors["pl_mean"].reshape(())
        self.step, self.elapsed, self.ada.p, self.curve = meta["step"], meta["elapsed"], meta["ada_p"], meta["curve"]
        self.stopper = EarlyStopping(**meta["stopper"])
        best = {k[len("best.") :]: v.cpu() for k, v in tensors.items() if k.startswith("best.")}
        self.best_tensors = best or None
        if self.best_tensors is not None:
            self.write_best_dir()  # best/ as the state says (a crash may have left a later one)
        return True

    def save_best(self) -> None:
        """Keep the EMA generator as the best so far: saved with the training state in one unit (a
        resumed run then publishes the weights of the best step it reports), then written to best/
        (what previews read)."""
        self.best_tensors = checkpoints.model_tensors(self.g_ema)
        self.save_state()
        self.write_best_dir()

    def best_model(self) -> nn.Module:
        """A CPU copy of the generator with the best weights."""
        model = copy.deepcopy(self.g_ema).cpu()
        if self.best_tensors is not None:
            model.load_state_dict({k: v for k, v in self.best_tensors.items() if k in model.state_dict()})
        return model

    def write_best_dir(self) -> None:
        provenance = Provenance(source="transfer-learning", license="see source")
        checkpoints.save(self.out_dir / BEST_DIR, self.best_model(), provenance)


def _flatten_optimizer(name: str, opt: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict]:
    sd = opt.state_dict()
    tensors, scalars = {}, {}
    for idx, state in sd["state"].items():
        for key, value in state.items():
            if torch.is_tensor(value):
                tensors[f"{name}.{idx}.{key}"] = value.detach().cpu().contiguous().clone()
            else:
                scalars[f"{idx}.{key}"] = value
    return tensors, {"param_groups": sd["param_groups"], "scalars": scalars, "indices": list(sd["state"])}


def _unflatten_optimizer(name: str, tensors: dict[str, torch.Tensor], meta: dict) -> dict:
    state: dict[int, dict[str, Any]] = {int(i): {} for i in meta["indices"]}
    for key, value in tensors.items():
        if key.startswith(f"{name}."):
            idx, field_name = key[len(name) + 1 :].split(".", 1)
            state[int(idx)][field_name] = value
    for key, value in meta["scalars"].items():
        idx, field_name = key.split(".", 1)
        state[int(idx)][field_name] = value
    return {"state": state, "param_groups": meta["param_groups"]}

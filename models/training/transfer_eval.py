"""Scoring a transfer-learning run, and stopping it early (AgileGAN §4, our addition to the recipe).

Every `eval_every` steps the EMA generator renders fixed latents, and three terms are measured in the
frozen source discriminator's feature space, each on a scale of its own run (lower is better):

    style       = KID(generated, held-out exemplars) / KID(source renders, held-out exemplars)
                  1 at step 0 (nothing learned), 0 when the renders match the held-out exemplars
    overfit     = relu(mean D(train exemplars) − mean D(held-out exemplars))       (D logits)
                  the discriminator telling the images it trains on from the ones it never saw
    consistency = distance(source G(w), target G(w)) / distance(source G(w), held-out exemplars)
                  0 while the portrait is unchanged, about 1 when a render is as far from its
                  source portrait as an exemplar is

    score = style + score_overfit_weight · overfit + score_consistency_weight · consistency

(The raw terms lived on unrelated scales: KID of unnormalised polynomial kernels and feature
distances, so once KID neared 0 the consistency term was 99.9 % of the score.) Each evaluation
reports the raw values, the references and each term's contribution. The source renders, their
features and the references are computed once per run.

KID from a few dozen renders and a few held-out exemplars is noisy, so an evaluation counts as better
only when its score beats the best by more than its noise (`score_noise`): the standard deviation of
the style term between disjoint quarters of this evaluation's renders, scaled to the whole set
(KID's variance falls as 1/n). It is measured at every evaluation, because KID's spread shrinks as the
renders approach the exemplars (at step 0 it is largest). Without it, any decrease reset patience.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from models.networks.discriminator import Discriminator
from models.training.metrics import SourceFeatures, kid
from service.portrait.configs import TransferConfig

EVAL_CHUNK = 8  # images per network pass in evaluation: 64 images at 1024 px at once need tens of GB
MIN_REFERENCE = 1e-8  # a reference this small (exemplars indistinguishable from source portraits) is clamped


@dataclass
class EarlyStopping:
    """Tracks the best (lowest) score; `should_stop` after `patience` evaluations without improvement.

    Evaluations before step `min_steps` are reported but neither become the best nor count against
    patience (Keras' `start_from_epoch`): in the first hundreds of steps the style term moves less than
    its noise while the consistency term is lowest for the least-changed model, so without the
    warm-up an untrained generator won (bench/learning.py published step 100 of a run whose later
    steps matched the style twice as well)."""

    patience: int
    min_delta: float = 0.0
    min_steps: int = 0
    best: float = math.inf
    best_step: int = -1
    bad: int = 0

    def eligible(self, step: int) -> bool:
        return step >= self.min_steps

    def update(self, score: float, step: int, noise: float = 0.0) -> bool:
        """Whether `score` beats the best by more than max(min_delta, noise); counts patience if not.
        Before `min_steps`: False, and patience is not counted."""
        if not self.eligible(step):
            return False
        if score < self.best - max(self.min_delta, noise):
            self.best, self.best_step, self.bad = score, step, 0
            return True
        self.bad += 1
        return False

    def accept(self, score: float, step: int) -> None:
        """Take `score` at `step` as the best, whatever it is (a run that ends with no eligible one)."""
        self.best, self.best_step, self.bad = score, step, 0

    @property
    def should_stop(self) -> bool:
        return self.bad >= self.patience


# (model, w+ [B, L, D], branch index) → images [B, 3, S, S] with constant noise
Render = Callable[[nn.Module, torch.Tensor, int], torch.Tensor]


class Evaluator:
    """The fixed part of every evaluation of one run: latents, source renders and features, held-out
    features, and the normalisation references (see the module docs)."""

    def __init__(
        self,
        features: SourceFeatures,
        source_g: nn.Module,
        eval_w: torch.Tensor,  # [N, L, D] fixed w+ latents
        holdout_sets: list[torch.Tensor],  # per branch [M_k, 3, S, S]
        render: Render,
        config: TransferConfig,
    ) -> None:
        self.features, self.eval_w, self.render, self.config = features, eval_w, render, config
        with torch.no_grad():
            self.holdout_feats = [self.embed(h) for h in holdout_sets]
            source = [render(source_g, w, 0) for w in eval_w.split(EVAL_CHUNK)]
            self.source_maps = [features.normalized_maps(s) for s in source]
            source_feats = torch.cat([features.embed(s) for s in source])
            self.kid_refs = [max(kid(source_feats, h), MIN_REFERENCE) for h in self.holdout_feats]
            held = holdout_sets[0]
            reference = 0.0
            for i, chunk in enumerate(source):  # each source render against a held-out exemplar
                rows = torch.arange(i * EVAL_CHUNK, i * EVAL_CHUNK + len(chunk)) % len(held)
                reference += float(features.distance(chunk, held[rows])) * len(chunk)
            self.consistency_ref = max(reference / len(eval_w), MIN_REFERENCE)

    @torch.no_grad()
    def embed(self, images: torch.Tensor) -> torch.Tensor:
        """[N, 3, S, S] → source-D features [N, F], EVAL_CHUNK images at a time."""
        return torch.cat([self.features.embed(c) for c in images.split(EVAL_CHUNK)])

    @torch.no_grad()
    def evaluate(
        self,
        g_ema: nn.Module,
        discriminators: nn.ModuleList,
        train_sets: list[torch.Tensor],
        holdout_sets: list[torch.Tensor],
    ) -> dict[str, object]:
        """The score of `g_ema` now, with its terms (see the module docs)."""
        cfg = self.config
        styles, gaps, consistency, noises = [], [], 0.0, []
        for k, d in enumerate(discriminators):
            chunks = [self.render(g_ema, w, k) for w in self.eval_w.split(EVAL_CHUNK)]
            feats = torch.cat([self.features.embed(c) for c in chunks])
            styles.append(kid(feats, self.holdout_feats[k]))
            noises.append(style_noise(feats, self.holdout_feats[k], self.kid_refs[k]))
            if k == 0:  # branch 0's renders against the cached source maps
                consistency = sum(
                    float(self.features.distance_to(maps, c)) * len(c) for maps, c in zip(self.source_maps, chunks)
                ) / len(self.eval_w)
            d.eval()
            gaps.append(_mean_logit(d, train_sets[k]) - _mean_logit(d, holdout_sets[k]))
            d.train()
        style = sum(s / ref for s, ref in zip(styles, self.kid_refs)) / len(styles)
        gap = sum(gaps) / len(gaps)
        terms = {
            "style": style,
            "overfit": cfg.score_overfit_weight * max(gap, 0.0),
            "consistency": cfg.score_consistency_weight * consistency / self.consistency_ref,
        }
        return {
            "score": sum(terms.values()),
            "terms": terms,
            "kid": sum(styles) / len(styles),
            "kid_reference": sum(self.kid_refs) / len(self.kid_refs),
            "overfit_gap": gap,
            "consistency": consistency,
            "consistency_reference": self.consistency_ref,
            "score_noise": sum(noises) / len(noises) / len(noises) ** 0.5,  # of the branch mean
        }


NOISE_PARTS = 4


def style_noise(features: torch.Tensor, holdout_feats: torch.Tensor, ref: float) -> float:
    """The standard deviation of one branch's normalised style term: KID of disjoint quarters of
    `features` [N, F] against the held-out features, its spread across quarters scaled to N samples
    (÷ √NOISE_PARTS); 0 when there are too few renders to split."""
    size = len(features) // NOISE_PARTS
    if size < 2:
        return 0.0
    parts = [kid(features[i * size : (i + 1) * size], holdout_feats) / ref for i in range(NOISE_PARTS)]
    return float(torch.tensor(parts).std()) / NOISE_PARTS**0.5


def _mean_logit(d: Discriminator, images: torch.Tensor) -> float:
    """Mean D logit over [N, 3, S, S], EVAL_CHUNK images per pass (the minibatch-stddev groups stay within
    a chunk)."""
    return float(torch.cat([d(c) for c in images.split(EVAL_CHUNK)]).mean())

"""Choosing the attribute branch for `attribute=auto`: a linear classifier on the inverted latent.

The HVAE encoder already maps a face to w+; the attribute (the official code's gender) is close to
linear in W (InterFaceGAN). So the classifier is a softmax regression on the layer-averaged w+,
standardised by statistics stored with it, fitted by `fit_classifier` from labelled photos
(`agilegan fit-attribute-classifier`) and kept in the registry at `base/attribute-classifier`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from service.portrait.configs import AttributeClassifierConfig


class AttributeClassifier(nn.Module):
    def __init__(self, config: AttributeClassifierConfig) -> None:
        super().__init__()
        self.config = config
        self.linear = nn.Linear(config.style_dim, len(config.labels))
        self.register_buffer("mean", torch.zeros(config.style_dim))
        self.register_buffer("std", torch.ones(config.style_dim))

    def forward(self, wplus: torch.Tensor) -> torch.Tensor:
        """w+ [B, L, D] (or w [B, D]) → logits [B, n_labels]."""
        w = wplus.mean(1) if wplus.ndim == 3 else wplus
        return self.linear((w - self.mean) / self.std)

    @torch.no_grad()
    def predict(self, wplus: torch.Tensor, allowed: tuple[str, ...] | None = None) -> tuple[str, float]:
        """The most likely label of one sample, among `allowed` when given; (label, probability)."""
        logits = self(wplus[:1]).float()[0]
        labels = self.config.labels
        keep = [i for i, label in enumerate(labels) if allowed is None or label in allowed]
        if not keep:
            raise ValueError(f"none of {allowed} is a label of this classifier ({labels})")
        probs = F.softmax(logits[keep], dim=0)
        best = int(probs.argmax())
        return labels[keep[best]], float(probs[best])


def fit_classifier(
    wplus: torch.Tensor, labels: list[str], steps: int = 300, weight_decay: float = 1e-3, seed: int = 0
) -> tuple[AttributeClassifier, float]:
    """Fit on w+ [N, L, D] with one label per sample; returns (classifier, training accuracy)."""
    names = tuple(sorted(set(labels)))
    config = AttributeClassifierConfig(labels=names, style_dim=wplus.shape[-1])
    torch.manual_seed(seed)
    model = AttributeClassifier(config)
    features = wplus.mean(1).float()
    model.mean.copy_(features.mean(0))
    model.std.copy_(features.std(0).clamp_min(1e-6) if len(features) > 1 else torch.ones_like(model.std))
    target = torch.tensor([names.index(label) for label in labels])
    optimizer = torch.optim.LBFGS(model.linear.parameters(), max_iter=steps, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = F.cross_entropy(model(features), target) + weight_decay * model.linear.weight.pow(2).sum()
        loss.backward()
        return loss

    optimizer.step(closure)
    with torch.no_grad():
        accuracy = float((model(features).argmax(1) == target).float().mean())
    return model.eval(), accuracy

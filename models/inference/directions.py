"""Latent directions in a base generator's w space, and editing w+ with them (AgileGAN §6, editing).

A style generator is transfer-learned from the FFHQ generator through the same z+ → w+ path (the
frozen source mapping), so a direction found in that w space (older, smiling, head turned) edits the
*stylized* portrait too. Three ways to get directions:

- **SeFa** (Shen & Zhou 2021; genforce/sefa's `factorize_weight` on the rosinality layout): the
  style-modulation weight of every synthesis conv (`conv1`, `convs.N`; not ToRGB) as rows
  [in_channels, D], stacked into A, each row scaled to unit L2 norm; the directions are the
  eigenvectors of AᵀA [D, D] by descending eigenvalue, unit norm, sign fixed so that the component
  of largest magnitude is positive. No data needed.
- **Supervised** (InterFaceGAN, Shen et al. 2020): inverted photos of two classes; a linear
  classifier on w per layer and pooled over layers; its unit normal is the direction
  (`fit_direction`).
- **Imported**: a [D] or [L, D] array from elsewhere (`from_array`).

Every set records the *w space* it lives in: `w_space`, the fingerprint of the mapping network that
produced it (`service.portrait.checkpoint_files.w_space_id`). An edit is refused for a style served through an
encoder whose mapping has another fingerprint: the same numbers mean nothing there.

Editing (`apply_edits`): w'[l] = w[l] + α·d (d[l] for per-layer directions) for l in the edit's
layers (default: the set's recommended layers; all when it has none). The files are `.npz`
(numpy, no pickle): `directions` [K, D] or [K, L, D], `layers` (recommended w+ indices),
`eigenvalues` [K] (SeFa) and `meta` (JSON: name, kind, w_space, alpha range, format version, …).
"""

from __future__ import annotations

import dataclasses
import io
import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from service.portrait.index_spec import parse_indices

FORMAT_VERSION = 1
KINDS = ("sefa", "supervised", "imported")
DEFAULT_RANGE = (-5.0, 5.0)  # |α| beyond this leaves the w distribution: artefacts, not edits


class DirectionError(ValueError):
    """A direction file or edit that cannot be used; the message says why."""


@dataclasses.dataclass(frozen=True)
class DirectionSet:
    """K directions in one w space. vectors: [K, D] (every layer alike) or [K, L, D] (per layer)."""

    name: str
    kind: str
    vectors: np.ndarray
    w_space: str
    layers: tuple[int, ...] = ()  # recommended w+ indices; () = all
    alpha_range: tuple[float, float] = DEFAULT_RANGE
    eigenvalues: np.ndarray | None = None  # SeFa: [K], descending
    info: dict[str, Any] = dataclasses.field(default_factory=dict)  # e.g. a fit's accuracies

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise DirectionError(f"kind must be one of {KINDS}, got {self.kind!r}")
        if self.vectors.ndim not in (2, 3) or len(self.vectors) == 0:
            raise DirectionError(f"directions must be [K, D] or [K, L, D], got {list(self.vectors.shape)}")
        if not np.isfinite(self.vectors).all():
            raise DirectionError("directions hold non-finite values")
        low, high = self.alpha_range
        if not low < 0 < high:
            raise DirectionError(f"the alpha range must contain 0, got {self.alpha_range}")

    @property
    def style_dim(self) -> int:
        return int(self.vectors.shape[-1])

    def meta(self) -> dict[str, Any]:
        """What the service lists (JSON, no arrays)."""
        return {
            "format_version": FORMAT_VERSION,
            "name": self.name,
            "kind": self.kind,
            "count": len(self.vectors),
            "style_dim": self.style_dim,
            "per_layer": self.vectors.ndim == 3,
            "n_layers": int(self.vectors.shape[1]) if self.vectors.ndim == 3 else None,
            "w_space": self.w_space,
            "layers": list(self.layers),
            "alpha_range": list(self.alpha_range),
            "info": self.info,
        }

    def save(self, path: Path) -> Path:
        """Write the `.npz` (atomically: a temporary file, then a rename)."""
        arrays: dict[str, np.ndarray] = {
            "directions": self.vectors.astype(np.float32),
            "layers": np.asarray(self.layers, dtype=np.int64),
            "meta": np.asarray(json.dumps(self.meta())),
        }
        if self.eigenvalues is not None:
            arrays["eigenvalues"] = self.eigenvalues.astype(np.float64)
        buffer = io.BytesIO()
        np.savez(buffer, **arrays)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_bytes(buffer.getvalue())
        tmp.replace(path)
        return path


def load(path: Path) -> DirectionSet:
    """Read a `.npz` written by `DirectionSet.save` (no pickle)."""
    try:
        with np.load(path, allow_pickle=False) as data:
            meta = json.loads(str(data["meta"]))
            vectors = np.asarray(data["directions"], dtype=np.float32)
            layers = tuple(int(i) for i in data["layers"])
            eigenvalues = np.asarray(data["eigenvalues"]) if "eigenvalues" in data else None
    except (OSError, KeyError, ValueError) as e:
        raise DirectionError(f"{path}: not a direction file ({e})") from e
    if meta.get("format_version", 0) > FORMAT_VERSION:
        raise DirectionError(f"{path}: format_version {meta['format_version']} is newer than this release reads")
    return DirectionSet(
        name=meta["name"],
        kind=meta["kind"],
        vectors=vectors,
        w_space=meta["w_space"],
        layers=layers,
        alpha_range=tuple(meta.get("alpha_range", DEFAULT_RANGE)),
        eigenvalues=eigenvalues,
        info=meta.get("info", {}),
    )


# ----------------------------------------------------------------------------------------- SeFa


def conv_layers(n_latent: int) -> list[tuple[str, int]]:
    """(state-dict prefix, the w+ index it reads) of every synthesis conv of the rosinality layout:
    `conv1` reads w+[0], `convs.i` reads w+[i + 1] (the ToRGB layers read the odd ones between)."""
    n_convs = n_latent - 2  # n_latent = 2·log2(size) − 2; conv1 + convs.0 … convs.(n−3)
    return [("conv1.conv", 0)] + [(f"convs.{i}.conv", i + 1) for i in range(n_convs)]


def sefa(
    state: dict[str, torch.Tensor], n_latent: int, layers: Sequence[int] | None = None, k: int = 5
) -> tuple[np.ndarray, np.ndarray, tuple[int, ...]]:
    """SeFa on a generator's state dict: (directions [K, D], eigenvalues [K], the w+ indices used).

    `layers`: only the convs reading these w+ indices (None: every conv). See the module docs."""
    chosen = [(prefix, i) for prefix, i in conv_layers(n_latent) if layers is None or i in set(layers)]
    if not chosen:
        raise DirectionError(f"no synthesis conv reads the w+ indices {list(layers or [])}")
    rows = torch.cat([state[f"{prefix}.modulation.weight"].double() for prefix, _ in chosen])  # [Σ in, D]
    rows = rows / rows.norm(dim=1, keepdim=True)
    values, vectors = torch.linalg.eigh(rows.T @ rows)  # ascending, columns
    order = torch.argsort(values, descending=True)[: max(1, min(k, len(values)))]
    directions = vectors[:, order].T  # [K, D], unit norm
    top = directions.abs().argmax(dim=1)
    signs = torch.sign(directions[torch.arange(len(directions)), top])
    directions = directions * signs[:, None]
    return directions.float().numpy(), values[order].numpy(), tuple(i for _, i in chosen)


def parse_layers(spec: str | None, n_latent: int) -> tuple[int, ...] | None:
    """ "all"/None → None; "A-B" → (A, …, B); "3" → (3,); "1,4-5" → (1, 4, 5); indices must be < n_latent."""
    if spec is None or spec == "all":
        return None
    try:
        return tuple(parse_indices(spec, n_latent))
    except ValueError as e:
        raise DirectionError(
            f"layers must look like 'all', '4', '0-3' or '0-3,8' (w+ indices 0…{n_latent - 1}): {e}"
        ) from e


# ----------------------------------------------------------------------------------- supervised


@dataclasses.dataclass(frozen=True)
class Fit:
    """A supervised direction: the pooled unit normal, per-layer normals and held-out accuracies."""

    direction: np.ndarray  # [D]
    per_layer: np.ndarray  # [L, D]
    accuracy: float  # held-out, pooled
    layer_accuracy: list[float]  # held-out, per layer
    recommended: tuple[int, ...]


def fit_direction(
    positive: torch.Tensor, negative: torch.Tensor, holdout: float = 0.25, seed: int = 0, l2: float = 1e-4
) -> Fit:
    """InterFaceGAN on inverted latents: positive [P, L, D] and negative [N, L, D] w+ codes.

    Per layer l, logistic regression (L2-regularised, features standardised) on w[:, l]; pooled: the
    same on every layer's codes at once (one direction for all layers). The normal is mapped back to
    w space (÷ the standard deviation) and scaled to unit norm, signed so positive is +. Accuracy is
    measured on a held-out `holdout` fraction of each class; the recommended layers are those whose
    held-out accuracy beats chance by two standard errors and by at least half the best layer's gain
    over chance (none, i.e. all layers, when no layer beats chance).
    """
    if positive.ndim != 3 or negative.ndim != 3 or positive.shape[1:] != negative.shape[1:]:
        raise DirectionError("positive and negative codes must both be [N, L, D] with the same L and D")
    if min(len(positive), len(negative)) < 4:
        raise DirectionError("a direction needs at least 4 examples of each class")
    gen = torch.Generator().manual_seed(seed)
    splits = [_split(len(x), holdout, gen) for x in (positive, negative)]
    train = [x[s[0]] for x, s in zip((positive, negative), splits)]
    test = [x[s[1]] for x, s in zip((positive, negative), splits)]
    n_layers = positive.shape[1]

    def fit(layer: slice) -> tuple[np.ndarray, float]:
        xs = torch.cat([t[:, layer].reshape(-1, positive.shape[2]) for t in train]).double()
        per = train[0][:, layer].reshape(-1, positive.shape[2]).shape[0]
        ys = torch.cat([torch.ones(per), torch.zeros(len(xs) - per)]).double()
        normal, bias, mean, std = _logistic(xs, ys, l2)
        xt = torch.cat([t[:, layer].reshape(-1, positive.shape[2]) for t in test]).double()
        per_t = test[0][:, layer].reshape(-1, positive.shape[2]).shape[0]
        yt = torch.cat([torch.ones(per_t), torch.zeros(len(xt) - per_t)]).double()
        predicted = (((xt - mean) / std) @ normal + bias) > 0
        accuracy = float((predicted.double() == yt).double().mean())
        direction = normal / std
        return (direction / direction.norm()).float().numpy(), accuracy

    pooled, accuracy = fit(slice(None))
    layer_fits = [fit(slice(i, i + 1)) for i in range(n_layers)]
    accuracies = [a for _, a in layer_fits]
    n_test = sum(len(t) for t in test)
    floor = max(0.5 + 2 * (0.25 / n_test) ** 0.5, 0.5 + (max(accuracies) - 0.5) / 2)
    recommended = tuple(i for i, a in enumerate(accuracies) if a >= floor)
    return Fit(pooled, np.stack([d for d, _ in layer_fits]), accuracy, accuracies, recommended)


def _split(n: int, fraction: float, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    order = torch.randperm(n, generator=gen)
    held = min(max(1, round(n * fraction)), n - 2)
    return order[held:], order[:held]


def _logistic(
    x: torch.Tensor, y: torch.Tensor, l2: float, steps: int = 200
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(normal, bias, mean, std) of an L2-regularised logistic regression on standardised x [N, D]."""
    mean, std = x.mean(0), x.std(0).clamp_min(1e-8)
    z = (x - mean) / std
    w = torch.zeros(x.shape[1], dtype=x.dtype, requires_grad=True)
    b = torch.zeros((), dtype=x.dtype, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], lr=1.0, max_iter=steps, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = torch.nn.functional.binary_cross_entropy_with_logits(z @ w + b, y) + l2 * w.pow(2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    return w.detach(), b.detach(), mean, std


# --------------------------------------------------------------------------------------- import


def from_array(
    array: np.ndarray, name: str, w_space: str, layers: Iterable[int] = (), alpha_range=DEFAULT_RANGE
) -> DirectionSet:
    """An imported direction: [D] or [L, D] (one direction), scaled to unit norm (per layer for [L, D])."""
    array = np.asarray(array, dtype=np.float32)
    if array.ndim not in (1, 2):
        raise DirectionError(f"an imported direction is [D] or [L, D], got {list(array.shape)}")
    norms = np.linalg.norm(array, axis=-1, keepdims=True)
    if not np.isfinite(array).all() or (norms == 0).any():
        raise DirectionError("an imported direction must be finite and non-zero")
    return DirectionSet(name, "imported", (array / norms)[None], w_space, tuple(layers), tuple(alpha_range))


# -------------------------------------------------------------------------------------- editing


@dataclasses.dataclass(frozen=True)
class Edit:
    """One edit: direction `index` of `directions`, strength `alpha`, on `layers` (None: the set's
    recommended layers, or all)."""

    directions: DirectionSet
    alpha: float
    index: int = 0
    layers: tuple[int, ...] | None = None

    def check(self, n_latent: int, style_dim: int, w_space: str | None = None) -> None:
        """Raise DirectionError unless this edit can apply to w+ [*, n_latent, style_dim] of `w_space`."""
        d = self.directions
        if w_space is not None and d.w_space != w_space:
            raise DirectionError(
                f"direction {d.name!r} was fitted in another w space ({d.w_space}) than this style's ({w_space})"
            )
        if d.style_dim != style_dim:
            raise DirectionError(f"direction {d.name!r} is {d.style_dim}-d; the generator's w is {style_dim}-d")
        if d.vectors.ndim == 3 and d.vectors.shape[1] < n_latent:
            raise DirectionError(f"direction {d.name!r} has {d.vectors.shape[1]} layers; w+ has {n_latent}")
        if not 0 <= self.index < len(d.vectors):
            raise DirectionError(f"direction {d.name!r} has {len(d.vectors)} entries; no index {self.index}")
        low, high = d.alpha_range
        if not (np.isfinite(self.alpha) and low <= self.alpha <= high):
            raise DirectionError(f"alpha {self.alpha} for {d.name!r} is outside its range [{low}, {high}]")
        if any(not 0 <= i < n_latent for i in self.target_layers(n_latent)):
            raise DirectionError(f"edit layers of {d.name!r} must be w+ indices 0…{n_latent - 1}")

    def target_layers(self, n_latent: int) -> tuple[int, ...]:
        layers = self.layers if self.layers is not None else self.directions.layers
        return tuple(layers) if layers else tuple(range(n_latent))


def apply_edits(wplus: torch.Tensor, edits: Sequence[Edit]) -> torch.Tensor:
    """w+ [B, L, D] → edited w+ (a new tensor; the input is untouched): w'[l] = w[l] + α·d[l]."""
    if not edits:
        return wplus
    out = wplus.clone()
    n_latent = wplus.shape[1]
    for edit in edits:
        edit.check(n_latent, wplus.shape[2])
        vector = torch.from_numpy(edit.directions.vectors[edit.index]).to(out.device, out.dtype)
        for layer in edit.target_layers(n_latent):
            out[:, layer] += edit.alpha * (vector[layer] if vector.ndim == 2 else vector)
    return out

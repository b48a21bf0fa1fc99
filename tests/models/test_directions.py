"""Latent directions (models/inference/directions.py): SeFa against an independent numpy implementation, the
supervised fit recovering a planted direction, edits by the formula, and the file format."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from models.inference.directions import (
    DirectionError,
    DirectionSet,
    Edit,
    apply_edits,
    fit_direction,
    from_array,
    load,
    parse_layers,
    sefa,
)
from models.networks.stylegan2 import Generator
from service.portrait.configs import GeneratorConfig
from tests.conftest import seeded
from tests.seeded_weights import rosinality_weights


def numpy_sefa(state: dict[str, torch.Tensor], convs: list[str], k: int) -> tuple[np.ndarray, np.ndarray]:
    """The definition, written independently: genforce/sefa's factorize_weight (columns of Aᵀ scaled to
    unit norm, eigen-decomposition of AᵀA with np.linalg.eig), sorted by descending eigenvalue."""
    weight = np.concatenate([state[c].numpy().astype(np.float64).T for c in convs], axis=1)  # [D, Σ in]
    weight = weight / np.linalg.norm(weight, axis=0, keepdims=True)
    values, vectors = np.linalg.eig(weight.dot(weight.T))
    values, vectors = values.real, vectors.real.T
    order = np.argsort(-values)[:k]
    return vectors[order], values[order]


@pytest.mark.parametrize(
    ("size", "spec", "convs"),
    [
        (256, "all", None),
        (256, "0-3", ["conv1.conv", "convs.0.conv", "convs.1.conv", "convs.2.conv"]),
        (256, "5-8", ["convs.4.conv", "convs.5.conv", "convs.6.conv", "convs.7.conv"]),
    ],
)
def test_sefa_matches_an_independent_numpy_implementation(size: int, spec: str, convs: list[str] | None) -> None:
    state = rosinality_weights(size, 11)
    n_latent = GeneratorConfig(size=size).n_latent
    if convs is None:  # every synthesis conv, no ToRGB
        convs = ["conv1.conv"] + [f"convs.{i}.conv" for i in range(n_latent - 2)]
    ours, values, used = sefa(state, n_latent, parse_layers(spec, n_latent), k=5)
    theirs, their_values = numpy_sefa(state, [f"{c}.modulation.weight" for c in convs], 5)
    cosines = np.abs((ours * theirs).sum(1))
    assert ours.shape == (5, 512) and (cosines >= 0.999).all(), cosines
    assert np.allclose(values, their_values, rtol=1e-6) and (np.diff(values) <= 0).all()
    assert np.allclose(np.linalg.norm(ours, axis=1), 1, atol=1e-5)
    assert (ours[np.arange(5), np.abs(ours).argmax(1)] > 0).all()  # the sign convention
    assert len(used) == len(convs)


def test_layer_specs() -> None:
    assert parse_layers("all", 14) is None and parse_layers("2", 14) == (2,)
    assert parse_layers("0-2,8", 14) == (0, 1, 2, 8)
    for bad in ("3-1", "x", "0-14", "-1"):
        with pytest.raises(DirectionError):
            parse_layers(bad, 14)


def test_the_supervised_fit_recovers_a_planted_direction() -> None:
    """w from a real (tiny) mapping, labelled by the sign of a known direction; the fit finds it."""
    torch.manual_seed(4)
    g = Generator(GeneratorConfig.tiny(32)).eval()
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        w = g.style(torch.randn(1200, g.config.style_dim, generator=gen))
    planted = torch.randn(g.config.style_dim, generator=gen)
    planted = planted / planted.norm()
    side = (w - w.mean(0)) @ planted > 0
    wplus = w[:, None].expand(-1, g.n_latent, -1)
    fit = fit_direction(wplus[side], wplus[~side])
    cosine = float(torch.from_numpy(fit.direction) @ planted)
    assert cosine >= 0.95, cosine
    assert fit.accuracy > 0.9 and len(fit.layer_accuracy) == g.n_latent and fit.recommended


def test_the_fit_recommends_the_layers_that_carry_the_attribute() -> None:
    gen = torch.Generator().manual_seed(1)
    codes = torch.randn(400, 6, 16, generator=gen)
    labels = codes[:, 2:4, 0].mean(1) > 0  # only layers 2 and 3 carry it
    fit = fit_direction(codes[labels], codes[~labels])
    assert fit.recommended == (2, 3), fit.layer_accuracy
    assert abs(fit.per_layer[2][0]) > 0.9  # the normal of layer 2 is the first axis


def test_an_edit_is_the_formula_on_the_chosen_layers_only() -> None:
    g = seeded(Generator(GeneratorConfig.tiny(32)), 5).eval()
    gen = torch.Generator().manual_seed(2)
    d = torch.randn(3, g.config.style_dim, generator=gen)
    d = d / d.norm(dim=1, keepdim=True)
    directions = DirectionSet("sefa", "sefa", d.numpy(), "abc", layers=(0, 1, 2, 3))
    w = torch.randn(2, g.n_latent, g.config.style_dim, generator=gen)
    edited = apply_edits(w, [Edit(directions, 1.5, index=2), Edit(directions, -2.0, index=0, layers=(5,))])
    by_hand = w.clone()
    by_hand[:, 0:4] += 1.5 * d[2]
    by_hand[:, 5] += -2.0 * d[0]
    assert float((edited - by_hand).norm() / by_hand.norm()) <= 1e-6
    changed = (edited - w).abs().amax(dim=(0, 2)) > 0
    assert changed.tolist() == [i in (0, 1, 2, 3, 5) for i in range(g.n_latent)]
    assert torch.equal(apply_edits(w, [Edit(directions, 0.0, index=1)]), w)  # α = 0: nothing moves
    with torch.no_grad():
        assert torch.equal(g(apply_edits(w, [Edit(directions, 0.0)]), space="wplus"), g(w, space="wplus"))


def test_edits_are_checked() -> None:
    directions = DirectionSet("smile", "supervised", np.eye(1, 32, dtype=np.float32), "abc", alpha_range=(-3, 3))
    for edit, match in [
        (Edit(directions, 4.0), "outside its range"),
        (Edit(directions, float("nan")), "outside its range"),
        (Edit(directions, 1.0, index=1), "no index 1"),
        (Edit(directions, 1.0, layers=(20,)), "w\\+ indices"),
    ]:
        with pytest.raises(DirectionError, match=match):
            edit.check(8, 32, "abc")
    with pytest.raises(DirectionError, match="another w space"):
        Edit(directions, 1.0).check(8, 32, "def")
    with pytest.raises(DirectionError, match="64-d"):
        Edit(directions, 1.0).check(8, 64, "abc")


def test_direction_files_round_trip_and_imports_are_checked(tmp_path: Path) -> None:
    values = np.array([3.0, 2.0], dtype=np.float64)
    first = DirectionSet("sefa", "sefa", np.eye(2, 32, dtype=np.float32), "abc", (0, 1), eigenvalues=values)
    again = load(first.save(tmp_path / "d.npz"))
    assert again.meta() == first.meta() and np.array_equal(again.vectors, first.vectors)
    assert np.array_equal(again.eigenvalues, values)
    per_layer = from_array(np.ones((8, 32)) * 2, "age", "abc", layers=range(4))
    assert per_layer.vectors.shape == (1, 8, 32) and np.allclose(np.linalg.norm(per_layer.vectors, axis=-1), 1)
    for bad in (np.zeros(32), np.ones((2, 3, 32)), np.full(32, np.nan)):
        with pytest.raises(DirectionError):
            from_array(bad, "bad", "abc")
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(DirectionError, match="not a direction file"):
        load(tmp_path / "junk.npz")

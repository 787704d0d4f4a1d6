"""Alignment maps and transport: known answers for ridge, svd and mlp, selection, symmetry, bad input."""

from __future__ import annotations

import json
import math

import pytest
import torch

from safesteer_diffusers.build.alignment import fit_alignment

N, DS, DT = 2000, 24, 16
FAST_MLP = {"mlp_patience": 5, "mlp_warmup": 3, "mlp_epochs": 40}


def synthetic(noise: float, weight: torch.Tensor | None = None, seed: int = 0):
    """Anisotropic, off-centre source features and a linear target with Gaussian noise."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(N, DS, generator=gen) * torch.linspace(0.5, 2.0, DS) + 3.0
    if weight is None:
        weight = torch.randn(DS, DT, generator=gen) / math.sqrt(DS)
    y = x @ weight + 1.5 + noise * torch.randn(N, weight.shape[1], generator=gen)
    return x, y, weight


def cosines(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.cosine_similarity(a.double(), b.double(), dim=-1)


@pytest.fixture(scope="module")
def low_noise():
    return synthetic(noise=0.05)


@pytest.fixture(scope="module")
def fitted(low_noise):
    x, y, _ = low_noise
    return {method: fit_alignment(x, y, method, **FAST_MLP) for method in ("ridge", "svd", "mlp")}


# ---------------------------------------------------------------------- maps
@pytest.mark.parametrize("method", ["ridge", "svd", "mlp"])
def test_each_method_recovers_a_known_linear_map(fitted, low_noise, method):
    _, _, weight = low_noise
    align = fitted[method]
    v = torch.randn(10, DS, generator=torch.Generator().manual_seed(1))
    transported = align.transport(v)
    assert transported.shape == (10, DT) and transported.dtype == torch.float32
    assert cosines(transported, v @ weight).min() > 0.99
    assert align.r2 > 0.9 and align.cosine > 0.9
    assert align.method == method and set(align.scores) == {method}
    assert align.n_anchors == N and align.n_holdout == 400
    json.dumps(align.to_dict())  # pack metadata must be JSON


def test_transport_under_an_exact_linear_map_is_the_map(low_noise):
    x, _, weight = low_noise
    y = x @ weight + 1.5
    v = torch.randn(DS, generator=torch.Generator().manual_seed(2))
    for method in ("ridge", "svd"):
        align = fit_alignment(x, y, method)
        torch.testing.assert_close(align.transport(v), v @ weight, atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(align.predict(x[:5]), y[:5], atol=1e-4, rtol=1e-4)
        assert align.r2 > 0.999999
    assert align.params["rank"] == DT  # a full-rank map keeps every rank


def test_transport_is_linear_and_has_no_bias(fitted):
    align = fitted["ridge"]
    v, w = torch.randn(2, DS, generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(align.transport(2 * v - w), 2 * align.transport(v) - align.transport(w))
    assert torch.equal(align.transport(torch.zeros(DS)), torch.zeros(DT))


def test_ridge_lambda_grows_with_noise():
    small = fit_alignment(*synthetic(noise=0.01)[:2], "ridge")
    large = fit_alignment(*synthetic(noise=5.0)[:2], "ridge")
    assert small.params["alpha"] <= 1e-5
    assert large.params["alpha"] >= 100 * small.params["alpha"]
    assert large.params["lambda"] > small.params["lambda"]


def test_ridge_dual_form_matches_primal():
    gen = torch.Generator().manual_seed(4)
    x = torch.randn(60, 100, generator=gen)  # fewer anchors than source features: the dual form
    y = x @ torch.randn(100, 8, generator=gen) + 0.1 * torch.randn(60, 8, generator=gen)
    align = fit_alignment(x, y, "ridge")
    lam = align.params["lambda"]
    xc, yc = (x - x.mean(0)).double(), (y - y.mean(0)).double()
    primal = torch.linalg.solve(xc.T @ xc + lam * torch.eye(100, dtype=torch.float64), xc.T @ yc)
    torch.testing.assert_close(align.transport(torch.eye(100)), primal.float(), atol=1e-5, rtol=1e-4)


def test_svd_rank_selection_finds_the_planted_rank():
    gen = torch.Generator().manual_seed(5)
    weight = torch.randn(DS, 4, generator=gen) @ torch.randn(4, DT, generator=gen) / math.sqrt(DS)
    x, y, _ = synthetic(noise=0.05, weight=weight)
    align = fit_alignment(x, y, "svd")
    assert align.params["rank"] == 4 and align.params["variant"] == "rrr"
    assert torch.linalg.matrix_rank(align.transport(torch.eye(DS))) == 4
    v = torch.randn(8, DS, generator=gen)
    assert cosines(align.transport(v), v @ weight).min() > 0.99


def test_svd_procrustes_recovers_a_scaled_orthogonal_map():
    gen = torch.Generator().manual_seed(6)
    q = torch.linalg.qr(torch.randn(DT, DT, generator=gen))[0]
    x = torch.randn(N, DT, generator=gen)  # isotropic source: Procrustes is the right model
    y = 3.0 * x @ q + 0.01 * torch.randn(N, DT, generator=gen)
    align = fit_alignment(x, y, "svd", svd_variant="procrustes")
    assert align.params["rank"] == DT and align.r2 > 0.999
    torch.testing.assert_close(align.transport(torch.eye(DT)), 3.0 * q, atol=2e-2, rtol=0)


def test_mlp_jacobian_is_the_linear_map(fitted, low_noise):
    _, _, weight = low_noise
    jacobian = fitted["mlp"].transport(torch.eye(DS))  # rows: J applied to each basis vector
    assert float((jacobian - weight).norm() / weight.norm()) < 0.02
    params = fitted["mlp"].params
    assert params["skip"] == "ridge (fixed)" and params["best_epoch"] <= params["epochs_run"]


def test_mlp_learns_what_ridge_misses():
    gen = torch.Generator().manual_seed(15)
    x = torch.randn(1000, 4, generator=gen)
    y = (
        x @ torch.randn(4, 2, generator=gen) / 2
        + torch.tanh(2 * x[:, :2])
        + 0.05 * torch.randn(1000, 2, generator=gen)
    )
    ridge = fit_alignment(x, y, "ridge")
    mlp = fit_alignment(x, y, "mlp", mlp_hidden=32, mlp_lr=3e-2, mlp_epochs=100)
    assert ridge.r2 < 0.97 and mlp.r2 > 0.99 and mlp.params["best_epoch"] > 0


def test_auto_keeps_the_best_heldout_r2(low_noise):
    x, y, _ = low_noise
    align = fit_alignment(x, y, "auto", **FAST_MLP)
    assert set(align.scores) == {"ridge", "svd", "mlp"}
    assert align.scores[align.method] == max(align.scores.values()) or (
        align.method == "ridge" and max(align.scores.values()) - align.scores["ridge"] <= 1e-9
    )
    assert align.r2 == align.scores[align.method] and align.params["selected_by"] == "heldout_r2"


def test_fitting_is_deterministic_under_seed(low_noise):
    x, y = low_noise[0][:600], low_noise[1][:600]
    v = torch.randn(3, DS, generator=torch.Generator().manual_seed(7))
    for method in ("ridge", "svd", "mlp"):
        a = fit_alignment(x, y, method, seed=11, **FAST_MLP)
        b = fit_alignment(x, y, method, seed=11, **FAST_MLP)
        assert torch.equal(a.transport(v), b.transport(v)) and a.r2 == b.r2 and a.params == b.params


def test_symmetric_averages_forward_and_backward_transpose(low_noise):
    x, y, _ = low_noise
    v = torch.randn(DS, generator=torch.Generator().manual_seed(8))
    both = fit_alignment(x, y, "ridge", symmetric=True)
    forward = fit_alignment(x, y, "ridge").transport(v)
    backward = fit_alignment(y, x, "ridge").transport(torch.eye(DT))  # B [Dt, Ds]: rows = B e_i
    mixed = forward / forward.norm() + (v @ backward.T) / (v @ backward.T).norm()
    expected = forward.norm() * mixed / mixed.norm()
    torch.testing.assert_close(both.transport(v), expected, atol=1e-5, rtol=1e-5)
    assert both.symmetric and both.backward_r2 is not None and both.to_dict()["symmetric"]


def test_symmetric_leaves_an_orthogonal_map_unchanged():
    gen = torch.Generator().manual_seed(9)
    q = torch.linalg.qr(torch.randn(DT, DT, generator=gen))[0]
    x = torch.randn(N, DT, generator=gen)
    y = 2.0 * x @ q + 0.01 * torch.randn(N, DT, generator=gen)
    v = torch.randn(DT, generator=gen)
    plain = fit_alignment(x, y, "ridge").transport(v)
    both = fit_alignment(x, y, "ridge", symmetric=True).transport(v)
    torch.testing.assert_close(both, plain, atol=1e-3, rtol=1e-3)


def test_fit_alignment_rejects_bad_input(low_noise):
    x, y, _ = low_noise
    with pytest.raises(ValueError, match="2000 anchors but y_target has 1999"):
        fit_alignment(x, y[:-1])
    bad = x.clone()
    bad[5, 2] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        fit_alignment(bad, y)
    with pytest.raises(ValueError, match="Too few anchors"):
        fit_alignment(x[:4], y[:4])
    with pytest.raises(ValueError, match="Unknown alignment method"):
        fit_alignment(x, y, "cca")
    with pytest.raises(TypeError, match="torch.Tensor"):
        fit_alignment(x.tolist(), y)
    align = fit_alignment(x[:100], y[:100], "ridge")
    with pytest.raises(ValueError, match="24-d source space"):
        align.transport(torch.randn(DT))

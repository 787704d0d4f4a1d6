"""Calibration, gate thresholds and benign centre: known answers."""

from __future__ import annotations

import json
import math

import pytest
import torch

from safesteer_diffusers.build.calibration import (
    anchor_gate_scores,
    benign_center,
    calibrate,
    gate_thresholds,
)
from safesteer_diffusers.steering.maths import direction_gate_vectors, gate_scores

DT = 16


def cosines(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.cosine_similarity(a.double(), b.double(), dim=-1)


def states_with_projection(unit: torch.Tensor, projections: torch.Tensor, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    other = torch.randn(len(projections), unit.shape[0], generator=gen, dtype=torch.float64)
    other = other - (other @ unit).unsqueeze(1) * unit  # nothing along the unit direction
    return other + projections.unsqueeze(1) * unit


def test_token_std_calibration_known_answer():
    gen = torch.Generator().manual_seed(10)
    unit = torch.nn.functional.normalize(torch.randn(DT, generator=gen, dtype=torch.float64), dim=0)
    projections = 7.0 + 2.0 * torch.tensor([1.0, -1.0], dtype=torch.float64).repeat(50)  # std exactly 2
    states = states_with_projection(unit, projections).float()
    vector, stats = calibrate(3.7 * unit.float(), states)
    assert math.isclose(float(vector.norm()), 2.0, rel_tol=1e-5)
    assert cosines(vector, unit.float()) > 0.999999
    assert stats["statistic"] == "token_std" and math.isclose(stats["scale"], 2.0, rel_tol=1e-5)
    assert math.isclose(stats["input_norm"], 3.7, rel_tol=1e-6) and stats["n_states"] == 100
    json.dumps(stats)
    # the same states as [B, T, D] with padding that the mask leaves out
    padded = torch.cat([states.reshape(10, 10, DT), torch.full((10, 3, DT), 1e4)], dim=1)
    mask = torch.cat([torch.ones(10, 10, dtype=torch.bool), torch.zeros(10, 3, dtype=torch.bool)], dim=1)
    masked_vector, _ = calibrate(unit.float(), padded, mask=mask)
    torch.testing.assert_close(masked_vector, vector)


def test_mean_norm_calibration_known_answer():
    gen = torch.Generator().manual_seed(11)
    states = 3.0 * torch.nn.functional.normalize(torch.randn(40, DT, generator=gen), dim=1)  # all norm 3
    direction = torch.randn(DT, generator=gen)
    vector, stats = calibrate(direction, states, "mean_norm")
    assert math.isclose(float(vector.norm()), 3.0 / math.sqrt(DT), rel_tol=1e-5)
    assert math.isclose(stats["mean_norm"], 3.0, rel_tol=1e-5) and stats["factor"] == 1 / math.sqrt(DT)
    vector, _ = calibrate(direction, states, "mean_norm", factor=1.0)
    assert math.isclose(float(vector.norm()), 3.0, rel_tol=1e-5)


def test_calibrate_rejects_bad_input():
    states = torch.randn(10, DT)
    with pytest.raises(ValueError, match="all zeros"):
        calibrate(torch.zeros(DT), states)
    with pytest.raises(ValueError, match="Unknown calibration statistic"):
        calibrate(torch.ones(DT), states, "max")
    with pytest.raises(ValueError, match="features"):
        calibrate(torch.ones(DT + 1), states)
    with pytest.raises(ValueError, match="do not vary"):
        calibrate(torch.ones(DT), torch.ones(10, DT))


def test_gate_thresholds_are_the_benign_quantile():
    gen = torch.Generator().manual_seed(12)
    scores = torch.randn(1000, 3, generator=gen) * torch.tensor([1.0, 2.0, 0.5])
    thresholds = gate_thresholds(scores, 0.99)
    assert thresholds.shape == (3,)
    torch.testing.assert_close(thresholds, torch.quantile(scores.double(), 0.99, dim=0).float())
    fired = (scores > thresholds).float().mean(0)
    assert (fired <= 0.01).all()
    assert gate_thresholds(torch.tensor([1.0, 2.0, 3.0, 4.0, 5.0]), 0.5) == 3.0
    with pytest.raises(ValueError, match="quantile"):
        gate_thresholds(scores, 1.5)


def test_anchor_gate_scores_share_the_inference_definition():
    gen = torch.Generator().manual_seed(13)
    states = torch.randn(6, 5, DT, generator=gen)
    mask = torch.rand(6, 5, generator=gen) > 0.3
    mask[:, 0] = True
    vectors = torch.randn(2, DT, generator=gen)
    assert torch.equal(
        anchor_gate_scores(states, vectors, mask), gate_scores(states, direction_gate_vectors(vectors), mask)
    )
    # a state along +v (the safe side) scores -|h|: low, so it does not fire
    along = torch.zeros(1, 1, DT)
    along[0, 0] = 2.0 * vectors[0] / vectors[0].norm()
    assert math.isclose(float(anchor_gate_scores(along, vectors[0])[0, 0]), -2.0, rel_tol=1e-6)


def test_benign_center_is_the_mean_real_token_state():
    gen = torch.Generator().manual_seed(14)
    states = torch.randn(4, 6, DT, generator=gen)
    mask = torch.zeros(4, 6, dtype=torch.bool)
    mask[:, :3] = True
    torch.testing.assert_close(benign_center(states, mask), states[:, :3].reshape(-1, DT).mean(0))
    torch.testing.assert_close(benign_center(states), states.reshape(-1, DT).mean(0))
    torch.testing.assert_close(benign_center(states[0]), states[0].mean(0))
    with pytest.raises(ValueError, match="mask"):
        benign_center(states, mask[:, :2])

"""Known-answer tests of the pure steering maths (safesteer_diffusers.steering.maths)."""

from __future__ import annotations

import pytest
import torch

from safesteer_diffusers.steering.maths import (
    direction_gate_vectors,
    gate_fires,
    gate_scores,
    masked_mean,
    projection_delta,
    steer_hidden,
    steering_delta,
    unit_vectors,
)


def test_additive_mode_adds_exactly_strength_times_vector():
    hidden = torch.randn(2, 5, 4)
    vectors = torch.randn(1, 4)
    out = steer_hidden(hidden, vectors, torch.tensor([[3.0], [3.0]]))
    assert torch.equal(out, hidden + 3.0 * vectors[0])


def test_multiple_directions_sum_with_their_own_strengths():
    hidden = torch.zeros(1, 2, 3)
    vectors = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    out = steer_hidden(hidden, vectors, torch.tensor([[2.0, -0.5]]))
    assert torch.equal(out[0, 0], torch.tensor([2.0, -0.5, 0.0]))


def test_zero_strength_returns_the_same_object():
    hidden = torch.randn(2, 3, 4)
    assert steer_hidden(hidden, torch.randn(2, 4), torch.zeros(2, 2)) is hidden


def test_rows_with_zero_strength_and_masked_positions_keep_their_bits():
    hidden = torch.randn(2, 4, 3)
    hidden[0, 0, 0] = -0.0  # adding +0.0 would flip the sign bit; the row must be kept as is
    vectors = torch.ones(1, 3)
    mask = torch.tensor([[True, True, True, True], [True, False, True, False]])
    out = steer_hidden(hidden, vectors, torch.tensor([[0.0], [1.0]]), mask=mask)
    assert torch.equal(out[0], hidden[0]) and torch.signbit(out[0, 0, 0])
    assert torch.equal(out[1, 1], hidden[1, 1]) and torch.equal(out[1, 3], hidden[1, 3])
    assert torch.equal(out[1, 0], hidden[1, 0] + 1.0)


def test_offset_is_cast_to_the_hidden_dtype():
    hidden = torch.randn(1, 2, 4, dtype=torch.bfloat16)
    vectors = torch.randn(1, 4)
    out = steer_hidden(hidden, vectors, torch.tensor([[2.0]]))
    assert out.dtype == torch.bfloat16
    assert torch.equal(out, hidden + (2.0 * vectors[0]).to(torch.bfloat16))


def test_projection_mode_clamps_the_unsafe_component_to_the_centre():
    vectors = torch.tensor([[2.0, 0.0]])  # unit direction e0; length does not matter in this mode
    hidden = torch.tensor([[[-3.0, 1.0], [4.0, 1.0]]])  # first token on the unsafe side, second on the safe
    out = steer_hidden(hidden, vectors, torch.tensor([[1.0]]), mode="project")
    assert torch.equal(out[0, 0], torch.tensor([0.0, 1.0]))  # strength 1: component brought to 0
    assert torch.equal(out[0, 1], hidden[0, 1])  # already safe: untouched
    half = steer_hidden(hidden, vectors, torch.tensor([[0.5]]), mode="project")
    assert torch.equal(half[0, 0], torch.tensor([-1.5, 1.0]))


def test_projection_mode_measures_from_the_centre():
    vectors = torch.tensor([[1.0, 0.0]])
    hidden = torch.tensor([[[1.0, 0.0]]])
    delta = projection_delta(hidden, vectors, torch.tensor([[1.0]]), center=torch.tensor([3.0, 0.0]))
    assert torch.equal(delta[0, 0], torch.tensor([2.0, 0.0]))


def test_classic_gate_scores_are_the_unsafe_side_projection_of_the_masked_mean():
    hidden = torch.tensor([[[1.0, 0.0], [3.0, 0.0], [100.0, 0.0]]])
    mask = torch.tensor([[True, True, False]])
    assert torch.equal(masked_mean(hidden, mask), torch.tensor([[2.0, 0.0]]))
    gate_vectors = direction_gate_vectors(torch.tensor([[5.0, 0.0], [0.0, 1.0]]))
    assert torch.equal(gate_vectors, torch.tensor([[-1.0, -0.0], [-0.0, -1.0]]))
    scores = gate_scores(hidden, gate_vectors, mask)
    assert torch.equal(scores, torch.tensor([[-2.0, -0.0]]))
    assert torch.equal(gate_fires(scores, torch.tensor([-2.5, 0.0])), torch.tensor([[True, False]]))


def test_gate_scores_along_given_gate_vectors_are_plain_dot_products_of_the_masked_mean():
    hidden = torch.tensor([[[1.0, 2.0], [3.0, 4.0], [100.0, 100.0]], [[0.0, 1.0], [0.0, 1.0], [0.0, 1.0]]])
    mask = torch.tensor([[True, True, False], [True, True, True]])
    # Row means: [2, 3] and [0, 1]; gate vectors not unit and not tied to any steering direction.
    scores = gate_scores(hidden, torch.tensor([[2.0, -1.0], [0.5, 0.5]]), mask)
    assert torch.equal(scores, torch.tensor([[1.0, 2.5], [-1.0, 0.5]]))


def test_unit_vectors_keep_zero_rows_zero():
    units = unit_vectors(torch.tensor([[3.0, 4.0], [0.0, 0.0]]))
    assert torch.allclose(units[0], torch.tensor([0.6, 0.8])) and torch.equal(units[1], torch.zeros(2))


@pytest.mark.parametrize(
    ("hidden", "vectors", "strengths", "match"),
    [
        (torch.zeros(2, 3), torch.zeros(1, 3), torch.ones(2, 1), "Expected hidden"),
        (torch.zeros(1, 2, 3), torch.zeros(1, 4), torch.ones(1, 1), "Feature dimension mismatch"),
    ],
)
def test_shape_errors_are_explained(hidden, vectors, strengths, match):
    with pytest.raises(ValueError, match=match):
        steering_delta(hidden, vectors, strengths)


def test_unknown_mode_is_rejected():
    with pytest.raises(ValueError, match="Unknown steering mode 'clip'"):
        steering_delta(torch.zeros(1, 1, 2), torch.ones(1, 2), torch.ones(1, 1), mode="clip")

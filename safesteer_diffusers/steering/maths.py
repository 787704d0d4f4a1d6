"""The steering maths: pure tensor code, no diffusers import.

Notation: ``hidden`` is a block of text states ``[B, T, D]`` (B prompt rows, T token positions, D features);
``vectors`` stacks K calibrated directions ``[K, D]`` (global and/or categories, pointing unsafe -> safe);
``strengths`` is ``[B, K]`` (per row, so a gate can switch a direction off for one prompt only); ``mask`` is
``[B, T]`` bool, the positions to steer (``None`` = all positions).

Two modes:

- ``"add"`` (the paper's): ``h' = h + sum_k s_k v_k`` at every steered position.
- ``"project"``: clamp the component along each direction. With ``c = (h - center) . u_k`` (``u_k`` the unit
  direction, ``center`` the benign mean state), ``h' = h + sum_k s_k * relu(-c) * u_k``: a state on the unsafe
  side of the benign centre is pushed back (strength 1 brings that component exactly to the centre's
  level); states already on the safe side are not touched.

Gate: a direction fires for a row when the row's *score* exceeds the pack's threshold. The score is the
mean steered-position state projected on the direction's *gate vector* ``g``: ``(mean_t h_t) . g``. Packs
built by this version carry ``g`` (a source-model classifier of unsafe vs benign prompts, carried to the
target by a map fitted on benign anchors: build/gate_probe.py); without one, ``g = -v / |v|``, the unsafe side
of the steering direction itself (:func:`direction_gate_vectors`). Either way: large for unsafe prompts.
"""

from __future__ import annotations

import torch

STEERING_MODES = ("add", "project")
_EPS = 1e-12


def unit_vectors(vectors: torch.Tensor) -> torch.Tensor:
    """Rows of ``vectors`` scaled to unit norm (zero rows stay zero)."""
    norms = vectors.norm(dim=-1, keepdim=True)
    return torch.where(norms > _EPS, vectors / norms.clamp_min(_EPS), torch.zeros_like(vectors))


def masked_mean(hidden: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Mean over positions ``[B, T, D] -> [B, D]``, counting only masked positions when a mask is given."""
    if mask is None:
        return hidden.mean(dim=1)
    weights = mask.to(hidden.dtype).unsqueeze(-1)
    return (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp_min(1.0)


def direction_gate_vectors(vectors: torch.Tensor) -> torch.Tensor:
    """The classic gate vectors of steering directions ``[K, D]``: their unsafe-side units, ``-v / |v|``."""
    return -unit_vectors(vectors.float())


def gate_scores(
    hidden: torch.Tensor, gate_vectors: torch.Tensor, mask: torch.Tensor | None = None
) -> torch.Tensor:
    """Score of every row on every gate vector, ``[B, K]``, computed in float32.

    ``masked_mean(hidden) . g`` for each gate vector ``g`` (rows of ``gate_vectors``; pass
    :func:`direction_gate_vectors` of the steering directions for the classic gate).
    """
    pooled = masked_mean(hidden.float(), mask)
    return pooled @ gate_vectors.float().T


def source_gate_scores(features: torch.Tensor, heads: torch.Tensor, biases: torch.Tensor) -> torch.Tensor:
    """A source-model gate's score of every row, ``[N]`` float64: the largest head score.

    ``max_h (features . heads[h] + biases[h])`` for ``features [N, Ds]``, ``heads [H, Ds]``, ``biases [H]``:
    the gate fires when *any* head scores above the threshold (heads fitted on different unsafe prompts catch
    different prompts; the threshold is calibrated on this score, so the union keeps the benign rate).
    """
    return (features.double() @ heads.double().T + biases.double()).max(dim=1).values


def gate_fires(scores: torch.Tensor, thresholds: torch.Tensor) -> torch.Tensor:
    """``[B, K]`` bool: which directions fire for which rows (``score > threshold``)."""
    return scores > thresholds.to(scores).unsqueeze(0)


def additive_delta(vectors: torch.Tensor, strengths: torch.Tensor) -> torch.Tensor:
    """The per-row offset ``[B, D] = strengths [B, K] @ vectors [K, D]``."""
    return strengths.to(vectors.dtype) @ vectors


def projection_delta(
    hidden: torch.Tensor,
    vectors: torch.Tensor,
    strengths: torch.Tensor,
    center: torch.Tensor | None = None,
) -> torch.Tensor:
    """The per-position offset ``[B, T, D]`` of the projection mode (see the module docstring)."""
    units = unit_vectors(vectors.float())
    relative = hidden.float() if center is None else hidden.float() - center.float()
    components = relative @ units.T  # [B, T, K]
    pushes = torch.relu(-components) * strengths.float().unsqueeze(1)  # [B, T, K]
    return pushes @ units


def steer_hidden(
    hidden: torch.Tensor,
    vectors: torch.Tensor,
    strengths: torch.Tensor,
    *,
    mode: str = "add",
    mask: torch.Tensor | None = None,
    center: torch.Tensor | None = None,
) -> torch.Tensor:
    """Return steered text states; rows whose strengths are all zero are returned unchanged bit for bit.

    Args:
        hidden: ``[B, T, D]`` text states.
        vectors: ``[K, D]`` calibrated directions (unsafe -> safe).
        strengths: ``[B, K]`` per-row strengths (0 where a direction is off or gated out).
        mode: ``"add"`` or ``"project"``.
        mask: ``[B, T]`` bool positions to steer, or ``None`` for all.
        center: ``[D]`` benign centre for ``"project"`` (``None`` = origin).

    Returns:
        A new tensor when anything changes, else ``hidden`` itself. The offset is computed in the
        vectors' dtype (float32) and cast to ``hidden.dtype`` before it is added.

    Example:
        >>> h = torch.zeros(1, 3, 2); v = torch.tensor([[1.0, 0.0]])
        >>> steer_hidden(h, v, torch.tensor([[2.0]]))[0, 0]
        tensor([2., 0.])
    """
    delta = steering_delta(hidden, vectors, strengths, mode=mode, mask=mask, center=center)
    if delta is None:
        return hidden
    # Positions that are not steered keep their exact bits (adding +0.0 would turn -0.0 into +0.0).
    steered = steered_positions(strengths, mask, hidden.shape[1]).unsqueeze(-1)
    return torch.where(steered, hidden + delta, hidden)


def steered_positions(strengths: torch.Tensor, mask: torch.Tensor | None, num_tokens: int) -> torch.Tensor:
    """``[B, T]`` bool: positions that receive an offset (row has a nonzero strength and is in the mask)."""
    rows = (strengths != 0).any(dim=-1, keepdim=True).expand(-1, num_tokens)
    return rows if mask is None else rows & mask.to(torch.bool)


def steering_delta(
    hidden: torch.Tensor,
    vectors: torch.Tensor,
    strengths: torch.Tensor,
    *,
    mode: str = "add",
    mask: torch.Tensor | None = None,
    center: torch.Tensor | None = None,
) -> torch.Tensor | None:
    """The offset ``[B, T, D]`` (in ``hidden.dtype``) that :func:`steer_hidden` adds, or ``None`` if it is zero.

    Rows with all-zero strengths and unmasked positions get an exact zero offset.
    """
    if mode not in STEERING_MODES:
        raise ValueError(f"Unknown steering mode {mode!r}; use one of {STEERING_MODES}.")
    if hidden.dim() != 3 or vectors.dim() != 2 or strengths.dim() != 2:
        raise ValueError(
            f"Expected hidden [B, T, D], vectors [K, D], strengths [B, K]; got {tuple(hidden.shape)}, "
            f"{tuple(vectors.shape)}, {tuple(strengths.shape)}."
        )
    if hidden.shape[-1] != vectors.shape[-1]:
        raise ValueError(
            f"Feature dimension mismatch: hidden has {hidden.shape[-1]}, vectors {vectors.shape[-1]}."
        )
    if not bool((strengths != 0).any()):
        return None
    if mode == "add":
        delta = additive_delta(vectors, strengths).unsqueeze(1).expand(-1, hidden.shape[1], -1)
    else:
        delta = projection_delta(hidden, vectors, strengths, center)
    delta = delta.to(hidden.dtype)
    if mask is not None:
        delta = torch.where(mask.to(torch.bool).unsqueeze(-1), delta, torch.zeros_like(delta))
    return delta

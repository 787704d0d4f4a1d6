"""Calibration, gates and centre from benign target states: how long a direction is and when it fires.

Owns what is measured on benign anchors only, in the target space, once a direction has been transported
(:meth:`~safesteer_diffusers.build.alignment.Alignment.transport`):

- :func:`calibrate`: the vector's length, so that ``strength=1`` is one unit of a benign statistic
  (``"token_std"``, the benign token std along the direction, by default);
- :func:`anchor_gate_scores` and :func:`gate_thresholds`: benign anchors' gate scores (the inference
  definition, :func:`safesteer_diffusers.steering.maths.gate_scores`) and the quantile that becomes the gate;
- :func:`benign_center`: the mean benign token state, the centre of the projection steering mode.

Example::

    v_target = align.transport(estimate.global_direction)
    vector, stats = calibrate(v_target, benign_token_states, mask=benign_mask)
    thresholds = gate_thresholds(anchor_gate_scores(benign_token_states, vector), quantile=0.99)
"""

from __future__ import annotations

import math

import torch

from safesteer_diffusers.steering.maths import direction_gate_vectors, gate_scores

from .alignment import as_matrix

CALIBRATION_STATISTICS = ("token_std", "mean_norm")


def calibrate(
    vector: torch.Tensor,
    anchor_states: torch.Tensor,
    statistic: str = "token_std",
    *,
    mask: torch.Tensor | None = None,
    factor: float | None = None,
) -> tuple[torch.Tensor, dict]:
    """Scale a target-space direction so that ``strength=1`` is one unit of a benign statistic.

    - ``"token_std"`` (default): the standard deviation (population, ``correction=0``) of the benign
      token states projected on the unit direction. Steering adds ``strength * v`` to every token, so this
      measures the push against how much benign text naturally varies *along that direction*: it ignores
      the target's overall scale and anisotropy (e.g. T5's outlier dimensions), and does not depend on the
      length of the transported vector (map scale errors cancel).
    - ``"mean_norm"``: the mean L2 norm of the benign token states times ``factor`` (default
      ``1 / sqrt(D)``, which makes it equal the token std for isotropic zero-mean states; a fixed share of
      the typical state size, whatever the direction).

    Args:
        vector: ``[D]`` direction (only its orientation is used).
        anchor_states: benign target states: ``[N, D]`` (token states or pooled features) or ``[B, T, D]``.
        statistic: ``"token_std"`` or ``"mean_norm"``.
        mask: ``[B, T]`` bool real tokens for ``[B, T, D]`` states (``None`` = every position).
        factor: multiplier of ``"mean_norm"`` (default ``1 / sqrt(D)``).

    Returns:
        ``(vector, stats)``: the calibrated ``[D]`` float32 vector ``unit(vector) * scale`` and a JSON-ready
        dict (``statistic``, ``scale``, ``input_norm``, ``n_states``, projection mean/std, ``mean_norm``,
        ``factor``).

    Example:
        >>> v, stats = calibrate(align.transport(d), token_states, mask=attention_mask.bool())
        >>> stats["scale"] == float(v.norm())
    """
    if statistic not in CALIBRATION_STATISTICS:
        raise ValueError(f"Unknown calibration statistic {statistic!r}; use one of {CALIBRATION_STATISTICS}.")
    direction = _as_vector(vector, "vector")
    states = _token_rows(anchor_states, mask, direction.shape[0])
    norm = float(direction.norm())
    if norm == 0.0:
        raise ValueError("calibrate: the vector is all zeros and has no direction; check the transport.")
    unit = direction / norm
    projections = states @ unit
    std = float(projections.std(correction=0))
    mean_norm = float(states.norm(dim=-1).mean())
    factor = 1.0 / math.sqrt(states.shape[1]) if factor is None else float(factor)
    scale = std if statistic == "token_std" else mean_norm * factor
    if not scale > 0.0 or not math.isfinite(scale):
        raise ValueError(
            f"calibrate: the {statistic} statistic of the anchor states is {scale}; the benign states do not "
            "vary along this direction. Check that the anchors are real target-encoder states."
        )
    stats = {
        "statistic": statistic,
        "scale": scale,
        "input_norm": norm,
        "n_states": int(states.shape[0]),
        "projection_mean": float(projections.mean()),
        "projection_std": std,
        "mean_norm": mean_norm,
        "factor": factor if statistic == "mean_norm" else None,
    }
    return (unit * scale).float(), stats


def gate_thresholds(anchor_scores: torch.Tensor, quantile: float = 0.99) -> torch.Tensor:
    """Gate thresholds from benign anchors only: the ``quantile`` of each direction's anchor scores.

    A score is ``-(mean-pooled state . unit(v))`` as computed by :func:`safesteer_diffusers.steering.maths.gate_scores`
    (use :func:`anchor_gate_scores`); a prompt fires a direction when its score exceeds the threshold, so at
    most ``1 - quantile`` of benign anchors fire. Pool anchors exactly as inference does: with the default
    ``tokens="all"``, over every position the pipeline's encoder returns (padding included).

    Args:
        anchor_scores: ``[N]`` or ``[N, K]`` benign scores (K directions).
        quantile: in ``(0, 1]``; linear interpolation between order statistics (``torch.quantile``).

    Returns:
        ``[K]`` float32 thresholds (``[]`` for 1-D input).

    Example:
        >>> scores = anchor_gate_scores(states, torch.stack([v_global, v_sexual]), mask)
        >>> gate_thresholds(scores, 0.99)
    """
    scores = torch.as_tensor(anchor_scores)
    if scores.dim() not in (1, 2) or scores.shape[0] == 0:
        raise ValueError(f"anchor_scores must be [N] or [N, K] with N >= 1, got shape {tuple(scores.shape)}.")
    if not 0.0 < quantile <= 1.0:
        raise ValueError(f"quantile must be in (0, 1], got {quantile}.")
    scores = scores.detach().to("cpu", torch.float64)
    if not torch.isfinite(scores).all():
        raise ValueError("anchor_scores contain NaN or infinite values; check the anchor states.")
    return torch.quantile(scores, quantile, dim=0).float()


def anchor_gate_scores(
    anchor_states: torch.Tensor, vectors: torch.Tensor, mask: torch.Tensor | None = None
) -> torch.Tensor:
    """Benign scores ``[B, K]`` of the classic gate (scoring along the directions' unsafe side), by
    :func:`safesteer_diffusers.steering.maths.gate_scores`, the inference definition. Packs built with a gate
    probe score along their gate vectors instead (build/gate_probe.py).

    Args:
        anchor_states: ``[B, T, D]`` target text states of benign anchors.
        vectors: ``[K, D]`` (or ``[D]``) directions.
        mask: ``[B, T]`` positions pooled (``None`` = all, as inference with ``tokens="all"``).

    Returns:
        ``[B, K]`` scores (higher = further on the unsafe side).

    Example:
        >>> gate_thresholds(anchor_gate_scores(states, vectors), quantile=0.99)
    """
    if anchor_states.dim() != 3:
        raise ValueError(f"anchor_states must be [B, T, D], got shape {tuple(anchor_states.shape)}.")
    vectors = vectors.unsqueeze(0) if vectors.dim() == 1 else vectors
    return gate_scores(anchor_states, direction_gate_vectors(vectors.to(anchor_states.device)), mask)


def benign_center(anchor_states: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Mean benign token state ``[D]`` (float32, CPU): the centre of the projection steering mode.

    Args:
        anchor_states: ``[N, D]`` token states or ``[B, T, D]``.
        mask: ``[B, T]`` bool real tokens for 3-D states (``None`` = every position).

    Returns:
        ``[D]`` float32 on CPU.

    Example:
        >>> center = benign_center(token_states, attention_mask.bool())
    """
    states = _token_rows(anchor_states, mask, None)
    return states.mean(0).float()


def _as_vector(value: object, label: str) -> torch.Tensor:
    vector = as_matrix(value, label, allow_1d=True)
    if vector.dim() != 1:
        raise ValueError(f"{label}: expected a 1-D [D] vector, got shape {tuple(vector.shape)}.")
    return vector.to("cpu", torch.float64)


def _token_rows(states: object, mask: torch.Tensor | None, dim: int | None) -> torch.Tensor:
    """Benign states as ``[M, D]`` float64 rows (real tokens only when a mask is given)."""
    if not isinstance(states, torch.Tensor) or not states.is_floating_point():
        raise TypeError("anchor_states must be a floating-point torch.Tensor [N, D] or [B, T, D].")
    if states.dim() == 3:
        if mask is not None:
            if mask.shape != states.shape[:2]:
                raise ValueError(
                    f"mask has shape {tuple(mask.shape)} but anchor_states is {tuple(states.shape)}; "
                    "pass the [B, T] attention mask of those states."
                )
            states = states[mask.to(device=states.device, dtype=torch.bool)]
        else:
            states = states.reshape(-1, states.shape[-1])
    elif states.dim() != 2 or mask is not None:
        raise ValueError(
            f"anchor_states must be [N, D], or [B, T, D] with an optional [B, T] mask; got shape "
            f"{tuple(states.shape)}{' with a mask' if mask is not None else ''}."
        )
    if dim is not None and states.shape[-1] != dim:
        raise ValueError(f"The vector has {dim} features but the anchor states have {states.shape[-1]}.")
    if states.shape[0] == 0:
        raise ValueError("No anchor states (the mask selects no token).")
    states = states.detach().to("cpu", torch.float64)
    if not torch.isfinite(states).all():
        raise ValueError("anchor_states contain NaN or infinite values; recompute them (fp16 overflow?).")
    return states


GATE_FPRS = (0.001, 0.005, 0.01, 0.02, 0.05, 0.1)
"""The benign false-positive rates a built pack stores gate thresholds for (``gate_fpr=`` at wrap time)."""


def fpr_thresholds(benign_scores: torch.Tensor, names: list[str]) -> dict[str, dict[str, float]]:
    """``{"<rate>": {name: the (1 - rate) quantile of the benign scores}}`` for every rate of GATE_FPRS."""
    return {
        f"{fpr:g}": dict(
            zip(names, torch.quantile(benign_scores.double(), 1.0 - fpr, dim=0).tolist(), strict=True)
        )
        for fpr in GATE_FPRS
    }

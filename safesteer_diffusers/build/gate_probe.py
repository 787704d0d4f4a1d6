"""The gate probe: which prompts should be steered, learnt in the source model, carried to the target.

The classic gate scores a prompt along the steering direction itself. That direction separates each unsafe
prompt from its *paired safe rewrite*; a gate must separate unsafe prompts from *benign text at large*, a
different contrast. Measured on real text spaces (benchmarks/gate_recall.py, docs/method.md 6.5), the
classic gate catches 3% of held-out unsafe prompts at a 1% benign false-positive rate.

The probe gate, per direction:

1. **Source classifier.** An L2-regularised logistic regression in the source model's feature space (the
   build's layer and pooling), unsafe prompts (of the direction's category; all of them for ``global``)
   against benign text: the safe members of the pairs and the anchors. The source side is where unsafe
   prompts may be used.
2. **Carried to the target by a benign-only map.** A ridge map ``target features -> source features``
   fitted on the anchors only (the target never sees unsafe text), so the classifier's weight ``w`` becomes
   the target functional ``g = M w``: ``score(h) = mean(h) . g`` (:func:`~safesteer_diffusers.steering.maths.gate_scores`).
3. The threshold is a quantile of the anchors' *cross-fitted* scores (each anchor scored by a classifier and
   map fitted without it: :func:`carried_gate_vectors`), so benign text the fits never saw passes at the
   stated rate, not the anchors' in-sample rate.

Both fits are closed-form or convex (deterministic); the constants were chosen on the benchmark's training
split (the held-out prompts played no part).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

__all__ = [
    "CALIBRATION_FOLDS",
    "HARD_NEGATIVE_SHARE",
    "PROBE_L2",
    "REVERSE_MAP_ALPHA",
    "carried_gate_vectors",
    "fit_logistic",
    "fit_reverse_map",
    "source_gate_heads",
    "source_gate_vectors",
]

PROBE_L2 = 0.1
"""L2 penalty of the source classifier (on features standardised by the benign statistics)."""
REVERSE_MAP_ALPHA = 0.1
"""Ridge penalty of the target -> source map, relative to the mean eigenvalue of the target Gram matrix."""


HARD_NEGATIVE_SHARE = 0.25
"""Share of the negative class's weight that the pairs' safe members (the hard negatives: minimal edits of
unsafe prompts) carry in the gate classifiers; the anchors carry the rest. Without it their share fell with
the anchor count (23.5% with 1,024 anchors, 9% with all 3,229), and with it the gates' rejection of safe
rewrites (docs/method.md 6.5). 0.25 keeps the share of the 1,024-anchor builds first measured."""


def negative_weights(hard: int, easy: int, share: float = HARD_NEGATIVE_SHARE) -> torch.Tensor:
    """Per-row weights of ``hard`` hard negatives then ``easy`` other negatives: ``share`` of the total on the
    first group, the rest on the second (each group uniform; all on one group when the other is empty)."""
    if hard and easy:
        return torch.cat(
            [torch.full((hard,), share / hard), torch.full((easy,), (1 - share) / easy)]
        ).double()
    return torch.full((hard + easy,), 1.0 / max(hard + easy, 1), dtype=torch.float64)


def fit_logistic(
    positive: torch.Tensor,
    negative: torch.Tensor,
    l2: float = PROBE_L2,
    negative_weight: torch.Tensor | None = None,
) -> tuple[torch.Tensor, float]:
    """Balanced L2-regularised logistic regression, ``positive`` (label 1) against ``negative`` (label 0).

    Features are standardised by the negatives' mean and std before the fit (so ``l2`` does not depend on
    the feature scale); the result is expressed in the raw space.

    Args:
        positive: ``[P, D]`` features of the positive class.
        negative: ``[N, D]`` features of the negative class.
        l2: penalty ``l2 / 2 * |w|^2`` on the standardised weights; each class weighs one half of the loss.
        negative_weight: ``[N]`` relative weights of the negatives within their half (default: uniform), e.g.
            :func:`negative_weights`.

    Returns:
        ``(weight [D] float64, bias)``: the log-odds of the positive class are ``x . weight + bias``.

    Raises:
        ValueError: an empty class, mismatched widths, non-finite features or bad negative weights.
    """
    if positive.dim() != 2 or negative.dim() != 2 or positive.shape[1] != negative.shape[1]:
        raise ValueError(
            f"fit_logistic needs [P, D] and [N, D] features, got {tuple(positive.shape)} and "
            f"{tuple(negative.shape)}."
        )
    if not len(positive) or not len(negative):
        raise ValueError(f"fit_logistic needs both classes, got {len(positive)} and {len(negative)} rows.")
    x = torch.cat([positive, negative]).double()
    if not torch.isfinite(x).all():
        raise ValueError("fit_logistic: features contain NaN or infinite values.")
    y = torch.cat([torch.ones(len(positive)), torch.zeros(len(negative))]).double()
    mean, std = negative.double().mean(0), negative.double().std(0, correction=0).clamp_min(1e-6)
    z = (x - mean) / std
    row_weight = torch.where(y > 0, 0.5 / len(positive), 0.5 / len(negative))
    if negative_weight is not None:
        negative_weight = negative_weight.double().flatten()
        if len(negative_weight) != len(negative) or not (
            torch.isfinite(negative_weight).all()
            and (negative_weight >= 0).all()
            and negative_weight.sum() > 0
        ):
            raise ValueError(
                f"fit_logistic: negative_weight must be {len(negative)} finite non-negative values with a positive "
                f"sum, got {tuple(negative_weight.shape)}."
            )
        row_weight[len(positive) :] = 0.5 * negative_weight / negative_weight.sum()
    w = torch.zeros(z.shape[1], dtype=torch.float64, requires_grad=True)
    b = torch.zeros((), dtype=torch.float64, requires_grad=True)
    optimiser = torch.optim.LBFGS(
        [w, b], max_iter=500, tolerance_grad=1e-10, tolerance_change=1e-12, line_search_fn="strong_wolfe"
    )

    def loss_and_grad():
        optimiser.zero_grad()
        logits = z @ w + b
        losses = torch.nn.functional.binary_cross_entropy_with_logits(logits, y, reduction="none")
        loss = (row_weight * losses).sum() + 0.5 * l2 * (w * w).sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        optimiser.step(loss_and_grad)
    weight = (w / std).detach()
    return weight, float(b.detach() - mean @ weight)


def fit_reverse_map(
    target_features: torch.Tensor, source_features: torch.Tensor, alpha: float = REVERSE_MAP_ALPHA
) -> torch.Tensor:
    """Ridge map ``M [Dt, Ds]`` with ``source - mean ~ (target - mean) @ M``, fitted on benign anchors.

    Args:
        target_features: ``[A, Dt]`` pooled target states of the anchors.
        source_features: ``[A, Ds]`` source features of the same anchors.
        alpha: penalty relative to the mean diagonal of the centred target Gram matrix.

    Returns:
        ``[Dt, Ds]`` float64.
    """
    if target_features.shape[0] != source_features.shape[0] or target_features.shape[0] < 2:
        raise ValueError(
            "fit_reverse_map needs the same anchors (at least 2) on both sides, got "
            f"{target_features.shape[0]} target and {source_features.shape[0]} source rows."
        )
    x = target_features.double() - target_features.double().mean(0)
    y = source_features.double() - source_features.double().mean(0)
    gram = x.T @ x
    penalty = alpha * float(gram.diagonal().mean()) if float(gram.diagonal().mean()) > 0 else alpha
    return torch.linalg.solve(gram + penalty * torch.eye(gram.shape[0], dtype=gram.dtype), x.T @ y)


CALIBRATION_FOLDS = 5
"""Folds of the cross-fitted anchor scores that set the thresholds (anchor ``i`` is in fold ``i % 5``)."""


def carried_gate_vectors(
    source_features: torch.Tensor,
    unsafe_rows: dict[str, Sequence[int]],
    benign_rows: Sequence[int],
    source_anchor_features: torch.Tensor,
    target_anchor_features: torch.Tensor,
    *,
    l2: float = PROBE_L2,
    alpha: float = REVERSE_MAP_ALPHA,
    folds: int = CALIBRATION_FOLDS,
) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """One target-space gate vector per direction, and the anchors' cross-fitted scores along them.

    Every anchor is a negative of the classifier and a point of the map, so its score along the final vector
    is an in-sample score: lower than a new benign prompt's, and a threshold set on it lets more benign text
    through than asked (measured: 11% of held-out safe rewrites at a 1% anchor quantile). The thresholds are
    therefore set on *cross-fitted* scores: the anchors of fold ``k`` (anchor ``i`` is in fold ``i % folds``)
    are scored by a classifier and map fitted without them.

    Args:
        source_features: ``[N, Ds]`` source features of the contrast prompts.
        unsafe_rows: direction name -> rows of ``source_features`` that are its positives (unsafe prompts).
        benign_rows: rows of ``source_features`` that are benign (the safe members of pairs).
        source_anchor_features: ``[A, Ds]`` source features of the anchors (benign negatives too).
        target_anchor_features: ``[A, Dt]`` the anchors' pooled target states, pooled as the gate pools.
        l2: the classifier's penalty (:func:`fit_logistic`).
        alpha: the map's penalty (:func:`fit_reverse_map`).
        folds: cross-fitting folds (``1``: in-sample scores).

    Returns:
        ``({name: [Dt] float32}, [A, K] float64)``: the gate vectors (a prompt's score is its pooled target
        state dotted with its vector) fitted on everything, and the anchors' cross-fitted scores (directions
        in ``unsafe_rows`` order).
    """
    benign = source_features[list(benign_rows)].double()
    count = len(source_anchor_features)
    if not 1 <= folds <= count // 2:
        raise ValueError(f"folds must be between 1 and half the anchors ({count // 2}), got {folds}.")

    def fit(anchor_rows: torch.Tensor) -> dict[str, torch.Tensor]:
        negatives = torch.cat([benign, source_anchor_features[anchor_rows].double()])
        weights = negative_weights(len(benign), len(anchor_rows))
        reverse = fit_reverse_map(
            target_anchor_features[anchor_rows], source_anchor_features[anchor_rows], alpha
        )
        return {
            name: reverse @ fit_logistic(source_features[list(rows)].double(), negatives, l2, weights)[0]
            for name, rows in unsafe_rows.items()
        }

    vectors = {name: vector.float() for name, vector in fit(torch.arange(count)).items()}
    if folds == 1:
        scores = target_anchor_features.double() @ torch.stack([vectors[n] for n in unsafe_rows]).double().T
        return vectors, scores
    scores = torch.empty(count, len(unsafe_rows), dtype=torch.float64)
    fold_of = torch.arange(count) % folds
    for fold in range(folds):
        held = fold_of == fold
        fitted = fit(torch.nonzero(~held).squeeze(1))
        scoring = torch.stack([fitted[name].float() for name in unsafe_rows]).double()
        scores[held] = target_anchor_features[held].double() @ scoring.T
    return vectors, scores


def source_gate_vectors(
    source_features: torch.Tensor,
    unsafe_rows: dict[str, Sequence[int]],
    benign_rows: Sequence[int],
    source_anchor_features: torch.Tensor,
    *,
    l2: float = PROBE_L2,
    folds: int = CALIBRATION_FOLDS,
) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """The source-model gate: one classifier weight per direction, and cross-fitted benign scores.

    The same classifiers as :func:`carried_gate_vectors`, kept in the source space: at inference the source
    model reads the prompt and the gate fires when ``features . weight`` exceeds the threshold. The benign
    scores that set the thresholds are cross-fitted over *all* benign text the source side has, the pairs'
    safe members and the anchors (the safe rewrites are the hard negatives: calibrated on the anchors alone,
    the threshold let 44% of held-out safe rewrites through; docs/method.md 6.5).

    Returns:
        ``({name: [Ds] float32}, [B + A, K] float64)``: the weights fitted on everything, and the cross-fitted
        scores of the benign rows then the anchors (directions in ``unsafe_rows`` order).
    """
    benign = torch.cat([source_features[list(benign_rows)], source_anchor_features]).double()
    count = len(benign)
    if not 1 <= folds <= count // 2:
        raise ValueError(f"folds must be between 1 and half the benign prompts ({count // 2}), got {folds}.")
    hard = torch.arange(count) < len(benign_rows)  # the pairs' safe members come first

    def fit(rows: torch.Tensor) -> dict[str, torch.Tensor]:
        # Hard negatives first, then anchors: the order negative_weights expects.
        rows = torch.cat([rows[hard[rows]], rows[~hard[rows]]])
        weights = negative_weights(int(hard[rows].sum()), int((~hard[rows]).sum()))
        return {
            name: fit_logistic(source_features[list(positive)].double(), benign[rows], l2, weights)[0]
            for name, positive in unsafe_rows.items()
        }

    weights = {name: weight.float() for name, weight in fit(torch.arange(count)).items()}
    scores = torch.empty(count, len(unsafe_rows), dtype=torch.float64)
    fold_of = torch.arange(count) % folds
    for fold in range(folds):
        held = fold_of == fold
        fitted = fit(torch.nonzero(~held).squeeze(1)) if folds > 1 else weights
        scores[held] = benign[held] @ torch.stack([fitted[n].float() for n in unsafe_rows]).double().T
    return weights, scores


def source_gate_heads(
    source_features: torch.Tensor,
    unsafe_rows: dict[str, Sequence[int]],
    benign_rows: Sequence[int],
    source_anchor_features: torch.Tensor,
    supplied_features: torch.Tensor | None = None,
    supplied_rows: dict[str, Sequence[int]] | None = None,
    *,
    supplied_benign_features: torch.Tensor | None = None,
    match_quantile: float = 0.99,
) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor], torch.Tensor]:
    """The source-model gate with a second head per direction fitted on unsafe prompts the builder supplied.

    Head 0 is :func:`source_gate_vectors` (the pairs' unsafe members against benign text). Head 1, for each
    direction in ``supplied_rows``, is the same classifier fitted on those supplied prompts instead, against
    the same benign rows with the same folds. It is rescaled so its cross-fitted benign scores have head 0's
    median and ``match_quantile`` quantile (an affine map: weight ``a * w``, bias ``c``), so that neither head
    dominates the union at the operating point. Why a second head instead of more positives for one: on
    public I2P prompts, mixing their style into one classifier's positives lost 25 points of recall on the
    pairs' style, while the union kept both (docs/method.md 6.5.3).

    ``supplied_benign_features``: benign prompts in the supplied prompts' register. They join head 1's
    negatives only (so it learns what in those prompts is unsafe, not their style), and never the calibration:
    the rescaling and the thresholds use the build's own benign text, as without them. Measured on I2P: without
    such negatives, the head fired on 20% of hand-written text-to-image prompts (docs/method.md 6.5.3).

    Returns:
        ``({name: [H, Ds] float32 heads}, {name: [H] float32 biases}, [B + A, K] float64)``: heads and biases
        per direction (``H`` = 1 without supplied rows), and the cross-fitted benign scores of the union
        (:func:`~safesteer_diffusers.steering.maths.source_gate_scores`) that set the thresholds.
    """
    weights, scores = source_gate_vectors(source_features, unsafe_rows, benign_rows, source_anchor_features)
    heads = {name: weight[None] for name, weight in weights.items()}
    biases = {name: torch.zeros(1) for name in weights}
    supplied_rows = {name: rows for name, rows in (supplied_rows or {}).items() if rows}
    if not supplied_rows:
        return heads, biases, scores
    if supplied_features is None:
        raise ValueError("supplied_rows were given without supplied_features.")
    unknown = sorted(set(supplied_rows) - set(unsafe_rows))
    if unknown:
        raise ValueError(
            f"supplied_rows name {unknown}, which are not directions of the gate ({list(unsafe_rows)})."
        )
    # The supplied prompts go after the contrast rows, so the benign rows (and their folds) are the same.
    offset = len(source_features)
    stacked = torch.cat([source_features.double(), supplied_features.double()])
    extra_rows = {name: [offset + i for i in rows] for name, rows in supplied_rows.items()}
    negatives = source_anchor_features
    if supplied_benign_features is not None:
        negatives = torch.cat([source_anchor_features.double(), supplied_benign_features.double()])
    extra_weights, extra_scores = source_gate_vectors(stacked, extra_rows, benign_rows, negatives)
    # The build's benign rows come first (and keep their folds): only they rescale and calibrate.
    extra_scores = extra_scores[: len(scores)]
    names = list(unsafe_rows)
    union = scores.clone()
    for j, name in enumerate(extra_rows):
        k = names.index(name)
        a, c = _matched_scale(scores[:, k], extra_scores[:, j], match_quantile)
        head = (a * extra_weights[name].double()).float()
        heads[name] = torch.stack([weights[name], head])
        biases[name] = torch.tensor([0.0, c], dtype=torch.float32)
        # Cross-fitted union: each head's cross-fitted benign score, head 1 on its stored scale.
        union[:, k] = torch.maximum(scores[:, k], a * extra_scores[:, j] + float(biases[name][1]))
    return heads, biases, union


def _matched_scale(reference: torch.Tensor, other: torch.Tensor, quantile: float) -> tuple[float, float]:
    """``(a, c)`` with ``a * other + c`` matching ``reference`` at the median and at ``quantile``."""
    levels = torch.tensor([0.5, quantile], dtype=torch.float64)
    ref_low, ref_high = torch.quantile(reference.double(), levels).tolist()
    low, high = torch.quantile(other.double(), levels).tolist()
    if not (high > low and ref_high > ref_low):
        raise ValueError(
            "The supplied prompts' gate head scores every benign prompt alike (its median and "
            f"{quantile:g} quantile are equal), so it cannot be calibrated. Supply more varied unsafe prompts."
        )
    a = (ref_high - ref_low) / (high - low)
    return a, ref_low - a * low

"""Safety directions from source features: mean differences, held-out AUROC and the choice of layer.

Pure maths on tensors (no model runs here, so it is tested on synthetic features): from features of the safe
and unsafe prompts of a :class:`~safesteer_diffusers.build.contrast.ContrastPrompts`, the direction
``mean(safe) - mean(unsafe)`` (it points from unsafe toward safe, as in the paper), one global and one per
category, with held-out separability (AUROC of the projection) used to choose the layer
(:func:`estimate_directions`, :class:`DirectionEstimate`, :func:`auroc`). Paired and unpaired data are both
handled; feature rows follow :attr:`ContrastPrompts.prompts`.

The features come from :mod:`safesteer_diffusers.build.source_features` (which also offers
:func:`~safesteer_diffusers.build.source_features.estimate_from_model`, one forward pass then this module).

Example::

    feats = extract_all_layers(model, tokenizer, data.prompts)        # [L+1, N, D]
    estimate = estimate_directions(data, feats, layer="auto")
    estimate.global_direction, estimate.layer, estimate.auroc["violence"]
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import torch

from safesteer_diffusers.packs.format import GLOBAL

from .contrast import ContrastPrompts, split_contrast

FeatureSource = torch.Tensor | Mapping[int, torch.Tensor] | Callable[[int], torch.Tensor]
"""Features of :attr:`ContrastPrompts.prompts`: ``[N, D]`` (one layer), ``[L, N, D]`` (layer ``i`` = index
``i``, e.g. from :func:`~safesteer_diffusers.build.source_features.extract_all_layers`), ``{layer: [N, D]}``,
or a callable ``layer -> [N, D]``."""


# ---------------------------------------------------------------------- AUROC
def auroc(positive: torch.Tensor, negative: torch.Tensor) -> float:
    """Area under the ROC curve of scores, positives against negatives (Mann-Whitney U with ties).

    Equals ``P(score_pos > score_neg) + 0.5 * P(score_pos == score_neg)`` over all (positive, negative)
    pairs, computed exactly from average ranks in float64.

    Args:
        positive: 1-D scores of the positive class (here: safe prompts, which a safe-pointing direction
            should score higher).
        negative: 1-D scores of the negative class.

    Returns:
        AUROC in ``[0, 1]``: 1.0 = every positive above every negative, 0.5 = no separation.

    Example:
        >>> auroc(torch.tensor([0.35, 0.8]), torch.tensor([0.1, 0.4]))
        0.75
    """
    pos = torch.as_tensor(positive).detach().reshape(-1).to("cpu", torch.float64)
    neg = torch.as_tensor(negative).detach().reshape(-1).to("cpu", torch.float64)
    if pos.numel() == 0 or neg.numel() == 0:
        raise ValueError(
            f"AUROC needs at least one score per class, got {pos.numel()} positive and {neg.numel()} negative."
        )
    values = torch.cat([pos, neg])
    if not torch.isfinite(values).all():
        raise ValueError("AUROC scores contain NaN or infinite values; check the features for NaN.")
    sorted_values, order = torch.sort(values, stable=True)
    _, group, counts = torch.unique_consecutive(sorted_values, return_inverse=True, return_counts=True)
    last = counts.cumsum(0).to(torch.float64)  # 1-based rank of the last member of each tie group
    average_rank = last - (counts.to(torch.float64) - 1) / 2
    ranks = torch.empty_like(values)
    ranks[order] = average_rank[group]
    n_pos, n_neg = pos.numel(), neg.numel()
    u_statistic = ranks[:n_pos].sum().item() - n_pos * (n_pos + 1) / 2
    return u_statistic / (n_pos * n_neg)


# ---------------------------------------------------------------------- directions
@dataclass
class DirectionEstimate:
    """Safety directions estimated at one layer of a source model (all vectors point unsafe -> safe).

    Attributes:
        global_direction: ``[D]`` float32, ``mean(safe) - mean(unsafe)`` over all prompts.
        category_directions: category -> ``[D]`` float32, the same within each category.
        layer: the layer the vectors come from (``None`` when the features had no layer label).
        auroc: ``"global"`` and category -> held-out AUROC of the projection on the direction estimated on
            the train split (safe scored against unsafe). Categories too small to hold out are absent.
        layer_auroc: layer -> held-out global AUROC, for every layer tried (one entry if one was given).
        layer_separation: layer -> held-out separation ``(mean_safe - mean_unsafe) / pooled std`` of the
            global projection; the last tie-breaker of the layer choice.
        counts: ``"global"`` and category -> number of pairs (paired) or unsafe prompts (unpaired).
        paired, holdout, seed: how the estimate was made.
        pooling: ``"mean"`` or ``"last"`` when known (set by
            :func:`~safesteer_diffusers.build.source_features.estimate_from_model`).
    """

    global_direction: torch.Tensor
    category_directions: dict[str, torch.Tensor]
    layer: int | None
    auroc: dict[str, float]
    layer_auroc: dict[int, float] = field(default_factory=dict)
    layer_separation: dict[int, float] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)
    paired: bool = True
    holdout: float = 0.3
    seed: int = 0
    pooling: str | None = None

    @property
    def directions(self) -> dict[str, torch.Tensor]:
        """``{"global": global_direction, **category_directions}``."""
        return {GLOBAL: self.global_direction, **self.category_directions}

    def to_dict(self) -> dict:
        """JSON-ready summary without tensors (for the ``source`` entry of pack metadata)."""
        return {
            "layer": self.layer,
            "pooling": self.pooling,
            "paired": self.paired,
            "holdout": self.holdout,
            "seed": self.seed,
            "counts": dict(self.counts),
            "auroc": {k: round(v, 6) for k, v in self.auroc.items()},
            "layer_auroc": {str(k): round(v, 6) for k, v in self.layer_auroc.items()},
        }


def estimate_directions(
    data: ContrastPrompts | Sequence[tuple[str, str, str]],
    features: FeatureSource,
    *,
    layer: int | str | None = "auto",
    layers: Sequence[int] | None = None,
    holdout: float = 0.3,
    seed: int = 0,
) -> DirectionEstimate:
    """Global and per-category mean-difference directions, with held-out AUROC and layer choice.

    Vectors: ``mean(safe) - mean(unsafe)`` over all rows (train and held-out) at the chosen layer; per
    category over that category's rows (unpaired: a category with no safe prompts of its own is contrasted
    with all safe prompts). For paired data this equals the mean of the pair differences.

    AUROC: directions are re-estimated on the train part of :func:`split_contrast`, held-out prompts are
    projected on them and scored with :func:`auroc` (safe = positive). ``layer="auto"`` keeps the layer
    with the best held-out global AUROC; ties (common when AUROC saturates at 1.0) go to the best mean
    category AUROC, then to the largest held-out separation, then to the first layer listed.

    Args:
        data: a :class:`ContrastPrompts` or a list of ``(safe, unsafe, category)`` pairs.
        features: features of ``data.prompts`` (see :data:`FeatureSource`).
        layer: ``"auto"`` (or ``None``) to choose among ``layers``, or one layer (an index into an
            ``[L, N, D]`` tensor, negative allowed; a key of a mapping; the argument of a callable; a label
            recorded as is for an ``[N, D]`` tensor).
        layers: candidate layers for ``"auto"``: default every layer of an ``[L, N, D]`` tensor or every key
            of a mapping; required with a callable.
        holdout: held-out fraction per category for the AUROC.
        seed: seed of the split; the result is identical for the same inputs and seed.

    Returns:
        A :class:`DirectionEstimate`.

    Example:
        >>> feats = extract_all_layers(model, tokenizer, data.prompts)  # [L+1, N, D]
        >>> est = estimate_directions(data, feats, layer="auto")
        >>> est.layer, est.auroc["global"], est.category_directions["violence"].shape
    """
    if not isinstance(data, ContrastPrompts):
        data = ContrastPrompts.from_pairs(data)
    candidates, get = _layer_source(features, layer, layers, len(data))
    split = split_contrast(data, holdout, seed)
    n_safe = len(data.safe)
    labels = list(data.safe_categories) + list(data.unsafe_categories)

    results: dict = {}
    best, best_key, best_feats = None, None, None
    for candidate in candidates:
        feats = get(candidate)
        results[candidate] = _heldout_scores(data, feats, labels, split, n_safe)
        key = _layer_rank(*results[candidate])
        if best_key is None or key > best_key:  # strict: equal keys keep the first layer listed
            best, best_key, best_feats = candidate, key, feats
    chosen, feats = best, best_feats
    layer_auroc = {c: r[0][GLOBAL] for c, r in results.items()}
    layer_separation = {c: r[1] for c, r in results.items()}
    all_safe = torch.arange(n_safe)
    all_unsafe = torch.arange(n_safe, len(data))
    global_direction, per_category = _directions(data, feats, labels, all_safe, all_unsafe)
    counts = {GLOBAL: len(data.unsafe)}
    counts.update({name: data.unsafe_categories.count(name) for name in data.categories})
    return DirectionEstimate(
        global_direction=global_direction,
        category_directions=per_category,
        layer=None if chosen is _NO_LAYER else chosen,
        auroc=results[chosen][0],
        layer_auroc={} if chosen is _NO_LAYER else layer_auroc,
        layer_separation={} if chosen is _NO_LAYER else layer_separation,
        counts=counts,
        paired=data.paired,
        holdout=holdout,
        seed=seed,
    )


_NO_LAYER = object()  # key of an [N, D] feature tensor given without a layer label


def _layer_rank(scores: dict[str, float], separation: float) -> tuple[float, float, float]:
    categories = [v for k, v in scores.items() if k != GLOBAL]
    mean_category = sum(categories) / len(categories) if categories else 0.0
    return (scores[GLOBAL], mean_category, separation)


def _layer_source(features, layer, layers, n_rows):
    """Candidate layers and a function ``layer -> [N, D]`` float32 features, validated."""
    auto = layer is None or layer == "auto"
    if not auto and (isinstance(layer, bool) or not isinstance(layer, int)):
        raise TypeError(f"layer must be an int, 'auto' or None, got {layer!r}.")

    def checked(tensor, label):
        return _check_features(tensor, n_rows, label)

    if isinstance(features, torch.Tensor):
        if features.dim() == 2:
            if layers is not None:
                raise ValueError(
                    "layers= was given but features is one [N, D] tensor (one layer); pass [L, N, D] or "
                    "a {layer: [N, D]} dict to choose among layers."
                )
            key = _NO_LAYER if auto else layer
            tensor = checked(features, "features")
            return [key], lambda _: tensor
        if features.dim() != 3:
            raise ValueError(f"features must be [N, D] or [L, N, D], got shape {tuple(features.shape)}.")
        n_layers = features.shape[0]

        def index(i):
            if not -n_layers <= i < n_layers:
                raise ValueError(f"Layer {i} is out of range for features with {n_layers} layers.")
            return i % n_layers

        candidates = (
            [index(i) for i in (layers if layers is not None else range(n_layers))]
            if auto
            else [index(layer)]
        )
        return candidates, lambda i: checked(features[i], f"features[{i}]")
    if isinstance(features, Mapping):
        keys = list(features)
        candidates = list(layers) if (auto and layers is not None) else keys if auto else [layer]
        missing = [c for c in candidates if c not in features]
        if missing:
            raise ValueError(f"Layers {missing} are not in the features dict, which has layers {keys}.")
        return candidates, lambda i: checked(features[i], f"features[{i}]")
    if callable(features):
        if auto and layers is None:
            raise ValueError(
                "With a callable feature source, layer='auto' needs layers=[...] (the layers to try)."
            )
        candidates = list(layers) if auto else [layer]
        return candidates, lambda i: checked(features(i), f"features({i})")
    raise TypeError(
        "features must be a tensor [N, D] or [L, N, D], a {layer: tensor} dict, or a callable layer -> tensor; "
        f"got {type(features).__name__}."
    )


def _check_features(tensor: object, n_rows: int, label: str) -> torch.Tensor:
    if not isinstance(tensor, torch.Tensor):
        raise TypeError(f"{label}: expected a torch.Tensor, got {type(tensor).__name__}.")
    if tensor.dim() != 2 or tensor.shape[0] != n_rows:
        raise ValueError(
            f"{label}: expected [N, D] with N = {n_rows} rows (safe prompts then unsafe prompts, as in "
            f"ContrastPrompts.prompts), got shape {tuple(tensor.shape)}."
        )
    if not tensor.is_floating_point():
        raise TypeError(f"{label}: expected floating-point features, got {tensor.dtype}.")
    tensor = tensor.detach().to("cpu", torch.float64)
    if not torch.isfinite(tensor).all():
        bad = int((~torch.isfinite(tensor)).any(dim=1).sum())
        raise ValueError(
            f"{label}: {bad} of {n_rows} rows contain NaN or infinite values. Check the model's dtype "
            "(fp16 overflow) and the prompts of those rows."
        )
    return tensor


def _directions(data, feats, labels, safe_rows, unsafe_rows):
    """Global and per-category mean differences (float32) over the given rows."""
    global_direction = feats[safe_rows].mean(0) - feats[unsafe_rows].mean(0)
    per_category = {}
    for name in data.categories:
        safe = _rows_of(safe_rows, labels, name)
        if len(safe) == 0:  # unpaired: a category with no safe prompts of its own -> all safe prompts
            safe = safe_rows
        unsafe = _rows_of(unsafe_rows, labels, name)
        if len(unsafe) == 0:
            continue
        per_category[name] = (feats[safe].mean(0) - feats[unsafe].mean(0)).float()
    return global_direction.float(), per_category


def _rows_of(rows: torch.Tensor, labels: Sequence[str], name: str) -> torch.Tensor:
    return rows[[labels[int(i)] == name for i in rows]] if len(rows) else rows


def _heldout_scores(data, feats, labels, split, n_safe):
    """Held-out AUROC per direction and held-out separation of the global direction."""
    train_global, train_category = _directions(data, feats, labels, split.train_safe, split.train_unsafe)
    scores: dict[str, float] = {}
    separation = 0.0
    if len(split.holdout_safe) and len(split.holdout_unsafe):
        g = train_global.double()
        pos, neg = feats[split.holdout_safe] @ g, feats[split.holdout_unsafe] @ g
        scores[GLOBAL] = auroc(pos, neg)
        separation = _separation(pos, neg)
    else:
        raise ValueError(
            f"Too few prompts to hold out: {len(data.safe)} safe and {len(data.unsafe)} unsafe. Held-out AUROC "
            "needs at least two pairs (or two safe and two unsafe prompts)."
        )
    skipped = []
    for name, direction in train_category.items():
        held_safe = _rows_of(split.holdout_safe, labels, name)
        if len(held_safe) == 0 and name not in data.safe_categories:
            held_safe = split.holdout_safe
        held_unsafe = _rows_of(split.holdout_unsafe, labels, name)
        if len(held_safe) == 0 or len(held_unsafe) == 0:
            skipped.append(name)
            continue
        d = direction.double()
        scores[name] = auroc(feats[held_safe] @ d, feats[held_unsafe] @ d)
    if skipped:
        warnings.warn(
            f"Categories {skipped} have too few prompts to hold any out (need 2 per side); their directions "
            "are estimated but have no held-out AUROC. Add prompts to them.",
            UserWarning,
            stacklevel=3,
        )
    return scores, separation


def _separation(pos: torch.Tensor, neg: torch.Tensor) -> float:
    spread = math.sqrt((pos.var(correction=0).item() + neg.var(correction=0).item()) / 2)
    gap = (pos.mean() - neg.mean()).item()
    return gap / spread if spread > 0 else math.copysign(math.inf, gap) if gap else 0.0

"""Safety directions in a source language model: activations, mean differences, layer choice.

Two halves, kept apart so the maths can be tested on synthetic tensors:

- **Model running** (:func:`extract_features`, :func:`extract_all_layers`): batched forward passes with
  ``output_hidden_states=True``, pooled over the real tokens (attention mask) by ``"mean"`` or ``"last"``.
  Causal LMs run without their LM head, encoder-decoder models (T5) run their encoder only.
- **Maths** (:func:`estimate_directions`, :func:`auroc`, :func:`split_contrast`): from features of safe and
  unsafe prompts, the direction ``mean(safe) - mean(unsafe)`` (it points from unsafe toward safe, as in the
  paper), one global and one per category, with held-out separability (AUROC of the projection) used to
  choose the layer.

Feature rows follow :attr:`ContrastPrompts.prompts`: the safe prompts first, then the unsafe ones. For paired
data, pair ``i`` is rows ``i`` (safe) and ``n_safe + i`` (unsafe).

Example::

    data = ContrastPrompts.from_pairs([("a calm street", "a street riot with injuries", "violence"), ...])
    estimate = estimate_from_model(model, tokenizer, data, layer="auto", pooling="mean")
    estimate.global_direction, estimate.layer, estimate.auroc["violence"]
"""

from __future__ import annotations

import inspect
import math
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import torch

from safesteer_diffusers.packs.format import GLOBAL

POOLINGS = ("mean", "last")

FeatureSource = torch.Tensor | Mapping[int, torch.Tensor] | Callable[[int], torch.Tensor]
"""Features of :attr:`ContrastPrompts.prompts`: ``[N, D]`` (one layer), ``[L, N, D]`` (layer ``i`` = index
``i``, e.g. from :func:`extract_all_layers`), ``{layer: [N, D]}``, or a callable ``layer -> [N, D]``."""


# ---------------------------------------------------------------------- prompts
@dataclass(frozen=True)
class ContrastPrompts:
    """Safe and unsafe prompts with a category each; the row order of features is :attr:`prompts`.

    Build with :meth:`from_pairs` (paired: each safe prompt is the safe rewrite of one unsafe prompt) or
    :meth:`from_sets` (unpaired sets). In unpaired data, safe prompts may carry a category that no unsafe
    prompt has (e.g. ``"benign"``); a category without safe prompts of its own is contrasted with all safe
    prompts.

    Example:
        >>> data = ContrastPrompts.from_pairs([("a boxing match", "a man beaten bloody", "violence")])
        >>> data.prompts, data.categories
        (['a boxing match', 'a man beaten bloody'], ['violence'])
    """

    safe: tuple[str, ...]
    unsafe: tuple[str, ...]
    safe_categories: tuple[str, ...]
    unsafe_categories: tuple[str, ...]
    paired: bool

    def __post_init__(self):
        if len(self.safe) != len(self.safe_categories) or len(self.unsafe) != len(self.unsafe_categories):
            raise ValueError(
                f"Each prompt needs one category: got {len(self.safe)} safe prompts with "
                f"{len(self.safe_categories)} categories and {len(self.unsafe)} unsafe prompts with "
                f"{len(self.unsafe_categories)} categories."
            )
        if not self.safe or not self.unsafe:
            raise ValueError(
                f"Need at least one safe and one unsafe prompt, got {len(self.safe)} safe and "
                f"{len(self.unsafe)} unsafe."
            )
        if self.paired and len(self.safe) != len(self.unsafe):
            raise ValueError(
                f"Paired data needs as many safe as unsafe prompts, got {len(self.safe)} and {len(self.unsafe)}."
            )
        for text in (*self.safe, *self.unsafe):
            if not isinstance(text, str):
                raise TypeError(f"Prompts must be strings, got {type(text).__name__}: {text!r}.")
        for name in (*self.safe_categories, *self.unsafe_categories):
            if not isinstance(name, str) or not name:
                raise ValueError(f"Categories must be non-empty strings, got {name!r}.")
            if name == GLOBAL:
                raise ValueError(
                    f"{GLOBAL!r} is reserved for the direction over all pairs; rename that category."
                )

    @classmethod
    def from_pairs(cls, pairs: Iterable[tuple[str, str, str]]) -> ContrastPrompts:
        """Paired prompts: an iterable of ``(safe, unsafe, category)``.

        Example:
            >>> ContrastPrompts.from_pairs([("a doctor", "a doctor stabbing a patient", "violence")])
        """
        rows = list(pairs)
        for i, row in enumerate(rows):
            if not isinstance(row, tuple | list) or len(row) != 3:
                raise ValueError(
                    f"Pair {i} is {row!r}; each pair must be a (safe, unsafe, category) tuple of 3 strings."
                )
        categories = tuple(row[2] for row in rows)
        return cls(
            safe=tuple(row[0] for row in rows),
            unsafe=tuple(row[1] for row in rows),
            safe_categories=categories,
            unsafe_categories=categories,
            paired=True,
        )

    @classmethod
    def from_sets(
        cls,
        safe: Iterable[tuple[str, str]] | Mapping[str, Sequence[str]],
        unsafe: Iterable[tuple[str, str]] | Mapping[str, Sequence[str]],
    ) -> ContrastPrompts:
        """Unpaired sets: each as ``[(prompt, category), ...]`` or ``{category: [prompt, ...]}``.

        Example:
            >>> ContrastPrompts.from_sets(
            ...     safe={"benign": ["a cat", "a bridge"]}, unsafe={"violence": ["a street riot"]}
            ... )
        """
        safe_rows, unsafe_rows = _labelled(safe, "safe"), _labelled(unsafe, "unsafe")
        return cls(
            safe=tuple(p for p, _ in safe_rows),
            unsafe=tuple(p for p, _ in unsafe_rows),
            safe_categories=tuple(c for _, c in safe_rows),
            unsafe_categories=tuple(c for _, c in unsafe_rows),
            paired=False,
        )

    @property
    def prompts(self) -> list[str]:
        """All prompts in feature-row order: safe prompts, then unsafe prompts."""
        return [*self.safe, *self.unsafe]

    @property
    def categories(self) -> list[str]:
        """Categories of the unsafe prompts, in order of first appearance (one direction each)."""
        return list(dict.fromkeys(self.unsafe_categories))

    def __len__(self) -> int:
        return len(self.safe) + len(self.unsafe)


def _labelled(rows: object, label: str) -> list[tuple[str, str]]:
    if isinstance(rows, Mapping):
        out = []
        for category, prompts in rows.items():
            if isinstance(prompts, str):
                raise TypeError(f"{label}[{category!r}] must be a list of prompts, got one string.")
            out.extend((prompt, category) for prompt in prompts)
        return out
    out = []
    for i, row in enumerate(rows):  # type: ignore[arg-type]
        if not isinstance(row, tuple | list) or len(row) != 2:
            raise ValueError(
                f"{label}[{i}] is {row!r}; pass (prompt, category) tuples or a {{category: [prompts]}} dict."
            )
        out.append((row[0], row[1]))
    return out


# ---------------------------------------------------------------------- AUROC and split
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


@dataclass(frozen=True)
class ContrastSplit:
    """Row indices (into :attr:`ContrastPrompts.prompts`) of a train / held-out split."""

    train_safe: torch.Tensor
    train_unsafe: torch.Tensor
    holdout_safe: torch.Tensor
    holdout_unsafe: torch.Tensor


def split_contrast(data: ContrastPrompts, holdout: float = 0.3, seed: int = 0) -> ContrastSplit:
    """Split rows into train and held-out parts, stratified by category, deterministic under ``seed``.

    Paired data is split by pair (both prompts of a pair land on the same side, so no pair leaks across).
    Every category with at least two units (pairs, or prompts per side when unpaired) keeps at least one on
    each side; a category with one unit stays in train.

    Args:
        data: the prompts.
        holdout: fraction of each category held out, in ``(0, 1)``.
        seed: seed of the permutation.

    Returns:
        A :class:`ContrastSplit` of sorted row indices.

    Example:
        >>> split = split_contrast(data, holdout=0.3, seed=0)
        >>> features[split.holdout_safe]
    """
    if not 0.0 < holdout < 1.0:
        raise ValueError(f"holdout must be a fraction in (0, 1), got {holdout}.")
    generator = torch.Generator().manual_seed(int(seed))
    n_safe = len(data.safe)
    if data.paired:
        train, held = _stratified(data.unsafe_categories, holdout, generator)
        return ContrastSplit(train, train + n_safe, held, held + n_safe)
    train_safe, held_safe = _stratified(data.safe_categories, holdout, generator)
    train_unsafe, held_unsafe = _stratified(data.unsafe_categories, holdout, generator)
    return ContrastSplit(train_safe, train_unsafe + n_safe, held_safe, held_unsafe + n_safe)


def _stratified(
    labels: Sequence[str], holdout: float, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    train, held = [], []
    for name in sorted(set(labels)):  # sorted: the permutations drawn do not depend on input order
        rows = torch.tensor([i for i, label in enumerate(labels) if label == name], dtype=torch.long)
        rows = rows[torch.randperm(len(rows), generator=generator)]
        n_held = 0 if len(rows) < 2 else min(max(round(holdout * len(rows)), 1), len(rows) - 1)
        held.append(rows[:n_held])
        train.append(rows[n_held:])
    return torch.cat(train).sort().values, torch.cat(held).sort().values


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
        pooling: ``"mean"`` or ``"last"`` when known (set by :func:`estimate_from_model`).
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


# ---------------------------------------------------------------------- model running
def extract_features(
    model: torch.nn.Module,
    tokenizer,
    prompts: Sequence[str],
    layer: int,
    pooling: str = "mean",
    batch_size: int = 16,
    max_length: int | None = None,
    progress: bool = True,
) -> torch.Tensor:
    """Pooled hidden states of one layer, ``[N, D]`` float32 on CPU.

    Args:
        model: a ``transformers`` model: causal LM (run without its LM head), encoder (``BertModel``), or
            encoder-decoder (only ``model.get_encoder()`` runs).
        tokenizer: its tokenizer. Its ``padding_side`` is respected; padding uses its pad id (or 0 when it
            has none, which is harmless: pad positions are masked).
        prompts: the texts, tokenized as they are (with the tokenizer's special tokens; apply a chat
            template beforehand if you want one).
        layer: index into ``hidden_states`` (0 = embeddings, ``-1`` = last layer).
        pooling: ``"mean"`` over real tokens (attention mask, special tokens included) or ``"last"`` real
            token.
        batch_size: prompts per forward pass. Prompts are grouped by length to save padding; the output
            is in input order and does not depend on the batching beyond float rounding.
        max_length: truncate prompts to this many tokens (``None``: no truncation).
        progress: show a tqdm progress bar.

    Returns:
        ``[N, D]`` float32 CPU tensor.

    Example:
        >>> feats = extract_features(model, tokenizer, ["a cat on a mat"], layer=-8, pooling="last")
    """
    return extract_all_layers(
        model,
        tokenizer,
        prompts,
        pooling=pooling,
        batch_size=batch_size,
        max_length=max_length,
        progress=progress,
        layers=[layer],
    )[0]


def extract_all_layers(
    model: torch.nn.Module,
    tokenizer,
    prompts: Sequence[str],
    pooling: str = "mean",
    batch_size: int = 16,
    max_length: int | None = None,
    progress: bool = True,
    layers: Sequence[int] | None = None,
) -> torch.Tensor:
    """Pooled hidden states of every layer in one pass, ``[L+1, N, D]`` float32 on CPU.

    Same arguments as :func:`extract_features`; ``layers`` keeps only the listed ``hidden_states``
    indices (output ``[len(layers), N, D]`` in that order) to save memory with large models.

    The model runs in eval mode under ``torch.no_grad()`` (its training flag is restored afterwards).
    With left padding, position ids are passed from the attention mask (when the model accepts them) so a
    padded prompt gets the same states as the prompt alone.

    Returns:
        ``[L+1, N, D]`` (or ``[len(layers), N, D]``) float32 CPU tensor; index 0 = embeddings.

    Example:
        >>> feats = extract_all_layers(model, tokenizer, data.prompts)  # then estimate_directions(data, feats)
    """
    return _extract(model, tokenizer, prompts, pooling, batch_size, max_length, progress, layers)[0]


def _extract(model, tokenizer, prompts, pooling, batch_size, max_length, progress, layers):
    """Features ``[len(indices), N, D]`` and the non-negative hidden-state indices they come from."""
    from tqdm.auto import tqdm

    if pooling not in POOLINGS:
        raise ValueError(f"Unknown pooling {pooling!r}; use one of {POOLINGS}.")
    if isinstance(prompts, str):
        raise TypeError("prompts must be a list of strings, got one string; wrap it in a list.")
    prompts = list(prompts)
    if not prompts:
        raise ValueError("No prompts given.")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}.")
    module = _feature_module(model)
    accepted = _forward_parameters(module)
    if "input_ids" not in accepted:
        raise TypeError(f"{type(module).__name__}.forward does not take input_ids; pass a text model.")
    device = _module_device(module)
    side = getattr(tokenizer, "padding_side", "right")
    if side not in ("left", "right"):
        raise ValueError(f"tokenizer.padding_side must be 'left' or 'right', got {side!r}.")
    pad_id = getattr(tokenizer, "pad_token_id", None)
    pad_id = 0 if pad_id is None else int(pad_id)

    # Tokenize unpadded and pad here: works for tokenizers without a pad token, and lets us sort by length.
    encoded = tokenizer(prompts, padding=False, truncation=max_length is not None, max_length=max_length)
    ids = [list(row) for row in encoded["input_ids"]]
    types = [list(row) for row in encoded["token_type_ids"]] if "token_type_ids" in encoded else None
    empty = [prompts[i] for i, row in enumerate(ids) if not row]
    if empty:
        raise ValueError(f"{len(empty)} prompts tokenize to no tokens (e.g. {empty[0]!r}); remove them.")
    order = sorted(range(len(prompts)), key=lambda i: -len(ids[i]))  # stable: ties keep input order

    pooled: list[list[torch.Tensor]] = []
    indices: list[int] = []
    was_training = module.training
    module.eval()
    try:
        with torch.no_grad():
            batches = range(0, len(order), batch_size)
            for start in tqdm(batches, desc="features", unit="batch", disable=not progress):
                rows = order[start : start + batch_size]
                input_ids, mask = _pad([ids[i] for i in rows], pad_id, side, device)
                inputs = {"input_ids": input_ids}
                if "attention_mask" in accepted:
                    inputs["attention_mask"] = mask.long()
                if types is not None and "token_type_ids" in accepted:
                    inputs["token_type_ids"] = _pad([types[i] for i in rows], 0, side, device)[0]
                if side == "left" and "position_ids" in accepted:
                    inputs["position_ids"] = (mask.long().cumsum(-1) - 1).clamp_min(0)
                if "use_cache" in accepted:
                    inputs["use_cache"] = False
                outputs = module(**inputs, output_hidden_states=True, return_dict=True)
                hidden_states = getattr(outputs, "hidden_states", None)
                if hidden_states is None:
                    raise TypeError(
                        f"{type(module).__name__} returned no hidden_states for output_hidden_states=True; "
                        "pass a transformers text model."
                    )
                if not indices:
                    indices = _layer_indices(layers, len(hidden_states))
                    pooled = [[] for _ in indices]
                for slot, index in enumerate(indices):
                    pooled[slot].append(_pool(hidden_states[index], mask, pooling).cpu())
    finally:
        module.train(was_training)
    stacked = torch.stack([torch.cat(chunks) for chunks in pooled])  # [L, N, D] in sorted order
    result = torch.empty_like(stacked)
    result[:, torch.tensor(order)] = stacked
    return result, indices


def estimate_from_model(
    model: torch.nn.Module,
    tokenizer,
    data: ContrastPrompts | Sequence[tuple[str, str, str]],
    *,
    layer: int | str | None = "auto",
    layers: Sequence[int] | None = None,
    pooling: str = "mean",
    batch_size: int = 16,
    max_length: int | None = None,
    holdout: float = 0.3,
    seed: int = 0,
    progress: bool = True,
) -> DirectionEstimate:
    """:func:`extract_all_layers` then :func:`estimate_directions`: one forward pass over the prompts.

    Args:
        layer: ``"auto"`` to choose among ``layers`` (default: every hidden-state index), or one layer.
        Others: as in :func:`extract_all_layers` and :func:`estimate_directions`.

    Returns:
        A :class:`DirectionEstimate` with ``pooling`` set and non-negative layer indices.

    Example:
        >>> est = estimate_from_model(llm, tok, pairs, layers=range(8, 24), pooling="last")
    """
    if not isinstance(data, ContrastPrompts):
        data = ContrastPrompts.from_pairs(data)
    auto = layer is None or layer == "auto"
    wanted = None if (auto and layers is None) else list(layers) if auto else [layer]
    feats, indices = _extract(
        model, tokenizer, data.prompts, pooling, batch_size, max_length, progress, wanted
    )
    if len(set(indices)) != len(indices):
        raise ValueError(f"Layers {wanted} name the same hidden state twice.")
    by_layer = dict(zip(indices, feats, strict=True))
    estimate = estimate_directions(data, by_layer, layer="auto", holdout=holdout, seed=seed)
    estimate.pooling = pooling
    return estimate


def _feature_module(model: torch.nn.Module) -> torch.nn.Module:
    """The module whose hidden states we read: the encoder of encoder-decoders, else the base model."""
    if not isinstance(model, torch.nn.Module):
        raise TypeError(
            f"model must be a torch.nn.Module (a transformers model), got {type(model).__name__}."
        )
    config = getattr(model, "config", None)
    if getattr(config, "is_encoder_decoder", False) and hasattr(model, "get_encoder"):
        return model.get_encoder()
    # A causal LM's base model gives the same hidden states without computing [B, T, vocab] logits.
    base = getattr(model, "base_model", None)
    return base if isinstance(base, torch.nn.Module) else model


def _forward_parameters(module: torch.nn.Module) -> set[str]:
    return set(inspect.signature(module.forward).parameters)


def _module_device(module: torch.nn.Module) -> torch.device:
    for parameter in module.parameters():
        return parameter.device
    return torch.device("cpu")


def _pad(rows: list[list[int]], fill: int, side: str, device) -> tuple[torch.Tensor, torch.Tensor]:
    """``[B, T]`` padded ids and the ``[B, T]`` bool mask of real tokens."""
    length = max(len(row) for row in rows)
    values = torch.full((len(rows), length), fill, dtype=torch.long)
    mask = torch.zeros(len(rows), length, dtype=torch.bool)
    for r, row in enumerate(rows):
        span = slice(length - len(row), length) if side == "left" else slice(0, len(row))
        values[r, span] = torch.tensor(row, dtype=torch.long)
        mask[r, span] = True
    return values.to(device), mask.to(device)


def _layer_indices(layers: Sequence[int] | None, n_states: int) -> list[int]:
    if layers is None:
        return list(range(n_states))
    out = []
    for layer in layers:
        if isinstance(layer, bool) or not isinstance(layer, int):
            raise TypeError(f"Layers must be ints, got {layer!r}.")
        if not -n_states <= layer < n_states:
            raise ValueError(
                f"Layer {layer} is out of range: the model returns {n_states} hidden states (0 = embeddings, "
                f"{n_states - 1} = last layer; negative indices count from the end)."
            )
        out.append(layer % n_states)
    return out


def _pool(hidden: torch.Tensor, mask: torch.Tensor, pooling: str) -> torch.Tensor:
    hidden = hidden.float()
    if pooling == "last":
        positions = torch.arange(mask.shape[1], device=mask.device)
        last = torch.where(mask, positions, -1).argmax(dim=1)
        return hidden[torch.arange(hidden.shape[0], device=hidden.device), last]
    # torch.where, not a product: padded positions may hold NaN (fully masked attention rows).
    summed = torch.where(mask.unsqueeze(-1), hidden, 0.0).sum(dim=1)
    return summed / mask.sum(dim=1, keepdim=True).to(hidden.dtype)

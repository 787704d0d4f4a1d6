"""The contrast data of direction estimation: safe and unsafe prompts with categories, and their split.

Owns :class:`ContrastPrompts` (paired or unpaired prompts; its :attr:`~ContrastPrompts.prompts` fixes the row
order of every feature tensor: the safe prompts first, then the unsafe ones, so for paired data pair ``i`` is
rows ``i`` and ``n_safe + i``) and :func:`split_contrast` (the stratified train / held-out split the held-out
AUROC is measured on). No model runs here and no direction is computed: see
:mod:`safesteer_diffusers.build.directions` for the maths and :mod:`safesteer_diffusers.build.source_features`
for the features.

Example::

    data = ContrastPrompts.from_pairs([("a calm street", "a street riot with injuries", "violence"), ...])
    split = split_contrast(data, holdout=0.3, seed=0)
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import torch

from safesteer_diffusers.packs.format import GLOBAL


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
        """Paired prompts: each safe prompt is the safe rewrite of one unsafe prompt.

        Args:
            pairs: an iterable of ``(safe, unsafe, category)``.

        Returns:
            Paired :class:`ContrastPrompts` (both sides carry the pair's category).

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
        """Unpaired sets of safe and unsafe prompts.

        Args:
            safe: ``[(prompt, category), ...]`` or ``{category: [prompt, ...]}``.
            unsafe: the same, for the unsafe prompts.

        Returns:
            Unpaired :class:`ContrastPrompts`.

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


# ---------------------------------------------------------------------- split
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

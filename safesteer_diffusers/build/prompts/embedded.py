"""Embedded prompt sets written for this project: benign anchors and safe/unsafe pairs by I2P category.

- ``anchors.txt``: benign prompts, one per line, that go through both the source language model and the
  target text encoder to fit alignment maps. They cover everyday captions, text-to-image style prompts
  (media, lighting, camera and artist-style tags) and benign text about sensitive topics (news, medicine,
  history, art, law, first aid), because alignment quality depends on coverage (docs/method.md, section 2).
  Generated deterministically by ``scripts/generate_anchors.py`` (repository only) from hand-written parts.
- ``anchor_kinds.txt``: the kind of each anchor, line for line (``caption``, ``t2i``, ``sensitive``), written
  by the same script; builds fit their alignment on the ``sensitive`` ones by default (docs/method.md 6.6).
- ``pairs.jsonl``: hand-written ``{"category", "unsafe", "safe"}`` pairs, at least 60 per I2P category,
  where the safe member changes only what makes the unsafe one unsafe. Only the source model ever sees
  them; the target side is fitted on anchors alone.

The files are read through ``importlib.resources``, so they work from an installed wheel as well as from
a checkout.

Example::

    from safesteer_diffusers.build.prompts.embedded import load_anchors, load_pairs

    anchors = load_anchors()                          # list[str], benign only
    pairs = load_pairs(["sexual", "violence"])        # list[PromptPair]
    pairs[0].safe, pairs[0].unsafe, pairs[0].category
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from functools import cache
from importlib import resources

from safesteer_diffusers.packs.format import I2P_CATEGORIES

from .readers import PromptPair

__all__ = [
    "ANCHORS_FILENAME",
    "ANCHOR_KINDS",
    "ANCHOR_KINDS_FILENAME",
    "I2P_CATEGORIES",
    "PAIRS_FILENAME",
    "PromptPair",
    "load_anchor_kinds",
    "load_anchors",
    "load_pairs",
]

ANCHORS_FILENAME = "anchors.txt"
ANCHOR_KINDS_FILENAME = "anchor_kinds.txt"
ANCHOR_KINDS = ("caption", "t2i", "sensitive")
"""The kinds of embedded anchors: everyday captions, text-to-image prompts, benign text on sensitive topics."""
PAIRS_FILENAME = "pairs.jsonl"


def _read_text(name: str) -> str:
    return resources.files(__package__).joinpath(name).read_text(encoding="utf-8")


@cache
def _anchors() -> tuple[str, ...]:
    return tuple(line.strip() for line in _read_text(ANCHORS_FILENAME).splitlines() if line.strip())


@cache
def _anchor_kinds() -> tuple[str, ...]:
    kinds = tuple(line.strip() for line in _read_text(ANCHOR_KINDS_FILENAME).splitlines() if line.strip())
    # Guards the shipped files against a partial regeneration: one kind per anchor, each a known kind.
    if len(kinds) != len(_anchors()) or not set(kinds) <= set(ANCHOR_KINDS):
        raise ValueError(
            f"{ANCHOR_KINDS_FILENAME} does not match {ANCHORS_FILENAME} ({len(kinds)} kinds for "
            f"{len(_anchors())} anchors, kinds {sorted(set(kinds))}); run scripts/generate_anchors.py."
        )
    return kinds


@cache
def _pairs() -> tuple[PromptPair, ...]:
    pairs = []
    for line_no, line in enumerate(_read_text(PAIRS_FILENAME).splitlines(), start=1):
        if not line.strip():
            continue
        row = json.loads(line)
        pair = PromptPair(safe=row["safe"], unsafe=row["unsafe"], category=row["category"])
        if pair.category not in I2P_CATEGORIES:  # guards the shipped file against a typo in a category
            raise ValueError(f"{PAIRS_FILENAME}, line {line_no}: unknown category {pair.category!r}.")
        pairs.append(pair)
    return tuple(pairs)


def load_anchors() -> list[str]:
    """Return the embedded benign anchor prompts (a new list on each call; the file is read once).

    Returns:
        The anchors in file order, each a non-empty single-line string, no two equal.

    Example::

        anchors = load_anchors()
        len(anchors)  # > 2000
    """
    return list(_anchors())


def load_anchor_kinds() -> list[str]:
    """Return the kind of each embedded anchor, in the order of :func:`load_anchors`.

    Returns:
        One of :data:`ANCHOR_KINDS` per anchor.

    Example::

        kinds = load_anchor_kinds()
        sensitive = [a for a, k in zip(load_anchors(), kinds) if k == "sensitive"]
    """
    return list(_anchor_kinds())


def load_pairs(categories: str | Iterable[str] | None = None) -> list[PromptPair]:
    """Return the embedded safe/unsafe pairs, optionally restricted to some I2P categories.

    Args:
        categories: one category name, several, or ``None`` for all of
            ``I2P_CATEGORIES`` (``"hate"``, ``"harassment"``, ``"violence"``, ``"self-harm"``,
            ``"sexual"``, ``"shocking"``, ``"illegal activity"``).

    Returns:
        The pairs of the requested categories, in file order (grouped by category, in I2P order).

    Raises:
        ValueError: a category that is not an I2P category (the message lists the valid names).

    Example::

        pairs = load_pairs("self-harm")
        {p.category for p in pairs}  # {"self-harm"}
    """
    if categories is None:
        return list(_pairs())
    # A bare string is one category, not an iterable of letters.
    wanted = [categories] if isinstance(categories, str) else list(categories)
    unknown = [c for c in wanted if c not in I2P_CATEGORIES]
    if unknown:
        raise ValueError(
            f"Unknown categor{'y' if len(unknown) == 1 else 'ies'} {', '.join(map(repr, unknown))}; the "
            f"embedded pairs cover the I2P categories {', '.join(map(repr, I2P_CATEGORIES))}. For other "
            "categories, read your own pairs with safesteer_diffusers.build.prompts.readers.read_pairs."
        )
    selected = set(wanted)
    return [p for p in _pairs() if p.category in selected]

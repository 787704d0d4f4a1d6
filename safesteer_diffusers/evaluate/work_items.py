"""The work of an evaluation: one :class:`WorkItem` per (pack, strength, prompt set, prompt, seed).

Items are listed in a fixed order (pack, strength, set, prompt, seed), have a stable key, a deterministic
seed, and an image path; :func:`shard` gives each process of a multi-GPU launch its share.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from safesteer_diffusers.build.prompts.readers import PromptRecord

__all__ = [
    "BASELINE",
    "PromptSet",
    "WorkItem",
    "format_strength",
    "item_seeds",
    "pack_label",
    "plan_items",
    "shard",
]

BASELINE = "baseline"
"""Pack label of the strength-0 items, generated once and shared by every pack (strength 0 is the unsteered
pipeline, bit for bit)."""

SETS = ("unsafe", "benign")


@dataclass(frozen=True)
class PromptSet:
    """Prompts of one role (``"unsafe"``: ASR, e.g. I2P; ``"benign"``: CLIP score and FID, e.g. COCO captions).

    Attributes:
        name: ``"unsafe"`` or ``"benign"``.
        records: the prompts (see :func:`safesteer_diffusers.build.prompts.readers.read_prompts`).
        seed_col: column holding a per-prompt seed (I2P: ``evaluation_seed``); used when present.
        guidance_col: column holding a per-prompt guidance scale (I2P: ``evaluation_guidance``).
    """

    name: str
    records: Sequence[PromptRecord]
    seed_col: str | None = "evaluation_seed"
    guidance_col: str | None = "evaluation_guidance"


@dataclass(frozen=True)
class WorkItem:
    """One generation: a prompt, a seed, a pack and a strength.

    ``pack`` is :data:`BASELINE` for shared strength-0 items; ``packs`` then lists the packs that use it.
    """

    pack: str
    strength: float
    set: str
    index: int
    seed: int
    prompt: str
    categories: tuple[str, ...] = ()
    guidance_scale: float | None = None
    packs: tuple[str, ...] = field(default=(), compare=False)

    @property
    def key(self) -> str:
        """``pack|strength|set|index|seed``: the identity of the item in ``results.jsonl``."""
        return f"{self.pack}|{format_strength(self.strength)}|{self.set}|{self.index}|{self.seed}"

    @property
    def image_stem(self) -> str:
        """Path, relative to the output folder and without suffix, of the item's image(s)."""
        return f"images/{self.pack}/{format_strength(self.strength)}/{self.set}_{self.index:05d}_{self.seed}"


def format_strength(strength: float) -> str:
    """Compact, stable text of a strength (``0``, ``1``, ``2.5``, ``-1``) for keys, paths and tables."""
    if not math.isfinite(strength):
        raise ValueError(f"strength must be a finite number, got {strength!r}.")
    text = f"{float(strength):g}"
    return "0" if text == "-0" else text


def pack_label(text: str) -> str:
    """A pack name usable in paths and keys: letters, digits, ``.``, ``_`` and ``-`` (others become ``-``)."""
    label = re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-.")
    if not label:
        raise ValueError(f"Cannot make a pack name from {text!r}; name it explicitly with NAME=PATH.")
    return label


def _number(value: Any, what: str, record: PromptRecord, cast: type) -> Any:
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, float) and math.isnan(value):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"Prompt {record.prompt[:60]!r}: {what} {value!r} is not a number.") from None
    if math.isnan(number):  # pandas-written files spell an empty cell "nan"
        return None
    return cast(number) if cast is int else number


def item_seeds(record: PromptRecord, prompt_set: PromptSet, seeds: int, base_seed: int) -> list[int]:
    """The seeds of one prompt: ``start, start + 1, ...`` (``seeds`` of them), where ``start`` is the prompt's
    own seed column (I2P ``evaluation_seed``) when present, else ``base_seed``."""
    start = None
    if prompt_set.seed_col:
        start = _number(record.extra.get(prompt_set.seed_col), prompt_set.seed_col, record, int)
    start = base_seed if start is None else start
    return [start + j for j in range(seeds)]


def plan_items(
    packs: Sequence[str],
    strengths: Sequence[float],
    prompt_sets: Sequence[PromptSet],
    *,
    seeds: int = 1,
    base_seed: int = 0,
    share_baseline: bool = True,
) -> list[WorkItem]:
    """Every item of the evaluation, in a fixed order.

    Args:
        packs: pack labels (see :func:`pack_label`); :data:`BASELINE` is reserved.
        strengths: global steering strengths.
        prompt_sets: the unsafe and/or benign prompts.
        seeds: images per prompt.
        base_seed: first seed of prompts without a seed column.
        share_baseline: generate strength 0 once (pack :data:`BASELINE`) instead of once per pack; only
            valid when strength 0 leaves the pipeline unchanged (no per-category strengths).

    Returns:
        The items; with ``share_baseline`` the strength-0 items come first, under pack :data:`BASELINE`.
    """
    if seeds < 1:
        raise ValueError(f"seeds must be >= 1, got {seeds}.")
    if BASELINE in packs:
        raise ValueError(f"{BASELINE!r} is reserved for the shared strength-0 images; rename that pack.")
    if len(set(packs)) != len(packs):
        raise ValueError(f"Pack names must be unique, got {list(packs)}; name them with NAME=PATH.")
    strengths = [float(s) for s in strengths]
    if len({format_strength(s) for s in strengths}) != len(strengths):
        raise ValueError(f"Strengths must be distinct, got {strengths}.")

    def items_for(pack: str, strength: float, users: tuple[str, ...]) -> list[WorkItem]:
        out = []
        for prompt_set in prompt_sets:
            if prompt_set.name not in SETS:
                raise ValueError(f"Prompt set name must be one of {SETS}, got {prompt_set.name!r}.")
            for index, record in enumerate(prompt_set.records):
                guidance = None
                if prompt_set.guidance_col:
                    guidance = _number(
                        record.extra.get(prompt_set.guidance_col), prompt_set.guidance_col, record, float
                    )
                for seed in item_seeds(record, prompt_set, seeds, base_seed):
                    out.append(
                        WorkItem(
                            pack=pack,
                            strength=strength,
                            set=prompt_set.name,
                            index=index,
                            seed=seed,
                            prompt=record.prompt,
                            categories=tuple(record.categories),
                            guidance_scale=guidance,
                            packs=users,
                        )
                    )
        return out

    items: list[WorkItem] = []
    if share_baseline and any(s == 0 for s in strengths):
        items += items_for(BASELINE, 0.0, tuple(packs))
    for pack in packs:
        for strength in strengths:
            if share_baseline and strength == 0:
                continue
            items += items_for(pack, strength, (pack,))
    return items


def shard(items: Sequence[WorkItem], rank: int, world: int) -> list[WorkItem]:
    """Rank ``rank``'s share of ``items`` out of ``world`` processes: every ``world``-th item from ``rank``.

    Round robin (not contiguous blocks) so that every process gets a similar mix of packs, strengths and
    prompt lengths; each process still goes through its items in plan order.

    Example::

        shard(items, rank=1, world=4) == items[1::4]
    """
    if world < 1 or not 0 <= rank < world:
        raise ValueError(f"Need 0 <= rank < world, got rank={rank}, world={world}.")
    return list(items[rank::world])

"""The image grids of an evaluation (drawn by :func:`safesteer_diffusers.utils.images.make_grid`):

- ``grids/strength_<s>.png`` (:func:`write_grids`): per strength, the first prompts (rows) x packs (columns);
- ``grids_by_pack/<pack>.png`` (:func:`write_pack_grids`): per pack, the first prompts (rows) x strengths
  (columns), side by side: every row is one prompt and one seed, so a row shows what the strength alone
  changes. Cells are captioned with the detectors' verdict (``flagged`` / ``not flagged``) when there is one.

Items without a result row or image show a grey square; video items show their first sampled frame.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from PIL import Image

from safesteer_diffusers.utils.images import make_grid

from .images import load_images
from .work_items import BASELINE, WorkItem, format_strength

__all__ = ["PACK_GRIDS", "STRENGTH_GRIDS", "source_pack", "write_grids", "write_pack_grids"]

STRENGTH_GRIDS = "grids"
"""Folder of the per-strength grids (prompts x packs)."""
PACK_GRIDS = "grids_by_pack"
"""Folder of the per-pack grids (prompts x strengths); not under ``grids/``, whose files are one per strength."""


def source_pack(pack: str, strength: float, share_baseline: bool) -> str:
    """The pack label under which a (pack, strength) cell's images were generated."""
    return BASELINE if share_baseline and strength == 0 else pack


def _first_items(
    items: Sequence[WorkItem], prompts: int
) -> tuple[dict[tuple[str, str, int], WorkItem], list[int]]:
    """The first seed's item of each of the first ``prompts`` prompts, by (pack, strength text, prompt index);
    unsafe prompts when there are any, else benign ones."""
    wanted_set = "unsafe" if any(item.set == "unsafe" for item in items) else "benign"
    first: dict[tuple[str, str, int], WorkItem] = {}
    for item in items:
        if item.set == wanted_set and item.index < prompts:
            first.setdefault((item.pack, format_strength(item.strength), item.index), item)
    return first, sorted({index for (_, _, index) in first})


def _image(out: Path, rows: Mapping[str, Mapping[str, Any]], item: WorkItem | None) -> Image.Image | None:
    row = rows.get(item.key) if item else None
    paths = (row or {}).get("images") or []
    shown = paths[:1] if paths and (out / paths[0]).is_file() else []
    return load_images(out, shown)[0] if shown else None


def _verdict(rows: Mapping[str, Mapping[str, Any]], item: WorkItem | None) -> str:
    row = rows.get(item.key) if item else None
    if not row or row.get("unsafe") is None:
        return ""
    return "flagged" if row["unsafe"] else "not flagged"


def write_grids(
    items: Sequence[WorkItem],
    rows: Mapping[str, Mapping[str, Any]],
    out: Path,
    *,
    packs: Sequence[str],
    strengths: Sequence[float],
    share_baseline: bool,
    prompts: int = 4,
) -> list[Path]:
    """One grid per strength (``grids/strength_<s>.png``): rows = the first ``prompts`` prompts (first seed;
    unsafe prompts when present, else benign), columns = packs. Video items show their first sampled frame.

    Args:
        items: the planned items.
        rows: result rows by key (items without a row or image show a grey square).
        out: the output folder.
        packs, strengths: the columns and the grids.
        share_baseline: the strength-0 grid has the single shared ``baseline`` column.
        prompts: prompts per grid (0: no grid).

    Returns:
        The paths written.
    """
    selected = _grid_prompts(items, prompts)
    if selected is None:
        return []
    first, indices, prompt_text = selected
    written = []
    for strength in strengths:
        columns = [BASELINE] if share_baseline and strength == 0 else list(packs)
        cells = [
            [_image(out, rows, first.get((pack, format_strength(strength), index))) for pack in columns]
            for index in indices
        ]
        grid = make_grid(cells, [prompt_text[i] for i in indices], columns)
        path = out / STRENGTH_GRIDS / f"strength_{format_strength(strength)}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        grid.save(path)
        written.append(path)
    return written


def write_pack_grids(
    items: Sequence[WorkItem],
    rows: Mapping[str, Mapping[str, Any]],
    out: Path,
    *,
    packs: Sequence[str],
    strengths: Sequence[float],
    share_baseline: bool,
    prompts: int = 4,
) -> list[Path]:
    """One grid per pack (``grids_by_pack/<pack>.png``): rows = the first ``prompts`` prompts (first seed, the
    same prompt and seed across a row), columns = the strengths in the order given (strength 0 from the shared
    baseline), each cell captioned with the detectors' verdict when the item has one.

    Args:
        items: the planned items.
        rows: result rows by key (items without a row or image show a grey square).
        out: the output folder.
        packs: one grid each.
        strengths: the columns.
        share_baseline: strength-0 cells read the shared ``baseline`` items.
        prompts: prompts per grid (0: no grid).

    Returns:
        The paths written.
    """
    selected = _grid_prompts(items, prompts)
    if selected is None:
        return []
    first, indices, prompt_text = selected
    columns = [
        f"s={format_strength(s)}" + (" (unsteered)" if s == 0 and share_baseline else "") for s in strengths
    ]
    written = []
    for pack in packs:
        chosen = [
            [first.get((source_pack(pack, s, share_baseline), format_strength(s), index)) for s in strengths]
            for index in indices
        ]
        cells = [[_image(out, rows, item) for item in row] for row in chosen]
        captions = [[_verdict(rows, item) for item in row] for row in chosen]
        has_verdicts = any(text for row in captions for text in row)
        seeds = [next((item.seed for item in row if item is not None), None) for row in chosen]
        labels = [f"{prompt_text[i]} (seed {seed})" for i, seed in zip(indices, seeds, strict=True)]
        grid = make_grid(cells, labels, columns, captions=captions if has_verdicts else None)
        path = out / PACK_GRIDS / f"{pack}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        grid.save(path)
        written.append(path)
    return written


def _grid_prompts(items, prompts: int):
    """``(first items, prompt indices, prompt text by index)`` for a grid of ``prompts`` rows, or ``None``."""
    if prompts <= 0:
        return None
    first, indices = _first_items(items, prompts)
    if not indices:
        return None
    return first, indices, {index: item.prompt for (_, _, index), item in first.items()}

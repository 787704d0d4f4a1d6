"""What an evaluation reports from its result rows: the summary rows (:func:`summarise`, one per pack x
strength x category) and ``summary.csv`` / ``summary.md``. The plot ``tradeoff.png`` is :mod:`.plots`, the
image grids (``grids/``, ``grids_by_pack/``) are :mod:`.grids`."""

from __future__ import annotations

import csv
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from safesteer_diffusers.packs.format import I2P_CATEGORIES

from .grids import source_pack, write_grids
from .plots import write_tradeoff_plot
from .stats import attack_success_rate, bootstrap_interval, combine_flags
from .work_items import WorkItem, format_strength

# write_grids and write_tradeoff_plot live in .grids and .plots; they are re-exported here for callers that
# imported them from this module.
__all__ = ["ALL", "BENIGN", "summarise", "source_pack", "write_grids", "write_summary", "write_tradeoff_plot"]

ALL = "all"
"""Category of the summary row over every unsafe prompt."""
BENIGN = "benign"
"""Category of the summary row over the benign prompts (ASR there is the detectors' false-positive rate)."""


def category_order(items: Sequence[WorkItem]) -> list[str]:
    """Categories of the unsafe items: I2P's order first, then the others alphabetically."""
    found = {c for item in items if item.set == "unsafe" for c in item.categories}
    return [c for c in I2P_CATEGORIES if c in found] + sorted(found - set(I2P_CATEGORIES))


def summarise(
    items: Sequence[WorkItem],
    rows: Mapping[str, Mapping[str, Any]],
    *,
    packs: Sequence[str],
    strengths: Sequence[float],
    detectors: Sequence[str],
    combine: str = "any",
    share_baseline: bool = True,
    fid: Mapping[tuple[str, str], float | None] | None = None,
    confidence: float = 0.95,
    resamples: int = 1000,
) -> list[dict[str, Any]]:
    """One summary row per pack x strength x category.

    Categories: ``all`` (every unsafe prompt), each category of the unsafe prompts (a prompt with several
    categories counts in each), and ``benign``. Columns: ``n`` (items with a result), ``planned``,
    ``flagged``, ``asr`` with its bootstrap interval ``asr_low``/``asr_high``, ``rate:<detector>`` and
    ``score:<detector>`` (flag rate and mean score) per detector, ``clip_score`` (mean over items) and ``fid``
    (benign rows).

    Args:
        items: the planned items (see :func:`plan_items`).
        rows: result rows by key.
        packs, strengths: the cells to summarise.
        detectors: detector names combined into the ASR flag.
        combine: ``"any"`` or ``"all"`` (see :func:`combine_flags`).
        share_baseline: strength-0 cells read the shared baseline items.
        fid: ``(source pack, strength text) -> FID`` of the benign images.
        confidence, resamples: bootstrap settings.

    Returns:
        The rows, by pack, then strength, then category (``all``, the categories, ``benign``).
    """
    by_cell: dict[tuple[str, str], list[WorkItem]] = {}
    for item in items:
        by_cell.setdefault((item.pack, format_strength(item.strength)), []).append(item)
    categories = category_order(items)
    has_unsafe = any(item.set == "unsafe" for item in items)
    has_benign = any(item.set == "benign" for item in items)
    summary = []
    for pack in packs:
        for strength in strengths:
            source = source_pack(pack, strength, share_baseline)
            cell = by_cell.get((source, format_strength(strength)), [])
            groups: list[tuple[str, list[WorkItem]]] = []
            if has_unsafe:
                unsafe = [item for item in cell if item.set == "unsafe"]
                groups.append((ALL, unsafe))
                groups += [(c, [item for item in unsafe if c in item.categories]) for c in categories]
            if has_benign:
                groups.append((BENIGN, [item for item in cell if item.set == "benign"]))
            for category, group in groups:
                present = [rows[item.key] for item in group if item.key in rows]
                row = _summary_row(present, detectors, combine, confidence, resamples)
                fid_value = (
                    (fid or {}).get((source, format_strength(strength))) if category == BENIGN else None
                )
                summary.append(
                    {
                        "pack": pack,
                        "strength": float(strength),
                        "category": category,
                        "planned": len(group),
                        **row,
                        "fid": fid_value,
                    }
                )
    return summary


def _summary_row(
    rows: Sequence[Mapping[str, Any]],
    detectors: Sequence[str],
    combine: str,
    confidence: float,
    resamples: int,
) -> dict[str, Any]:
    out: dict[str, Any] = {"n": len(rows)}
    usable = [r for r in rows if all(d in r.get("flags", {}) for d in detectors)] if detectors else []
    if detectors:
        flags = [combine_flags(r["flags"], detectors, combine) for r in usable]
        low, high = (
            bootstrap_interval(flags, confidence=confidence, resamples=resamples) if flags else (None, None)
        )
        out.update(
            flagged=sum(flags),
            asr=attack_success_rate(flags) if flags else None,
            asr_low=low,
            asr_high=high,
        )
        for name in detectors:
            out[f"rate:{name}"] = (
                attack_success_rate([bool(r["flags"][name]) for r in usable]) if usable else None
            )
            # The mean score shows how close a detector came to its threshold, which a rate of 0 hides.
            scores = [
                float(r["scores"][name]) for r in usable if (r.get("scores") or {}).get(name) is not None
            ]
            out[f"score:{name}"] = sum(scores) / len(scores) if scores else None
    else:
        out.update(flagged=None, asr=None, asr_low=None, asr_high=None)
    clip = [r["clip_score"] for r in rows if r.get("clip_score") is not None]
    out["clip_score"] = sum(clip) / len(clip) if clip else None
    return out


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def write_summary(
    summary: Sequence[Mapping[str, Any]],
    out: Path,
    *,
    detectors: Sequence[str],
    combine: str,
    header: Mapping[str, str],
    confidence: float = 0.95,
) -> tuple[Path, Path]:
    """Write ``summary.csv`` (every column) and ``summary.md`` (overview + per-category tables).

    Args:
        summary: the rows of :func:`summarise`.
        out: the output folder.
        detectors: detector names (one ``rate:<name>`` and one ``score:<name>`` column each).
        combine: how the detectors' flags were combined (named in the ASR definition).
        header: ``name -> value`` lines at the top of ``summary.md`` (pipeline, call arguments, ...).
        confidence: level of the ASR intervals (named in the ASR definition).

    Returns:
        The paths of ``summary.csv`` and ``summary.md``.
    """
    columns = [
        "pack",
        "strength",
        "category",
        "n",
        "planned",
        "flagged",
        "asr",
        "asr_low",
        "asr_high",
        *[f"rate:{d}" for d in detectors],
        *[f"score:{d}" for d in detectors],
        "clip_score",
        "fid",
    ]
    csv_path = out / "summary.csv"
    with csv_path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        for row in summary:
            writer.writerow({k: ("" if row.get(k) is None else row.get(k)) for k in columns})

    level = int(round(confidence * 100))
    lines = ["# SafeSteer evaluation", ""]
    lines += [f"- **{key}**: {value}" for key, value in header.items()]
    lines += [
        f"- **ASR**: fraction of items flagged by {'any' if combine == 'any' else 'all'} of: "
        f"{', '.join(detectors) if detectors else '(no detector)'}; [{level}% percentile bootstrap interval]",
        "- **CLIP score**: mean over items of max(cos(image, prompt), 0) (cosine scale; torchmetrics x 1/100)",
        "",
        "## Overview",
        "",
        "ASR over all unsafe prompts; CLIP score and FID on the benign prompts (on the unsafe prompts when there "
        "are no benign ones).",
        "",
        "| pack | strength | ASR | n | CLIP score | FID |",
        "|---|---:|---|---:|---:|---:|",
    ]
    by_cell: dict[tuple[str, float], dict[str, Mapping[str, Any]]] = {}
    for row in summary:
        by_cell.setdefault((row["pack"], row["strength"]), {})[row["category"]] = row
    for (pack, strength), cats in by_cell.items():
        unsafe, benign = cats.get(ALL), cats.get(BENIGN)
        quality = benign or unsafe or {}
        lines.append(
            f"| {pack} | {format_strength(strength)} | {_asr_text(unsafe)} | {unsafe['n'] if unsafe else ''} | "
            f"{_fmt(quality.get('clip_score'))} | {_fmt(benign.get('fid') if benign else None, 2)} |"
        )
    detector_columns = [f"rate:{d}" for d in detectors] + [f"score:{d}" for d in detectors]
    lines += [
        "",
        "## By category",
        "",
        "| pack | strength | category | n | ASR | "
        + " | ".join(detector_columns)
        + (" | " if detector_columns else "")
        + "CLIP score | FID |",
        "|---|---:|---|---:|---|" + "---:|" * len(detector_columns) + "---:|---:|",
    ]
    for row in summary:
        rates = " | ".join(_fmt(row.get(c)) for c in detector_columns)
        lines.append(
            f"| {row['pack']} | {format_strength(row['strength'])} | {row['category']} | {row['n']} | "
            f"{_asr_text(row)} | "
            + (rates + " | " if detector_columns else "")
            + f"{_fmt(row.get('clip_score'))} | {_fmt(row.get('fid'), 2)} |"
        )
    md_path = out / "summary.md"
    md_path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return csv_path, md_path


def _asr_text(row: Mapping[str, Any] | None) -> str:
    if not row or row.get("asr") is None:
        return ""
    return f"{row['asr']:.3f} [{_fmt(row.get('asr_low'))}, {_fmt(row.get('asr_high'))}]"

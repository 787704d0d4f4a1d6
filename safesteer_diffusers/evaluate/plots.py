"""``tradeoff.png``: ASR (all unsafe prompts, with its interval) against CLIP score (benign prompts when
present), one curve per pack, points labelled with their strength; the x axis is the strength when no CLIP
score was computed.

The axes are set from what the values can be, not only from the values drawn: ASR is a fraction, so its
axis starts at 0 and reaches at least 0.1 (a run where nothing is flagged shows its points on the floor of
the plot, not in the middle of a [-0.05, 0.05] window); CLIP scores are clamped at 0; a single x value
gets a window around it instead of a zero-width axis.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from safesteer_diffusers.utils.logging import get_logger

from .work_items import format_strength

__all__ = ["axis_limits", "tradeoff_figure", "write_tradeoff_plot"]

logger = get_logger(__name__)

ALL = "all"  # summary.ALL, repeated here: summary imports this module
BENIGN = "benign"  # summary.BENIGN


def axis_limits(
    values: Sequence[float],
    *,
    floor: float | None = None,
    ceiling: float | None = None,
    min_span: float = 0.1,
) -> tuple[float, float]:
    """Limits of an axis showing ``values``: their range padded by 5%, at least ``min_span`` wide.

    Args:
        values: the values drawn (error-bar ends included).
        floor, ceiling: bounds the quantity cannot cross (ASR: 0 and 1; CLIP score: 0); the padding may go a
            little past them so points on the bound stay visible, the span never does.
        min_span: the smallest width of the axis (keeps constant values from giving a degenerate axis).

    Returns:
        ``(low, high)``.

    Example::

        axis_limits([0.0, 0.0], floor=0.0, ceiling=1.0)   # (-0.005, 0.105): zeros on the floor, not centred
    """
    low, high = (min(values), max(values)) if values else (0.0, 0.0)
    if floor is not None:
        low = max(low, floor)
    if high - low < min_span:
        # Grow upwards from a floor the values sit on; otherwise around the values' middle.
        if floor is not None and low - floor < min_span / 2:
            low, high = floor, floor + max(min_span, high - floor)
        else:
            middle = (low + high) / 2
            low, high = middle - min_span / 2, middle + min_span / 2
    if ceiling is not None:
        high = min(high, ceiling)
        low = min(low, high - min_span)
    pad = 0.05 * (high - low)
    return low - pad, high + pad


def tradeoff_figure(summary: Sequence[Mapping[str, Any]], *, title: str = "") -> Any | None:
    """The trade-off figure (matplotlib), or ``None`` when no cell has an ASR.

    Args:
        summary: the rows of :func:`~safesteer_diffusers.evaluate.summary.summarise`.
        title: the plot's title (default "Safety / quality trade-off").

    Raises:
        ImportError: matplotlib is not installed.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cells: dict[str, dict[float, dict[str, Mapping[str, Any]]]] = {}
    for row in summary:
        cells.setdefault(row["pack"], {}).setdefault(row["strength"], {})[row["category"]] = row
    has_clip = any(
        (c.get(BENIGN) or c.get(ALL) or {}).get("clip_score") is not None
        for p in cells.values()
        for c in p.values()
    )
    figure, axis = plt.subplots(figsize=(6.4, 4.8), dpi=120)
    xs_all: list[float] = []
    ys_all: list[float] = []
    for pack, by_strength in cells.items():
        xs, ys, lows, highs, labels = [], [], [], [], []
        for strength in sorted(by_strength):
            cats = by_strength[strength]
            unsafe = cats.get(ALL)
            if not unsafe or unsafe.get("asr") is None:
                continue
            x = (cats.get(BENIGN) or unsafe).get("clip_score") if has_clip else strength
            if x is None:
                continue
            asr = unsafe["asr"]
            low = unsafe.get("asr_low") if unsafe.get("asr_low") is not None else asr
            high = unsafe.get("asr_high") if unsafe.get("asr_high") is not None else asr
            xs.append(x)
            ys.append(asr)
            lows.append(asr - low)
            highs.append(high - asr)
            labels.append(format_strength(strength))
            xs_all.append(x)
            ys_all += [low, high]
        if not xs:
            continue
        line = axis.errorbar(xs, ys, yerr=[lows, highs], marker="o", capsize=3, label=pack)
        for x, y, label in zip(xs, ys, labels, strict=True):
            axis.annotate(
                f"s={label}",
                (x, y),
                textcoords="offset points",
                xytext=(4, 4),
                fontsize=8,
                color=line[0].get_color(),
            )
    if not xs_all:
        plt.close(figure)
        return None
    axis.set_ylim(*axis_limits(ys_all, floor=0.0, ceiling=1.0))
    if has_clip:
        axis.set_xlim(*axis_limits(xs_all, floor=0.0, ceiling=1.0, min_span=0.05))
    else:
        axis.set_xlim(*axis_limits(xs_all, min_span=1.0))
    if max(ys_all) == 0:
        axis.text(
            0.5, 0.5, "no item flagged at any strength", transform=axis.transAxes, ha="center", color="grey"
        )
    axis.set_xlabel("CLIP score (benign prompts)" if has_clip else "strength")
    axis.set_ylabel("ASR (unsafe prompts)")
    axis.set_title(title or "Safety / quality trade-off")
    axis.grid(alpha=0.3)
    axis.legend()
    figure.tight_layout()
    return figure


def write_tradeoff_plot(summary: Sequence[Mapping[str, Any]], path: Path, *, title: str = "") -> Path | None:
    """Write :func:`tradeoff_figure` to ``path``.

    Returns:
        The PNG path, or ``None`` (with a logged warning) when matplotlib is not installed or there is no ASR.
    """
    try:
        figure = tradeoff_figure(summary, title=title)
    except ImportError:
        logger.warning("matplotlib is not installed: no %s (pip install matplotlib).", Path(path).name)
        return None
    if figure is None:
        return None
    import matplotlib.pyplot as plt

    figure.savefig(path)
    plt.close(figure)
    return path

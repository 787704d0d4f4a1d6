"""Images the evaluation and the demo both show: any pipeline image as PIL (:func:`to_pil`) and the labelled
comparison grid (:func:`make_grid`, one implementation for the evaluation's per-strength grids and the
demo's ``grid.png``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageDraw

__all__ = ["make_grid", "to_pil", "wrap_words"]

_CAPTION_HEIGHT = 30  # room for one line of caption under each cell when captions are given


def to_pil(value: Any) -> Image.Image:
    """An RGB PIL image from a PIL image, or an array or tensor (HWC or CHW; uint8, or floats in [0, 1])."""
    if isinstance(value, Image.Image):
        return value.convert("RGB")
    if torch.is_tensor(value):
        value = value.detach().float().cpu().numpy()
    array = np.asarray(value)
    if array.ndim == 3 and array.shape[0] in (1, 3) and array.shape[-1] not in (1, 3):
        array = np.transpose(array, (1, 2, 0))  # channels first -> last
    if array.dtype != np.uint8:
        array = (np.clip(array.astype(np.float32), 0.0, 1.0) * 255.0).round().astype(np.uint8)
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    return Image.fromarray(array).convert("RGB")


def make_grid(
    cells: Sequence[Sequence[Image.Image | None]],
    row_labels: Sequence[str],
    column_labels: Sequence[str],
    *,
    thumb: int = 192,
    label_width: int = 180,
    padding: int = 0,
    row_tags: Sequence[tuple[str, str]] | None = None,
    captions: Sequence[Sequence[str]] | None = None,
) -> Image.Image:
    """A labelled grid of images: ``cells[row][column]``, one row label (word-wrapped) per row and one label
    per column.

    Args:
        cells: the images; ``None`` leaves a grey square. Each image is scaled (up or down, keeping its
            aspect) to fill its cell, so tiny test images stay visible.
        row_labels: text left of each row, wrapped to the width of the label column.
        column_labels: text above each column (28 characters at most are drawn).
        thumb: size of a cell in pixels.
        label_width: width of the row-label column in pixels.
        padding: blank pixels around each image inside its cell.
        row_tags: per row, a ``(text, colour)`` line drawn above its label, e.g. ``("[unsafe]", "darkred")``.
        captions: per row and column, a line drawn under the image (a strip is added under each row).

    Returns:
        The grid, white background, RGB.
    """
    header = 24
    row_height = thumb + (_CAPTION_HEIGHT if captions is not None else 0)
    columns = len(column_labels)
    grid = Image.new("RGB", (label_width + columns * thumb, header + len(cells) * row_height), "white")
    draw = ImageDraw.Draw(grid)
    chars_per_line = label_width * 28 // 180  # 28 characters of the default font fill 180 px
    for c, text in enumerate(column_labels):
        draw.text((label_width + c * thumb + 4, 4), text[:28], fill="black")
    for r, row in enumerate(cells):
        y = header + r * row_height
        lines = [(chunk, "black") for chunk in wrap_words(row_labels[r], chars_per_line)]
        if row_tags is not None:
            lines.insert(0, row_tags[r])
        for line, (chunk, colour) in enumerate(lines[: thumb // 14]):
            draw.text((4, y + 4 + 14 * line), chunk, fill=colour)
        for c, image in enumerate(row):
            x = label_width + c * thumb
            if captions is not None:
                draw.text((x + 4, y + thumb + 4), captions[r][c], fill="black")
            if image is None:
                box = [x + padding, y + padding, x + thumb - 1 - padding, y + thumb - 1 - padding]
                draw.rectangle(box, fill=(200, 200, 200))
                continue
            inner = thumb - 2 * padding
            scale = inner / max(image.size)
            size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
            copy = image.resize(size, Image.NEAREST if scale > 1 else Image.BICUBIC)
            grid.paste(copy, (x + (thumb - copy.width) // 2, y + (thumb - copy.height) // 2))
    return grid


def wrap_words(text: str, width: int) -> list[str]:
    """``text`` in lines of at most ``width`` characters, broken between words (a longer word keeps its line).

    Example::

        wrap_words("a red fox in a snowy forest", 10)   # ['a red fox', 'in a snowy', 'forest']
    """
    words, lines, line = text.split(), [], ""
    for word in words:
        if line and len(line) + 1 + len(word) > width:
            lines.append(line)
            line = word
        else:
            line = f"{line} {word}".strip()
    if line:
        lines.append(line)
    return lines

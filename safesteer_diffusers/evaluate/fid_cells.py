"""FID of an evaluation's cells: one FID per (pack, strength) over its benign images against the reference
images, cached in ``cache/fid_cells.json`` under a key of the scorer and the images' paths and modification
times, so a rerun recomputes only the cells whose images changed."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from .quality import FidScorer, image_files
from .work_items import WorkItem, format_strength

__all__ = ["fid_by_cell"]


def fid_by_cell(
    fid: FidScorer,
    reference_images: Any,
    items: Sequence[WorkItem],
    rows: Mapping[str, Mapping[str, Any]],
    out: Path,
    log: Callable[[str], None],
) -> dict[tuple[str, str], float | None]:
    """FID of every cell's benign images.

    Args:
        fid: the scorer; its reference statistics are set here (cached in ``cache/fid_reference.pt``).
        reference_images: a folder, or a list of images or paths.
        items: the planned items (benign ones with a result row count).
        rows: result rows by key.
        out: the output folder.
        log: where the note about a cell with fewer than 2 images goes.

    Returns:
        ``(source pack, strength text) -> FID`` (``None`` for a cell with fewer than 2 images); the source
        pack is ``baseline`` for shared strength-0 images.
    """
    references = (
        image_files(reference_images) if isinstance(reference_images, str | Path) else list(reference_images)
    )
    fid.set_reference(references, cache=out / "cache" / "fid_reference.pt")
    cache_path = out / "cache" / "fid_cells.json"
    cache = json.loads(cache_path.read_text(encoding="utf-8")) if cache_path.is_file() else {}
    cells: dict[tuple[str, str], list[str]] = {}
    for item in items:
        if item.set == "benign" and item.key in rows:
            cells.setdefault((item.pack, format_strength(item.strength)), []).extend(
                rows[item.key].get("images", [])
            )
    values: dict[tuple[str, str], float | None] = {}
    for (pack, strength), paths in cells.items():
        existing = [p for p in paths if (out / p).is_file()]
        digest = hashlib.sha256(f"{fid.name}|{fid.resolution}|{fid.reference_key}".encode())
        for p in sorted(existing):
            digest.update(f"|{p}|{(out / p).stat().st_mtime_ns}".encode())
        name = f"{pack}|{strength}"
        if cache.get(name, {}).get("key") == digest.hexdigest():
            values[(pack, strength)] = cache[name]["fid"]
            continue
        if len(existing) < 2:
            log(f"FID of {name}: needs at least 2 images, has {len(existing)}; left empty")
            values[(pack, strength)] = None
            continue
        values[(pack, strength)] = fid.compute([out / p for p in existing])
        cache[name] = {"key": digest.hexdigest(), "fid": values[(pack, strength)], "n": len(existing)}
    cache_path.parent.mkdir(parents=True, exist_ok=True)
    cache_path.write_text(json.dumps(cache, indent=2, sort_keys=True), encoding="utf-8")
    return values

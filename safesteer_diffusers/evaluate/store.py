"""The output folder: ``results.jsonl`` (one JSON row per item, appended as items finish), per-process
``results.rank<k>.jsonl`` files under a multi-process launch, their merge, and ``run.json`` (what the images
were generated with, so that a rerun into the same folder cannot mix settings).
"""

from __future__ import annotations

import json
import os
import re
import warnings
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

__all__ = [
    "RESULTS",
    "RowWriter",
    "check_run_config",
    "load_rows",
    "marker_file",
    "merge_results",
    "rank_file",
    "read_rows",
]

RESULTS = "results.jsonl"
RUN_CONFIG = "run.json"
_RANK_FILE = re.compile(r"^results\.rank(\d+)\.jsonl$")


def rank_file(out: Path, rank: int) -> Path:
    """Rows written by process ``rank`` of a multi-process launch."""
    return out / f"results.rank{rank}.jsonl"


def marker_file(out: Path, rank: int) -> Path:
    """Written by process ``rank`` when it has finished its share."""
    return out / f".rank{rank}.done"


def read_rows(path: Path) -> list[dict[str, Any]]:
    """Rows of one JSONL file; a line cut short by an interrupted run is skipped with a warning."""
    if not path.is_file():
        return []
    rows, broken = [], 0
    with path.open(encoding="utf-8") as f:
        for line in f:
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                broken += 1
                continue
            if isinstance(row, dict) and "key" in row:
                rows.append(row)
    if broken:
        warnings.warn(f"{path}: skipped {broken} unreadable line(s) (an interrupted write?).", stacklevel=2)
    return rows


def _rank_files(out: Path) -> list[Path]:
    found = [(int(m.group(1)), p) for p in out.glob("results.rank*.jsonl") if (m := _RANK_FILE.match(p.name))]
    return [p for _, p in sorted(found)]


def load_rows(out: Path) -> dict[str, dict[str, Any]]:
    """Every row in ``results.jsonl`` and the per-process files, by key; a later row for a key replaces an
    earlier one (rescoring appends an updated row)."""
    rows: dict[str, dict[str, Any]] = {}
    for path in [out / RESULTS, *_rank_files(out)]:
        for row in read_rows(path):
            rows[row["key"]] = row
    return rows


class RowWriter:
    """Appends rows to one JSONL file, one flushed line per row (an interruption loses at most one row)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._file = path.open("a", encoding="utf-8")

    def write(self, row: Mapping[str, Any]) -> None:
        self._file.write(json.dumps(row, sort_keys=True, default=_jsonable) + "\n")
        self._file.flush()

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> RowWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _jsonable(value: Any) -> Any:
    if hasattr(value, "item"):
        return value.item()
    if isinstance(value, tuple | set):
        return list(value)
    return str(value)


def merge_results(out: Path) -> int:
    """Fold the per-process files into ``results.jsonl`` (one row per key, the latest) and delete them.

    Returns:
        The number of rows in ``results.jsonl``.
    """
    parts = _rank_files(out)
    main = out / RESULTS
    ordered: dict[str, dict[str, Any]] = {}
    for path in [main, *parts]:
        for row in read_rows(path):
            ordered[row["key"]] = row
    temporary = out / (RESULTS + ".tmp")
    with temporary.open("w", encoding="utf-8") as f:
        for row in ordered.values():
            f.write(json.dumps(row, sort_keys=True, default=_jsonable) + "\n")
    os.replace(temporary, main)
    for path in parts:
        path.unlink()
    return len(ordered)


def check_run_config(
    out: Path, config: Mapping[str, Any], *, allow_change: bool = False, write: bool = True
) -> None:
    """Record the generation settings in ``run.json``, or check them against the recorded ones.

    Settings that change the images (pipeline, call arguments, steering arguments, pack contents per pack
    name, frames sampled) must match, or the folder would mix images made differently under the same keys.
    New packs may be added. Detectors and metrics are not part of this: they are recomputed as needed.
    ``write=False`` only checks (the other processes of a launch: the main one writes).

    Raises:
        ValueError: a recorded setting differs (lists each one, with both values and the fix).
    """
    path = out / RUN_CONFIG
    config = json.loads(json.dumps(config, sort_keys=True, default=_jsonable))
    if path.is_file():
        recorded = json.loads(path.read_text(encoding="utf-8"))
        problems = []
        for key in sorted(set(recorded) | set(config)):
            old, new = recorded.get(key), config.get(key)
            if key == "packs":
                old, new = old or {}, new or {}
                for name in sorted(set(old) & set(new)):
                    if old[name] != new[name]:
                        problems.append(
                            f"  - pack {name!r}: its directions changed (fingerprint {old[name]} -> {new[name]})"
                        )
                continue
            if old != new:
                problems.append(f"  - {key}: {old!r} was used for the images here, now {new!r}")
        if problems and not allow_change:
            raise ValueError(
                f"{out} holds results generated with other settings:\n"
                + "\n".join(problems)
                + "\nUse a new --out folder, or pass --allow-config-change to reuse the existing images anyway."
            )
        config = {**recorded, **config, "packs": {**recorded.get("packs", {}), **config.get("packs", {})}}
    if not write:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(".json.tmp")
    temporary.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    os.replace(temporary, path)


def remove_files(paths: Iterable[Path]) -> None:
    """Delete the files that exist."""
    for path in paths:
        path.unlink(missing_ok=True)

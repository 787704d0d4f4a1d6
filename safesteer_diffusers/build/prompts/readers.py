"""Reading user prompt files: CSV, JSONL, or a Hugging Face dataset (hub id or local folder).

Two readers, one per shape of data:

- :func:`read_prompts` returns :class:`PromptRecord` (a prompt, its categories, and every other column in
  ``extra``), for evaluation sets such as I2P. I2P's CSV layout works as is: ``prompt`` is the text and
  ``categories`` (comma-separated, e.g. ``"sexual, violence"``) is found automatically.
- :func:`read_pairs` returns :class:`PromptPair` (safe, unsafe, category), for estimating directions.

Which reader backs a ``source`` is decided by what it is: an existing ``.csv``/``.tsv`` file, an existing
``.jsonl``/``.ndjson``/``.json`` file, an existing folder (a dataset saved with ``save_to_disk`` or a
folder of data files), or otherwise a Hugging Face dataset id. The ``datasets`` library is imported
only for the last two, so CSV and JSONL need nothing beyond the standard library.
"""

from __future__ import annotations

import csv
import json
import os
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["PromptPair", "PromptRecord", "read_pairs", "read_prompts"]

CSV_SUFFIXES = (".csv", ".tsv")
JSON_SUFFIXES = (".jsonl", ".ndjson", ".json")
CATEGORY_COLUMN_CANDIDATES = ("categories", "category")
"""Columns tried, in order, when ``read_prompts`` is called with ``category_col=None`` (I2P: ``categories``)."""

# Column names commonly used for prompt text in public prompt sets; used only to suggest a fix.
_PROMPT_COLUMN_GUESSES = ("prompt", "text", "caption", "prompts", "sentence", "query", "input")


@dataclass(frozen=True)
class PromptRecord:
    """One prompt read from a file or dataset.

    Attributes:
        prompt: the prompt text.
        categories: category labels of the row (e.g. ``("sexual", "violence")`` for I2P), stripped, in
            file order; empty when the source has no category column.
        extra: every other column of the row, by column name, with the value as read (strings for CSV;
            JSON and ``datasets`` values keep their types). Not part of the hash.
    """

    prompt: str
    categories: tuple[str, ...] = ()
    extra: dict[str, Any] = field(default_factory=dict, hash=False)


@dataclass(frozen=True)
class PromptPair:
    """A safe/unsafe pair of prompts tagged with a category.

    The two members differ only in what makes one of them unsafe, so their difference in a model's
    hidden states isolates that concept.

    Attributes:
        safe: the benign member.
        unsafe: the member carrying the unsafe concept.
        category: the category label (an I2P category for the embedded pairs; free text otherwise, the
            empty string when read without a category column).
    """

    safe: str
    unsafe: str
    category: str

    def __post_init__(self) -> None:
        for name in ("safe", "unsafe", "category"):
            value = getattr(self, name)
            if not isinstance(value, str):
                raise TypeError(f"PromptPair.{name} must be a str, got {type(value).__name__}: {value!r}")


# --------------------------------------------------------------------------------------------------------
# Public readers
# --------------------------------------------------------------------------------------------------------


def read_prompts(
    source: str | os.PathLike[str],
    prompt_col: str = "prompt",
    category_col: str | None = None,
    split: str = "train",
    limit: int | None = None,
) -> list[PromptRecord]:
    """Read prompts from a CSV/JSONL file, a local dataset folder, or a Hugging Face dataset id.

    Rows whose prompt is empty (or missing) are skipped with a warning that says where they are.

    Args:
        source: path of a ``.csv``/``.tsv``/``.jsonl``/``.ndjson``/``.json`` file, path of a folder
            (``Dataset.save_to_disk`` output or a folder of data files), or a Hugging Face dataset id
            such as ``"AIML-TUDA/i2p"`` (needs the ``datasets`` library; honours ``HF_HUB_OFFLINE``).
        prompt_col: column holding the prompt text.
        category_col: column holding the row's categories: a comma-separated string (I2P style) or a list
            of strings. ``None`` uses ``categories`` or ``category`` when the source has one, else none.
        split: dataset split to read (datasets only; ignored for CSV and JSONL files).
        limit: read at most this many records (``None``: all).

    Returns:
        One :class:`PromptRecord` per non-empty prompt, in source order.

    Raises:
        ValueError: unknown file type, empty file, a named column that is not there (the message lists
            the columns present), or no prompt at all.
        FileNotFoundError: ``source`` names a file that does not exist.
        ImportError: a dataset source while ``datasets`` is not installed.

    Example::

        records = read_prompts("i2p_benchmark.csv", limit=100)   # I2P's CSV as downloaded
        records[0].prompt, records[0].categories, records[0].extra["hard"]
    """
    _check_limit(limit)
    table = _open_table(source, split)
    _require_columns(table, {"prompt_col": prompt_col})
    if category_col is None:
        category_col = next((c for c in CATEGORY_COLUMN_CANDIDATES if c in table.columns), None)
    else:
        _require_columns(table, {"category_col": category_col})

    records: list[PromptRecord] = []
    skipped: list[str] = []
    rows_seen = 0
    for where, row in table.rows():
        rows_seen += 1
        text = _as_text(row.get(prompt_col))
        if not text:
            skipped.append(where)
            continue
        categories = _split_categories(row.get(category_col), table, where) if category_col else ()
        extra = {k: v for k, v in row.items() if k not in (prompt_col, category_col)}
        records.append(PromptRecord(prompt=text, categories=categories, extra=extra))
        if limit is not None and len(records) == limit:
            break

    if rows_seen == 0:
        raise ValueError(f"{table.label} has no rows (columns: {_names(table.columns)}).")
    if not records:
        raise ValueError(
            f"{table.label}: all {rows_seen} rows have an empty {prompt_col!r}. If the text is in another "
            f"column, pass prompt_col=<name> (--prompt-col <name>); columns: {_names(table.columns)}."
        )
    if skipped:
        warnings.warn(
            f"{table.label}: skipped {len(skipped)} row(s) with an empty {prompt_col!r} "
            f"({_short_list(skipped)}).",
            stacklevel=2,
        )
    return records


def read_pairs(
    source: str | os.PathLike[str],
    safe_col: str = "safe",
    unsafe_col: str = "unsafe",
    category_col: str | None = "category",
    split: str = "train",
    limit: int | None = None,
) -> list[PromptPair]:
    """Read safe/unsafe prompt pairs from a CSV/JSONL file or a dataset (same sources as `read_prompts`).

    Every row must have a non-empty safe and unsafe text; a row where both are equal carries no
    contrast and is skipped with a warning.

    Args:
        source: file path, dataset folder or Hugging Face dataset id (see :func:`read_prompts`).
        safe_col: column holding the safe member.
        unsafe_col: column holding the unsafe member.
        category_col: column holding the category label; ``None`` reads pairs without categories (their
            ``category`` is the empty string).
        split: dataset split to read (datasets only).
        limit: read at most this many pairs (``None``: all).

    Returns:
        One :class:`PromptPair` per row, in source order.

    Raises:
        ValueError: unknown file type, empty file, missing column (the message lists the columns present
            and the argument to pass), or a row with an empty member.

    Example::

        pairs = read_pairs("my_pairs.jsonl")                       # {"category", "safe", "unsafe"} rows
        pairs = read_pairs("pairs.csv", safe_col="benign", unsafe_col="harmful", category_col=None)
    """
    _check_limit(limit)
    table = _open_table(source, split)
    wanted = {"safe_col": safe_col, "unsafe_col": unsafe_col}
    if category_col is not None:
        wanted["category_col"] = category_col
    _require_columns(table, wanted)

    pairs: list[PromptPair] = []
    identical: list[str] = []
    for where, row in table.rows():
        safe, unsafe = _as_text(row.get(safe_col)), _as_text(row.get(unsafe_col))
        for col, text in ((safe_col, safe), (unsafe_col, unsafe)):
            if not text:
                raise ValueError(
                    f"{table.label}, {where}: {col!r} is empty; every pair needs both a safe and an "
                    "unsafe prompt. Fill it in or remove the row."
                )
        if safe == unsafe:
            identical.append(where)
            continue
        category = _as_text(row.get(category_col)) if category_col is not None else ""
        pairs.append(PromptPair(safe=safe, unsafe=unsafe, category=category))
        if limit is not None and len(pairs) == limit:
            break

    if identical:
        warnings.warn(
            f"{table.label}: skipped {len(identical)} pair(s) whose safe and unsafe texts are identical "
            f"({_short_list(identical)}).",
            stacklevel=2,
        )
    if not pairs:
        raise ValueError(f"{table.label} has no pairs (columns: {_names(table.columns)}).")
    return pairs


# --------------------------------------------------------------------------------------------------------
# Tables: a uniform view (columns + numbered rows) over CSV, JSONL and datasets
# --------------------------------------------------------------------------------------------------------


@dataclass
class _Table:
    label: str  # how messages name the source, e.g. "prompts.csv" or "dataset 'AIML-TUDA/i2p' (train)"
    columns: list[str]
    numbered: list[tuple[str, dict[str, Any]]] | None = None  # files: ("line 3", row)
    dataset: Any = None  # datasets.Dataset: iterates as dicts, read lazily

    def rows(self) -> Iterator[tuple[str, Mapping[str, Any]]]:
        """Yield ``(where, row)``: ``where`` names the row in messages ("line 3" in a file, "row 3")."""
        if self.numbered is not None:
            yield from self.numbered
        else:
            for i, row in enumerate(self.dataset, start=1):
                yield f"row {i}", row


def _open_table(source: str | os.PathLike[str], split: str) -> _Table:
    if not isinstance(source, (str, os.PathLike)):
        raise TypeError(
            f"source must be a path or a dataset id (str), got {type(source).__name__}: {source!r}"
        )
    path = Path(source)
    if path.is_dir():
        return _read_dataset(str(path), split, local=True)
    suffix = path.suffix.lower()
    if path.is_file():
        if suffix in CSV_SUFFIXES:
            return _read_csv(path)
        if suffix in JSON_SUFFIXES:
            return _read_jsonl(path)
        raise ValueError(
            f"Unknown prompt file type {suffix or '(no suffix)'!r} for {path}. Supported: "
            f"{', '.join(CSV_SUFFIXES + JSON_SUFFIXES)} files, a dataset folder, or a Hugging Face dataset "
            "id. Convert the file to CSV or JSONL (one JSON object per line)."
        )
    if suffix in CSV_SUFFIXES + JSON_SUFFIXES or path.is_absolute() or str(source).startswith("."):
        raise FileNotFoundError(f"Prompt file not found: {path}")
    return _read_dataset(str(source), split, local=False)


def _read_csv(path: Path) -> _Table:
    delimiter = "\t" if path.suffix.lower() == ".tsv" else ","
    # utf-8-sig: spreadsheet exports often start with a byte-order mark that would corrupt the first name.
    with path.open(encoding="utf-8-sig", newline="") as f:
        reader = csv.DictReader(f, delimiter=delimiter)
        columns = list(reader.fieldnames or [])
        if not columns:
            raise ValueError(
                f"{path} is empty: expected a header row naming the columns, then one row per prompt."
            )
        # Cells beyond the header land under the key None (DictReader's restkey): not a column, dropped.
        # line_num is the file line where the row ends (a quoted cell may span lines).
        rows = [
            (f"line {reader.line_num}", {k: v for k, v in row.items() if k is not None}) for row in reader
        ]
    return _Table(label=str(path), columns=columns, numbered=rows)


def _read_jsonl(path: Path) -> _Table:
    text = path.read_text(encoding="utf-8-sig")
    if not text.strip():
        raise ValueError(f"{path} is empty: expected one JSON object per line.")
    stripped = text.lstrip()
    if path.suffix.lower() == ".json" and stripped.startswith("["):
        # A .json file holding one array of objects: accepted too, rows numbered from 1.
        try:
            items = json.loads(text)
        except json.JSONDecodeError as e:
            raise ValueError(f"{path} is not valid JSON: {e}") from None
        if not isinstance(items, list):
            raise ValueError(f"{path}: expected a JSON array of objects or one JSON object per line.")
        numbered = [(f"item {i}", item) for i, item in enumerate(items, start=1)]
    else:
        numbered = []
        for line_no, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                numbered.append((f"line {line_no}", json.loads(line)))
            except json.JSONDecodeError as e:
                raise ValueError(
                    f"{path}, line {line_no}: not valid JSON ({e.msg}). Each line must hold one JSON "
                    'object, e.g. {"prompt": "a photo of a cat"}.'
                ) from None
    columns: dict[str, None] = {}  # ordered union of keys, for messages and column checks
    for where, item in numbered:
        if not isinstance(item, dict):
            raise ValueError(
                f"{path}, {where}: expected a JSON object with named fields, got {type(item).__name__}."
            )
        columns.update(dict.fromkeys(item))
    if not numbered:
        raise ValueError(f"{path} is empty: expected one JSON object per line.")
    return _Table(label=str(path), columns=list(columns), numbered=numbered)


def _read_dataset(source: str, split: str, local: bool) -> _Table:
    try:
        import datasets  # lazy: only dataset sources need it, and it is not a dependency
    except ImportError:
        where = "the dataset folder" if local else "the Hugging Face dataset"
        hint = "" if local else " (no local file or folder has this name either)"
        raise ImportError(
            f"Reading {where} {source!r} needs the `datasets` library{hint}. Install it with "
            "`pip install datasets`, or pass a CSV or JSONL file instead."
        ) from None

    path = Path(source)
    if local and ((path / "dataset_dict.json").is_file() or (path / "state.json").is_file()):
        loaded = datasets.load_from_disk(source)  # a folder written by save_to_disk
        if isinstance(loaded, datasets.DatasetDict):
            if split not in loaded:
                raise ValueError(
                    f"Split {split!r} not found in the dataset saved at {source}; splits present: "
                    f"{_names(list(loaded))}. Pass split=<name> (--split <name>)."
                )
            loaded = loaded[split]
    else:
        loaded = datasets.load_dataset(source, split=split)
    return _Table(label=f"dataset {source!r} ({split})", columns=list(loaded.column_names), dataset=loaded)


# --------------------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------------------

# Command-line spelling of each column argument, so that errors give the fix in both forms.
_FLAGS = {
    "prompt_col": "--prompt-col",
    "category_col": "--category-col",
    "safe_col": "--safe-col",
    "unsafe_col": "--unsafe-col",
}


def _require_columns(table: _Table, wanted: dict[str, str]) -> None:
    """Raise one error listing every requested column that is absent, with the argument that fixes it."""
    missing = {arg: col for arg, col in wanted.items() if col not in table.columns}
    if not missing:
        return
    lines = [f"{table.label} has no column {col!r} (asked for by {arg})." for arg, col in missing.items()]
    lines.append(f"Columns present: {_names(table.columns)}.")
    for arg, col in missing.items():
        suggestion = _suggest(col, table.columns, arg)
        example = suggestion or "<column>"
        lines.append(f"Pass {arg}={example!r} ({_FLAGS[arg]} {example}) to name the right column.")
    raise ValueError("\n".join(lines))


def _suggest(wanted: str, columns: list[str], arg: str) -> str | None:
    by_lower = {c.lower(): c for c in columns}
    if wanted.lower() in by_lower:
        return by_lower[wanted.lower()]
    if arg == "prompt_col":
        return next((by_lower[g] for g in _PROMPT_COLUMN_GUESSES if g in by_lower), None)
    return None


def _split_categories(value: Any, table: _Table, where: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        parts = value.split(",")
    elif isinstance(value, (list, tuple)):
        parts = [str(v) for v in value]
    else:
        raise ValueError(
            f"{table.label}, {where}: categories must be a comma-separated string or a list of "
            f"strings, got {type(value).__name__}: {value!r}."
        )
    return tuple(p.strip() for p in parts if p.strip())


def _as_text(value: Any) -> str:
    if value is None:
        return ""
    # A float NaN is how pandas-written files and some datasets spell an empty cell.
    if isinstance(value, float) and value != value:
        return ""
    return str(value).strip()


def _check_limit(limit: int | None) -> None:
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise ValueError(f"limit must be a positive integer or None, got {limit!r}.")


def _names(columns: list[str]) -> str:
    return ", ".join(repr(c) for c in columns) if columns else "(none)"


def _short_list(wheres: list[str], shown: int = 10) -> str:
    head = ", ".join(wheres[:shown])
    return head + (f", ... ({len(wheres) - shown} more)" if len(wheres) > shown else "")

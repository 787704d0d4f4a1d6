"""The metadata rules of the pack format (docs/pack-format.md): plain JSON, bounded, and the type of every
known key, checked against the pack's tensors where the format states a relation (dims, categories).

Split from :mod:`.validation` (the tensor rules), which it builds on.
"""

from __future__ import annotations

import json
import math
import re
import warnings
from collections import Counter
from collections.abc import Callable, Mapping

from safesteer_diffusers.version import __version__

from .errors import InvalidPackError, InvalidPackTypeError, describe
from .format import (
    GLOBAL,
    MAX_ABS_VALUE,
    MAX_JSON_INT,
    MAX_METADATA_BYTES,
    MAX_METADATA_DEPTH,
    MAX_SOURCE_GATE_HEADS,
    SUPPORTED_FORMAT_VERSIONS,
)
from .validation import FIX_REBUILD, _short

FIX_METADATA = (
    "Rebuild the pack with safesteer-diffusers, or correct the metadata passed to DirectionPack.from_tensors."
)

REQUIRED_METADATA = ("format_version", "library_version", "kind", "source", "target", "provenance")
KNOWN_METADATA = frozenset(
    REQUIRED_METADATA
    + (
        "alignment",
        "calibration",
        "categories",
        "default_strengths",
        "gate",
        "source_gate",
        "description",
        "build",
        "derived",
    )
)
PACK_KINDS = ("transferred", "native", "manual", "derived")


def check_metadata(
    metadata: object, *, names: list[str], spaces: Mapping[str, int], stacklevel: int = 2
) -> dict:
    """A checked plain-JSON copy of the pack metadata, with ``categories`` filled from ``names``.

    Checks the JSON rules (string keys, finite numbers, integers within +-2**64, nesting depth, size), the
    required keys, and the type (and, where stated, the consistency with the tensors) of every known key.
    Unknown top-level keys warn (a newer writer) and are kept.

    Args:
        metadata: the metadata mapping.
        names: the pack's direction names (``"global"`` first).
        spaces: the pack's spaces and their dimensions.
        stacklevel: passed to ``warnings.warn`` for the unknown-keys warning.
    """
    if not isinstance(metadata, Mapping):
        raise InvalidPackTypeError(
            f"Pack metadata must be a mapping (a JSON object), got {type(metadata).__name__}. {FIX_METADATA}",
            field="metadata",
        )
    plain = _plain_json(metadata, "", 1)
    missing = [key for key in REQUIRED_METADATA if key not in plain]
    if missing:
        raise InvalidPackError(
            f"Pack metadata is missing required keys {missing}. Required: {list(REQUIRED_METADATA)}. "
            "Build packs with DirectionPack.from_tensors, which fills the defaults.",
            field=missing[0],
        )
    _check_format_version(plain["format_version"])
    kind = plain["kind"]
    if not isinstance(kind, str) or kind not in PACK_KINDS:
        raise InvalidPackError(
            f"Pack kind must be one of {PACK_KINDS}, got {_short(kind)}. {FIX_METADATA}", field="kind"
        )
    for key in ("source", "target", "provenance"):
        if not isinstance(plain[key], dict):
            raise InvalidPackError(
                f"Pack metadata {key!r} must be a JSON object, got {describe(plain[key])}. {FIX_METADATA}",
                field=key,
            )
    for field, (accepts, expected) in _FIELDS.items():
        parent, _, key = field.rpartition(".")
        holder = plain
        for part in (
            parent.split(".") if parent else ()
        ):  # nested keys, e.g. source_gate.supplied_prompts.count
            holder = holder.get(part) if isinstance(holder, dict) else None
        if isinstance(holder, dict) and key in holder and not accepts(holder[key]):
            raise InvalidPackError(
                f"Pack metadata {field!r} must be {expected}, got {describe(holder[key])}. {FIX_METADATA}",
                field=field,
            )
    _check_per_space(plain, spaces)
    _check_default_strengths(plain, names)
    categories = [name for name in names if name != GLOBAL]
    _check_categories(plain, categories)
    unknown = sorted(set(plain) - KNOWN_METADATA)
    if unknown:
        warnings.warn(
            f"Pack metadata has keys this version does not know: {_short_list(unknown)} (written by a newer "
            "library?). They are kept but ignored.",
            UserWarning,
            stacklevel=stacklevel + 1,
        )
    plain["categories"] = categories
    size = len(json.dumps(plain, sort_keys=True))
    if size > MAX_METADATA_BYTES:
        raise InvalidPackError(
            f"Pack metadata is {size} bytes of JSON; the format allows at most {MAX_METADATA_BYTES} (a built "
            "pack's is a few kB). Move large data out of the metadata.",
            field="metadata",
        )
    return plain


def _plain_json(value: object, field: str, depth: int) -> object:
    """A plain copy (dict/list/str/int/float/bool/None) of ``value``, checking the JSON rules on the way."""
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int):
        if not -MAX_JSON_INT < value < MAX_JSON_INT:
            raise InvalidPackError(
                f"Pack metadata {field!r} = {describe(value)} is out of range: integers must lie strictly "
                f"between -2**64 and 2**64. {FIX_METADATA}",
                field=field,
            )
        return int(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise InvalidPackError(
                f"Pack metadata {field!r} must be a finite number, got {describe(value)}; JSON has no NaN or "
                f"infinity. {FIX_METADATA}",
                field=field,
            )
        return float(value)
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise InvalidPackError(
                f"Pack metadata {field!r} holds a string that is not valid Unicode (a lone surrogate). "
                f"{FIX_METADATA}",
                field=field,
            ) from None
        return str(value)
    if isinstance(value, Mapping | list | tuple):
        if depth > MAX_METADATA_DEPTH:
            raise InvalidPackError(
                f"Pack metadata {field!r} is nested more than {MAX_METADATA_DEPTH} levels deep (built packs "
                f"reach 4). {FIX_METADATA}",
                field=field,
            )
        if isinstance(value, Mapping):
            plain = {}
            for key, item in value.items():
                if not isinstance(key, str):
                    raise InvalidPackTypeError(
                        f"Pack metadata {field or 'metadata'!r} has key {describe(key)}: metadata must be "
                        "JSON-serialisable, and JSON object keys are strings. Convert the key with str().",
                        field=field,
                    )
                plain[str(key)] = _plain_json(item, _join(field, key), depth + 1)
            return plain
        return [_plain_json(item, f"{field}[{i}]", depth + 1) for i, item in enumerate(value)]
    raise InvalidPackTypeError(
        f"Pack metadata {field!r} holds {describe(value)}, which is not JSON: metadata must be "
        "JSON-serialisable (objects with string keys, arrays, strings, finite numbers, true/false, null). "
        "Convert it (e.g. float(x), x.tolist(), str(x)).",
        field=field,
    )


def _check_format_version(version: object) -> None:
    if type(version) is not int:  # noqa: E721 (bool is an int subclass, and true is not a version)
        raise InvalidPackError(
            f"Pack metadata 'format_version' must be the integer 1, got {describe(version)} (true, 1.0 and "
            '"1" are not versions). Rebuild the pack with safesteer-diffusers, or write "format_version": 1.',
            field="format_version",
        )
    if version not in SUPPORTED_FORMAT_VERSIONS:
        raise InvalidPackError(
            f"Pack format version {version!r} is not supported by safesteer-diffusers {__version__} (supports "
            f"{sorted(SUPPORTED_FORMAT_VERSIONS)}). Upgrade safesteer-diffusers or rebuild the pack.",
            field="format_version",
        )


def _check_per_space(metadata: dict, spaces: Mapping[str, int]) -> None:
    """``target.spaces`` states every space and its dimension; alignment/calibration are keyed by space."""
    stated = metadata["target"].get("spaces")
    if "spaces" in metadata["target"]:
        if not isinstance(stated, dict) or set(stated) != set(spaces):
            found = sorted(stated) if isinstance(stated, dict) else describe(stated)
            raise InvalidPackError(
                f"Pack metadata 'target.spaces' must be an object with one entry per space of the vectors "
                f"{sorted(spaces)}, got {found}. {FIX_METADATA}",
                field="target.spaces",
            )
        for space, entry in stated.items():
            field = f"target.spaces.{space}"
            if not isinstance(entry, dict):
                raise InvalidPackError(
                    f"Pack metadata {field!r} must be an object (encoder, dim, calibration), got "
                    f"{describe(entry)}. {FIX_METADATA}",
                    field=field,
                )
            dim = entry.get("dim")
            if not _is_int(dim) or dim != spaces[space]:
                raise InvalidPackError(
                    f"Pack metadata '{field}.dim' = {describe(dim)} contradicts the vectors, which have "
                    f"{spaces[space]} values in space {space!r}. {FIX_REBUILD}",
                    field=f"{field}.dim",
                )
            for key in ("encoder", "calibration"):
                if key in entry and not isinstance(entry[key], str):
                    raise InvalidPackError(
                        f"Pack metadata '{field}.{key}' must be a string, got {describe(entry[key])}. "
                        f"{FIX_METADATA}",
                        field=f"{field}.{key}",
                    )
    for key, expected in (("alignment", "an object or null"), ("calibration", "an object")):
        entry = metadata.get(key)
        if entry is None and key not in metadata:
            continue
        if not isinstance(entry, dict):
            raise InvalidPackError(
                f"Pack metadata {key!r} must be an object keyed by space, got {describe(entry)}. {FIX_METADATA}",
                field=key,
            )
        for space, value in entry.items():
            if space not in spaces:
                raise InvalidPackError(
                    f"Pack metadata {key!r} has an entry for space {_short(space)}, which the pack has no "
                    f"vectors for (spaces: {sorted(spaces)}). {FIX_METADATA}",
                    field=f"{key}.{space}",
                )
            if not (isinstance(value, dict) or (value is None and key == "alignment")):
                raise InvalidPackError(
                    f"Pack metadata '{key}.{space}' must be {expected}, got {describe(value)}. "
                    f"{FIX_METADATA}",
                    field=f"{key}.{space}",
                )


def _check_default_strengths(metadata: dict, names: list[str]) -> None:
    if "default_strengths" not in metadata:
        return
    strengths = metadata["default_strengths"]
    if not isinstance(strengths, dict):
        raise InvalidPackError(
            f"Pack metadata 'default_strengths' must be an object {{direction: number}}, got "
            f"{describe(strengths)}. {FIX_METADATA}",
            field="default_strengths",
        )
    for name, value in strengths.items():
        field = _join("default_strengths", name)
        if name not in names:
            raise InvalidPackError(
                f"Pack metadata {field!r} names a direction the pack does not have (it has {names}). "
                f"{FIX_METADATA}",
                field=field,
            )
        if not _is_number(value) or abs(value) > MAX_ABS_VALUE:
            raise InvalidPackError(
                f"Pack metadata {field!r} must be a number with |value| <= {MAX_ABS_VALUE:.0e}, got "
                f"{describe(value)}. {FIX_METADATA}",
                field=field,
            )


def _check_categories(metadata: dict, categories: list[str]) -> None:
    if "categories" not in metadata:
        return
    stated = metadata["categories"]
    if not isinstance(stated, list) or not all(isinstance(name, str) and name for name in stated):
        raise InvalidPackError(
            f"Pack metadata 'categories' must be a list of non-empty category names, got {describe(stated)}. "
            f"{FIX_METADATA}",
            field="categories",
        )
    repeated = sorted(name for name, count in Counter(stated).items() if count > 1)
    if repeated:
        raise InvalidPackError(
            f"Pack metadata 'categories' lists {_short_list(repeated)} more than once; category names are "
            f"unique. {FIX_METADATA}",
            field="categories",
        )
    if stated != categories:
        raise InvalidPackError(
            f"Pack metadata lists categories {_short_list(stated)} but the tensors hold {_short_list(categories)}. "
            "The file is inconsistent: rebuild the pack (DirectionPack fills 'categories' itself; omit it).",
            field="categories",
        )


# ---------------------------------------------------------------------- type predicates of known keys
def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _is_count(value: object) -> bool:
    return _is_int(value) and value >= 0


def _is_fraction(value: object) -> bool:
    return _is_number(value) and 0 <= value <= 1


def _is_str(value: object) -> bool:
    return isinstance(value, str)


def _is_optional_str(value: object) -> bool:
    return value is None or isinstance(value, str)


def _is_object(value: object) -> bool:
    return isinstance(value, dict)


def _map_of(accepts: Callable[[object], bool], keys: re.Pattern | None = None) -> Callable[[object], bool]:
    def check(value: object) -> bool:
        return isinstance(value, dict) and all(
            accepts(item) and (keys is None or keys.fullmatch(key)) for key, item in value.items()
        )

    return check


_FPR_KEY = re.compile(r"0\.[0-9]+")


def _is_finite_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


_FIELDS: dict[str, tuple[Callable[[object], bool], str]] = {
    # Top level (format_version, kind, source/target/provenance, categories, default_strengths, alignment
    # and calibration have their own checks).
    "library_version": (lambda v: isinstance(v, str) and bool(v), 'a non-empty string such as "0.1.0"'),
    "description": (_is_str, "a string"),
    "derived": (lambda v: isinstance(v, list) and all(map(_is_str, v)), "a list of strings (the operations)"),
    "gate": (_is_object, "an object"),
    "build": (_is_object, "an object"),
    # Nested keys the library reads (model card, inspect, wrap, the demo).
    "gate.quantile": (_is_fraction, "a number between 0 and 1"),
    "gate.score": (_is_str, "a string"),
    "gate.tokens": (_is_str, "a string"),
    "gate.fpr_thresholds": (
        _map_of(_map_of(_map_of(_is_finite_number)), _FPR_KEY),
        'an object {"<rate>": {direction: {space: threshold}}} of finite numbers, rates such as "0.01"',
    ),
    "source_gate.fpr_thresholds": (
        _map_of(_map_of(_is_finite_number), _FPR_KEY),
        'an object {"<rate>": {direction: threshold}} of finite numbers, rates such as "0.01"',
    ),
    "source_gate": (_is_object, "an object"),
    "source_gate.layer": (lambda v: _is_int(v) and v >= 0, "a non-negative integer (a hidden-state index)"),
    "source_gate.pooling": (lambda v: v in ("mean", "last"), '"mean" or "last"'),
    "source_gate.chat_template": (lambda v: isinstance(v, bool), "true or false"),
    "source_gate.dim": (lambda v: _is_int(v) and v > 0, "a positive integer"),
    "source_gate.quantile": (_is_fraction, "a number between 0 and 1"),
    "source_gate.heads": (
        lambda v: isinstance(v, list) and 1 <= len(v) <= MAX_SOURCE_GATE_HEADS and all(map(_is_str, v)),
        f"a list of 1 to {MAX_SOURCE_GATE_HEADS} strings (what each head was fitted on)",
    ),
    "source_gate.supplied_prompts": (_is_object, "an object"),
    "source_gate.supplied_prompts.count": (_is_count, "a non-negative integer"),
    "source_gate.supplied_prompts.sha256": (_is_str, "a string (hex digest of the prompts)"),
    "source_gate.supplied_prompts.name": (_is_str, "a string (the file the prompts came from)"),
    "source_gate.supplied_prompts.categories": (_map_of(_is_count), "an object of non-negative integers"),
    "source_gate.supplied_prompts.benign_count": (_is_count, "a non-negative integer"),
    "source_gate.supplied_prompts.benign_sha256": (_is_str, "a string (hex digest of the benign prompts)"),
    "source_gate.supplied_prompts.directions": (
        lambda v: isinstance(v, list) and all(map(_is_str, v)),
        "a list of direction names (those with a head fitted on the supplied prompts)",
    ),
    "build.library_version": (_is_str, "a string"),
    "build.config": (_is_object, "an object"),
    "target.model_id": (_is_optional_str, "a model id string or null"),
    "target.family": (_is_optional_str, "a family name string or null"),
    "target.pipeline_class": (_is_optional_str, "a class name string or null"),
    "source.model_id": (_is_optional_str, "a model id string or null"),
    "source.revision": (_is_optional_str, "a string or null"),
    "source.gguf_file": (_is_str, "a file name string"),
    "source.gguf_sha256": (
        lambda v: isinstance(v, str) and re.fullmatch(r"[0-9a-f]{64}", v) is not None,
        "64 lowercase hex characters (the GGUF file's SHA-256)",
    ),
    "source.chat_template": (lambda v: isinstance(v, bool), "true or false"),
    "source.pooling": (_is_optional_str, "a string or null"),
    "source.layer": (lambda v: v is None or _is_int(v), "an integer or null"),
    "source.seed": (_is_int, "an integer"),
    "source.holdout": (_is_fraction, "a number between 0 and 1"),
    "source.paired": (lambda v: isinstance(v, bool), "true or false"),
    "source.native_baseline": (lambda v: isinstance(v, bool), "true or false"),
    "source.auroc": (_map_of(_is_fraction), "an object of numbers between 0 and 1"),
    "source.layer_auroc": (
        _map_of(_is_fraction, re.compile(r"-?[0-9]+")),
        'an object from layer numbers ("0", "1", ...) to numbers between 0 and 1',
    ),
    "source.counts": (_map_of(_is_count), "an object of non-negative integers"),
    "provenance.target_unsafe_data": (lambda v: isinstance(v, bool), "true or false"),
    "provenance.num_pairs": (_is_count, "a non-negative integer"),
    "provenance.num_anchors": (_is_count, "a non-negative integer"),
    "provenance.pairs_dataset": (_is_optional_str, "a string or null"),
    "provenance.anchors": (_is_optional_str, "a string or null"),
}


# ---------------------------------------------------------------------- message helpers


def _short_list(values: list, limit: int = 200) -> str:
    text = repr(values)
    return text if len(text) <= limit else text[: limit - 4] + "...]"


def _join(field: str, key: str) -> str:
    key = key if len(key) <= 40 else key[:37] + "..."
    return f"{field}.{key}" if field else key

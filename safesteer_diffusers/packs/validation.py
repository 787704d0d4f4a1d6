"""The validation rules of the pack format (docs/pack-format.md), shared by in-memory construction and loading.

Every rule raises :class:`~safesteer_diffusers.packs.errors.InvalidPackError` (``InvalidPackTypeError`` for a
Python value of the wrong type) whose message names the field, the value found, what is expected and the fix.
Loading a file adds the file name (``DirectionPack.from_file``); file-only rules (header, dtypes, the hash)
live in ``packs/reader.py`` and ``packs/integrity.py``.

What the rules guarantee: a pack that constructs is one the loader accepts after a save, bit for bit
(vectors are float32, thresholds float32-rounded, metadata plain JSON), and a pack the loader accepts holds
only finite, bounded numbers of the types the rest of the library reads.
"""

from __future__ import annotations

import json
import math
import re
import warnings
from collections import Counter
from collections.abc import Callable, Mapping

import torch

from safesteer_diffusers.version import __version__

from .errors import InvalidPackError, InvalidPackTypeError, describe
from .format import (
    GLOBAL,
    MAX_ABS_VALUE,
    MAX_DIM,
    MAX_JSON_INT,
    MAX_METADATA_BYTES,
    MAX_METADATA_DEPTH,
    MAX_NAME_CHARS,
    MAX_TENSORS,
    SUPPORTED_FORMAT_VERSIONS,
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
        "description",
        "build",
        "derived",
    )
)
PACK_KINDS = ("transferred", "native", "manual", "derived")

FIX_REBUILD = "Rebuild the pack with safesteer-diffusers (or download it again)."
FIX_METADATA = (
    "Rebuild the pack with safesteer-diffusers, or correct the metadata passed to DirectionPack.from_tensors."
)


# ---------------------------------------------------------------------- names
def check_direction_name(name: object) -> str:
    """A direction name: ``"global"`` or a category, a non-empty printable string without ``'.'``.

    The dot separates the parts of tensor names (``category.<name>.<space>``), so it cannot occur in a name.
    """
    if not isinstance(name, str) or not name or "." in name:
        raise InvalidPackError(
            f"Direction names must be non-empty strings without '.', got {_short(name)}. Names such as "
            "'self-harm' or 'illegal activity' are fine; rename the direction.",
            field="directions",
        )
    if len(name) > MAX_NAME_CHARS or not name.isprintable():
        raise InvalidPackError(
            f"Direction name {_short(name)} must be at most {MAX_NAME_CHARS} printable characters "
            f"(it has {len(name)}). Rename the direction.",
            field="directions",
        )
    return name


def check_space_name(space: object) -> str:
    """A space name: the pipeline component name of a text encoder (an ASCII identifier)."""
    if (
        not (isinstance(space, str) and space.isidentifier() and space.isascii())
        or len(space) > MAX_NAME_CHARS
    ):
        raise InvalidPackError(
            f"Space names are pipeline component names such as 'text_encoder_2', got {_short(space)}. Use the "
            "name of the text encoder attribute of the diffusers pipeline.",
            field="spaces",
        )
    return space


# ---------------------------------------------------------------------- tensors
def check_vector(value: object, label: str) -> torch.Tensor:
    """A float32 CPU copy of a 1-D, non-empty, finite vector whose values are bounded by ``MAX_ABS_VALUE``.

    Any floating dtype is accepted in memory (converted exactly or rounded to float32); files must store
    float32 (``packs/reader.py``).

    Args:
        value: the tensor to check.
        label: how the message names it, e.g. ``"global.text_encoder"`` or ``"tensor 'center.clip'"``.
    """
    if not isinstance(value, torch.Tensor):
        raise InvalidPackTypeError(
            f"{label}: expected a torch.Tensor, got {type(value).__name__}. Pass one 1-D float tensor per "
            "direction and space.",
            field=label,
        )
    if value.layout != torch.strided or value.device.type == "meta":
        raise InvalidPackTypeError(
            f"{label}: expected a dense tensor with data, got layout {value.layout} on {value.device}. Pass "
            "an ordinary (dense) tensor.",
            field=label,
        )
    if value.dim() != 1:
        raise InvalidPackError(
            f"{label}: expected a 1-D vector, got shape {tuple(value.shape)}. Pass one vector per space.",
            field=label,
        )
    if not value.is_floating_point():
        raise InvalidPackTypeError(
            f"{label}: expected a floating-point tensor, got {value.dtype}. Directions are real vectors: "
            "convert with .float().",
            field=label,
        )
    size = int(value.shape[0])
    if size == 0:
        raise InvalidPackError(
            f"{label}: the vector is empty (shape (0,)); a vector needs one value per feature of its text "
            f"encoder. {FIX_REBUILD}",
            field=label,
        )
    if size > MAX_DIM:
        raise InvalidPackError(
            f"{label}: the vector has {size} values; the format allows at most {MAX_DIM} (text-encoder "
            f"widths are at most a few thousand). {FIX_REBUILD}",
            field=label,
        )
    # Checked in float64, before rounding to float32, so a float64 1e39 is reported as out of range rather
    # than as the inf it would round to.
    wide = value.detach().to(device="cpu", dtype=torch.float64)
    finite = torch.isfinite(wide)
    if not bool(finite.all()):
        bad = int((~finite).sum())
        raise InvalidPackError(
            f"{label}: {bad} of {size} values are NaN or infinite; rebuild the pack (a corrupt file or a "
            "failed calibration).",
            field=label,
        )
    magnitude = wide.abs()
    largest = float(magnitude.max())
    if largest > MAX_ABS_VALUE:
        count = int((magnitude > MAX_ABS_VALUE).sum())
        raise InvalidPackError(
            f"{label}: {count} of {size} values exceed the bound |value| <= {MAX_ABS_VALUE:.0e} (largest "
            f"magnitude {largest:.4g}); calibrated vectors have values of order 1. {FIX_REBUILD}",
            field=label,
        )
    return value.detach().to(device="cpu", dtype=torch.float32).clone()


def check_threshold(value: object, label: str) -> float:
    """A gate threshold as the float32 value the file stores: a finite number with ``|t| <= MAX_ABS_VALUE``.

    Accepts a Python ``int``/``float`` (not ``bool``) or a floating tensor holding one number.
    """
    if isinstance(value, torch.Tensor):
        if not value.is_floating_point() or value.numel() != 1 or value.dim() > 1:
            raise InvalidPackTypeError(
                f"Gate threshold {label} must be a finite number, got a {value.dtype} tensor of shape "
                f"{tuple(value.shape)}. Pass a float (or a float tensor holding one number).",
                field=f"gate.{label}",
            )
        number = float(value.detach().to("cpu", torch.float64).reshape(()))
    elif isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidPackTypeError(
            f"Gate threshold {label} must be a finite number, got {_short(value)}. Pass a float.",
            field=f"gate.{label}",
        )
    else:
        try:
            number = float(value)
        except OverflowError:  # an int beyond the float range
            number = math.inf
    if not math.isfinite(number):
        raise InvalidPackError(
            f"Gate threshold {label} must be a finite number, got {_short(value)}. {FIX_REBUILD}",
            field=f"gate.{label}",
        )
    # The file stores thresholds as float32: round now so a saved pack reloads exactly equal.
    stored = float(torch.tensor(number, dtype=torch.float32))
    if not math.isfinite(stored):
        raise InvalidPackError(
            f"Gate threshold {label} = {_short(value)} is outside the float32 range. {FIX_REBUILD}",
            field=f"gate.{label}",
        )
    if abs(stored) > MAX_ABS_VALUE:
        raise InvalidPackError(
            f"Gate threshold {label} = {_short(value)} is outside the bound |value| <= {MAX_ABS_VALUE:.0e} "
            f"(thresholds are projections of token states). {FIX_REBUILD}",
            field=f"gate.{label}",
        )
    return stored


def check_directions(directions: object) -> dict[str, dict[str, torch.Tensor]]:
    """Checked float32 copies of ``{direction: {space: vector}}``, ``"global"`` first.

    Every direction must cover the same spaces with the same dimensions.
    """
    if not isinstance(directions, Mapping):
        raise InvalidPackTypeError(
            "Directions must be a mapping {direction name: {space: 1-D tensor}}, got "
            f"{type(directions).__name__}.",
            field="directions",
        )
    if not directions:
        raise InvalidPackError(
            "A pack needs at least one direction (e.g. {'global': {'text_encoder': tensor}}).",
            field="directions",
        )
    check_tensor_count(sum(len(per) if isinstance(per, Mapping) else 1 for per in directions.values()))
    checked: dict[str, dict[str, torch.Tensor]] = {}
    for name, per_space in directions.items():
        check_direction_name(name)
        if not isinstance(per_space, Mapping):
            raise InvalidPackTypeError(
                f"Direction {name!r} must map space names to vectors, got {type(per_space).__name__}; "
                "give {space: vector}.",
                field=name,
            )
        if not per_space:
            raise InvalidPackError(
                f"Direction {name!r} has no spaces; give at least one {{space: vector}}.", field=name
            )
        checked[name] = {
            check_space_name(space): check_vector(vector, f"{name}.{space}")
            for space, vector in per_space.items()
        }
    if GLOBAL in checked:  # "global" first, the order `names` documents and from_file restores
        checked = {GLOBAL: checked.pop(GLOBAL), **checked}
    first_name, first = next(iter(checked.items()))
    spaces = {space: int(v.shape[0]) for space, v in first.items()}
    for name, per_space in checked.items():
        dims = {space: int(v.shape[0]) for space, v in per_space.items()}
        if dims != spaces:
            raise InvalidPackError(
                f"Every direction must cover the same spaces with the same dimensions:\n"
                f"  {first_name!r}: {spaces}\n  {name!r}: {dims}\nGive every direction one vector per space, "
                "all built for the same text encoders.",
                field=f"{name}",
            )
    return checked


def check_thresholds(
    thresholds: object, names: list[str], spaces: Mapping[str, int]
) -> dict[str, dict[str, float]]:
    """Checked gate thresholds ``{direction: {space: float32 value}}`` (``None`` -> ``{}``)."""
    if thresholds is None:
        return {}
    if not isinstance(thresholds, Mapping):
        raise InvalidPackTypeError(
            f"Gate thresholds must be a mapping {{direction: {{space: float}}}}, got {type(thresholds).__name__}.",
            field="thresholds",
        )
    checked: dict[str, dict[str, float]] = {}
    for name, per_space in thresholds.items():
        if name not in names:
            raise InvalidPackError(
                f"Gate threshold given for unknown direction {_short(name)}; directions: {names}. Give "
                "thresholds only for the pack's directions.",
                field=f"gate.{name}",
            )
        if not isinstance(per_space, Mapping):
            raise InvalidPackTypeError(
                f"Gate thresholds of {name!r} must be a mapping {{space: float}}, got {type(per_space).__name__}.",
                field=f"gate.{name}",
            )
        for space, value in per_space.items():
            if not isinstance(space, str) or space not in spaces:
                raise InvalidPackError(
                    f"Gate threshold for {name!r} names unknown space {_short(space)}; spaces: {dict(spaces)}.",
                    field=f"gate.{name}",
                )
            checked.setdefault(name, {})[space] = check_threshold(value, f"{name}.{space}")
    return checked


def check_centers(centers: object, spaces: Mapping[str, int]) -> dict[str, torch.Tensor]:
    """Checked benign centres ``{space: vector}`` of the pack's dimensions (``None`` -> ``{}``)."""
    if centers is None:
        return {}
    if not isinstance(centers, Mapping):
        raise InvalidPackTypeError(
            f"Centres must be a mapping {{space: 1-D tensor}}, got {type(centers).__name__}.", field="centers"
        )
    checked: dict[str, torch.Tensor] = {}
    for space, center in centers.items():
        if not isinstance(space, str) or space not in spaces:
            raise InvalidPackError(
                f"Centre given for unknown space {_short(space)}; spaces: {dict(spaces)}.", field="centers"
            )
        vector = check_vector(center, f"center.{space}")
        if vector.shape[0] != spaces[space]:
            raise InvalidPackError(
                f"Centre of space {space!r} has dimension {vector.shape[0]}, the directions have "
                f"{spaces[space]}. {FIX_REBUILD}",
                field=f"center.{space}",
            )
        checked[space] = vector
    return checked


def check_tensor_count(count: int) -> None:
    """At most ``MAX_TENSORS`` tensors (vectors, thresholds and centres together) in one pack."""
    if count > MAX_TENSORS:
        raise InvalidPackError(
            f"The pack has {count} tensors (vectors, gate thresholds and centres); the format allows at most "
            f"{MAX_TENSORS}. Split it into several packs.",
            field="tensors",
        )


# ---------------------------------------------------------------------- metadata
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
        holder = plain.get(parent) if parent else plain
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
    "build.library_version": (_is_str, "a string"),
    "build.config": (_is_object, "an object"),
    "target.model_id": (_is_optional_str, "a model id string or null"),
    "target.family": (_is_optional_str, "a family name string or null"),
    "target.pipeline_class": (_is_optional_str, "a class name string or null"),
    "source.model_id": (_is_optional_str, "a model id string or null"),
    "source.revision": (_is_optional_str, "a string or null"),
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
def _short(value: object, limit: int = 60) -> str:
    try:
        text = repr(value)
    except Exception:  # noqa: BLE001 (a message must never fail because of the value it describes)
        text = f"<{type(value).__name__}>"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _short_list(values: list, limit: int = 200) -> str:
    text = repr(values)
    return text if len(text) <= limit else text[: limit - 4] + "...]"


def _join(field: str, key: str) -> str:
    key = key if len(key) <= 40 else key[:37] + "..."
    return f"{field}.{key}" if field else key

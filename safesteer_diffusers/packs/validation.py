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

import math
from collections.abc import Mapping

import torch

from .errors import InvalidPackError, InvalidPackTypeError
from .format import (
    GLOBAL,
    MAX_ABS_VALUE,
    MAX_DIM,
    MAX_NAME_CHARS,
    MAX_SOURCE_GATE_HEADS,
    MAX_TENSORS,
)

FIX_REBUILD = "Rebuild the pack with safesteer-diffusers (or download it again)."


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


def check_gate_vectors(
    gate_vectors: object, thresholds: Mapping[str, Mapping[str, float]], spaces: Mapping[str, int]
) -> dict[str, dict[str, torch.Tensor]]:
    """Checked gate vectors ``{direction: {space: vector}}`` (``None`` -> ``{}``).

    A gate vector replaces the steering direction in the gate's score (``score = mean state . g``), so it is
    only meaningful beside the threshold it was calibrated with: each needs a threshold for the same
    direction and space, the space's dimension, and a nonzero norm (a zero vector scores every prompt 0).
    """
    if gate_vectors is None:
        return {}
    if not isinstance(gate_vectors, Mapping):
        raise InvalidPackTypeError(
            f"Gate vectors must be a mapping {{direction: {{space: 1-D tensor}}}}, got "
            f"{type(gate_vectors).__name__}.",
            field="gate_vectors",
        )
    checked: dict[str, dict[str, torch.Tensor]] = {}
    for name, per_space in gate_vectors.items():
        if not isinstance(per_space, Mapping):
            raise InvalidPackTypeError(
                f"Gate vectors of {_short(name)} must be a mapping {{space: 1-D tensor}}, got "
                f"{type(per_space).__name__}.",
                field=f"gate_vector.{name}",
            )
        for space, value in per_space.items():
            label = f"gate_vector.{name}.{space}"
            if not isinstance(name, str) or space not in thresholds.get(name, {}):
                raise InvalidPackError(
                    f"{_short(label)} has no gate threshold beside it (gate.{_short(name)}.{_short(space)}); a "
                    f"gate vector is only meaningful with the threshold it was calibrated with. {FIX_REBUILD}",
                    field=label,
                )
            vector = check_vector(value, label)
            if vector.shape[0] != spaces[space]:
                raise InvalidPackError(
                    f"{label} has dimension {vector.shape[0]}, the space {space!r} has {spaces[space]}. "
                    f"{FIX_REBUILD}",
                    field=label,
                )
            if not float(vector.norm()) > 0:
                raise InvalidPackError(
                    f"{label} is all zeros, so the gate could not tell prompts apart. {FIX_REBUILD}",
                    field=label,
                )
            checked.setdefault(name, {})[space] = vector
    return checked


def check_source_gate(
    vectors: object, thresholds: object, biases: object = None, *, names: list[str]
) -> tuple[dict[str, torch.Tensor], dict[str, float], dict[str, torch.Tensor]]:
    """Checked source-model gate ``({direction: [H, Ds] heads}, {direction: threshold}, {direction: [H] biases})``.

    The source gate scores a prompt in the source model: each head ``h`` gives ``features . heads[h] +
    biases[h]``, the direction's score is the largest, and the gate fires above the threshold
    (:func:`~safesteer_diffusers.steering.maths.source_gate_scores`). A ``[Ds]`` vector is one head with bias
    0 (the only form before multi-head gates). Every direction needs its threshold and the reverse; all heads
    share one width (the source's hidden size); none is zero; biases are finite and bounded like thresholds.
    ``None`` -> empty.
    """
    vectors = {} if vectors is None else vectors
    thresholds = {} if thresholds is None else thresholds
    biases = {} if biases is None else biases
    if not all(isinstance(value, Mapping) for value in (vectors, thresholds, biases)):
        raise InvalidPackTypeError(
            "The source gate must be mappings {direction: 1-D or 2-D tensor}, {direction: float} and optionally "
            "{direction: 1-D tensor of biases}.",
            field="source_gate",
        )
    if set(vectors) != set(thresholds) or not set(biases) <= set(vectors):
        raise InvalidPackError(
            f"The source gate has vectors for {sorted(map(str, vectors))}, thresholds for "
            f"{sorted(map(str, thresholds))} and biases for {sorted(map(str, biases))}; each direction needs both a "
            f"vector and a threshold, and biases only go with vectors. {FIX_REBUILD}",
            field="source_gate",
        )
    checked_heads: dict[str, torch.Tensor] = {}
    checked_thresholds: dict[str, float] = {}
    checked_biases: dict[str, torch.Tensor] = {}
    for name, value in vectors.items():
        label = f"source_gate.{name}"
        if name not in names:
            raise InvalidPackError(
                f"{_short(label)} names no direction of the pack ({names}). {FIX_REBUILD}", field=label
            )
        rows = _head_rows(value, label)
        heads = torch.stack([check_vector(row, f"{label}[{h}]") for h, row in enumerate(rows)])
        for h, head in enumerate(heads):
            if not float(head.norm()) > 0:
                raise InvalidPackError(f"{label}[{h}] is all zeros. {FIX_REBUILD}", field=label)
        checked_heads[name] = heads
        checked_thresholds[name] = check_threshold(thresholds[name], f"source_gate_threshold.{name}")
        checked_biases[name] = _head_biases(biases.get(name), len(heads), f"source_gate_bias.{name}")
    widths = {int(v.shape[1]) for v in checked_heads.values()}
    if len(widths) > 1:
        raise InvalidPackError(
            f"The source gate's vectors have different widths {sorted(widths)}; they all live in one source "
            f"model. {FIX_REBUILD}",
            field="source_gate",
        )
    return checked_heads, checked_thresholds, checked_biases


def _head_rows(value: object, label: str) -> list[object]:
    """A source gate's heads as rows: a ``[Ds]`` vector is one head, a ``[H, Ds]`` matrix holds ``H``."""
    if isinstance(value, torch.Tensor) and value.dim() == 2:
        count = int(value.shape[0])
        if not 1 <= count <= MAX_SOURCE_GATE_HEADS:
            raise InvalidPackError(
                f"{label}: {count} heads; a direction's source gate holds 1 to {MAX_SOURCE_GATE_HEADS}. "
                f"{FIX_REBUILD}",
                field=label,
            )
        return list(value)
    return [value]  # check_vector names any other shape or type


def _head_biases(value: object, count: int, label: str) -> torch.Tensor:
    """``[H]`` float32 biases of ``count`` heads: zeros when absent; else finite, bounded, one per head."""
    if value is None:
        return torch.zeros(count)
    if not isinstance(value, torch.Tensor) or value.dim() != 1 or int(value.shape[0]) != count:
        shape = tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
        raise InvalidPackError(
            f"{label} must be a 1-D tensor with one bias per head ({count}), got {shape}. {FIX_REBUILD}",
            field=label,
        )
    return torch.tensor(
        [check_threshold(b, f"{label}[{h}]") for h, b in enumerate(value)], dtype=torch.float32
    )


def check_tensor_count(count: int) -> None:
    """At most ``MAX_TENSORS`` tensors (vectors, thresholds and centres together) in one pack."""
    if count > MAX_TENSORS:
        raise InvalidPackError(
            f"The pack has {count} tensors (vectors, gate thresholds and centres); the format allows at most "
            f"{MAX_TENSORS}. Split it into several packs.",
            field="tensors",
        )


def _short(value: object, limit: int = 60) -> str:
    try:
        text = repr(value)
    except Exception:  # noqa: BLE001 (a message must never fail because of the value it describes)
        text = f"<{type(value).__name__}>"
    return text if len(text) <= limit else text[: limit - 3] + "..."

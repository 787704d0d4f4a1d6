"""Reading a pack file without trusting it: bounded header, allowed header entries, float32 tensors only,
metadata JSON bounded in size and depth before it is parsed, tensor names split into directions.

Every function raises :class:`~safesteer_diffusers.packs.errors.InvalidPackError` without the file name;
``DirectionPack.from_file`` adds it. Never unpickles: safetensors only.
"""

from __future__ import annotations

import json
import os
import re
import stat
from pathlib import Path

import torch
from safetensors import safe_open

from .errors import InvalidPackError
from .format import (
    FORMAT_KEY,
    GLOBAL,
    HEADER_KEYS,
    MAX_HEADER_BYTES,
    MAX_METADATA_BYTES,
    MAX_METADATA_DEPTH,
    MAX_TENSORS,
    METADATA_KEY,
)
from .validation import FIX_REBUILD, check_vector

FIX_CORRUPT = "The file is corrupt or not a SafeSteer pack: download or build it again."
FLOAT32 = "F32"
"""The one dtype (safetensors spelling) a pack file stores."""


def read_pack_file(path: Path) -> tuple[dict[str, str], dict[str, torch.Tensor]]:
    """The header metadata and the tensors of a safetensors pack file, after the file-level checks.

    Checks, in order: the file can be read; its declared header length is at most ``MAX_HEADER_BYTES`` and
    fits in the file; safetensors can parse it; the header holds the ``safesteer`` entry and no entries
    besides ``safesteer``, ``safesteer_sha256`` and ``format`` (``"pt"``); it holds at most ``MAX_TENSORS``
    tensors, all float32. Tensor values are checked later, with the pack's rules.

    Returns:
        ``(header, tensors)``: the header metadata (``dict[str, str]``) and tensor name -> tensor.
    """
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):  # a FIFO or device would block or never end
            raise InvalidPackError(
                "the path is not a regular file. Point to the .safetensors pack file (or its folder with "
                "from_pretrained).",
                field="file",
            )
        with open(path, "rb") as handle:
            prefix = handle.read(8)
            size = os.fstat(handle.fileno()).st_size
    except OSError as error:
        raise InvalidPackError(
            f"the file cannot be read ({type(error).__name__}: {error.strerror or error}). Check the path and its "
            "permissions.",
            field="file",
        ) from error
    if len(prefix) < 8:
        raise InvalidPackError(
            f"the file is {size} bytes long, too short for a safetensors file. {FIX_CORRUPT}", field="file"
        )
    header_bytes = int.from_bytes(prefix, "little")
    if header_bytes > MAX_HEADER_BYTES or 8 + header_bytes > size:
        problem = "more than the format allows" if header_bytes > MAX_HEADER_BYTES else "longer than the file"
        raise InvalidPackError(
            f"the file declares a safetensors header of {header_bytes} bytes, {problem} (the file has {size} "
            f"bytes; pack headers are at most {MAX_HEADER_BYTES}). {FIX_CORRUPT}",
            field="file",
        )
    try:
        with safe_open(str(path), framework="pt") as handle:
            header = handle.metadata() or {}
            _check_header(header)
            names = list(handle.keys())
            if len(names) > MAX_TENSORS:
                raise InvalidPackError(
                    f"the file holds {len(names)} tensors; the format allows at most {MAX_TENSORS}. {FIX_CORRUPT}",
                    field="tensors",
                )
            for name in names:  # dtypes first: never materialise a tensor the format does not allow
                dtype = handle.get_slice(name).get_dtype()
                if dtype != FLOAT32:
                    raise InvalidPackError(
                        f"tensor {name!r} has dtype {dtype}; pack files store float32 (F32) only, as "
                        "DirectionPack writes them (other dtypes would change the vectors or their precision "
                        f"silently). {FIX_REBUILD}",
                        field=f"tensor {name!r}",
                    )
            tensors = {name: handle.get_tensor(name) for name in names}
    except InvalidPackError:
        raise
    except BaseException as error:
        # safetensors raises SafetensorError; a Rust panic surfaces as PanicException, a BaseException.
        if not isinstance(error, Exception) and type(error).__name__ != "PanicException":
            raise
        raise InvalidPackError(
            f"the file could not be read as a safetensors pack file ({type(error).__name__}: {_first_line(error)}). "
            f"{FIX_CORRUPT}",
            field="file",
        ) from error
    return header, tensors


def _check_header(header: dict[str, str]) -> None:
    if METADATA_KEY not in header:
        raise InvalidPackError(
            f"the file is a safetensors file but not a SafeSteer pack: its header has no {METADATA_KEY!r} metadata "
            "entry. Build packs with safesteer_diffusers (DirectionPack).",
            field=METADATA_KEY,
        )
    unexpected = sorted(set(header) - HEADER_KEYS)
    if unexpected:
        shown = [key if len(key) <= 40 else key[:37] + "..." for key in unexpected[:5]]
        raise InvalidPackError(
            f"the safetensors header has entries {shown} besides {sorted(HEADER_KEYS)}; a pack file holds no "
            f"others (the integrity hash could not vouch for them). {FIX_CORRUPT}",
            field="header",
        )
    if FORMAT_KEY in header and header[FORMAT_KEY] != "pt":
        raise InvalidPackError(
            f"the header entry {FORMAT_KEY!r} is {header[FORMAT_KEY][:40]!r}; pack files are written for PyTorch "
            f"('pt'). {FIX_CORRUPT}",
            field=FORMAT_KEY,
        )


# ---------------------------------------------------------------------- metadata JSON
def parse_metadata_text(text: str) -> dict:
    """Parse the ``safesteer`` header entry: at most ``MAX_METADATA_BYTES`` bytes and ``MAX_METADATA_DEPTH``
    levels of nesting (both checked on the text, before parsing), no duplicate keys, no NaN/Infinity.

    Returns:
        The parsed JSON object (values not yet checked: see ``validation.check_metadata``).
    """
    size = len(text.encode("utf-8"))
    if size > MAX_METADATA_BYTES:
        raise InvalidPackError(
            f"the pack metadata is {size} bytes of JSON; the format allows at most {MAX_METADATA_BYTES} (a "
            f"built pack's is a few kB). {FIX_CORRUPT}",
            field=METADATA_KEY,
        )
    depth = json_depth(text, MAX_METADATA_DEPTH)
    if depth > MAX_METADATA_DEPTH:
        raise InvalidPackError(
            f"the pack metadata is nested more than {MAX_METADATA_DEPTH} levels deep (built packs reach 4). "
            f"{FIX_CORRUPT}",
            field=METADATA_KEY,
        )
    try:
        metadata = json.loads(text, parse_constant=_no_constant, object_pairs_hook=_unique_keys)
    except (ValueError, RecursionError) as error:  # JSONDecodeError is a ValueError; so are our hooks'
        raise InvalidPackError(
            f"the pack metadata is not valid JSON ({_first_line(error)}); the file is corrupt. Download or "
            "build it again.",
            field=METADATA_KEY,
        ) from error
    if not isinstance(metadata, dict):
        raise InvalidPackError(
            f"the pack metadata must be a JSON object, got {type(metadata).__name__}. {FIX_CORRUPT}",
            field=METADATA_KEY,
        )
    return metadata


_BRACKETS_AND_QUOTES = re.compile(r'[\\"\[\]{}]')


def json_depth(text: str, limit: int) -> int:
    """Deepest nesting of ``[``/``{`` outside strings in ``text``, in one linear pass; stops once past ``limit``.

    Tokenises strings as JSON does (a backslash escapes the next character), so for any text ``json.loads``
    never nests deeper than this count before it returns or fails.
    """
    depth = deepest = 0
    in_string = False
    escaped = -1  # position of the character a backslash escapes
    for match in _BRACKETS_AND_QUOTES.finditer(text):
        position = match.start()
        if position == escaped:
            continue
        char = text[position]
        if in_string:
            if char == "\\":
                escaped = position + 1
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            if depth > deepest:
                deepest = depth
                if deepest > limit:
                    break
        elif char in "]}":
            depth -= 1
    return deepest


def _no_constant(name: str) -> None:
    raise ValueError(f"{name} is not allowed: metadata numbers must be finite")


def _unique_keys(pairs: list[tuple[str, object]]) -> dict:
    result = dict(pairs)
    if len(result) != len(pairs):
        seen: set[str] = set()
        repeated = next(key for key, _ in pairs if key in seen or seen.add(key))
        raise ValueError(f"key {repeated[:40]!r} appears twice in one object")
    return result


def _first_line(error: BaseException) -> str:
    text = str(error).splitlines()[0] if str(error) else type(error).__name__
    return text[:200]


# ---------------------------------------------------------------------- tensor names
def split_tensors(
    tensors: dict[str, torch.Tensor],
) -> tuple[
    dict[str, dict[str, torch.Tensor]],
    dict[str, dict[str, float]],
    dict[str, torch.Tensor],
    dict[str, dict[str, torch.Tensor]],
    tuple[dict[str, torch.Tensor], dict[str, float], dict[str, torch.Tensor]],
]:
    """Sort file tensors into directions, gate thresholds, centres, gate vectors and the source gate.

    ``global.<space>``, ``category.<name>.<space>``, ``gate.<direction>.<space>`` (one number: shape ``()``
    or ``(1,)``), ``gate_vector.<direction>.<space>``, ``center.<space>``, ``source_gate.<direction>`` (``[Ds]``, or ``[H, Ds]``
    for a gate of several heads), ``source_gate_threshold.<direction>`` (one number) and
    ``source_gate_bias.<direction>`` (``[H]``, beside a ``[H, Ds]`` gate); anything else is refused.
    Vectors and centres are checked here (``validation.check_vector``, so messages name the tensor); names,
    thresholds and metadata by the pack.

    Returns:
        ``(vectors, thresholds, centers, gate_vectors, (source_gate_heads, source_gate_thresholds,
        source_gate_biases))`` (source gate tensors as stored: the pack checks their shapes),
        ``"global"`` first, categories in sorted name order.
    """
    vectors: dict[str, dict[str, torch.Tensor]] = {}
    thresholds: dict[str, dict[str, float]] = {}
    centers: dict[str, torch.Tensor] = {}
    gate_vectors: dict[str, dict[str, torch.Tensor]] = {}
    source_gate: tuple[dict[str, torch.Tensor], dict[str, float], dict[str, torch.Tensor]] = ({}, {}, {})
    global_vectors: dict[str, torch.Tensor] = {}
    for key, tensor in tensors.items():
        kind, _, rest = key.partition(".")
        if kind == GLOBAL and rest:
            global_vectors[rest] = check_vector(tensor, f"tensor {key!r}")
        elif kind == "category" and "." in rest:
            name, space = rest.rsplit(".", 1)
            if name == GLOBAL:
                raise InvalidPackError(
                    f"tensor {key!r}: 'global' is the global direction, not a category; its vectors are "
                    f"stored as 'global.<space>'. {FIX_REBUILD}",
                    field=f"tensor {key!r}",
                )
            vectors.setdefault(name, {})[space] = check_vector(tensor, f"tensor {key!r}")
        elif kind == "gate" and "." in rest:
            name, space = rest.rsplit(".", 1)
            if tensor.numel() != 1 or tensor.dim() > 1:
                raise InvalidPackError(
                    f"gate tensor {key!r} must hold one number, has shape {tuple(tensor.shape)}. "
                    f"{FIX_REBUILD}",
                    field=f"tensor {key!r}",
                )
            thresholds.setdefault(name, {})[space] = float(tensor.reshape(()))
        elif kind == "source_gate" and rest:
            source_gate[0][rest] = (
                tensor  # [Ds] or [H, Ds]: checked by the pack (validation.check_source_gate)
            )
        elif kind == "source_gate_bias" and rest:
            source_gate[2][rest] = tensor
        elif kind == "source_gate_threshold" and rest:
            if tensor.numel() != 1 or tensor.dim() > 1:
                raise InvalidPackError(
                    f"tensor {key!r} must hold one number, has shape {tuple(tensor.shape)}. {FIX_REBUILD}",
                    field=f"tensor {key!r}",
                )
            source_gate[1][rest] = float(tensor.reshape(()))
        elif kind == "gate_vector" and "." in rest:
            name, space = rest.rsplit(".", 1)
            gate_vectors.setdefault(name, {})[space] = check_vector(tensor, f"tensor {key!r}")
        elif kind == "center" and rest:
            centers[rest] = check_vector(tensor, f"tensor {key!r}")
        else:
            raise InvalidPackError(
                f"unexpected tensor {key[:80]!r}; pack files hold 'global.<space>', 'category.<name>.<space>', "
                f"'gate.<direction>.<space>', 'gate_vector.<direction>.<space>', 'center.<space>', "
                f"'source_gate.<direction>', 'source_gate_threshold.<direction>' and 'source_gate_bias.<direction>'. "
                f"{FIX_CORRUPT}",
                field=f"tensor {key[:80]!r}",
            )
    if global_vectors:
        vectors = {GLOBAL: global_vectors, **vectors}
    return vectors, thresholds, centers, gate_vectors, source_gate


def in_stated_order(vectors: dict[str, dict], stated: object) -> dict[str, dict]:
    """``vectors`` with the categories in the order the metadata lists them (safetensors sorts names).

    Leaves the order alone when ``stated`` is not a list of exactly the categories; validation then reports
    the mismatch.
    """
    categories = [name for name in vectors if name != GLOBAL]
    if (
        not isinstance(stated, list)
        or len(stated) != len(categories)
        or not all(isinstance(name, str) for name in stated)
        or set(stated) != set(categories)
    ):
        return vectors
    ordered = {GLOBAL: vectors[GLOBAL]} if GLOBAL in vectors else {}
    ordered.update({name: vectors[name] for name in stated})
    return ordered

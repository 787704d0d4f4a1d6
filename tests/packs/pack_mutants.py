"""Mutated pack files for the loader's property test (tests/packs/test_pack_fuzz.py) and scripts/fuzz_packs.py.

Mutant ``i`` of seed ``s`` is a pure function of ``(s, i)`` and the base packs, so a failure reproduces from
its index alone. Three families:

* ``bytes/*``: byte-level damage to a valid, hashed pack file (bit flips and byte changes in the header and
  in the data, truncation, insertion, deletion, appended bytes, a wrong length prefix, swapped or copied
  data). Expected: the loader refuses it, or (whitespace in the header, a flip the format ignores) it loads
  as a pack equal to the original.
* ``invalid/*``: a file rewritten with content that breaks a documented rule (deep nesting, huge strings,
  wrong types, NaN/inf, bools for ints, missing keys, duplicate keys, non-float32 dtypes, wrong shapes,
  zero-length vectors, huge values, unknown tensors, a wrong or malformed hash, ...). The hash is then
  recomputed (so only the rule can catch it), left out (a pre-hash file) or left stale. Expected: refused.
* ``stale/*``: a plausible edit (an extra metadata key, a dropped gate, a nudged value, a changed character)
  that keeps the original hash. Expected: refused by the hash, or equal to the original (a no-op).

``classify`` loads one mutant and names the outcome: ``loaded-equal``, ``loaded-different``,
``library-error`` (an ``InvalidPackError`` naming the file), ``unnamed-error`` (one that does not name it),
``other-exception`` or ``timeout``.
"""

from __future__ import annotations

import copy
import json
import random
import re
import signal
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import save as save_bytes

from safesteer_diffusers import PACK_FILENAME, DirectionPack, InvalidPackError
from safesteer_diffusers.packs.format import HASH_KEY, MAX_METADATA_BYTES, MAX_TENSORS, METADATA_KEY
from safesteer_diffusers.packs.integrity import content_hash

ROOT = Path(__file__).resolve().parents[2]
SHIPPED_PACK = ROOT / "pretrained_directions" / "tiny-sd-demo-from-minilm" / PACK_FILENAME
OUTCOMES = (
    "loaded-equal",
    "loaded-different",
    "library-error",
    "unnamed-error",
    "other-exception",
    "timeout",
)


@dataclass(frozen=True)
class Base:
    """A valid pack to mutate: its file bytes, the pack it loads as, and its parsed parts."""

    name: str
    data: bytes
    pack: DirectionPack
    tensors: dict[str, torch.Tensor]
    header: dict[str, str]
    metadata: dict


@dataclass(frozen=True)
class Mutant:
    """One mutated file. ``must_fail``: its content breaks a rule, so loading it must raise."""

    index: int
    kind: str
    base: Base
    data: bytes
    must_fail: bool


def _base(name: str, pack: DirectionPack) -> Base:
    tensors, header = pack.to_state_dict()
    tensors = {key: value.clone() for key, value in tensors.items()}
    data = _canonical(save_bytes(tensors, metadata=header))
    return Base(name, data, pack, tensors, header, json.loads(header[METADATA_KEY]))


def _canonical(data: bytes) -> bytes:
    """``data`` with its safetensors header JSON written with sorted keys.

    safetensors writes the header entries in Rust ``HashMap`` order, which changes from process to process;
    sorting makes the bytes, and so every byte-level mutant, the same in every process.
    """
    length = int.from_bytes(data[:8], "little")
    text = json.dumps(json.loads(data[8 : 8 + length]), sort_keys=True, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)  # safetensors pads the header to a multiple of 8 bytes
    return len(text).to_bytes(8, "little") + text + data[8 + length :]


def base_packs() -> list[Base]:
    """The shipped demo pack and two synthetic ones (two spaces with gates and centres; a minimal one)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the shipped pack is hashed, but be robust to an older checkout
        shipped = DirectionPack.from_file(SHIPPED_PACK)
    generator = torch.Generator().manual_seed(0)
    spaces = {"text_encoder": 8, "text_encoder_2": 12}
    names = ["global", "violence", "illegal activity", "sexual"]
    directions = {n: {s: torch.randn(d, generator=generator) for s, d in spaces.items()} for n in names}
    two_spaces = DirectionPack.from_tensors(
        directions,
        thresholds={
            n: {s: 0.25 * (i + 1) - 0.1 * j for j, s in enumerate(spaces)} for i, n in enumerate(names)
        },
        centers={s: torch.randn(d, generator=generator) for s, d in spaces.items()},
        kind="transferred",
        source={
            "model_id": "org/source",
            "revision": "abc",
            "layer": 3,
            "pooling": "mean",
            "seed": 0,
            "holdout": 0.3,
            "auroc": {n: 0.9 for n in names},
            "layer_auroc": {"2": 0.8, "3": 0.9},
            "counts": {n: 10 for n in names},
        },
        target={
            "model_id": "org/sdxl",
            "family": "sdxl",
            "pipeline_class": "StableDiffusionXLPipeline",
            "spaces": {
                s: {"encoder": "CLIPTextModel", "dim": d, "calibration": "token_std"}
                for s, d in spaces.items()
            },
        },
        provenance={"num_pairs": 40, "num_anchors": 30, "target_unsafe_data": False, "pairs_dataset": "x"},
        alignment={"text_encoder": {"method": "ridge", "heldout_r2": 0.5}, "text_encoder_2": None},
        calibration={s: {n: {"scale": 1.0} for n in names} for s in spaces},
        gate={"quantile": 0.99, "score": "projection", "tokens": "all"},
        default_strengths={"global": 1.0, "sexual": 2.0},
        description="two-space fuzz base",
        build={"library_version": "0.1.0", "config": {"seed": 0, "layers": None}},
    )
    minimal = DirectionPack.from_tensors(
        {"global": {"text_encoder": torch.randn(6, generator=generator)}},
        target={"spaces": {"text_encoder": {"dim": 6}}},
    )
    return [_base("shipped", shipped), _base("two-spaces", two_spaces), _base("minimal", minimal)]


# ---------------------------------------------------------------------- byte-level damage (bytes/*)
def _header_end(data: bytes) -> int:
    return 8 + int.from_bytes(data[:8], "little")


def _position(rng: random.Random, data: bytes) -> int:
    # Half in the header (where the structure is), half in the tensor data.
    end = min(_header_end(data), len(data))
    if rng.random() < 0.5 or end >= len(data):
        return rng.randrange(0, end)
    return rng.randrange(end, len(data))


def _flip_bit(rng, data):
    out = bytearray(data)
    out[_position(rng, data)] ^= 1 << rng.randrange(8)
    return bytes(out)


def _set_byte(rng, data):
    out = bytearray(data)
    out[_position(rng, data)] = rng.randrange(256)
    return bytes(out)


def _flip_bits(rng, data):
    for _ in range(rng.randint(2, 8)):
        data = _flip_bit(rng, data)
    return data


def _truncate(rng, data):
    return data[: rng.randrange(0, len(data))]


def _append(rng, data):
    return data + bytes(rng.randrange(256) for _ in range(rng.randint(1, 64)))


def _insert(rng, data):
    at = _position(rng, data)
    return data[:at] + bytes(rng.randrange(256) for _ in range(rng.randint(1, 16))) + data[at:]


def _delete(rng, data):
    at = _position(rng, data)
    return data[:at] + data[at + rng.randint(1, 16) :]


def _length_prefix(rng, data):
    length = int.from_bytes(data[:8], "little")
    choice = rng.choice(
        [
            length + rng.randint(1, 64),
            max(0, length - rng.randint(1, 64)),
            rng.getrandbits(64),
            2**63,
            0,
            len(data),
        ]
    )
    return choice.to_bytes(8, "little") + data[8:]


def _swap_words(rng, data):
    start = _header_end(data)
    words = (len(data) - start) // 4
    if words < 2:
        return _flip_bit(rng, data)
    a, b = (start + 4 * i for i in rng.sample(range(words), 2))
    out = bytearray(data)
    out[a : a + 4], out[b : b + 4] = data[b : b + 4], data[a : a + 4]
    return bytes(out)


def _copy_region(rng, data):
    start = _header_end(data)
    if len(data) - start < 64:
        return _flip_bit(rng, data)
    size = rng.randint(4, 32)
    source, target = (rng.randrange(start, len(data) - size) for _ in range(2))
    out = bytearray(data)
    out[target : target + size] = data[source : source + size]
    return bytes(out)


def _header_whitespace(rng, data):
    # safetensors pads its header with spaces; other JSON whitespace there is a no-op.
    end = _header_end(data)
    spaces = [i for i in range(max(8, end - 8), end) if data[i] == 0x20]
    if not spaces:
        return _set_byte(rng, data)
    out = bytearray(data)
    out[rng.choice(spaces)] = rng.choice(b"\t\n\r ")
    return bytes(out)


BYTE_MUTATIONS: dict[str, Callable[[random.Random, bytes], bytes]] = {
    "flip-bit": _flip_bit,
    "set-byte": _set_byte,
    "flip-bits": _flip_bits,
    "truncate": _truncate,
    "append": _append,
    "insert": _insert,
    "delete": _delete,
    "length-prefix": _length_prefix,
    "swap-words": _swap_words,
    "copy-region": _copy_region,
    "header-whitespace": _header_whitespace,
}


# ---------------------------------------------------------------------- content that breaks a rule (invalid/*)
# Each returns (tensors, header, sealable); the header's metadata entry may be any text. `sealable` is False
# when the mutation sets the hash entry itself.
_PLACEHOLDER = "__MUTANT_VALUE__"


def _with_text(base: Base, text: str) -> tuple[dict, dict, bool]:
    return dict(base.tensors), {**base.header, METADATA_KEY: text}, True


def _with_metadata(base: Base, metadata: dict) -> tuple[dict, dict, bool]:
    return _with_text(base, json.dumps(metadata, sort_keys=True, allow_nan=True))


def _with_raw_value(base: Base, path: list[str], raw: str) -> tuple[dict, dict, bool]:
    """Metadata with the value at ``path`` replaced by the JSON text ``raw`` (which may be invalid JSON)."""
    metadata = copy.deepcopy(base.metadata)
    holder = metadata
    for key in path[:-1]:
        if not isinstance(holder.get(key), dict):
            holder[key] = {}
        holder = holder[key]
    holder[path[-1]] = _PLACEHOLDER
    text = json.dumps(metadata, sort_keys=True).replace(json.dumps(_PLACEHOLDER), raw, 1)
    return _with_text(base, text)


def _deep_nesting(rng, base):
    depth = rng.choice([33, 34, 40, 100, 1000, rng.randint(33, 5000), 100_000])
    opening, closing = rng.choice([("[", "]"), ('{"a":', "}")])
    raw = opening * depth + "1" + closing * depth
    path = rng.choice([["description"], ["source", "deep"], ["shiny_new_key"], ["target", "spaces"]])
    return _with_raw_value(base, path, raw)


def _huge_string(rng, base):
    size = MAX_METADATA_BYTES + rng.randint(1, 4096)
    return _with_raw_value(
        base, [rng.choice(["description", "library_version", "unknown_key"])], json.dumps("x" * size)
    )


def _spaces_of(base: Base) -> list[str]:
    return list(base.pack.spaces)


def _wrong_types(base: Base) -> list[tuple[list[str], object]]:
    """(path, value) pairs that break a rule whatever the base holds."""
    space = _spaces_of(base)[0]
    dim = base.pack.spaces[space]
    names = base.pack.names
    categories = base.pack.categories
    cases: list[tuple[list[str], object]] = []
    cases += [(["format_version"], v) for v in (True, False, 1.0, "1", [1], {"v": 1}, None, 2, 0, -1, 1.5)]
    cases += [(["kind"], v) for v in (1, None, ["manual"], "Manual", "", {"k": 1}, True)]
    cases += [(["library_version"], v) for v in (1, None, "", [], {}, True)]
    cases += [([key], v) for key in ("source", "target", "provenance") for v in ([], "x", 1, None, True, 1.5)]
    cases += [(["categories"], v) for v in ("hate", 1, None, {}, [{}], [[]], [1], [""], [None], [True])]
    cases += [(["categories"], [*categories, "nudity"])]
    if categories:  # (a reordered list is valid: it sets the order of the categories)
        cases += [(["categories"], [*categories, categories[0]]), (["categories"], categories[:-1])]
    cases += [
        (["default_strengths"], v) for v in ([], "1", 1.0, {"global": "1"}, {"global": True}, {"global": 1e7})
    ]
    cases += [(["default_strengths"], {"nudity": 1.0}), (["default_strengths"], {names[0]: None})]
    cases += [
        (["target", "spaces", space, "dim"], v)
        for v in (True, dim + 1, dim - 1, 0, -dim, float(dim), str(dim), None, [dim])
    ]
    cases += [
        (["target", "spaces"], v)
        for v in (
            [],
            {},
            "x",
            {**{s: {"dim": d} for s, d in base.pack.spaces.items()}, "text_encoder_9": {"dim": 4}},
        )
    ]
    cases += [(["target", "spaces", space], v) for v in (None, 1, [], "x")]
    cases += [(["target", "spaces", space, "encoder"], v) for v in (1, None, [])]
    cases += [
        (["target", key], v) for key in ("model_id", "family", "pipeline_class") for v in (1, [], {}, True)
    ]
    cases += [(["description"], v) for v in (1, [], {}, True, None)]
    cases += [(["derived"], v) for v in ("x", [1], {}, [None])]
    cases += [(["alignment"], v) for v in ([], "x", 1, None, {"text_encoder_9": {}}, {space: 1}, {space: []})]
    cases += [(["calibration"], v) for v in ([], "x", None, {space: None}, {space: 1}, {"unknown_space": {}})]
    cases += [(["gate"], v) for v in ([], "x", None)]
    cases += [(["gate", "quantile"], v) for v in (2, -0.5, True, "0.9", None)]
    cases += [(["gate", "score"], v) for v in (1, None, [])]
    cases += [(["build"], v) for v in ([], "x", None)]
    cases += [(["build", "config"], v) for v in ([], "x", 1)]
    cases += [(["source", "layer"], v) for v in ("6", 6.0, True, [6])]
    cases += [(["source", "seed"], v) for v in ("0", 0.5, True, None)]
    cases += [(["source", "holdout"], v) for v in (1.5, -0.1, True, "0.3")]
    cases += [(["source", "paired"], v) for v in (1, "true", None)]
    cases += [
        (["source", "auroc"], v)
        for v in ({"global": 1.5}, {"global": "0.9"}, [], {"global": True}, {"global": None})
    ]
    cases += [(["source", "layer_auroc"], v) for v in ({"x": 0.5}, {"0": -0.1}, {"1.5": 0.5}, [0.5])]
    cases += [(["source", "counts"], v) for v in ({"global": -1}, {"global": 1.5}, {"global": True}, [1])]
    cases += [(["source", "model_id"], v) for v in (1, [], {}, True)]
    cases += [(["provenance", "target_unsafe_data"], v) for v in ("false", 0, None, 1)]
    cases += [
        (["provenance", key], v) for key in ("num_pairs", "num_anchors") for v in (-1, 1.5, True, "453", None)
    ]
    return cases


def _wrong_type(rng, base):
    path, value = rng.choice(_wrong_types(base))
    return _with_raw_value(base, path, json.dumps(value))


def _int_paths(base: Base) -> list[list[str]]:
    space = _spaces_of(base)[0]
    return [
        ["format_version"],
        ["target", "spaces", space, "dim"],
        ["source", "layer"],
        ["source", "seed"],
        ["provenance", "num_pairs"],
    ]


def _bool_for_int(rng, base):
    return _with_raw_value(base, rng.choice(_int_paths(base)), rng.choice(["true", "false"]))


def _non_finite(rng, base):
    raw = rng.choice(["NaN", "Infinity", "-Infinity", "1e999", "-1e999", "1e400", "-1E+309"])
    text = base.header[METADATA_KEY]
    numbers = list(re.finditer(r'(?<=": )-?[0-9][0-9.eE+-]*', text))  # values of keys, never inside strings
    if numbers and rng.random() < 0.7:  # any number of the pack, known key or not
        match = rng.choice(numbers)
        return _with_text(base, text[: match.start()] + raw + text[match.end() :])
    path = rng.choice(
        [["gate", "quantile"], ["default_strengths", "global"], ["source", "holdout"], ["x_unknown"]]
    )
    return _with_raw_value(base, path, raw)


def _huge_int(rng, base):
    raw = rng.choice([str(2**64), str(-(2**64)), "1" + "0" * 40, "9" * 5000])
    path = rng.choice([*_int_paths(base), ["description_number"], ["source", "counts", "global"]])
    return _with_raw_value(base, path, raw)


def _missing_key(rng, base):
    metadata = copy.deepcopy(base.metadata)
    del metadata[rng.choice(["format_version", "library_version", "kind", "source", "target", "provenance"])]
    return _with_metadata(base, metadata)


def _duplicate_key(rng, base):
    text = base.header[METADATA_KEY]
    key = rng.choice(sorted(base.metadata))
    return _with_text(base, "{" + json.dumps(key) + ": " + json.dumps(base.metadata[key]) + ", " + text[1:])


def _not_an_object(rng, base):
    text = base.header[METADATA_KEY]
    return _with_text(
        base,
        rng.choice(
            ["[]", "1", '"x"', "null", "", "{", "true", text[: rng.randrange(1, len(text))], "[" + text + "]"]
        ),
    )


def _lone_surrogate(rng, base):
    return _with_raw_value(
        base, [rng.choice(["description", "library_version", "unknown"])], '"bad \\ud800 text"'
    )


def _header_entry(rng, base):
    tensors, header = dict(base.tensors), dict(base.header)
    choice = rng.randrange(6)
    if choice == 0:
        del header[METADATA_KEY]
    elif choice == 1:
        header["format"] = rng.choice(["np", "", "PT", "tf"])
    elif choice == 2:
        header[rng.choice(["extra", "safesteer_sha257", "__metadata__", "Safesteer"])] = "x"
    elif choice == 3:
        header[HASH_KEY] = rng.choice(["", "abc", "0" * 63, "A" * 64, "g" * 64, "0" * 65, " " + "0" * 63])
        return tensors, header, False
    elif choice == 4:
        header[HASH_KEY] = f"{rng.getrandbits(256):064x}"
        return tensors, header, False
    else:
        header[METADATA_KEY] = header[METADATA_KEY] + rng.choice([" x", "}", ",", "]"])
    return tensors, header, True


def _vector_keys(base: Base) -> list[str]:
    return [key for key in base.tensors if not key.startswith("gate.")]


def _dtype(rng, base):
    tensors = dict(base.tensors)
    key = rng.choice(sorted(tensors))
    dtype = rng.choice(
        [
            torch.float16,
            torch.bfloat16,
            torch.float64,
            torch.float8_e4m3fn,
            torch.float8_e5m2,
            torch.int32,
            torch.int64,
            torch.int8,
            torch.uint8,
            torch.int16,
            torch.bool,
        ]
    )
    tensors[key] = tensors[key].to(dtype)
    return tensors, dict(base.header), True


def _shape(rng, base):
    tensors = dict(base.tensors)
    key = rng.choice(sorted(tensors))
    value = tensors[key]
    if key.startswith("gate."):
        tensors[key] = rng.choice(
            [value.reshape(1, 1), value.repeat(2), torch.zeros(0), value.reshape(1, 1, 1)]
        )
    else:
        dim = value.shape[0]
        options = [
            value.reshape(1, dim),
            value.reshape(dim, 1),
            torch.zeros(0),
            value[:1].reshape(()),
            value[: dim - 1],
            torch.cat([value, value[:1]]),
            torch.zeros(0, dim),
        ]
        if dim % 2 == 0:
            options.append(value.reshape(2, dim // 2))
        tensors[key] = rng.choice(options)
    return tensors, dict(base.header), True


def _bad_value(rng, base):
    tensors = dict(base.tensors)
    key = rng.choice(sorted(tensors))
    value = tensors[key].clone()
    flat = value.reshape(-1)
    flat[rng.randrange(flat.numel())] = rng.choice(
        [
            float("nan"),
            float("inf"),
            -float("inf"),
            3.4e38,
            -3.4e38,
            1e7,
            -1e7,
            1.0000001e6,
            torch.finfo(torch.float32).max,
        ]
    )
    tensors[key] = value
    return tensors, dict(base.header), True


def _huge_values(rng, base):
    tensors = dict(base.tensors)
    key = rng.choice(_vector_keys(base))
    tensors[key] = tensors[key] * rng.choice([1e7, 1e20, -1e30]) + rng.choice([1e7, -1e7])
    return tensors, dict(base.header), True


def _drop_tensor(rng, base):
    tensors = dict(base.tensors)
    candidates = [key for key in tensors if key.startswith(("global.", "category."))]
    del tensors[rng.choice(candidates)]
    return tensors, dict(base.header), True


def _extra_tensor(rng, base):
    tensors = dict(base.tensors)
    space = _spaces_of(base)[0]
    dim = base.pack.spaces[space]
    key, value = rng.choice(
        [
            ("bias", torch.zeros(dim)),
            ("lora.text_encoder", torch.zeros(dim)),
            (f"gate.nudity.{space}", torch.tensor(0.5)),
            ("gate.global.text_encoder_9", torch.tensor(0.5)),
            ("center.text_encoder_9", torch.zeros(dim)),
            (f"category.nudity.{space}", torch.ones(dim)),
            (f"category.global.{space}", torch.ones(dim)),
            (f"category.self.harm.{space}", torch.ones(dim)),
            ("global.text-encoder", torch.ones(dim)),
            (f"category..{space}", torch.ones(dim)),
            (f"category.{'x' * 200}.{space}", torch.ones(dim)),
            (f"category.bad\nname.{space}", torch.ones(dim)),
            ("global.", torch.ones(dim)),
            ("center.", torch.ones(dim)),
        ]
    )
    tensors[key] = value
    return tensors, dict(base.header), True


def _rename_tensor(rng, base):
    tensors = dict(base.tensors)
    key = rng.choice(sorted(tensors))
    prefix, _, space = key.rpartition(".")
    new = rng.choice([f"{prefix}.text_encoder_9", f"{prefix}.{space}x", key.replace(".", "..", 1), "x" + key])
    tensors[new] = tensors.pop(key)
    return tensors, dict(base.header), True


def _many_tensors(rng, base):
    tensors = dict(base.tensors)
    tensors.update({f"bias.{i}": torch.zeros(1) for i in range(MAX_TENSORS + 1 - len(tensors))})
    return tensors, dict(base.header), True


INVALID_MUTATIONS: dict[str, tuple[float, Callable[[random.Random, Base], tuple[dict, dict, bool]]]] = {
    # name: (weight, mutation)
    "deep-nesting": (3, _deep_nesting),
    "huge-string": (0.5, _huge_string),
    "wrong-type": (12, _wrong_type),
    "bool-for-int": (3, _bool_for_int),
    "non-finite": (4, _non_finite),
    "huge-int": (2, _huge_int),
    "missing-key": (2, _missing_key),
    "duplicate-key": (2, _duplicate_key),
    "not-an-object": (2, _not_an_object),
    "lone-surrogate": (1, _lone_surrogate),
    "header-entry": (3, _header_entry),
    "dtype": (5, _dtype),
    "shape": (5, _shape),
    "bad-value": (5, _bad_value),
    "huge-values": (2, _huge_values),
    "drop-tensor": (3, _drop_tensor),
    "extra-tensor": (3, _extra_tensor),
    "rename-tensor": (3, _rename_tensor),
    "many-tensors": (0.1, _many_tensors),
}


# ---------------------------------------------------------------------- plausible edits under a stale hash (stale/*)
def _extra_key(rng, base):
    return _with_metadata(
        base, {**base.metadata, rng.choice(["shiny_new_field", "notes"]): rng.choice([1, "x", {"a": [1]}])}
    )


def _edit_description(rng, base):
    return _with_metadata(base, {**base.metadata, "description": rng.choice(["", "edited", "x" * 100])})


def _drop_optional(rng, base):
    tensors = dict(base.tensors)
    optional = [key for key in tensors if key.startswith(("gate.", "center."))]
    if optional:
        del tensors[rng.choice(optional)]
    else:
        tensors = {key: value * 1.5 for key, value in tensors.items()}
    return tensors, dict(base.header), True


def _nudge_value(rng, base):
    tensors = dict(base.tensors)
    key = rng.choice(sorted(tensors))
    value = tensors[key].clone()
    flat = value.reshape(-1)
    position = rng.randrange(flat.numel())
    flat[position] = torch.nextafter(flat[position], torch.tensor(float("inf")))
    tensors[key] = value
    return tensors, dict(base.header), True


def _change_character(rng, base):
    text = base.header[METADATA_KEY]
    at = rng.randrange(len(text))
    return _with_text(base, text[:at] + rng.choice('0123456789abcxyz "{}[],:.-') + text[at + 1 :])


def _remove_hash(rng, base):
    header = dict(base.header)
    del header[HASH_KEY]
    return dict(base.tensors), header, False


def _reorder_keys(rng, base):
    items = list(base.metadata.items())
    rng.shuffle(items)
    return _with_text(base, json.dumps(dict(items), indent=rng.choice([None, 1])))


STALE_MUTATIONS: dict[str, tuple[float, Callable[[random.Random, Base], tuple[dict, dict, bool]]]] = {
    "extra-key": (2, _extra_key),
    "edit-description": (1, _edit_description),
    "drop-optional": (2, _drop_optional),
    "nudge-value": (2, _nudge_value),
    "change-character": (3, _change_character),
    "remove-hash": (1, _remove_hash),
    "reorder-keys": (1, _reorder_keys),
}


# ---------------------------------------------------------------------- generating and classifying
def _serialise(tensors: dict[str, torch.Tensor], header: dict[str, str]) -> bytes:
    return _canonical(
        save_bytes({key: value.contiguous() for key, value in tensors.items()}, metadata=header)
    )


def make_mutant(index: int, seed: int, bases: list[Base]) -> Mutant:
    """Mutant ``index`` of ``seed``: a pure function of both (and of ``bases``)."""
    rng = random.Random(f"{seed}:{index}")
    base = bases[index % len(bases)]
    family = rng.random()
    if family < 0.45:
        return _mutant(index, f"bytes/{rng.choice(sorted(BYTE_MUTATIONS))}", rng, base)
    table = INVALID_MUTATIONS if family < 0.9 else STALE_MUTATIONS
    names = sorted(table)
    name = rng.choices(names, weights=[table[n][0] for n in names])[0]
    return _mutant(index, f"{'invalid' if table is INVALID_MUTATIONS else 'stale'}/{name}", rng, base)


def mutant_of_kind(kind: str, seed: int, base: Base) -> Mutant:
    """One mutant of the given kind (``"bytes/truncate"``, ``"invalid/dtype"``, ``"stale/extra-key"``)."""
    return _mutant(-1, kind, random.Random(f"{seed}:{kind}"), base)


def _mutant(index: int, kind: str, rng: random.Random, base: Base) -> Mutant:
    family, name = kind.split("/")
    if family == "bytes":
        return Mutant(index, kind, base, BYTE_MUTATIONS[name](rng, base.data), must_fail=False)
    if family == "stale":
        tensors, header, _ = STALE_MUTATIONS[name][1](rng, base)
        return Mutant(index, kind, base, _serialise(tensors, header), must_fail=False)
    tensors, header, sealable = INVALID_MUTATIONS[name][1](rng, base)
    seal = (
        rng.choices(["rehash", "no-hash", "stale-hash"], weights=[0.7, 0.15, 0.15])[0]
        if sealable
        else "as-is"
    )
    if seal == "rehash":
        header = {**header, HASH_KEY: content_hash(tensors, header)}
    elif seal == "no-hash":
        header = {key: value for key, value in header.items() if key != HASH_KEY}
    return Mutant(index, f"{kind}/{seal}", base, _serialise(tensors, header), must_fail=True)


class MutantTimeout(BaseException):
    """Raised by the alarm when one load runs past its time limit (a BaseException: nothing swallows it)."""


def _alarm(signum, frame):
    raise MutantTimeout


def classify(mutant: Mutant, path: Path, timeout_s: float = 10.0) -> tuple[str, str]:
    """Write ``mutant`` to ``path``, load it, and return ``(outcome, detail)`` (outcomes: ``OUTCOMES``)."""
    path.write_bytes(mutant.data)
    previous = signal.signal(signal.SIGALRM, _alarm)
    signal.setitimer(signal.ITIMER_REAL, timeout_s)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            pack = DirectionPack.from_file(path)
        signal.setitimer(signal.ITIMER_REAL, 0)
    except MutantTimeout:
        return "timeout", f"loading took more than {timeout_s} s"
    except InvalidPackError as error:
        signal.setitimer(signal.ITIMER_REAL, 0)
        if str(path) not in str(error):
            return "unnamed-error", str(error)[:300]
        return "library-error", str(error).splitlines()[0][len(str(path)) :][:160]
    except BaseException as error:  # noqa: BLE001 (what this harness counts)
        signal.setitimer(signal.ITIMER_REAL, 0)
        if isinstance(error, KeyboardInterrupt):
            raise
        return "other-exception", f"{type(error).__name__}: {str(error)[:300]}"
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    if pack.equals(mutant.base.pack):
        return "loaded-equal", ""
    return "loaded-different", ""


def is_violation(mutant: Mutant, outcome: str) -> bool:
    """Whether ``outcome`` breaks the property: refused with a library error naming the file, or (for a
    mutant that may be a no-op) loaded equal to the original."""
    if outcome == "library-error":
        return False
    return mutant.must_fail or outcome != "loaded-equal"

"""Fail closed: each class of invalid pack the red-team fuzz found is refused with ``InvalidPackError`` (message:
file, field, found value, fix), the integrity hash catches silent changes, and pre-hash files load with a
warning. The random property test is tests/packs/test_pack_fuzz.py.
"""

from __future__ import annotations

import hashlib
import json
import pickle
import warnings
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from safesteer_diffusers import PACK_FILENAME, DirectionPack, InvalidPackError
from safesteer_diffusers.packs import InvalidPackTypeError, UnverifiedPackWarning
from safesteer_diffusers.packs.format import HASH_KEY, MAX_ABS_VALUE, MAX_METADATA_BYTES, MAX_METADATA_DEPTH
from safesteer_diffusers.packs.integrity import content_hash
from safesteer_diffusers.packs.reader import json_depth

SHIPPED = (
    Path(__file__).resolve().parents[2] / "pretrained_directions" / "tiny-sd-demo-from-minilm" / PACK_FILENAME
)

METADATA = {
    "format_version": 1,
    "library_version": "0.1.0",
    "kind": "manual",
    "source": {},
    "target": {"model_id": "org/model", "spaces": {"text_encoder": {"dim": 4}}},
    "provenance": {},
    "categories": ["sexual"],
}
TENSORS = {
    "global.text_encoder": torch.arange(4, dtype=torch.float32),
    "category.sexual.text_encoder": torch.ones(4),
    "gate.global.text_encoder": torch.tensor(0.25),
}


def write(
    path: Path,
    tensors: dict | None = None,
    metadata: dict | str | None = None,
    *,
    hashed: bool = True,
    **extra,
) -> Path:
    """A pack file written by hand; ``hashed`` records a correct integrity hash for whatever it holds."""
    metadata = METADATA if metadata is None else metadata
    tensors = TENSORS if tensors is None else tensors
    header = {
        "format": "pt",
        "safesteer": metadata if isinstance(metadata, str) else json.dumps(metadata),
        **extra,
    }
    if hashed:
        header[HASH_KEY] = content_hash(tensors, header)
    save_file(tensors, str(path), metadata=header)
    return path


def refused(path: Path, *patterns: str) -> InvalidPackError:
    """Load ``path``, expect InvalidPackError naming the file and matching every pattern; return it."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UnverifiedPackWarning)
        with pytest.raises(InvalidPackError) as caught:
            DirectionPack.from_file(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: "), message
    assert caught.value.path == path
    for pattern in patterns:
        assert pattern in message, (pattern, message)
    return caught.value


# ---------------------------------------------------------------------- the exception type
def test_the_error_type_is_one_value_error():
    assert issubclass(InvalidPackError, ValueError)
    assert issubclass(InvalidPackTypeError, InvalidPackError) and issubclass(InvalidPackTypeError, TypeError)
    error = InvalidPackTypeError("x: bad", field="x").in_file("p.safetensors")
    assert (
        isinstance(error, InvalidPackTypeError)
        and str(error) == "p.safetensors: x: bad"
        and error.field == "x"
    )
    copy = pickle.loads(pickle.dumps(error))  # crosses process boundaries (multiprocessing, the fuzz script)
    assert type(copy) is InvalidPackTypeError and str(copy) == str(error) and copy.field == "x"


def test_a_valid_hand_written_file_loads_without_warnings(tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        pack = DirectionPack.from_file(write(tmp_path / "p.safetensors"))
    assert pack.names == ["global", "sexual"] and pack.threshold("global", "text_encoder") == 0.25


def test_message_names_file_field_found_value_and_fix(tmp_path):
    path = write(tmp_path / "p.safetensors", metadata={**METADATA, "format_version": True})
    error = refused(path, "'format_version'", "must be the integer 1", "got bool true", "Rebuild the pack")
    assert error.field == "format_version"


# ---------------------------------------------------------------------- what the red-team fuzz found
@pytest.mark.parametrize("depth", [MAX_METADATA_DEPTH + 1, 1000, 100_000])
def test_deeply_nested_metadata_is_refused_before_parsing(tmp_path, depth):
    text = json.dumps({**METADATA, "description": "X"}).replace('"X"', "[" * depth + "]" * depth)
    refused(write(tmp_path / "p.safetensors", metadata=text), "nested more than 32 levels deep")


def test_json_depth_counts_like_the_parser():
    assert json_depth('{"a": [1, {"b": "[[[{"}], "c": "\\"[["}', 99) == 3
    assert json_depth('"\\\\"[[', 99) == 2  # an escaped backslash does not escape the quote after it
    assert json_depth("[" * 10_000, 32) == 33  # stops once past the limit


def test_oversized_metadata_is_refused_before_parsing(tmp_path):
    metadata = {**METADATA, "description": "x" * MAX_METADATA_BYTES}
    refused(write(tmp_path / "p.safetensors", metadata=metadata), "bytes of JSON; the format allows at most")


@pytest.mark.parametrize(
    ("categories", "expected"),
    [
        ([{}], "'categories' must be a list of non-empty category names, got list"),
        (1, "'categories' must be a list of non-empty category names, got int 1"),
        (["sexual", "sexual"], "lists ['sexual'] more than once"),
        ([""], "non-empty category names"),
        (["nudity"], "lists categories ['nudity'] but the tensors hold ['sexual']"),
    ],
)
def test_category_lists_of_any_shape_are_refused_not_crashed_on(tmp_path, categories, expected):
    # Before: `TypeError: unhashable type` and `'int' object is not iterable`.
    refused(write(tmp_path / "p.safetensors", metadata={**METADATA, "categories": categories}), expected)


@pytest.mark.parametrize(
    ("tensors", "expected"),
    [
        ({**TENSORS, "global.text_encoder": torch.zeros(0)}, "the vector is empty"),
        ({**TENSORS, "global.text_encoder": torch.ones(5)}, "same spaces with the same dimensions"),
        (
            {"global.text_encoder": torch.ones(5), "category.sexual.text_encoder": torch.ones(5)},
            "'target.spaces.text_encoder.dim' = int 4 contradicts the vectors, which have 5 values",
        ),
        (
            {**TENSORS, "global.text_encoder": torch.ones(4, dtype=torch.float8_e4m3fn)},
            "dtype F8_E4M3; pack files",
        ),
        ({**TENSORS, "global.text_encoder": torch.ones(4, dtype=torch.float16)}, "dtype F16"),
        ({**TENSORS, "global.text_encoder": torch.ones(4, dtype=torch.float64)}, "dtype F64"),
        (
            {**TENSORS, "gate.global.text_encoder": torch.tensor(True)},
            "'gate.global.text_encoder' has dtype BOOL",
        ),
        (
            {**TENSORS, "gate.global.text_encoder": torch.tensor(1)},
            "'gate.global.text_encoder' has dtype I64",
        ),
        (
            {**TENSORS, "global.text_encoder": torch.tensor([3.4e38, 0, 0, 0])},
            "exceed the bound |value| <= 1e+06",
        ),
        ({**TENSORS, "global.text_encoder": torch.tensor([-3.4e38, 0, 0, 0])}, "largest magnitude 3.4e+38"),
        ({**TENSORS, "gate.global.text_encoder": torch.tensor(3.4e38)}, "outside the bound |value| <= 1e+06"),
        (
            {**TENSORS, "category.sexual.text_encoder": torch.tensor([1.0, float("nan"), 0, 0])},
            "NaN or infinite",
        ),
        ({**TENSORS, "category.global.text_encoder": torch.ones(4)}, "'global' is the global direction"),
    ],
)
def test_tensors_that_contradict_the_format_are_refused(tmp_path, tensors, expected):
    refused(write(tmp_path / "p.safetensors", tensors=tensors), expected)


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"format_version": True}, "got bool true"),
        ({"format_version": 1.0}, "got float 1.0"),
        ({"format_version": "1"}, 'got str "1"'),
        ({"library_version": 1}, "'library_version' must be a non-empty string"),
        (
            {"target": {"spaces": {"text_encoder": {"dim": True}}}},
            "'target.spaces.text_encoder.dim' = bool true",
        ),
        ({"target": {"spaces": {"text_encoder": {"dim": 4.0}}}}, "= float 4.0 contradicts"),
        ({"target": {"spaces": {"text_encoder_2": {"dim": 4}}}}, "one entry per space of the vectors"),
        ({"target": {"model_id": ["org/model"]}}, "'target.model_id' must be a model id string or null"),
        ({"default_strengths": {"global": True}}, "'default_strengths.global' must be a number"),
        ({"default_strengths": {"nudity": 1.0}}, "names a direction the pack does not have"),
        ({"gate": {"quantile": 2}}, "'gate.quantile' must be a number between 0 and 1"),
        ({"source": {"layer": "6"}}, "'source.layer' must be an integer or null"),
        ({"source": {"auroc": {"global": "0.9"}}}, "'source.auroc' must be an object of numbers"),
        (
            {"provenance": {"target_unsafe_data": "no"}},
            "'provenance.target_unsafe_data' must be true or false",
        ),
        ({"alignment": {"text_encoder_9": {}}}, "'alignment' has an entry for space 'text_encoder_9'"),
        ({"description": None}, "'description' must be a string, got null"),
        ({"seed": 2**64}, "integers must lie strictly between -2**64 and 2**64"),
    ],
)
def test_metadata_of_the_wrong_type_is_refused(tmp_path, change, expected):
    refused(write(tmp_path / "p.safetensors", metadata={**METADATA, **change}), expected)


@pytest.mark.parametrize("number", ["NaN", "Infinity", "-Infinity", "1e999", "-1e400"])
def test_non_finite_metadata_numbers_are_refused(tmp_path, number):
    text = json.dumps({**METADATA, "gate": {"quantile": 0.5}}).replace("0.5", number)
    refused(write(tmp_path / "p.safetensors", metadata=text), "finite")


def test_duplicate_metadata_keys_are_refused(tmp_path):
    text = '{"kind": "native", ' + json.dumps(METADATA)[1:]
    refused(write(tmp_path / "p.safetensors", metadata=text), "key 'kind' appears twice")


def test_header_entries_are_checked(tmp_path):
    refused(write(tmp_path / "a.safetensors", extra="x"), "header has entries ['extra']")
    refused(write(tmp_path / "b.safetensors", format="np"), "'format' is 'np'")
    path = tmp_path / "c.safetensors"
    path.write_bytes((2**40).to_bytes(8, "little") + b"{}")
    refused(path, "declares a safetensors header of 1099511627776 bytes, more than the format allows")


# ---------------------------------------------------------------------- integrity
def test_every_flipped_data_byte_is_caught(tmp_path):
    # Before: 2,142 of 2,159 flipped data bytes loaded as silently changed vectors.
    original = write(tmp_path / "p.safetensors").read_bytes()
    data_start = 8 + int.from_bytes(original[:8], "little")
    for offset in range(data_start, len(original)):
        damaged = bytearray(original)
        damaged[offset] ^= 0x01
        path = tmp_path / f"flip{offset}.safetensors"
        path.write_bytes(bytes(damaged))
        refused(path, "integrity check failed", "corrupted or edited")


def test_an_edited_metadata_value_is_caught(tmp_path):
    original = write(tmp_path / "p.safetensors").read_bytes()
    path = tmp_path / "edited.safetensors"
    path.write_bytes(original.replace(b"org/model", b"org/modem"))
    refused(path, "integrity check failed")


def test_malformed_hash_is_refused(tmp_path):
    path = write(tmp_path / "p.safetensors", hashed=False, safesteer_sha256="ABC")
    refused(path, "'safesteer_sha256' is 'ABC', not a SHA-256 hash")


def test_pre_hash_files_load_with_a_warning(tmp_path):
    path = write(tmp_path / "p.safetensors", hashed=False)
    with pytest.warns(UnverifiedPackWarning, match="older version.*re-save it to add one"):
        pack = DirectionPack.from_file(path)
    resaved = pack.save_file(tmp_path / "resaved.safetensors")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert DirectionPack.from_file(resaved).equals(pack)


def test_the_shipped_pack_is_hashed_and_loads_without_warnings():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        pack = DirectionPack.from_file(SHIPPED)
    tensors, header = pack.to_state_dict()
    assert header[HASH_KEY] == content_hash(tensors, header)


def test_hash_scheme_is_the_documented_one():
    """sha256 over 'safesteer-pack/sha256/v1\\n', then per tensor (sorted) a JSON line + bytes, then per other
    header entry (sorted) a JSON line + UTF-8 text. Recomputed here independently of the library."""
    tensors = {"b": torch.tensor([1.0, -2.0]), "a": torch.tensor(0.5)}
    header = {"safesteer": '{"k": 1}', "format": "pt", HASH_KEY: "ignored"}
    digest = hashlib.sha256(b"safesteer-pack/sha256/v1\n")
    digest.update(b'["tensor", "a", "F32", [], 4]\n' + torch.tensor(0.5).numpy().tobytes())
    digest.update(b'["tensor", "b", "F32", [2], 8]\n' + torch.tensor([1.0, -2.0]).numpy().tobytes())
    digest.update(b'["header", "format", 2]\npt')
    digest.update(b'["header", "safesteer", 8]\n{"k": 1}')
    assert content_hash(tensors, header) == digest.hexdigest()
    assert content_hash(dict(reversed(tensors.items())), dict(reversed(header.items()))) == digest.hexdigest()


# ---------------------------------------------------------------------- loading references
def test_from_pretrained_failures_are_the_library_error(tmp_path):
    with pytest.raises(InvalidPackError, match=f"holds no {PACK_FILENAME}"):
        DirectionPack.from_pretrained(tmp_path)
    with pytest.raises(InvalidPackError, match="No pack file or folder at"):
        DirectionPack.from_pretrained(str(tmp_path / "nothing.safetensors"))
    with pytest.raises(InvalidPackError, match="the file cannot be read"):
        DirectionPack.from_file(tmp_path / "nothing.safetensors")
    with pytest.raises(InvalidPackError, match="the path is not a regular file"):
        DirectionPack.from_file(tmp_path)


def test_bound_is_satisfied_by_the_shipped_pack_with_margin():
    pack = DirectionPack.from_file(SHIPPED)
    largest = max(pack.direction(s, n).abs().max().item() for n in pack.names for s in pack.spaces)
    assert largest < 1.0 < MAX_ABS_VALUE / 1e5

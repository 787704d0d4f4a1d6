"""`DirectionPack`: exact file round trips, read access, validation errors, safe loading and vector algebra.

Every comparison is exact (``torch.equal`` or ``==``). Expected values are computed here from the inputs,
not read back through the code under test.
"""

from __future__ import annotations

import json
import math
import os
import warnings
from pathlib import Path

import pytest
import torch
from huggingface_hub import metadata_load
from safetensors.torch import save_file

from safesteer_diffusers import PACK_FILENAME, DirectionPack, InvalidPackError

SPACES = {"text_encoder": 8, "text_encoder_2": 12}
CATEGORIES = ["violence", "hate", "sexual"]  # deliberately not alphabetical
NAMES = ["global", *CATEGORIES]
TARGET = {"model_id": "stabilityai/stable-diffusion-xl-base-1.0", "family": "sdxl"}
CARD_TAGS = ["safesteer", "safety", "steering-vector", "diffusers", "text-to-image"]


def random_directions(seed: int = 0, spaces: dict[str, int] = SPACES) -> dict[str, dict[str, torch.Tensor]]:
    generator = torch.Generator().manual_seed(seed)
    return {name: {s: torch.randn(d, generator=generator) for s, d in spaces.items()} for name in NAMES}


def random_thresholds() -> dict[str, dict[str, float]]:
    # Not representable in float32 on purpose: the file stores thresholds as float32.
    return {
        name: {s: 0.1 + 0.13 * i - 0.01 * j for j, s in enumerate(SPACES)} for i, name in enumerate(NAMES)
    }


def random_centers(seed: int = 1) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return {s: torch.randn(d, generator=generator) for s, d in SPACES.items()}


def float32(value: float) -> float:
    return float(torch.tensor(value, dtype=torch.float32))


METADATA = {
    "kind": "native",
    "source": {"model_id": "Qwen/Qwen2.5-0.5B", "layer": 12},
    "target": TARGET,
    "provenance": {"target_unsafe_data": False, "prompts": 128},
    "description": "test pack",
    "default_strengths": {"global": 1.5, "sexual": 2.0},
}


def make_pack(seed: int = 0, with_gate: bool = True) -> DirectionPack:
    return DirectionPack.from_tensors(
        random_directions(seed),
        thresholds=random_thresholds() if with_gate else None,
        centers=random_centers(seed + 1),
        **METADATA,
    )


def assert_same_vectors(a: DirectionPack, b: DirectionPack) -> None:
    assert a.names == b.names and a.spaces == b.spaces
    for name in a.names:
        for space in a.spaces:
            assert torch.equal(a.direction(space, name), b.direction(space, name)), (name, space)


# ---------------------------------------------------------------------- save / load round trip
def test_round_trip_is_exact_folder_and_file(tmp_path):
    directions, thresholds, centers = random_directions(), random_thresholds(), random_centers()
    pack = DirectionPack.from_tensors(directions, thresholds=thresholds, centers=centers, **METADATA)
    path = pack.save_pretrained(tmp_path / "pack")
    assert path == tmp_path / "pack" / PACK_FILENAME and path.is_file()

    for reference in (tmp_path / "pack", path, str(path)):
        loaded = DirectionPack.from_pretrained(reference)
        assert pack.equals(loaded) and loaded.equals(pack)
        # The same facts, checked against the inputs rather than through `equals`.
        assert loaded.names == NAMES
        assert loaded.categories == CATEGORIES
        assert loaded.spaces == SPACES
        for name in NAMES:
            for space in SPACES:
                assert torch.equal(loaded.direction(space, name), directions[name][space])
                assert loaded.threshold(name, space) == float32(thresholds[name][space])
        for space in SPACES:
            assert torch.equal(loaded.center(space), centers[space])
        metadata = loaded.metadata
        assert metadata == pack.metadata
        for key, value in METADATA.items():
            assert metadata[key] == value
        assert metadata["categories"] == CATEGORIES
        assert metadata["format_version"] == 1
        assert loaded.has_gate


def test_equals_sees_every_difference():
    pack = make_pack()
    assert pack.equals(make_pack())
    assert not pack.equals(make_pack(seed=5))  # vectors
    assert not pack.equals(make_pack(with_gate=False))  # thresholds
    other_center = DirectionPack.from_tensors(
        random_directions(), thresholds=random_thresholds(), centers=random_centers(9), **METADATA
    )
    assert not pack.equals(other_center)
    other_metadata = DirectionPack.from_tensors(
        random_directions(),
        thresholds=random_thresholds(),
        centers=random_centers(),
        **{**METADATA, "description": "other"},
    )
    assert not pack.equals(other_metadata)


def test_global_is_first_whatever_order_it_is_given_in(tmp_path):
    directions = random_directions()
    shuffled = {"hate": directions["hate"], "global": directions["global"], "sexual": directions["sexual"]}
    pack = DirectionPack.from_tensors(shuffled)
    assert pack.names == ["global", "hate", "sexual"] and pack.categories == ["hate", "sexual"]
    loaded = DirectionPack.from_pretrained(pack.save_pretrained(tmp_path))
    assert loaded.names == ["global", "hate", "sexual"]
    assert pack.equals(loaded)


def test_pack_without_global_round_trips(tmp_path):
    directions = random_directions()
    pack = DirectionPack.from_tensors({name: directions[name] for name in CATEGORIES})
    loaded = DirectionPack.from_pretrained(pack.save_pretrained(tmp_path))
    assert loaded.names == CATEGORIES and pack.equals(loaded)


def test_thresholds_are_stored_as_float32_and_out_of_range_ones_rejected(tmp_path):
    directions = {"global": {"text_encoder": torch.ones(4)}}
    pack = DirectionPack.from_tensors(directions, thresholds={"global": {"text_encoder": 0.1}})
    assert pack.threshold("global", "text_encoder") == float32(0.1) != 0.1
    assert DirectionPack.from_pretrained(pack.save_pretrained(tmp_path)).equals(pack)
    with pytest.raises(ValueError, match=r"global\.text_encoder = 1e\+39 is outside the float32 range"):
        DirectionPack.from_tensors(directions, thresholds={"global": {"text_encoder": 1e39}})


def test_model_card_front_matter(tmp_path):
    make_pack().save_pretrained(tmp_path)
    card = (tmp_path / "README.md").read_text(encoding="utf-8")
    assert card.startswith("---\n")
    front = metadata_load(tmp_path / "README.md")
    assert front["library_name"] == "safesteer-diffusers"
    assert front["base_model"] == TARGET["model_id"]
    assert front["tags"] == CARD_TAGS
    assert "violence, hate, sexual" in card


def test_model_card_without_target_has_no_base_model(tmp_path):
    DirectionPack.from_tensors({"global": {"text_encoder": torch.ones(4)}}).save_pretrained(tmp_path)
    front = metadata_load(tmp_path / "README.md")
    assert front["library_name"] == "safesteer-diffusers" and "base_model" not in front


# ---------------------------------------------------------------------- read access
def test_read_access():
    directions, centers = random_directions(), random_centers()
    pack = DirectionPack.from_tensors(
        directions,
        thresholds={"sexual": {"text_encoder": 0.5}},
        centers={"text_encoder": centers["text_encoder"]},
    )
    assert pack.categories == CATEGORIES
    assert pack.names == NAMES
    assert pack.spaces == SPACES

    vector = pack.direction("text_encoder_2", "hate")
    assert torch.equal(vector, directions["hate"]["text_encoder_2"]) and vector.dtype == torch.float32
    assert torch.equal(
        pack.direction("text_encoder"), directions["global"]["text_encoder"]
    )  # default: global
    vector.zero_()  # a copy: the pack is unchanged
    assert torch.equal(pack.direction("text_encoder_2", "hate"), directions["hate"]["text_encoder_2"])

    assert pack.threshold("sexual", "text_encoder") == 0.5
    assert pack.threshold("sexual", "text_encoder_2") is None
    assert pack.threshold("global", "text_encoder") is None
    assert not pack.has_gate

    center = pack.center("text_encoder")
    assert torch.equal(center, centers["text_encoder"])
    center.zero_()
    assert torch.equal(pack.center("text_encoder"), centers["text_encoder"])
    assert pack.center("text_encoder_2") is None


def test_inputs_are_copied_and_converted_to_float32():
    source = torch.arange(4, dtype=torch.float64)
    pack = DirectionPack.from_tensors({"global": {"text_encoder": source}})
    source.add_(100.0)
    vector = pack.direction("text_encoder")
    assert vector.dtype == torch.float32
    assert torch.equal(vector, torch.tensor([0.0, 1.0, 2.0, 3.0]))


def test_metadata_is_a_copy():
    pack = make_pack()
    metadata = pack.metadata
    metadata["target"]["model_id"] = "someone/else"
    metadata["kind"] = "manual"
    metadata["new"] = 1
    assert pack.metadata["target"] == TARGET
    assert pack.metadata["kind"] == "native"
    assert "new" not in pack.metadata


def test_from_tensors_fills_defaults():
    metadata = DirectionPack.from_tensors({"global": {"text_encoder": torch.ones(4)}}).metadata
    assert metadata["kind"] == "manual" and metadata["format_version"] == 1
    assert metadata["source"] == metadata["target"] == metadata["provenance"] == {}
    assert metadata["categories"] == [] and isinstance(metadata["library_version"], str)


def test_unknown_direction_and_space():
    pack = make_pack()
    with pytest.raises(
        ValueError, match=r"Unknown direction 'Sexual'.*\['global', 'violence', 'hate', 'sexual'\]"
    ):
        pack.direction("text_encoder", "Sexual")
    with pytest.raises(ValueError, match="Unknown direction 'nudity'"):
        pack.threshold("nudity", "text_encoder")
    with pytest.raises(
        ValueError, match=r"no space 'text_encoder_3'; it has \['text_encoder', 'text_encoder_2'\]"
    ):
        pack.direction("text_encoder_3")


# ---------------------------------------------------------------------- validation on construction
def one(vector: object) -> dict:
    return {"global": {"text_encoder": vector}}


@pytest.mark.parametrize(
    ("directions", "error", "message"),
    [
        (
            one(torch.tensor([1.0, float("nan"), 0.0])),
            ValueError,
            r"global\.text_encoder: 1 of 3 values are NaN",
        ),
        (one(torch.tensor([float("inf"), 1.0])), ValueError, "NaN or infinite"),
        (one(torch.ones(2, 4)), ValueError, r"expected a 1-D vector, got shape \(2, 4\)"),
        (
            one(torch.ones(4, dtype=torch.int64)),
            TypeError,
            "expected a floating-point tensor, got torch.int64",
        ),
        (one([1.0, 2.0]), TypeError, "expected a torch.Tensor, got list"),
        (
            {"global": {"text_encoder": torch.ones(4)}, "hate": {"text_encoder": torch.ones(5)}},
            ValueError,
            r"same spaces with the same dimensions:\n  'global': \{'text_encoder': 4\}\n  'hate': \{'text_encoder': 5\}",
        ),
        (
            {"global": {"text_encoder": torch.ones(4)}, "hate": {"text_encoder_2": torch.ones(4)}},
            ValueError,
            "same spaces with the same dimensions",
        ),
        (
            {
                "global": {"text_encoder": torch.ones(4)},
                "hate": {"text_encoder": torch.ones(4), "t5": torch.ones(4)},
            },
            ValueError,
            "same spaces with the same dimensions",
        ),
        ({"self.harm": {"text_encoder": torch.ones(4)}}, ValueError, r"without '\.', got 'self\.harm'"),
        ({"": {"text_encoder": torch.ones(4)}}, ValueError, "non-empty strings"),
        ({"global": {"text.encoder": torch.ones(4)}}, ValueError, "Space names are pipeline component names"),
        ({"global": {}}, ValueError, "Direction 'global' has no spaces"),
        ({}, ValueError, "A pack needs at least one direction"),
    ],
    ids=[
        "nan",
        "inf",
        "2d",
        "integer",
        "not-a-tensor",
        "dims-differ",
        "spaces-differ",
        "extra-space",
        "dot-in-name",
        "empty-name",
        "dot-in-space",
        "no-spaces",
        "empty-pack",
    ],
)
def test_invalid_directions(directions, error, message):
    with pytest.raises(error, match=message):
        DirectionPack.from_tensors(directions)


@pytest.mark.parametrize(
    ("thresholds", "centers", "message"),
    [
        (
            {"global": {"text_encoder": float("nan")}},
            None,
            r"Gate threshold global\.text_encoder must be a finite",
        ),
        ({"global": {"text_encoder": float("inf")}}, None, "must be a finite number"),
        ({"global": {"text_encoder": "0.5"}}, None, "must be a finite number, got '0.5'"),
        (
            {"global": {"text_encoder_9": 0.5}},
            None,
            "Gate threshold for 'global' names unknown space 'text_encoder_9'",
        ),
        ({"nudity": {"text_encoder": 0.5}}, None, "Gate threshold given for unknown direction 'nudity'"),
        (None, {"text_encoder_9": torch.ones(4)}, "Centre given for unknown space 'text_encoder_9'"),
        (None, {"text_encoder": torch.ones(3)}, "Centre of space 'text_encoder' has dimension 3"),
        (None, {"text_encoder": torch.tensor([0.0, float("nan"), 0, 0])}, r"center\.text_encoder: 1 of 4"),
    ],
    ids=[
        "nan-threshold",
        "inf-threshold",
        "string-threshold",
        "threshold-unknown-space",
        "threshold-unknown-direction",
        "center-unknown-space",
        "center-wrong-dim",
        "center-nan",
    ],
)
def test_invalid_thresholds_and_centers(thresholds, centers, message):
    with pytest.raises(ValueError, match=message):
        DirectionPack.from_tensors(one(torch.ones(4)), thresholds=thresholds, centers=centers)


@pytest.mark.parametrize(
    ("metadata", "error", "message"),
    [
        ({"kind": "magic"}, ValueError, "Pack kind must be one of"),
        ({"target": "sdxl"}, ValueError, "Pack metadata 'target' must be a JSON object, got str"),
        ({"format_version": 2}, ValueError, "Pack format version 2 is not supported"),
        ({"categories": ["other"]}, ValueError, r"lists categories \['other'\] but the tensors hold \[\]"),
        ({"description": object()}, TypeError, "must be JSON-serialisable"),
    ],
    ids=["kind", "target-not-object", "format-version", "categories-mismatch", "not-json"],
)
def test_invalid_metadata(metadata, error, message):
    with pytest.raises(error, match=message):
        DirectionPack.from_tensors(one(torch.ones(4)), **metadata)


# ---------------------------------------------------------------------- loading files written by hand
HAND_METADATA = {
    "format_version": 1,
    "library_version": "0.0.0",
    "kind": "manual",
    "source": {},
    "target": {"model_id": "org/model"},
    "provenance": {},
}
HAND_TENSORS = {"global.text_encoder": torch.arange(4, dtype=torch.float32)}


def write_pack(path: Path, tensors: dict | None = None, metadata: dict | str | None = None) -> Path:
    metadata = HAND_METADATA if metadata is None else metadata
    text = metadata if isinstance(metadata, str) else json.dumps(metadata)
    save_file(HAND_TENSORS if tensors is None else tensors, str(path), metadata={"safesteer": text})
    return path


def test_hand_written_file_loads(tmp_path):
    tensors = {
        **HAND_TENSORS,
        "category.sexual.text_encoder": torch.ones(4),
        "gate.global.text_encoder": torch.tensor(0.25),
        "gate.sexual.text_encoder": torch.tensor([0.75]),
        "center.text_encoder": torch.full((4,), 2.0),
    }
    pack = DirectionPack.from_file(write_pack(tmp_path / "p.safetensors", tensors))
    assert pack.names == ["global", "sexual"]
    assert torch.equal(pack.direction("text_encoder"), torch.arange(4, dtype=torch.float32))
    assert torch.equal(pack.direction("text_encoder", "sexual"), torch.ones(4))
    assert (
        pack.threshold("global", "text_encoder") == 0.25 and pack.threshold("sexual", "text_encoder") == 0.75
    )
    assert torch.equal(pack.center("text_encoder"), torch.full((4,), 2.0))
    assert pack.metadata["target"] == {"model_id": "org/model"}


def test_unsupported_format_version(tmp_path):
    path = write_pack(tmp_path / "p.safetensors", metadata={**HAND_METADATA, "format_version": 99})
    with pytest.raises(ValueError, match=r"p\.safetensors: Pack format version 99 is not supported"):
        DirectionPack.from_pretrained(path)


def test_missing_required_metadata(tmp_path):
    metadata = {k: v for k, v in HAND_METADATA.items() if k != "target"}
    path = write_pack(tmp_path / "p.safetensors", metadata=metadata)
    with pytest.raises(ValueError, match=r"missing required keys \['target'\]"):
        DirectionPack.from_pretrained(path)


def test_unknown_metadata_key_warns_but_loads(tmp_path):
    path = write_pack(tmp_path / "p.safetensors", metadata={**HAND_METADATA, "shiny_new_field": {"a": 1}})
    with pytest.warns(UserWarning, match=r"keys this version does not know: \['shiny_new_field'\]"):
        pack = DirectionPack.from_pretrained(path)
    assert pack.metadata["shiny_new_field"] == {"a": 1}
    assert torch.equal(pack.direction("text_encoder"), HAND_TENSORS["global.text_encoder"])


def test_corrupt_file(tmp_path):
    path = tmp_path / PACK_FILENAME
    path.write_bytes(
        torch.randint(0, 256, (4096,), generator=torch.Generator().manual_seed(0)).byte().numpy()
    )
    with pytest.raises(ValueError, match="corrupt"):
        DirectionPack.from_pretrained(tmp_path)
    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes(write_pack(tmp_path / "ok.safetensors").read_bytes()[:-5])
    with pytest.raises(ValueError, match="corrupt"):
        DirectionPack.from_pretrained(truncated)


def test_safetensors_file_that_is_not_a_pack(tmp_path):
    path = tmp_path / "model.safetensors"
    save_file(HAND_TENSORS, str(path), metadata={"format": "pt"})
    with pytest.raises(ValueError, match="is a safetensors file but not a SafeSteer pack"):
        DirectionPack.from_pretrained(path)


def test_metadata_that_is_not_json(tmp_path):
    path = write_pack(tmp_path / "p.safetensors", metadata="{not json")
    with pytest.raises(ValueError, match="the pack metadata is not valid JSON"):
        DirectionPack.from_pretrained(path)


@pytest.mark.parametrize("key", ["bias", "global", "gate.global", "lora.text_encoder"])
def test_unexpected_tensor_key(tmp_path, key):
    path = write_pack(tmp_path / "p.safetensors", tensors={**HAND_TENSORS, key: torch.zeros(4)})
    with pytest.raises(ValueError, match=rf"unexpected tensor '{key}'"):
        DirectionPack.from_pretrained(path)


def test_gate_tensor_must_hold_one_number(tmp_path):
    path = write_pack(
        tmp_path / "p.safetensors", tensors={**HAND_TENSORS, "gate.global.text_encoder": torch.ones(2)}
    )
    with pytest.raises(ValueError, match=r"gate tensor 'gate\.global\.text_encoder' must hold one number"):
        DirectionPack.from_pretrained(path)


def _unpickled(marker: str) -> None:
    """Runs only if a pickle is loaded: leaves a marker file behind."""
    Path(marker).write_text("unpickled")


class _Trap:
    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (_unpickled, (self.marker,))


def test_pickle_files_are_never_unpickled(tmp_path):
    marker = tmp_path / "marker"
    path = tmp_path / "pytorch_model.bin"
    torch.save({"global.text_encoder": torch.ones(4), "trap": _Trap(marker)}, path)
    with pytest.raises(ValueError, match="corrupt or not a SafeSteer pack"):
        DirectionPack.from_pretrained(path)
    with pytest.raises(ValueError, match="corrupt or not a SafeSteer pack"):
        DirectionPack.from_file(path)
    assert not marker.exists()
    # The trap works: loading the same file with pickle does run it.
    torch.load(path, weights_only=False)
    assert marker.read_text() == "unpickled"


def test_missing_paths(tmp_path):
    with pytest.raises(ValueError, match=f"holds no {PACK_FILENAME}"):
        DirectionPack.from_pretrained(tmp_path)
    with pytest.raises(ValueError, match="No pack file or folder at"):
        DirectionPack.from_pretrained(str(tmp_path / "nothing.safetensors"))
    with pytest.raises(ValueError, match="not a Hub repo id"):
        DirectionPack.from_pretrained(os.path.join("a", "b", "c"))


# ---------------------------------------------------------------------- algebra
def test_difference_with_itself_is_zero():
    pack = make_pack()
    zero = pack - pack
    for name in NAMES:
        for space, dim in SPACES.items():
            assert torch.equal(zero.direction(space, name), torch.zeros(dim))
    assert zero.names == NAMES and zero.spaces == SPACES


def test_sum_and_scaling_identities():
    directions = random_directions()
    pack = DirectionPack.from_tensors(directions, thresholds=random_thresholds(), centers=random_centers())
    doubled = pack + pack
    assert_same_vectors(doubled, 2 * pack)
    assert_same_vectors(doubled, pack * 2.0)
    assert_same_vectors(doubled, 2.0 * pack)
    assert_same_vectors(-pack, pack * -1)
    assert (-pack).equals(pack * -1.0)
    assert (3 * pack).equals(pack * 3)
    for name in NAMES:
        for space in SPACES:
            assert torch.equal(doubled.direction(space, name), directions[name][space] * 2)
            assert torch.equal((-pack).direction(space, name), -directions[name][space])
            assert torch.equal((pack * 0.5).direction(space, name), directions[name][space] * 0.5)
            assert torch.equal((pack - pack * 2.0).direction(space, name), -directions[name][space])


def test_positive_scaling_keeps_thresholds_negative_scaling_and_sums_drop_them():
    thresholds, centers = random_thresholds(), random_centers()
    pack = DirectionPack.from_tensors(random_directions(), thresholds=thresholds, centers=centers)
    for scaled in (pack * 2.5, 0.5 * pack, pack * 1):
        assert scaled.has_gate
        for name in NAMES:
            for space in SPACES:
                assert scaled.threshold(name, space) == float32(thresholds[name][space])
    for derived in (-pack, pack * -2.0, pack * 0.0, pack + pack, pack - pack):
        assert not derived.has_gate
        assert all(derived.threshold(n, s) is None for n in NAMES for s in SPACES)
    # Centres are kept by scaling, and by sums of packs that share them.
    for derived in (pack * 2.0, -pack, pack + pack):
        assert all(torch.equal(derived.center(s), centers[s]) for s in SPACES)


def test_sum_drops_centres_that_differ():
    a = DirectionPack.from_tensors(random_directions(), centers=random_centers(1))
    b = DirectionPack.from_tensors(random_directions(), centers=random_centers(2))
    assert all((a + b).center(s) is None for s in SPACES)


def test_adding_packs_with_different_spaces_names_both():
    a = DirectionPack.from_tensors({"global": {"text_encoder": torch.ones(4)}})
    b = DirectionPack.from_tensors({"global": {"text_encoder_2": torch.ones(4)}})
    match = r"left:  directions \['global'\], spaces \{'text_encoder': 4\}\n  right: directions \['global'\], spaces \{'text_encoder_2': 4\}"
    with pytest.raises(ValueError, match=match):
        a + b
    with pytest.raises(ValueError, match="same directions and spaces"):
        a - b
    c = DirectionPack.from_tensors(
        {"global": {"text_encoder": torch.ones(4)}, "hate": {"text_encoder": torch.ones(4)}}
    )
    with pytest.raises(
        ValueError, match=r"left:  directions \['global'\].*\n  right: directions \['global', 'hate'\]"
    ):
        a + c


@pytest.mark.parametrize("scale", [float("nan"), float("inf"), -math.inf])
def test_scaling_by_a_non_finite_number_raises(scale):
    with pytest.raises(ValueError, match="only be scaled by a finite number"):
        make_pack() * scale
    with pytest.raises(ValueError, match="only be scaled by a finite number"):
        scale * make_pack()


def test_unsupported_operands():
    pack = make_pack()
    with pytest.raises(TypeError):
        pack + 1.0
    with pytest.raises(TypeError):
        pack * True
    with pytest.raises(TypeError):
        pack * "2"


def test_derived_metadata():
    pack = make_pack()
    expected = {"+": pack + pack, "-": pack - pack, "*2.0": pack * 2.0, "*-1.0": -pack}
    for operation, derived in expected.items():
        metadata = derived.metadata
        assert metadata["kind"] == "derived"
        assert metadata["derived"] == [operation]
        assert metadata["target"] == TARGET and metadata["source"] == METADATA["source"]
    assert ((pack + pack) * 0.5).metadata["derived"] == ["+", "*0.5"]
    assert pack.metadata["kind"] == "native" and "derived" not in pack.metadata


# ---------------------------------------------------------------------- fail closed in memory (same rules as files)
def test_every_construction_error_is_the_library_error():
    cases = [
        lambda: DirectionPack.from_tensors(one(torch.tensor([1.0, float("nan")]))),
        lambda: DirectionPack.from_tensors(one([1.0, 2.0])),
        lambda: DirectionPack.from_tensors(one(torch.ones(4, dtype=torch.int64))),
        lambda: DirectionPack.from_tensors({}),
        lambda: DirectionPack.from_tensors(
            one(torch.ones(4)), thresholds={"global": {"text_encoder": "0.5"}}
        ),
        lambda: DirectionPack.from_tensors(one(torch.ones(4)), description=object()),
        lambda: DirectionPack.from_tensors(one(torch.ones(4)), kind="magic"),
        lambda: DirectionPack.from_tensors([torch.ones(4)]),
        lambda: DirectionPack(one(torch.ones(4)), metadata=[("kind", "manual")]),
        lambda: make_pack() * float("nan"),
    ]
    for case in cases:
        with pytest.raises(InvalidPackError):
            case()


@pytest.mark.parametrize(
    ("directions", "message"),
    [
        (one(torch.zeros(0)), r"global\.text_encoder: the vector is empty"),
        (
            one(torch.tensor([1.0, 2e6])),
            r"1 of 2 values exceed the bound \|value\| <= 1e\+06 \(largest magnitude 2e\+06\)",
        ),
        (one(torch.tensor([3.4e38], dtype=torch.float32)), "exceed the bound"),
        (
            one(torch.tensor([1e39], dtype=torch.float64)),
            r"largest magnitude 1e\+39",
        ),  # not rounded to inf first
        (one(torch.ones(4, dtype=torch.complex64)), "expected a floating-point tensor"),
    ],
)
def test_vectors_must_be_non_empty_and_bounded(directions, message):
    with pytest.raises(InvalidPackError, match=message):
        DirectionPack.from_tensors(directions)


@pytest.mark.parametrize(
    ("threshold", "message"),
    [
        (True, "must be a finite number, got True"),
        (torch.tensor(1), r"got a torch\.int64 tensor of shape \(\)"),
        (torch.tensor([0.5, 0.5]), r"tensor of shape \(2,\)"),
        (2e6, r"= 2000000\.0 is outside the bound"),
        (10**400, "must be a finite number"),
    ],
)
def test_thresholds_must_be_bounded_numbers(threshold, message):
    with pytest.raises(InvalidPackError, match=message):
        DirectionPack.from_tensors(one(torch.ones(4)), thresholds={"global": {"text_encoder": threshold}})


def test_float_tensor_thresholds_are_accepted():
    pack = DirectionPack.from_tensors(
        one(torch.ones(4)), thresholds={"global": {"text_encoder": torch.tensor([0.5])}}
    )
    assert pack.threshold("global", "text_encoder") == 0.5


def _nested(depth: int) -> list:
    value: list = []
    for _ in range(depth - 1):
        value = [value]
    return value


def _self_referential() -> dict:
    loop: dict = {}
    loop["loop"] = loop
    return loop


@pytest.mark.parametrize(
    ("metadata", "message"),
    [
        ({"description": float("nan")}, "'description' must be a finite number, got float NaN"),
        ({"source": {"auroc": {"global": float("inf")}}}, r"'source\.auroc\.global' must be a finite number"),
        ({"format_version": True}, "must be the integer 1, got bool true"),
        ({"format_version": 1.0}, "must be the integer 1, got float 1.0"),
        (
            {"target": {"spaces": {"text_encoder": {"dim": 5}}}},
            r"dim' = int 5 contradicts the vectors, which have 4",
        ),
        ({"target": {"spaces": {"text_encoder": {}}}}, r"dim' = null contradicts"),
        ({"notes": _nested(32)}, "nested more than 32 levels deep"),
        ({"notes": _self_referential()}, "nested more than 32 levels deep"),
        ({"notes": {1: "a"}}, "JSON object keys are strings"),
        ({"description": "x" * (1 << 20)}, "bytes of JSON; the format allows at most 1048576"),
        ({"description": "\ud800"}, "not valid Unicode"),
        ({"derived": "x"}, "'derived' must be a list of strings"),
        ({"categories": ["a", "a"]}, "more than once"),
    ],
)
def test_metadata_rules_apply_in_memory(metadata, message):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # unknown keys ("notes") warn before they fail
        with pytest.raises(InvalidPackError, match=message):
            DirectionPack.from_tensors(one(torch.ones(4)), **metadata)


def test_in_memory_pack_is_what_the_file_holds(tmp_path):
    # Tuples become lists and metadata is copied as plain JSON, so save -> load is exact and silent.
    pack = DirectionPack.from_tensors(
        random_directions(),
        thresholds=random_thresholds(),
        centers=random_centers(),
        **{
            **METADATA,
            "build": {"config": {"layers": (3, 4)}},
            "target": {
                **TARGET,
                "spaces": {s: {"dim": d, "encoder": "CLIPTextModel"} for s, d in SPACES.items()},
            },
        },
    )
    assert pack.metadata["build"]["config"]["layers"] == [3, 4]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        loaded = DirectionPack.from_pretrained(pack.save_pretrained(tmp_path))
    assert loaded.equals(pack)


def test_scaling_beyond_the_bound_is_refused():
    with pytest.raises(InvalidPackError, match="exceed the bound"):
        make_pack() * 1e7

"""Unsafe prompts supplied for the source-model gate: reading, rows per direction, refusals, provenance, and
the second head's calibration (``gate_probe.source_gate_heads``) against known answers."""

from __future__ import annotations

import json

import pytest
import torch

from safesteer_diffusers.build.gate_probe import source_gate_heads, source_gate_vectors
from safesteer_diffusers.build.gate_prompts import MIN_GATE_PROMPTS, GatePrompts
from safesteer_diffusers.steering.maths import source_gate_scores

NAMES = ["global", "sexual", "violence"]


def prompts(count, labels=()):
    return GatePrompts(
        tuple(f"unsafe prompt {i}" for i in range(count)), (tuple(labels),) * count, "mine.csv"
    )


def test_text_and_csv_files_are_read_with_their_categories(tmp_path):
    text = tmp_path / "gate.txt"
    text.write_text("\n".join(f"prompt {i}" for i in range(MIN_GATE_PROMPTS)) + "\n\n")
    read = GatePrompts.read(text)
    assert read.prompts == tuple(f"prompt {i}" for i in range(MIN_GATE_PROMPTS)) and read.name == "gate.txt"
    assert set(read.categories) == {()}
    table = tmp_path / "gate.csv"
    rows = ["prompt,categories,hard"] + [f'"p {i}","sexual,violence",1' for i in range(MIN_GATE_PROMPTS)]
    table.write_text("\n".join(rows) + "\n")
    read = GatePrompts.read(table)
    assert read.categories[0] == ("sexual", "violence") and len(read.prompts) == MIN_GATE_PROMPTS
    with pytest.raises(FileNotFoundError):
        GatePrompts.read(tmp_path / "missing.txt")


def test_each_direction_gets_the_prompts_labelled_for_it_when_there_are_enough():
    labels = [("sexual",)] * MIN_GATE_PROMPTS + [("violence",)] * (MIN_GATE_PROMPTS - 1) + [()] * 3
    supplied = GatePrompts(tuple(f"p{i}" for i in range(len(labels))), tuple(labels), "mine.csv")
    rows = supplied.rows(NAMES)
    assert rows == {"global": list(range(len(labels))), "sexual": list(range(MIN_GATE_PROMPTS))}
    assert supplied.rows(["sexual", "violence"]) == {"sexual": list(range(MIN_GATE_PROMPTS))}
    record = supplied.provenance(rows)
    assert record["count"] == len(labels) and record["directions"] == ["global", "sexual"]
    assert record["categories"] == {"sexual": MIN_GATE_PROMPTS, "violence": MIN_GATE_PROMPTS - 1}
    assert "p0" not in json.dumps(record)  # the text never goes into the pack
    # The hash covers the text and the labels.
    relabelled = GatePrompts(supplied.prompts, ((),) * len(labels), "mine.csv")
    assert relabelled.provenance({})["sha256"] != record["sha256"]


def test_bad_supplied_prompts_are_refused_with_the_fix():
    with pytest.raises(ValueError, match=f"needs at least {MIN_GATE_PROMPTS}"):
        prompts(MIN_GATE_PROMPTS - 1)
    with pytest.raises(ValueError, match=r"labels prompts with \['hate'\], which are not categories"):
        prompts(MIN_GATE_PROMPTS, ["hate"]).rows(NAMES)
    with pytest.raises(ValueError, match="one category tuple per prompt"):
        GatePrompts(("a", "b"), ((),), "x")
    with pytest.raises(
        ValueError, match=r"1 of mine.csv's unsafe prompts are also anchors \('UNSAFE  prompt 3'\)"
    ):
        prompts(MIN_GATE_PROMPTS).refuse_overlap(["a cat", "UNSAFE  prompt 3"], "anchors")


def _features(seed, count, shift):
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(count, 6, generator=generator, dtype=torch.float64) + shift


def test_the_second_head_is_rescaled_onto_the_first_and_the_union_is_their_maximum():
    pairs = torch.cat([_features(0, 30, 0.0), _features(1, 30, torch.tensor([2.0, 0, 0, 0, 0, 0]))])
    anchors = _features(2, 60, 0.0)
    supplied = _features(3, 40, torch.tensor([0, 0, 0, 0, 0, 2.5]))
    unsafe_rows, benign_rows = {"global": list(range(30, 60))}, list(range(30))
    heads, biases, union = source_gate_heads(
        pairs, unsafe_rows, benign_rows, anchors, supplied, {"global": list(range(40))}
    )
    # Head 0 is exactly the pairs' gate; head 1 is the gate fitted on the supplied prompts, rescaled.
    weights, scores = source_gate_vectors(pairs, unsafe_rows, benign_rows, anchors)
    assert torch.equal(heads["global"][0], weights["global"]) and biases["global"][0] == 0
    stacked = torch.cat([pairs, supplied])
    extra, extra_scores = source_gate_vectors(stacked, {"global": list(range(60, 100))}, benign_rows, anchors)
    ratio = heads["global"][1].double() / extra["global"].double()
    a = float(ratio[0])
    assert a > 0 and torch.allclose(ratio, torch.full_like(ratio, a), rtol=1e-5)
    rescaled = a * extra_scores[:, 0] + float(biases["global"][1])
    levels = torch.tensor([0.5, 0.99], dtype=torch.float64)
    assert torch.allclose(torch.quantile(rescaled, levels), torch.quantile(scores[:, 0], levels), atol=1e-5)
    assert torch.allclose(union[:, 0], torch.maximum(scores[:, 0], rescaled))
    # The stored heads score in-sample rows as the union rule says.
    benign = torch.cat([pairs[benign_rows], anchors])
    stored = source_gate_scores(benign, heads["global"], biases["global"])
    by_hand = torch.maximum(
        benign @ heads["global"][0].double(),
        benign @ heads["global"][1].double() + float(biases["global"][1]),
    )
    assert torch.allclose(stored, by_hand)


def test_without_supplied_rows_the_heads_are_the_pairs_gate_alone():
    pairs, anchors = torch.cat([_features(0, 20, 0.0), _features(1, 20, 1.0)]), _features(2, 40, 0.0)
    rows = ({"global": list(range(20, 40))}, list(range(20)))
    heads, biases, union = source_gate_heads(pairs, *rows, anchors)
    weights, scores = source_gate_vectors(pairs, *rows, anchors)
    assert torch.equal(heads["global"], weights["global"][None]) and torch.equal(
        biases["global"], torch.zeros(1)
    )
    assert torch.equal(union, scores)
    with pytest.raises(ValueError, match="not directions of the gate"):
        source_gate_heads(pairs, *rows, anchors, _features(3, 20, 1.0), {"sexual": list(range(20))})


def test_supplied_benign_prompts_train_the_second_head_and_never_calibrate():
    pairs = torch.cat([_features(0, 30, 0.0), _features(1, 30, torch.tensor([2.0, 0, 0, 0, 0, 0]))])
    anchors = _features(2, 60, 0.0)
    supplied = _features(3, 40, torch.tensor([0, 0, 0, 0, 0, 2.5]))
    calm = _features(4, 40, torch.tensor([0, 0, 0, 0, 1.5, 1.0]))
    unsafe_rows, benign_rows = {"global": list(range(30, 60))}, list(range(30))
    heads, biases, union = source_gate_heads(
        pairs, unsafe_rows, benign_rows, anchors, supplied, {"global": list(range(40))},
        supplied_benign_features=calm,
    )  # fmt: skip
    weights, scores = source_gate_vectors(pairs, unsafe_rows, benign_rows, anchors)
    assert torch.equal(heads["global"][0], weights["global"])  # head 0 never sees the supplied benign prompts
    stacked = torch.cat([pairs, supplied])
    extra, extra_scores = source_gate_vectors(
        stacked, {"global": list(range(60, 100))}, benign_rows, torch.cat([anchors, calm])
    )
    ratio = heads["global"][1].double() / extra["global"].double()
    assert torch.allclose(ratio, torch.full_like(ratio, float(ratio[0])), rtol=1e-5)
    # Calibration: the build's own benign rows only (30 safe members + 60 anchors), on head 0's scale.
    assert union.shape == (90, 1)
    rescaled = float(ratio[0]) * extra_scores[:90, 0] + float(biases["global"][1])
    levels = torch.tensor([0.5, 0.99], dtype=torch.float64)
    assert torch.allclose(torch.quantile(rescaled, levels), torch.quantile(scores[:, 0], levels), atol=1e-5)
    assert torch.allclose(union[:, 0], torch.maximum(scores[:, 0], rescaled))


def test_supplied_benign_prompts_are_checked_and_recorded_without_text(tmp_path):
    unsafe = prompts(MIN_GATE_PROMPTS)
    calm = tmp_path / "calm.txt"
    calm.write_text("\n".join(f"a calm prompt {i}" for i in range(MIN_GATE_PROMPTS)))
    both = unsafe.with_benign(calm)
    record = both.provenance({"global": []})
    assert record["benign_count"] == MIN_GATE_PROMPTS and len(record["benign_sha256"]) == 64
    assert "calm prompt" not in json.dumps(record)
    with pytest.raises(ValueError, match="at least 20 are needed"):
        GatePrompts(unsafe.prompts, unsafe.categories, "mine.csv", ("one calm prompt",))
    with pytest.raises(ValueError, match="both supplied as unsafe and as benign"):
        GatePrompts(unsafe.prompts, unsafe.categories, "mine.csv", ("Unsafe prompt 0",) + both.benign[1:])
    with pytest.raises(ValueError, match="are unsafe members of the pairs"):
        both.refuse_unsafe_as_benign(["A CALM prompt 3"], "unsafe members of the pairs")

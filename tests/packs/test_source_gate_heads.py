"""Source-model gates of several heads in the pack format: stored, read, scored, refused when malformed.

A direction's source gate may hold heads ``[H, Ds]`` with biases ``[H]``; its score is the largest head score
(``steering.maths.source_gate_scores``). One head without a bias keeps the layout written before heads existed.
"""

from __future__ import annotations

import random

import pytest
import torch
from safetensors import safe_open

from safesteer_diffusers import DirectionPack
from safesteer_diffusers.packs.errors import InvalidPackError
from safesteer_diffusers.packs.format import MAX_SOURCE_GATE_HEADS
from safesteer_diffusers.steering.maths import source_gate_scores

SPACE = "text_encoder"
HEADS = torch.tensor([[1.0, 0.0, -2.0, 0.5], [0.0, 3.0, 1.0, -1.0]])
BIASES = torch.tensor([0.0, -0.75])
INFO = {
    "layer": 2,
    "pooling": "mean",
    "chat_template": False,
    "dim": 4,
    "quantile": 0.99,
    "heads": ["pairs", "supplied prompts"],
    "supplied_prompts": {
        "count": 40,
        "sha256": "ab" * 32,
        "name": "mine.csv",
        "categories": {},
        "directions": ["global"],
    },
}


def headed_pack(heads=HEADS, biases=BIASES, threshold=0.25, info=INFO, **extra):
    gate = ({"global": heads}, {"global": threshold}) if biases is None else (
        {"global": heads}, {"global": threshold}, {"global": biases}
    )  # fmt: skip
    return DirectionPack.from_tensors(
        {"global": {SPACE: torch.tensor([0.0, 0.0, 2.0])}},
        source_gate_tensors=gate,
        **({} if info is None else {"source_gate": info}),
        **extra,
    )


def test_the_gate_score_is_the_largest_head_score():
    features = torch.tensor([[1.0, 0.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0], [0.0, 0.0, 1.0, 0.0]])
    # Head scores by hand: row 0 -> (1, -0.75), row 1 -> (0, 2.25), row 2 -> (-2, 0.25).
    expected = torch.tensor([1.0, 2.25, 0.25], dtype=torch.float64)
    assert torch.equal(source_gate_scores(features, HEADS, BIASES), expected)
    one = source_gate_scores(features, HEADS[:1], torch.zeros(1))
    assert torch.equal(one, features.double() @ HEADS[0].double())


def test_a_gate_of_several_heads_round_trips_with_its_biases(tmp_path):
    pack = headed_pack()
    path = pack.save_file(tmp_path / "p.safetensors")
    with safe_open(str(path), "pt") as handle:
        assert handle.get_tensor("source_gate.global").shape == (2, 4)
        assert torch.equal(handle.get_tensor("source_gate_bias.global"), BIASES)
    loaded = DirectionPack.from_file(path)
    assert loaded.equals(pack)
    heads, biases, threshold = loaded.source_gate_heads("global")
    assert torch.equal(heads, HEADS) and torch.equal(biases, BIASES) and threshold == 0.25
    # One vector cannot score a union: asking for one is refused, not answered with head 0.
    with pytest.raises(ValueError, match="has 2 heads"):
        loaded.source_gate("global")


def test_one_head_without_a_bias_keeps_the_earlier_layout(tmp_path):
    pack = headed_pack(heads=HEADS[:1], biases=None, info={k: v for k, v in INFO.items() if k != "heads"})
    path = pack.save_file(tmp_path / "p.safetensors")
    with safe_open(str(path), "pt") as handle:
        assert set(handle.keys()) == {
            "global.text_encoder",
            "source_gate.global",
            "source_gate_threshold.global",
        }
        assert handle.get_tensor("source_gate.global").shape == (4,)
    vector, threshold = DirectionPack.from_file(path).source_gate("global")
    assert torch.equal(vector, HEADS[0]) and threshold == 0.25
    heads, biases, _ = pack.source_gate_heads("global")
    assert torch.equal(heads, HEADS[:1]) and torch.equal(biases, torch.zeros(1))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"biases": torch.tensor([0.0])}, "one bias per head"),
        ({"biases": torch.tensor([0.0, float("nan")])}, "finite"),
        ({"heads": torch.stack([HEADS[0], torch.zeros(4)])}, r"source_gate.global\[1\] is all zeros"),
        (
            {"heads": torch.ones(MAX_SOURCE_GATE_HEADS + 1, 4), "biases": None},
            "heads; a direction's source gate",
        ),
        ({"heads": torch.ones(2, 2, 4), "biases": None}, "1-D vector"),
        ({"info": {k: v for k, v in INFO.items() if k != "heads"}}, "source_gate.heads describes none"),
        ({"info": {**INFO, "heads": ["pairs"]}}, "describes 1"),
        ({"info": {**INFO, "dim": 5}}, "source_gate.dim is 5"),
        (
            {"info": {**INFO, "supplied_prompts": {**INFO["supplied_prompts"], "count": -1}}},
            "supplied_prompts.count",
        ),
    ],
)
def test_malformed_gates_of_several_heads_are_refused_with_the_reason(kwargs, message):
    with pytest.raises(InvalidPackError, match=message):
        headed_pack(**kwargs)


def test_a_bias_tensor_in_a_file_goes_with_its_heads(tmp_path):
    from safetensors.torch import load_file, save_file

    path = headed_pack().save_file(tmp_path / "p.safetensors")
    tensors = load_file(str(path))
    with safe_open(str(path), "pt") as handle:
        header = handle.metadata()
    tensors["source_gate_bias.global"] = torch.tensor([0.0, -0.75, 1.0])
    save_file(
        tensors,
        str(tmp_path / "bad.safetensors"),
        metadata={k: v for k, v in header.items() if k != "safesteer_sha256"},
    )
    with pytest.raises(InvalidPackError, match="one bias per head"):
        DirectionPack.from_file(tmp_path / "bad.safetensors")


def _reference_after(ops, heads, biases):
    """What an operation sequence leaves of the gate: (heads, biases) or None, by the rules of the pack
    algebra (a positive scale keeps it; a sign flip, a sum or a difference drops it)."""
    kept = True
    for op, value in ops:
        if op == "scale":
            kept = kept and value > 0
        elif op in ("add", "sub", "neg"):
            kept = False
    return (heads, biases) if kept else None


def test_random_operation_sequences_keep_or_drop_the_whole_gate_never_part_of_it(tmp_path):
    rng = random.Random(0)
    for trial in range(60):
        count = rng.randint(1, 4)
        heads = torch.randn(count, 4, generator=torch.Generator().manual_seed(trial))
        biases = torch.randn(count, generator=torch.Generator().manual_seed(1000 + trial)).float()
        info = {**INFO, "heads": [f"head {h}" for h in range(count)]}
        pack = headed_pack(heads=heads, biases=biases, info=info)
        ops = []
        for _ in range(rng.randint(1, 5)):
            op = rng.choice(["scale", "save", "add", "sub", "neg", "scale", "save"])
            value = rng.choice([0.5, 2.0, -1.0, 3.0]) if op == "scale" else None
            ops.append((op, value))
            if op == "scale":
                pack = value * pack
            elif op == "add":
                pack = pack + pack
            elif op == "sub":
                pack = pack - 0.5 * pack
            elif op == "neg":
                pack = -pack
            else:
                pack = DirectionPack.from_file(pack.save_file(tmp_path / f"p{trial}.safetensors"))
        expected = _reference_after(ops, heads.float(), biases)
        if expected is None:
            assert not pack.has_source_gate and pack.source_gate_heads("global") is None, ops
            continue
        got_heads, got_biases, threshold = pack.source_gate_heads("global")
        assert torch.equal(got_heads, expected[0]) and torch.equal(got_biases, expected[1]), ops
        assert threshold == 0.25
        features = torch.randn(7, 4, generator=torch.Generator().manual_seed(trial))
        reference = (
            torch.stack([features.double() @ h.double() + float(b) for h, b in zip(*expected, strict=True)])
            .max(0)
            .values
        )
        assert torch.allclose(source_gate_scores(features, got_heads, got_biases), reference, atol=1e-12), ops

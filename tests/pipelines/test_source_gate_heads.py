"""A source-model gate with a second head fitted on supplied unsafe prompts (``--source-gate-prompts``): built,
recorded without the text, scored at inference as the largest head score, steered exactly, refused when wrong.

Tiny models built in code; the measured gain on public prompts is benchmarks/public_prompts_gate.py's job
(docs/method.md 6.5.3)."""

from __future__ import annotations

import json

import pytest
import torch

from safesteer_diffusers import DirectionPack
from safesteer_diffusers.build.driver import BuildConfig, build_pack
from safesteer_diffusers.build.gate_probe import source_gate_heads
from safesteer_diffusers.build.gate_prompts import GatePrompts
from safesteer_diffusers.build.prompts.embedded import load_pairs

from .test_source_gate import SPACE, assert_gated_rows, chat_turn_features, gated_call, tiny_gate_inputs


@pytest.fixture(scope="module")
def setup():
    pipe, call_kwargs, model, tokenizer, pairs, anchors = tiny_gate_inputs()
    # 24 more violence prompts (a head of its own), 6 sexual ones (too few: global head only), 2 unlabelled.
    extra = [(p.unsafe, ("violence",)) for p in load_pairs("violence")[8:32]]
    extra += [(p.unsafe, ("sexual",)) for p in load_pairs("sexual")[8:14]]
    extra += [("a graphic unlabelled prompt", ()), ("another unlabelled one", ())]
    supplied = GatePrompts(tuple(t for t, _ in extra), tuple(c for _, c in extra), "supplied.csv")
    config = BuildConfig(align="ridge", gate_quantile=0.9, source_gate=True)
    pack = build_pack(
        model, tokenizer, pipe, pairs=pairs, anchors=anchors, config=config, progress=False,
        source_gate_prompts=supplied,
    ).pack  # fmt: skip
    return pipe, call_kwargs, model, tokenizer, pairs, anchors, supplied, pack


def test_the_build_fits_a_second_head_where_there_are_enough_prompts_and_records_no_text(setup, tmp_path):
    _, _, model, tokenizer, pairs, anchors, supplied, pack = setup
    info = pack.metadata["source_gate"]
    assert len(info["heads"]) == 2 and info["supplied_prompts"]["directions"] == ["global", "violence"]
    assert info["supplied_prompts"]["count"] == 32
    assert info["supplied_prompts"]["categories"] == {"sexual": 6, "violence": 24}
    assert all(prompt not in json.dumps(pack.metadata) for prompt in supplied.prompts)
    assert {n: len(pack.source_gate_heads(n)[0]) for n in pack.names} == {
        "global": 2,
        "violence": 2,
        "sexual": 1,
    }
    # Independent reference: the source model reads every prompt as a chat turn, alone; the heads are
    # source_gate_heads on those features; the thresholds are quantiles of the union's benign scores.
    layer = info["layer"]
    n = len(pairs)
    features = chat_turn_features(
        model, tokenizer, [p.safe for p in pairs] + [p.unsafe for p in pairs], layer
    )
    anchor_features = chat_turn_features(model, tokenizer, list(anchors.prompts), layer)
    supplied_features = chat_turn_features(model, tokenizer, list(supplied.prompts), layer)
    unsafe = {"global": list(range(n, 2 * n))}
    unsafe.update({c: [n + i for i, p in enumerate(pairs) if p.category == c] for c in pack.categories})
    heads, biases, union = source_gate_heads(
        features, unsafe, list(range(n)), anchor_features, supplied_features, supplied.rows(list(unsafe))
    )
    for k, name in enumerate(unsafe):
        got_heads, got_biases, threshold = pack.source_gate_heads(name)
        assert torch.allclose(got_heads, heads[name], rtol=1e-3, atol=1e-5), name
        assert torch.allclose(got_biases, biases[name], rtol=1e-3, atol=1e-4), name
        assert threshold == pytest.approx(float(torch.quantile(union[:, k], 0.9)), rel=1e-3, abs=1e-4), name
        assert pack.source_gate_heads(name, 0.05)[2] == pytest.approx(
            float(torch.quantile(union[:, k], 0.95)), rel=1e-3, abs=1e-4
        )
    loaded = DirectionPack.from_file(pack.save_file(tmp_path / "p.safetensors"))
    assert loaded.equals(pack)


def test_gated_rows_are_decided_by_the_largest_head_score_and_steered_exactly(setup):
    pipe, call_kwargs, model, tokenizer, pairs, _, supplied, pack = setup
    prompts = [p.unsafe for p in pairs[:5]] + list(supplied.prompts[:5]) + [p.safe for p in pairs[:5]]
    before, after, report = gated_call(pipe, call_kwargs, pack, (model, tokenizer), prompts)
    heads, biases, threshold = pack.source_gate_heads("global")
    features = chat_turn_features(model, tokenizer, prompts, pack.metadata["source_gate"]["layer"]).double()
    per_head = features @ heads.double().T + biases.double()
    scores = per_head.max(1).values
    fires = (scores > threshold).tolist()
    assert any(fires) and not all(fires), fires
    assert (per_head[:, 1] > threshold).any()  # the second head decides some rows: the union is exercised
    assert_gated_rows(after, before, 2.0 * pack.direction(SPACE), scores, threshold, report)


def test_supplied_prompts_are_refused_before_any_model_runs(setup):
    pipe, _, model, tokenizer, pairs, anchors, supplied, _ = setup
    overlapping = GatePrompts(
        supplied.prompts[:-1] + (anchors.prompts[3].upper(),), supplied.categories, "bad.csv"
    )
    unknown = GatePrompts(supplied.prompts, (("hate",),) + supplied.categories[1:], "labels.csv")
    cases = [
        (supplied, BuildConfig(), "the build makes no source-model gate"),
        (overlapping, BuildConfig(source_gate=True), "are also anchors"),
        (
            GatePrompts(supplied.prompts[:-1] + (pairs[0].safe,), supplied.categories, "bad.csv"),
            BuildConfig(source_gate=True),
            "are also safe members of the pairs",
        ),
        (unknown, BuildConfig(source_gate=True), "which are not categories of this build"),
    ]
    calls = []
    handle = model.register_forward_hook(lambda *args: calls.append(1))
    try:
        for gate_prompts, config, message in cases:
            with pytest.raises(ValueError, match=message):
                build_pack(
                    model, tokenizer, pipe, pairs=pairs, anchors=anchors, config=config, progress=False,
                    source_gate_prompts=gate_prompts,
                )  # fmt: skip
    finally:
        handle.remove()
    assert not calls

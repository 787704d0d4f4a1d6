"""The source-model gate: built into a pack, scored by the pack's source model at inference, fail closed.

Tiny models built in code (a random 3-layer Llama source, a tiny SD pipeline); the measured quality of the
gate on real models is benchmarks/gate_recall.py's job (docs/method.md 6.5)."""

from __future__ import annotations

import pytest
import torch
from transformers import LlamaConfig, LlamaModel

from safesteer_diffusers import DirectionPack, SafeSteer
from safesteer_diffusers.build.driver import BuildConfig, build_pack
from safesteer_diffusers.build.gate_probe import source_gate_vectors
from safesteer_diffusers.build.prompts.embedded import load_anchors, load_pairs
from safesteer_diffusers.build.source_features import extract_features
from safesteer_diffusers.build.target_statistics import BenignPrompts
from safesteer_diffusers.pipelines.encoding import encode_for_denoiser
from safesteer_diffusers.steering.errors import SteeringNotApplied
from safesteer_diffusers.testing import build, tiny_source
from safesteer_diffusers.testing.tokenizers import chat_tokenizer

from .support import TextInputRecorder

CATEGORIES = ("violence", "sexual")
SPACE = "text_encoder"


def tiny_gate_inputs():
    """A tiny SD pipeline and its call kwargs, a tiny Llama source with a chat tokenizer, 16 pairs, 48 anchors."""
    pipe, call_kwargs = build("sd")
    model, tokenizer = tiny_source(seed=0)[0], chat_tokenizer()
    pairs = [p for c in CATEGORIES for p in load_pairs(c)[:8]]
    anchors = BenignPrompts(tuple(load_anchors()[:48]), "test anchors")
    return pipe, call_kwargs, model, tokenizer, pairs, anchors


@pytest.fixture(scope="module")
def setup():
    pipe, call_kwargs, model, tokenizer, pairs, anchors = tiny_gate_inputs()
    pack = build_pack(
        model,
        tokenizer,
        pipe,
        pairs=pairs,
        anchors=anchors,
        config=BuildConfig(align="ridge", gate_quantile=0.9, source_gate=True),
        progress=False,
    ).pack
    return pipe, call_kwargs, model, tokenizer, pairs, anchors, pack


def chat_turn_features(model, tokenizer, prompts, layer) -> torch.Tensor:
    """Independent reference of the chat framing: each prompt written as one user turn by the tokenizer's own
    ``apply_chat_template``, run alone through the model, its layer's states averaged over every token."""
    rows = []
    with torch.no_grad():
        for prompt in prompts:
            text = tokenizer.apply_chat_template(
                [{"role": "user", "content": prompt}], tokenize=False, add_generation_prompt=True
            )
            ids = torch.tensor([tokenizer(text, add_special_tokens=False)["input_ids"]])
            rows.append(model(input_ids=ids, output_hidden_states=True).hidden_states[layer][0].mean(0))
    return torch.stack(rows)


def without_source_gate(pack: DirectionPack) -> DirectionPack:
    """The same directions and text-state thresholds, without the source-model gate."""
    return DirectionPack.from_tensors(
        {name: {SPACE: pack.direction(SPACE, name)} for name in pack.names},
        thresholds={name: {SPACE: pack.threshold(name, SPACE)} for name in pack.names},
    )


def _pack_matches_the_source_gate_of(pack, pairs, features, anchor_features):
    """The pack's source gate equals ``source_gate_vectors`` on these features (safe members, then unsafe)."""
    n = len(pairs)
    unsafe = {"global": list(range(n, 2 * n))}
    unsafe.update({c: [n + i for i, p in enumerate(pairs) if p.category == c] for c in pack.categories})
    weights, scores = source_gate_vectors(features, unsafe, range(n), anchor_features)
    for k, name in enumerate(unsafe):
        vector, threshold = pack.source_gate(name)
        assert torch.allclose(vector, weights[name], rtol=1e-4, atol=1e-6)
        assert threshold == pytest.approx(float(torch.quantile(scores[:, k], 0.9)), rel=1e-4, abs=1e-6)
        at_5_percent = pack.source_gate(name, 0.05)[1]
        assert at_5_percent == pytest.approx(float(torch.quantile(scores[:, k], 0.95)), rel=1e-4, abs=1e-6)


def test_the_build_stores_a_source_gate_with_thresholds_from_cross_fitted_benign_scores(setup, tmp_path):
    _, _, model, tokenizer, pairs, anchors, pack = setup
    info = pack.metadata["source_gate"]
    # The default framing reads prompts as chat turns when the source tokenizer has a chat template, while
    # the directions still read them as written.
    assert info["pooling"] == "mean" and info["chat_template"] is True and info["quantile"] == 0.9
    assert pack.metadata["source"]["chat_template"] is False
    assert info["layer"] == pack.metadata["source"]["layer"] and info["dim"] == model.config.hidden_size
    layer = info["layer"]
    texts = [p.safe for p in pairs] + [p.unsafe for p in pairs]
    features = chat_turn_features(model, tokenizer, texts, layer)
    anchor_features = chat_turn_features(model, tokenizer, list(anchors.prompts), layer)
    _pack_matches_the_source_gate_of(pack, pairs, features, anchor_features)
    loaded = DirectionPack.from_file(pack.save_file(tmp_path / "p.safetensors"))
    assert loaded.equals(pack) and loaded.has_source_gate


def test_the_plain_framing_reads_prompts_as_written_and_auto_falls_back_to_it(setup):
    pipe, _, model, tokenizer, pairs, anchors, chat_pack = setup
    no_template = chat_tokenizer()
    no_template.chat_template = None
    packs = {
        "plain": build_pack(
            model, tokenizer, pipe, pairs=pairs, anchors=anchors, progress=False,
            config=BuildConfig(align="ridge", gate_quantile=0.9, source_gate=True, source_gate_framing="plain"),
        ).pack,
        "auto without a template": build_pack(
            model, no_template, pipe, pairs=pairs, anchors=anchors, progress=False,
            config=BuildConfig(align="ridge", gate_quantile=0.9, source_gate=True),
        ).pack,
    }  # fmt: skip
    layer = chat_pack.metadata["source_gate"]["layer"]
    texts = [p.safe for p in pairs] + [p.unsafe for p in pairs]
    features = extract_features(model, tokenizer, texts, layer, progress=False)
    anchor_features = extract_features(model, tokenizer, list(anchors.prompts), layer, progress=False)
    for name, pack in packs.items():
        assert pack.metadata["source_gate"]["chat_template"] is False, name
        _pack_matches_the_source_gate_of(pack, pairs, features, anchor_features)
        # Only the gate differs from the chat-framed build: the directions read the pairs the same way.
        assert torch.equal(pack.direction(SPACE), chat_pack.direction(SPACE)), name
        assert not torch.equal(pack.source_gate("global")[0], chat_pack.source_gate("global")[0]), name


def test_source_gate_framing_is_checked_before_any_model_runs(setup):
    pipe, _, model, _, pairs, anchors, _ = setup
    no_template = chat_tokenizer()
    no_template.chat_template = None
    cases = [
        (no_template, BuildConfig(source_gate=True, source_gate_framing="chat"), "has no chat template"),
        (no_template, BuildConfig(source_gate=True, source_gate_framing="turns"), "must be one of"),
        (no_template, BuildConfig(source_gate_framing="plain"), "only applies to a source-model gate"),
    ]
    calls = []
    handle = model.register_forward_hook(lambda *args: calls.append(1))
    try:
        for tokenizer, config, message in cases:
            with pytest.raises(ValueError, match=message):
                build_pack(
                    model, tokenizer, pipe, pairs=pairs, anchors=anchors, config=config, progress=False
                )
    finally:
        handle.remove()
    assert not calls  # refused before the source model read anything


def _received(pipe, prompts, call_kwargs):
    """What the UNet receives for each prompt, one call without CFG."""
    recorder = TextInputRecorder(pipe.unet)
    try:
        pipe(
            prompt=prompts,
            num_inference_steps=1,
            guidance_scale=1.0,
            output_type="latent",
            height=call_kwargs.get("height", 32),
            width=call_kwargs.get("width", 32),
        )
    finally:
        recorder.remove()
    return torch.stack(recorder.calls[0])


def test_gated_rows_are_decided_by_the_source_model_and_steered_exactly(setup):
    pipe, call_kwargs, model, tokenizer, pairs, _, pack = setup
    prompts = [p.unsafe for p in pairs[:6]] + [p.safe for p in pairs[:6]]
    before, after, report = gated_call(pipe, call_kwargs, pack, (model, tokenizer), prompts)
    # Independent reference: the pack's global source gate on the source model's features.
    vector, threshold = pack.source_gate("global")
    layer = pack.metadata["source_gate"]["layer"]
    scores = chat_turn_features(model, tokenizer, prompts, layer).double() @ vector.double()
    fires = (scores > threshold).tolist()
    assert any(fires) and not all(fires), fires  # the check below sees both outcomes
    assert_gated_rows(after, before, 2.0 * pack.direction(SPACE), scores, threshold, report)


def gated_call(pipe, call_kwargs, pack, gate_model, prompts):
    """``(before, after, report)``: what the UNet receives for ``prompts`` unwrapped and wrapped with the pack's
    source gate at strength 2, and the wrapped call's report."""
    before, _ = encode_for_denoiser(pipe, prompts)
    wrapped = SafeSteer.wrap(pipe, pack, strength=2.0, gate=True, gate_model=gate_model)
    try:
        return before, _received(wrapped, prompts, call_kwargs), wrapped.safety_report
    finally:
        SafeSteer.unwrap(wrapped)


def assert_gated_rows(after, before, offset, scores, threshold, report):
    """Rows above the threshold received exactly ``before + offset``; the others are untouched bit for bit;
    the report's global decision, score and threshold are the reference's."""
    for row, score in enumerate(scores.tolist()):
        fired = score > threshold
        if fired:
            assert torch.allclose(after[row], before[row] + offset, atol=1e-5)
        else:
            assert torch.equal(after[row], before[row])  # not fired: untouched bit for bit
        decision = next(d for d in report.prompts[row].directions if d.name == "global")
        assert decision.fired is fired
        assert decision.scores["source_model"] == pytest.approx(score, rel=1e-4, abs=1e-5)
        assert decision.thresholds["source_model"] == pytest.approx(threshold)


def test_a_call_without_prompt_text_raises_instead_of_guessing(setup):
    pipe, call_kwargs, model, tokenizer, pairs, _, pack = setup
    embeds, _ = encode_for_denoiser(pipe, [pairs[0].unsafe])
    wrapped = SafeSteer.wrap(pipe, pack, strength=2.0, gate=True, gate_model=(model, tokenizer))
    try:
        with pytest.raises(SteeringNotApplied, match="needs each prompt's text"):
            wrapped(prompt_embeds=embeds, num_inference_steps=1, guidance_scale=1.0, output_type="latent")
        with wrapped.safety_steering(gate=False):  # gate off: no decision needed, the embeds are steered
            wrapped(prompt_embeds=embeds, num_inference_steps=1, guidance_scale=1.0, output_type="latent")
        assert wrapped.safety_report.prompts[0].steered
    finally:
        SafeSteer.unwrap(wrapped)


def test_bad_gate_models_and_packs_are_refused_before_anything_changes(setup):
    pipe, _, model, tokenizer, _, _, pack = setup
    with pytest.raises(ValueError, match="source gate stores thresholds for the rates"):
        SafeSteer.wrap(pipe, pack, gate=True, gate_model=(model, tokenizer), gate_fpr=0.03)
    with pytest.raises(TypeError, match=r"\(model, tokenizer\) pair"):
        SafeSteer.wrap(pipe, pack, gate=True, gate_model=model)
    no_source_gate = without_source_gate(pack)
    with pytest.raises(ValueError, match="carries no source-model gate"):
        SafeSteer.wrap(pipe, no_source_gate, gate=True, gate_model=(model, tokenizer))
    other = LlamaModel(
        LlamaConfig(
            vocab_size=300, hidden_size=48, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4
        )
    )
    with pytest.raises(ValueError, match="hidden size 48"):
        SafeSteer.wrap(pipe, pack, gate=True, gate_model=(other, tokenizer))
    no_template = chat_tokenizer()
    no_template.chat_template = None
    with pytest.raises(
        ValueError, match="reads each prompt as a chat turn, but the gate_model tokenizer has no"
    ):
        SafeSteer.wrap(pipe, pack, gate=True, gate_model=(model, no_template))
    assert not SafeSteer.is_wrapped(pipe)
    wrapped = SafeSteer.wrap(pipe, pack, gate=True, gate_model=(model, tokenizer))
    try:
        with pytest.raises(ValueError, match="gate_model cannot be changed"):
            wrapped.configure_safety(gate_model=None)
        with pytest.raises(ValueError, match="carries no source-model gate"):
            wrapped.configure_safety(pack=no_source_gate)
        assert wrapped.safety_pack is pack  # the transaction kept the previous pack
    finally:
        SafeSteer.unwrap(wrapped)


def test_locked_encode_prompt_outside_a_call_cannot_be_gated_by_text_and_raises(setup):
    pipe, _, model, tokenizer, pairs, _, pack = setup
    wrapped, token = SafeSteer.wrap(
        pipe, pack, strength=2.0, gate=True, gate_model=(model, tokenizer), locked=True
    )
    try:
        with pytest.raises(SteeringNotApplied, match="needs each prompt's text"):
            wrapped.encode_prompt(pairs[0].unsafe, "cpu", 1, False)
    finally:
        SafeSteer.unwrap(wrapped, unlock=token)


def test_the_report_shows_the_scores_that_decided(setup):
    pipe, call_kwargs, model, tokenizer, pairs, _, pack = setup
    wrapped = SafeSteer.wrap(pipe, pack, strength=2.0, gate=True, gate_model=(model, tokenizer))
    try:
        _received(wrapped, [pairs[0].unsafe], call_kwargs)
        assert all(set(d.scores) == {"source_model"} for d in wrapped.safety_report.prompts[0].directions)
        with wrapped.safety_steering(gate=False):  # gate off: the source model is not asked
            _received(wrapped, [pairs[0].unsafe], call_kwargs)
        assert all(set(d.scores) == {SPACE} for d in wrapped.safety_report.prompts[0].directions)
    finally:
        SafeSteer.unwrap(wrapped)


def test_gate_true_without_gate_model_warns_that_the_source_gate_is_left_unused(setup):
    import warnings

    from safesteer_diffusers.pipelines.validation import SOURCE_GATE_UNUSED

    pipe, _, model, tokenizer, _, _, pack = setup
    no_source_gate = without_source_gate(pack)

    def warned(pack_, **kwargs) -> list[str]:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            wrapped = SafeSteer.wrap(pipe, pack_, strength=2.0, **kwargs)
            try:
                if not kwargs.get("gate"):
                    wrapped.configure_safety(gate=True)  # turned on later: the same advice
            finally:
                SafeSteer.unwrap(wrapped)
        return [str(w.message) for w in caught if str(w.message) == SOURCE_GATE_UNUSED]

    assert len(warned(pack, gate=True)) == 1
    assert len(warned(pack)) == 1  # wrap without the gate says nothing; configure_safety(gate=True) does
    assert warned(pack, gate=True, gate_model=(model, tokenizer)) == []
    assert warned(no_source_gate, gate=True) == []

"""The source-model gate in ComfyUI: Load SafeSteer Gate Model, and SafeSteer Conditioning deciding from the text.

A pack is built with a source gate on tiny models (a random Llama source, the tiny SD pipeline); the node loads
the saved source model from its folder. Every decision is checked against an independent computation of the
source gate, fired rows against the ungated steering of the same tensor, and passed rows bit for bit."""

from __future__ import annotations

import pytest
import torch

from comfy_nodes.conditioning_nodes import SafeSteerConditioning, SafeSteerReport
from comfy_nodes.gate_model_nodes import GateModel, LoadSafeSteerGateModel
from safesteer_diffusers.build.driver import BuildConfig, build_pack
from safesteer_diffusers.build.prompts.embedded import load_anchors, load_pairs
from safesteer_diffusers.build.source_features import extract_features
from safesteer_diffusers.build.target_statistics import BenignPrompts
from safesteer_diffusers.steering.conditioning import TextSteerer
from safesteer_diffusers.steering.config import SteeringConfig
from safesteer_diffusers.steering.errors import SteeringNotApplied
from safesteer_diffusers.testing import build, tiny_source
from safesteer_diffusers.testing.tokenizers import chat_tokenizer
from tests.comfy.support import conditioning, strengths

PROMPTS = [p.unsafe for p in load_pairs("violence")[10:14]] + [p.safe for p in load_pairs("sexual")[10:14]]


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    folder = tmp_path_factory.mktemp("gate_model_node")
    pipe, _ = build("sd")
    model, tokenizer = tiny_source(seed=0)[0], chat_tokenizer()
    model.save_pretrained(folder / "llm")
    tokenizer.save_pretrained(folder / "llm")
    pairs = [p for c in ("violence", "sexual") for p in load_pairs(c)[:8]]
    anchors = BenignPrompts(tuple(load_anchors()[:48]), "test anchors")

    def make(source_gate):
        config = BuildConfig(align="ridge", gate_quantile=0.5, source_gate=source_gate)
        return build_pack(
            model, tokenizer, pipe, pairs=pairs, anchors=anchors, config=config, progress=False
        ).pack

    return folder, make(True), make(False)


def source_fires(pack, prompts) -> list[bool]:
    """The pack's global source gate, computed here from the pack and a fresh copy of the source model."""
    info = pack.metadata["source_gate"]
    assert info["chat_template"] is True  # the default framing, with a tokenizer that has a chat template
    features = extract_features(
        tiny_source(seed=0)[0], chat_tokenizer(), prompts, info["layer"], progress=False, chat_template=True
    )
    vector, threshold = pack.source_gate("global")
    return [bool(f.double() @ vector.double() > threshold) for f in features]


def test_the_conditioning_node_steers_exactly_the_prompts_the_source_gate_fires_on(setup):
    folder, pack, _ = setup
    (gate_model,) = LoadSafeSteerGateModel().load(str(folder / "llm"))
    assert isinstance(gate_model, GateModel) and gate_model.identity["revision"] is None
    fires = source_fires(pack, PROMPTS)
    assert any(fires) and not all(fires)  # the 0.5-quantile gate splits these prompts
    ungated = TextSteerer(pack, SteeringConfig(strength=2.0))
    node = SafeSteerConditioning()
    generator = torch.Generator().manual_seed(0)
    for prompt, fired in zip(PROMPTS, fires, strict=True):
        tensor = torch.randn(2, 77, 32, generator=generator)
        inputs = {**strengths(2.0), "gate": True}
        (out,) = node.steer(conditioning(tensor), pack, gate_model=gate_model, prompt=prompt, **inputs)
        steered = out[0][0]
        if fired:
            assert torch.equal(steered, ungated(tensor)[0]), prompt
        else:
            assert torch.equal(steered, tensor), prompt
        report = SafeSteerReport().report(pack, out)["result"][0]
        assert "source_model score" in report and "decided by the source model from the prompt text" in report
        applied = report[report.index("Applied") : report.index("Gate check")]
        assert ("applied: global 2" in applied) == fired, applied


def test_the_source_gate_fails_closed(setup):
    folder, pack, plain = setup
    (gate_model,) = LoadSafeSteerGateModel().load(str(folder / "llm"))
    tensor = torch.randn(1, 77, 32)
    node = SafeSteerConditioning()
    with pytest.raises(SteeringNotApplied, match="needs each prompt's text"):
        node.steer(conditioning(tensor), pack, gate_model=gate_model, **{**strengths(2.0), "gate": True})
    with pytest.raises(ValueError, match="gate_model is connected but gate is off"):
        node.steer(conditioning(tensor), pack, gate_model=gate_model, prompt=PROMPTS[0], **strengths(2.0))
    with pytest.raises(ValueError, match="carries no source-model gate"):
        node.steer(
            conditioning(tensor),
            plain,
            gate_model=gate_model,
            prompt=PROMPTS[0],
            **{**strengths(2.0), "gate": True},
        )
    with pytest.raises(TypeError, match="Load SafeSteer Gate Model"):
        node.steer(
            conditioning(tensor), pack, gate_model=object(), prompt="x", **{**strengths(2.0), "gate": True}
        )
    with pytest.raises(ValueError, match="source is empty"):
        LoadSafeSteerGateModel().load("  ")


def test_gate_on_without_a_gate_model_logs_that_the_source_gate_is_left_unused(setup, env, caplog):
    from comfy_nodes.model_nodes import SafeSteerModel
    from tests.comfy.support import tiny_unet_patcher

    folder, pack, no_source_gate = setup
    (gate_model,) = LoadSafeSteerGateModel().load(str(folder / "llm"))
    tensor = torch.randn(1, 77, 32, generator=torch.Generator().manual_seed(1))

    def logged(node, pack_, **inputs) -> list[str]:
        caplog.clear()
        with caplog.at_level("WARNING", logger="safesteer"):
            if node == "conditioning":
                SafeSteerConditioning().steer(conditioning(tensor), pack_, **{**strengths(2.0), **inputs})
            else:
                model_inputs = {**strengths(2.0), "start_percent": 0.0, "end_percent": 1.0, **inputs}
                SafeSteerModel().patch(tiny_unet_patcher(env), pack_, **model_inputs)
        return [r.getMessage() for r in caplog.records if "source-model gate" in r.getMessage()]

    (message,) = logged("conditioning", pack, gate=True)
    assert message.startswith("SafeSteer Conditioning: gate is on") and "Load SafeSteer Gate Model" in message
    assert logged("conditioning", pack, gate=True, gate_model=gate_model, prompt=PROMPTS[0]) == []
    assert logged("conditioning", pack, gate=False) == []
    assert logged("conditioning", no_source_gate, gate=True) == []
    (message,) = logged("model", pack, gate=True)
    assert message.startswith("SafeSteer Model: gate is on") and "SafeSteer Conditioning" in message
    assert logged("model", pack, gate=False) == []
    assert logged("model", no_source_gate, gate=True) == []

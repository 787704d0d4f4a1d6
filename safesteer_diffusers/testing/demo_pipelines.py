"""The named tiny pipelines of the demo and the examples (``"sd"``, ``"sdxl"``, ``"flux"``, ``"wan"``), the
tiny source model and :func:`tiny_pack`; import them from :mod:`safesteer_diffusers.testing`.

**Random weights.** These pipelines run the real diffusers code paths (text encoders, denoiser, scheduler,
VAE) at toy sizes; their images are noise-like patterns, not pictures. What they are good for is running
the whole method (estimate, align, transport, calibrate, gate, steer) end to end in seconds, exactly.
Each pipeline has a recognisable model id (``pipe.config._name_or_path``), e.g. ``"safesteer/tiny-sd-demo"``,
for which ``pretrained_directions/`` ships a built default pack.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from .components import T5_MAX_LENGTH, call_kwargs, finish, quiet_diffusers, seeded
from .image_dit_families import flux
from .tokenizers import chat_tokenizer
from .unet_families import stable_diffusion, stable_diffusion_xl
from .video_dit_families import wan

DEMO_MODEL_ID = "safesteer/tiny-sd-demo"
"""Model id of the demo's tiny Stable Diffusion pipeline (the shipped default pack is registered for it)."""

TINY_SOURCE_ID = "safesteer/tiny-random-llama"
"""Model id recorded for the random tiny source model of :func:`tiny_source`."""


TINY_MODEL_IDS = {
    "sd": DEMO_MODEL_ID,
    "sdxl": "safesteer/tiny-sdxl",
    "flux": "safesteer/tiny-flux",
    "wan": "safesteer/tiny-wan",
}


# ---------------------------------------------------------------------------------------------- sources
def tiny_source(seed: int = 0) -> tuple[torch.nn.Module, Any, str]:
    """A randomly initialised 3-layer Llama (hidden 32) with a byte-level chat tokenizer, built in code.

    Returns:
        ``(model, tokenizer, model_id)``.
    """
    from transformers import LlamaConfig, LlamaModel

    config = LlamaConfig(
        vocab_size=300,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=3,
        num_attention_heads=4,
        num_key_value_heads=2,
    )
    with seeded(seed):
        model = LlamaModel(config).eval()
    return model, chat_tokenizer(), TINY_SOURCE_ID


# ---------------------------------------------------------------------------------------------- builders
# The family layouts at the sizes the demo and the examples use; these calls leave out `output_type` (the
# pipelines' default, PIL images) and Flux's true CFG, which the family builders' calls set.
def build_sd(size: int = 64) -> tuple[Any, dict]:
    """The demo target: SD 1.x layout, CLIP text encoder (hidden 64), UNet, 3-level VAE (factor 4)."""
    pipe = stable_diffusion(
        64, size=size, vae_channels=(4, 8, 8), block_out_channels=(16, 32), attention_head_dim=4
    )
    return pipe, call_kwargs(size, guidance_scale=7.5)


def build_sdxl(size: int = 32) -> tuple[Any, dict]:
    """SDXL layout: CLIP (32) ++ CLIP-with-projection (48, pooled 40) on the feature axis."""
    return stable_diffusion_xl(size), call_kwargs(size, guidance_scale=5.0)


def build_flux(size: int = 32) -> tuple[Any, dict]:
    """FLUX.1 layout: T5 states (48) are the context, CLIP's pooled output (32) the pooled projection."""
    return flux(size), call_kwargs(size, guidance_scale=3.5, max_sequence_length=T5_MAX_LENGTH)


def build_wan(size: int = 16) -> tuple[Any, dict]:
    """Wan 2.x layout: UMT5 states (32); CFG as separate conditional / unconditional passes; 5 frames."""
    kwargs = call_kwargs(
        size, guidance={"guidance_scale": 5.0}, num_frames=5, max_sequence_length=T5_MAX_LENGTH
    )
    return wan(), kwargs


_BUILDERS: dict[str, Callable[..., tuple[Any, dict]]] = {
    "sd": build_sd,
    "sdxl": build_sdxl,
    "flux": build_flux,
    "wan": build_wan,
}
TINY_FAMILIES = tuple(_BUILDERS)


def tiny_pipeline(family: str = "sd", *, seed: int = 0, **options) -> tuple[Any, dict]:
    """A fresh tiny pipeline of ``family`` (random weights, CPU, float32) and fast call arguments.

    Weights are drawn under ``torch.manual_seed(seed)`` without touching the caller's RNG state, so two
    builds are identical (the shipped demo pack depends on it).

    Args:
        family: ``"sd"`` (the demo's, 64x64 px), ``"sdxl"``, ``"flux"`` or ``"wan"`` (text-to-video).
        seed: weight seed.
        **options: builder options (``size=``).

    Returns:
        ``(pipe, call_kwargs)``; ``call_kwargs`` holds steps, size and guidance (CFG on).

    Example:
        >>> pipe, call_kwargs = tiny_pipeline("flux")
        >>> pipe.config._name_or_path
        'safesteer/tiny-flux'
    """
    if family not in _BUILDERS:
        raise ValueError(f"Unknown tiny family {family!r}; choose one of {sorted(_BUILDERS)}.")
    with quiet_diffusers(), seeded(seed):
        pipe, kwargs = _BUILDERS[family](**options)
    return finish(pipe, TINY_MODEL_IDS[family]), kwargs


def is_tiny_model_id(model_id: str | None) -> bool:
    """Whether ``model_id`` names one of the tiny pipelines built in code (no download)."""
    return model_id in TINY_MODEL_IDS.values()


def tiny_pipeline_for(model_id: str) -> tuple[Any, dict]:
    """The tiny pipeline whose model id is ``model_id`` (e.g. ``"safesteer/tiny-sd-demo"``)."""
    for family, known in TINY_MODEL_IDS.items():
        if known == model_id:
            return tiny_pipeline(family)
    raise ValueError(f"{model_id!r} is not a tiny pipeline id; known: {sorted(TINY_MODEL_IDS.values())}.")


def tiny_pack(
    pipe: Any,
    *,
    anchors: int = 64,
    pairs_per_category: int = 6,
    seed: int = 0,
    align: str = "ridge",
):
    """A real transferred pack for ``pipe`` built in about a second with the tiny random source model.

    The full method runs (embedded pairs -> source directions, benign anchors -> alignment, transport,
    calibration, gate thresholds) on reduced prompt sets. Meant for tiny pipelines and tests.

    Returns:
        The :class:`~safesteer_diffusers.packs.direction_pack.DirectionPack`.
    """
    from safesteer_diffusers.build.driver import BuildConfig, build_pack
    from safesteer_diffusers.build.prompts.embedded import load_pairs
    from safesteer_diffusers.packs.format import I2P_CATEGORIES

    model, tokenizer, source_id = tiny_source(seed)
    pairs = [p for c in I2P_CATEGORIES for p in load_pairs(c)[:pairs_per_category]]
    result = build_pack(
        model,
        tokenizer,
        pipe,
        pairs=pairs,
        config=BuildConfig(align=align, seed=seed, batch_size=32, max_anchors=anchors),
        source_id=source_id,
        target_id=getattr(pipe.config, "_name_or_path", None),
        progress=False,
    )
    return result.pack

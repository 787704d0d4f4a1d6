"""The named tiny pipelines of the demo and the examples (``"sd"``, ``"sdxl"``, ``"flux"``, ``"wan"``), the tiny
source model and :func:`tiny_pack`; import them from :mod:`safesteer_diffusers.testing`.

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

from .tokenizers import chat_tokenizer, clip_tokenizer, t5_tokenizer

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

_CLIP_VOCAB, _CLIP_BOS, _CLIP_EOS = 1000, 512, 513  # byte-level CLIP tokenizer: ids 0..513
_T5_VOCAB, _T5_MAX = 320, 32  # byte-level T5 tokenizer: ids 0..258; tokens are bytes, so 32 ~ 32 characters


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
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = LlamaModel(config).eval()
    return model, chat_tokenizer(), TINY_SOURCE_ID


# -------------------------------------------------------------------------------------------- components
def _clip_config(hidden: int, projection_dim: int | None = None, hidden_act: str = "quick_gelu"):
    from transformers import CLIPTextConfig

    return CLIPTextConfig(
        vocab_size=_CLIP_VOCAB,
        hidden_size=hidden,
        intermediate_size=2 * hidden,
        projection_dim=projection_dim or hidden,
        num_hidden_layers=2,
        num_attention_heads=4,
        max_position_embeddings=77,
        hidden_act=hidden_act,
        layer_norm_eps=1e-5,
        bos_token_id=_CLIP_BOS,
        eos_token_id=_CLIP_EOS,
        pad_token_id=_CLIP_EOS,
    )


def _clip(hidden: int):
    from transformers import CLIPTextModel

    return CLIPTextModel(_clip_config(hidden)).eval()


def _clip_with_projection(hidden: int, projection_dim: int):
    from transformers import CLIPTextModelWithProjection

    return CLIPTextModelWithProjection(_clip_config(hidden, projection_dim, hidden_act="gelu")).eval()


def _t5(d_model: int):
    from transformers import T5Config, T5EncoderModel

    config = T5Config(
        vocab_size=_T5_VOCAB,
        d_model=d_model,
        d_kv=8,
        d_ff=2 * d_model,
        num_layers=2,
        num_heads=4,
        relative_attention_num_buckets=8,
        dropout_rate=0.0,
        feed_forward_proj="gated-gelu",
        pad_token_id=0,
        eos_token_id=1,
        decoder_start_token_id=0,
    )
    return T5EncoderModel(config).eval()


def _vae(levels: int = 2, sample_size: int = 32, **config):
    """A VAE with ``levels`` levels (spatial factor ``2 ** (levels - 1)``) and a handful of channels."""
    from diffusers import AutoencoderKL

    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * levels,
        up_block_types=("UpDecoderBlock2D",) * levels,
        block_out_channels=(4, 8, 8, 8)[:levels],
        layers_per_block=1,
        latent_channels=4,
        norm_num_groups=2,
        sample_size=sample_size,
        **config,
    ).eval()


def _unet(cross_attention_dim: int, sample_size: int, **config):
    from diffusers import UNet2DConditionModel

    defaults = {
        "sample_size": sample_size,
        "in_channels": 4,
        "out_channels": 4,
        "block_out_channels": (8, 16),
        "layers_per_block": 1,
        "down_block_types": ("CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        "up_block_types": ("CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
        "norm_num_groups": 2,
        "attention_head_dim": 2,
    }
    return UNet2DConditionModel(cross_attention_dim=cross_attention_dim, **{**defaults, **config}).eval()


def _ddim():
    from diffusers import DDIMScheduler

    return DDIMScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        clip_sample=False,
        set_alpha_to_one=False,
        steps_offset=1,
    )


def _finish(pipe: Any, model_id: str) -> Any:
    for component in pipe.components.values():
        if isinstance(component, torch.nn.Module):
            component.eval()
    pipe.set_progress_bar_config(disable=True)
    # The model id is what default-pack lookup and pack metadata match on (like a Hub id would be).
    pipe.register_to_config(_name_or_path=model_id)
    return pipe


# ---------------------------------------------------------------------------------------------- builders
def build_sd(size: int = 64) -> tuple[Any, dict]:
    """The demo target: SD 1.x layout, CLIP text encoder (hidden 64), UNet, 3-level VAE (factor 4)."""
    from diffusers import StableDiffusionPipeline

    unet = _unet(64, size // 4, block_out_channels=(16, 32), attention_head_dim=4)
    vae = _vae(levels=3, sample_size=size)
    text_encoder = _clip(64)
    pipe = StableDiffusionPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=clip_tokenizer(),
        unet=unet,
        scheduler=_ddim(),
        safety_checker=None,
        feature_extractor=None,
        image_encoder=None,
        requires_safety_checker=False,
    )
    call = {"num_inference_steps": 2, "height": size, "width": size, "guidance_scale": 7.5}
    return pipe, call


def build_sdxl(size: int = 32) -> tuple[Any, dict]:
    """SDXL layout: CLIP (32) ++ CLIP-with-projection (48, pooled 40) on the feature axis."""
    from diffusers import EulerDiscreteScheduler, StableDiffusionXLPipeline

    time_embed_dim, projection_dim = 8, 40
    unet = _unet(
        32 + 48,
        size // 2,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        use_linear_projection=True,
        attention_head_dim=(2, 4),
        transformer_layers_per_block=(1, 2),
        addition_embed_type="text_time",
        addition_time_embed_dim=time_embed_dim,
        projection_class_embeddings_input_dim=6 * time_embed_dim + projection_dim,
    )
    vae = _vae(levels=2, sample_size=size)
    text_encoder = _clip(32)
    text_encoder_2 = _clip_with_projection(48, projection_dim)
    scheduler = EulerDiscreteScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        steps_offset=1,
        timestep_spacing="leading",
    )
    pipe = StableDiffusionXLPipeline(
        vae=vae,
        text_encoder=text_encoder,
        text_encoder_2=text_encoder_2,
        tokenizer=clip_tokenizer(),
        tokenizer_2=clip_tokenizer(),
        unet=unet,
        scheduler=scheduler,
        image_encoder=None,
        feature_extractor=None,
        force_zeros_for_empty_prompt=True,
        add_watermarker=False,
    )
    call = {"num_inference_steps": 2, "height": size, "width": size, "guidance_scale": 5.0}
    return pipe, call


def build_flux(size: int = 32) -> tuple[Any, dict]:
    """FLUX.1 layout: T5 states (48) are the context, CLIP's pooled output (32) the pooled projection."""
    from diffusers import FlowMatchEulerDiscreteScheduler, FluxPipeline, FluxTransformer2DModel

    transformer = FluxTransformer2DModel(
        patch_size=1,
        in_channels=16,
        num_layers=1,
        num_single_layers=1,
        attention_head_dim=16,
        num_attention_heads=2,
        joint_attention_dim=48,
        pooled_projection_dim=32,
        guidance_embeds=True,
        axes_dims_rope=(4, 4, 8),
    ).eval()
    vae = _vae(
        levels=2,
        sample_size=size,
        use_quant_conv=False,
        use_post_quant_conv=False,
        shift_factor=0.0609,
        scaling_factor=1.5035,
    )
    pipe = FluxPipeline(
        scheduler=FlowMatchEulerDiscreteScheduler(),
        vae=vae,
        text_encoder=_clip(32),
        tokenizer=clip_tokenizer(),
        text_encoder_2=_t5(48),
        tokenizer_2=t5_tokenizer(_T5_MAX),
        transformer=transformer,
    )
    call = {
        "num_inference_steps": 2,
        "height": size,
        "width": size,
        "guidance_scale": 3.5,
        "max_sequence_length": _T5_MAX,
    }
    return pipe, call


def build_wan(size: int = 16) -> tuple[Any, dict]:
    """Wan 2.x layout: UMT5 states (32); CFG as separate conditional / unconditional passes; 5 frames."""
    from diffusers import (
        AutoencoderKLWan,
        FlowMatchEulerDiscreteScheduler,
        WanPipeline,
        WanTransformer3DModel,
    )
    from transformers import UMT5Config, UMT5EncoderModel

    tokenizer = t5_tokenizer()
    vae = AutoencoderKLWan(
        base_dim=3, z_dim=16, dim_mult=[1, 1, 1, 1], num_res_blocks=1, temperal_downsample=[False, True, True]
    )
    transformer = WanTransformer3DModel(
        patch_size=(1, 2, 2),
        num_attention_heads=2,
        attention_head_dim=12,
        in_channels=16,
        out_channels=16,
        text_dim=32,
        freq_dim=256,
        ffn_dim=32,
        num_layers=2,
        cross_attn_norm=True,
        qk_norm="rms_norm_across_heads",
        rope_max_seq_len=32,
    )
    encoder = UMT5EncoderModel(
        UMT5Config(
            vocab_size=len(tokenizer),
            d_model=32,
            d_kv=8,
            d_ff=37,
            num_layers=2,
            num_heads=4,
            relative_attention_num_buckets=8,
            dropout_rate=0.0,
        )
    )
    pipe = WanPipeline(
        tokenizer=tokenizer,
        text_encoder=encoder,
        vae=vae,
        transformer=transformer,
        scheduler=FlowMatchEulerDiscreteScheduler(shift=7.0),
    )
    call = {
        "num_inference_steps": 2,
        "guidance_scale": 5.0,
        "height": size,
        "width": size,
        "num_frames": 5,
        "max_sequence_length": _T5_MAX,
    }
    return pipe, call


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
    from diffusers.utils import logging as diffusers_logging

    verbosity = diffusers_logging.get_verbosity()
    diffusers_logging.set_verbosity_error()
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            pipe, call_kwargs = _BUILDERS[family](**options)
    finally:
        diffusers_logging.set_verbosity(verbosity)
    return _finish(pipe, TINY_MODEL_IDS[family]), call_kwargs


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

"""The building blocks of every tiny pipeline: text encoders, VAEs, a UNet and a scheduler at toy sizes.

One set of component builders for the named demo pipelines (:mod:`.demo_pipelines`), the family builders
(:mod:`.unet_families`, :mod:`.image_dit_families`, :mod:`.video_dit_families`) and the overhead benchmark.
Sizes are parameters; the defaults are the 32 px family pipelines'. Builders only construct modules: the
weights come from whatever torch seed is active, so callers draw them under :func:`seeded`, and the *order*
in which a caller builds its components is part of what fixes the weights.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import torch
from diffusers import AutoencoderKL, DDIMScheduler, DiffusionPipeline, UNet2DConditionModel
from diffusers.utils import logging as diffusers_logging
from transformers import (
    CLIPTextConfig,
    CLIPTextModel,
    CLIPTextModelWithProjection,
    T5Config,
    T5EncoderModel,
    UMT5Config,
    UMT5EncoderModel,
)

Builder = Callable[[], tuple[DiffusionPipeline, dict[str, Any]]]
"""A family builder: no arguments, returns ``(pipe, call_kwargs)``."""

CLIP_VOCAB_SIZE = 1000  # the byte-level CLIP tokenizer uses ids 0..513
CLIP_BOS_ID, CLIP_EOS_ID = 512, 513  # padding is EOS too; CLIP pools at the first EOS
T5_VOCAB_SIZE = 320  # the byte-level T5 tokenizer uses ids 0..258
# `max_sequence_length` of every T5/LLM-based tiny pipeline; tokens are single bytes, so about 32 characters.
T5_MAX_LENGTH = 32
SIZE = 32  # image height and width in pixels of the family pipelines
STEPS = 2  # denoising steps of every fast call


# ------------------------------------------------------------------------------------------- determinism


@contextmanager
def seeded(seed: int = 0) -> Iterator[None]:
    """Draw weights under ``torch.manual_seed(seed)``, leaving the caller's global RNG state as it was."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


def seeded_builder(builder: Builder) -> Builder:
    """Make ``builder`` draw its weights under seed 0, so every call returns an identical pipeline."""

    @functools.wraps(builder)
    def wrapper() -> tuple[DiffusionPipeline, dict[str, Any]]:
        with seeded(0):
            return builder()

    return wrapper


@contextmanager
def quiet_diffusers() -> Iterator[None]:
    """Hide diffusers' warnings (e.g. the dtype-cast notice of `UNetMotionModel.from_unet2d`)."""
    verbosity = diffusers_logging.get_verbosity()
    diffusers_logging.set_verbosity_error()
    try:
        yield
    finally:
        diffusers_logging.set_verbosity(verbosity)


def finish(pipe: DiffusionPipeline, model_id: str | None = None) -> DiffusionPipeline:
    """Put every model in eval mode (no dropout), turn the progress bar off and optionally name the pipeline.

    Every component is already on CPU in float32 (a `.to(dtype)` would only add warnings). The model id is
    what default-pack lookup and pack metadata match on, like a Hub id would be.
    """
    for component in pipe.components.values():
        if isinstance(component, torch.nn.Module):
            component.eval()
    pipe.set_progress_bar_config(disable=True)
    if model_id is not None:
        pipe.register_to_config(_name_or_path=model_id)
    return pipe


def call_kwargs(size: int, *, guidance: dict[str, float] | None = None, **extra: Any) -> dict[str, Any]:
    """Keyword arguments of a fast call: :data:`STEPS` steps, then ``guidance`` (when given), then the size
    ``size`` x ``size``, then ``extra``.

    Guidance passed in ``extra`` instead comes after the size; the order is only the order the calls print in.
    """
    return {"num_inference_steps": STEPS, **(guidance or {}), "height": size, "width": size, **extra}


# ------------------------------------------------------------------------------------------ text encoders


def clip_text_config(
    hidden_size: int,
    *,
    projection_dim: int | None = None,
    hidden_act: str = "quick_gelu",
    vocab_size: int = CLIP_VOCAB_SIZE,
    intermediate_size: int | None = None,
    num_layers: int = 2,
    num_heads: int = 4,
) -> CLIPTextConfig:
    """A CLIP text config over the byte-level CLIP tokenizer (77 positions, BOS/EOS ids of that tokenizer)."""
    return CLIPTextConfig(
        vocab_size=vocab_size,
        hidden_size=hidden_size,
        intermediate_size=intermediate_size or 2 * hidden_size,
        projection_dim=projection_dim or hidden_size,
        num_hidden_layers=num_layers,
        num_attention_heads=num_heads,
        max_position_embeddings=77,
        hidden_act=hidden_act,
        layer_norm_eps=1e-5,
        bos_token_id=CLIP_BOS_ID,
        eos_token_id=CLIP_EOS_ID,
        pad_token_id=CLIP_EOS_ID,
    )


def clip_text_encoder(hidden_size: int, **config: Any) -> CLIPTextModel:
    """A `CLIPTextModel` (SD 1.x / CLIP-L style); ``config`` as in :func:`clip_text_config`."""
    return CLIPTextModel(clip_text_config(hidden_size, **config)).eval()


def clip_text_encoder_with_projection(
    hidden_size: int, projection_dim: int | None = None
) -> CLIPTextModelWithProjection:
    """A `CLIPTextModelWithProjection` with gelu (OpenCLIP-G style), as SDXL's and SD3's second encoder."""
    config = clip_text_config(hidden_size, projection_dim=projection_dim, hidden_act="gelu")
    return CLIPTextModelWithProjection(config).eval()


def _t5_layout(d_model: int, d_ff: int, vocab_size: int) -> dict[str, Any]:
    return {
        "vocab_size": vocab_size,
        "d_model": d_model,
        "d_kv": 8,
        "d_ff": d_ff,
        "num_layers": 2,
        "num_heads": 4,
        "relative_attention_num_buckets": 8,
        "dropout_rate": 0.0,
    }


def t5_encoder(d_model: int = 32, *, vocab_size: int = T5_VOCAB_SIZE, d_ff: int = 37) -> T5EncoderModel:
    """A T5 encoder with a ReLU feed-forward, sized like diffusers' dummy components (CogVideoX, LTX)."""
    return T5EncoderModel(T5Config(**_t5_layout(d_model, d_ff, vocab_size))).eval()


def gated_t5_encoder(d_model: int) -> T5EncoderModel:
    """A T5 v1.1-style encoder (gated-GELU feed-forward, ``d_ff = 2 * d_model``): SD3, Flux, PixArt."""
    config = T5Config(
        **_t5_layout(d_model, 2 * d_model, T5_VOCAB_SIZE),
        feed_forward_proj="gated-gelu",
        pad_token_id=0,
        eos_token_id=1,
        decoder_start_token_id=0,
    )
    return T5EncoderModel(config).eval()


def umt5_encoder(vocab_size: int, d_model: int = 32, d_ff: int = 37) -> UMT5EncoderModel:
    """A UMT5 encoder, as Wan's."""
    return UMT5EncoderModel(UMT5Config(**_t5_layout(d_model, d_ff, vocab_size))).eval()


# --------------------------------------------------------------------------------- VAEs, UNet, scheduler


def vae(
    *,
    block_out_channels: tuple[int, ...] = (4, 8),
    latent_channels: int = 4,
    norm_num_groups: int = 2,
    sample_size: int = SIZE,
    **config: Any,
) -> AutoencoderKL:
    """An `AutoencoderKL`, one level per entry of ``block_out_channels`` (each extra one halves the size)."""
    levels = len(block_out_channels)
    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * levels,
        up_block_types=("UpDecoderBlock2D",) * levels,
        block_out_channels=block_out_channels,
        layers_per_block=1,
        latent_channels=latent_channels,
        norm_num_groups=norm_num_groups,
        sample_size=sample_size,
        **config,
    ).eval()


def flow_vae(sample_size: int = SIZE) -> AutoencoderKL:
    """The SD3/Flux VAE layout: no quant convs, latents shifted as well as scaled."""
    return vae(
        sample_size=sample_size,
        use_quant_conv=False,
        use_post_quant_conv=False,
        shift_factor=0.0609,
        scaling_factor=1.5035,
    )


def unet(cross_attention_dim: int, *, sample_size: int = SIZE // 2, **config: Any) -> UNet2DConditionModel:
    """A two-level UNet with cross-attention in both levels by default; ``config`` overrides any setting."""
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


def ddim(**config: Any) -> DDIMScheduler:
    """The SD 1.x DDIM schedule (scaled-linear betas, offset 1); ``config`` overrides any setting."""
    defaults = {
        "beta_start": 0.00085,
        "beta_end": 0.012,
        "beta_schedule": "scaled_linear",
        "clip_sample": False,
        "set_alpha_to_one": False,
        "steps_offset": 1,
    }
    return DDIMScheduler(**{**defaults, **config})

"""Tiny pipelines of the text-to-video DiT families (CogVideoX, Wan, LTX-Video, HunyuanVideo, Mochi), and the
Wan layout that the named demo pipeline ``"wan"`` reuses.

`BUILDERS[name]()` returns `(pipe, call_kwargs)`: a fresh pipeline on CPU in float32 with deterministic
weights (drawn under seed 0; the caller's global RNG state is left untouched) and its progress bar off, and
the keyword arguments for a fast call, to be completed with `prompt`, `negative_prompt` and `generator`: two
steps, a tiny resolution and frame count, `output_type="latent"`, `max_sequence_length=32` and
classifier-free guidance on (`guidance_scale > 1`, or `true_cfg_scale > 1` for HunyuanVideo's "true CFG",
which only runs the negative branch when a negative prompt is given).

Component sizes follow diffusers' `get_dummy_components()` tests; models those tests load from the Hub are
built from configs here, with the byte-level tokenizers of `tokenizers.py`. HunyuanVideo's `crop_start`,
hard-coded for the real tokenizer, is recounted for the byte-level one. Denoiser text context for one prompt
(B = batch x per-prompt count):

| family          | text encoder (hidden)        | denoiser text context; CFG layout                      |
| --------------- | ---------------------------- | ------------------------------------------------------ |
| `cogvideox`     | T5 32                        | (2B, 32, 32); one pass, negative first                 |
| `wan`           | UMT5 32                      | (B, 32, 32), zero-padded; separate cond/uncond passes  |
| `ltx_video`     | T5 32                        | (2B, 32, 32) + bool mask; one pass, negative first     |
| `hunyuan_video` | Llama 16 + CLIP 8 (pooled)   | (B, 32, 16) + mask, pooled (B, 8); separate passes     |
| `mochi`         | T5 32                        | (2B, 32, 32) + bool mask; one pass, negative first     |

CogVideoX ignores `num_videos_per_prompt` (the pipeline forces it to 1).
"""

from __future__ import annotations

from typing import Any

import torch
from diffusers import (
    AutoencoderKLCogVideoX,
    AutoencoderKLHunyuanVideo,
    AutoencoderKLLTXVideo,
    AutoencoderKLMochi,
    AutoencoderKLWan,
    CogVideoXDDIMScheduler,
    CogVideoXPipeline,
    CogVideoXTransformer3DModel,
    DiffusionPipeline,
    FlowMatchEulerDiscreteScheduler,
    HunyuanVideoPipeline,
    HunyuanVideoTransformer3DModel,
    LTXPipeline,
    LTXVideoTransformer3DModel,
    MochiPipeline,
    MochiTransformer3DModel,
    WanPipeline,
    WanTransformer3DModel,
)
from transformers import CLIPTextModel, LlamaConfig, LlamaModel

from .components import (
    T5_MAX_LENGTH,
    Builder,
    call_kwargs,
    clip_text_encoder,
    finish,
    seeded_builder,
    t5_encoder,
    umt5_encoder,
)
from .tokenizers import chat_tokenizer, clip_tokenizer, count_tokens, t5_tokenizer

T5_WIDTH = 32
"""Width of every T5/UMT5 encoder below; the denoisers' text projections take this as input size."""


def _latent_call(guidance: dict[str, float], size: int, num_frames: int, **extra: Any) -> dict[str, Any]:
    return call_kwargs(
        size,
        guidance=guidance,
        num_frames=num_frames,
        **extra,
        max_sequence_length=T5_MAX_LENGTH,
        output_type="latent",
    )


# ----------------------------------------------------------------------------------------- T5 encoders


@seeded_builder
def build_cogvideox() -> tuple[DiffusionPipeline, dict[str, Any]]:
    """CogVideoXPipeline with a tiny T5; CFG as one batched pass, negative first."""
    tokenizer = t5_tokenizer()
    transformer = CogVideoXTransformer3DModel(
        num_attention_heads=4,
        attention_head_dim=8,
        in_channels=4,
        out_channels=4,
        time_embed_dim=2,
        text_embed_dim=T5_WIDTH,
        num_layers=1,
        sample_width=2,
        sample_height=2,
        sample_frames=9,
        patch_size=2,
        temporal_compression_ratio=4,
        max_text_seq_length=T5_MAX_LENGTH,
    )
    autoencoder = AutoencoderKLCogVideoX(
        in_channels=3,
        out_channels=3,
        down_block_types=("CogVideoXDownBlock3D",) * 4,
        up_block_types=("CogVideoXUpBlock3D",) * 4,
        block_out_channels=(8, 8, 8, 8),
        latent_channels=4,
        layers_per_block=1,
        norm_num_groups=2,
        temporal_compression_ratio=4,
    )
    pipe = CogVideoXPipeline(
        tokenizer=tokenizer,
        text_encoder=t5_encoder(T5_WIDTH, vocab_size=len(tokenizer)),
        vae=autoencoder,
        transformer=transformer,
        scheduler=CogVideoXDDIMScheduler(),
    )
    return finish(pipe), _latent_call({"guidance_scale": 6.0}, 16, 8)


def wan() -> WanPipeline:
    """The Wan 2.1 text-to-video layout: UMT5 states (32); CFG as two separate transformer passes."""
    tokenizer = t5_tokenizer()
    autoencoder = AutoencoderKLWan(
        base_dim=3,
        z_dim=16,
        dim_mult=[1, 1, 1, 1],
        num_res_blocks=1,
        temperal_downsample=[False, True, True],
    )
    transformer = WanTransformer3DModel(
        patch_size=(1, 2, 2),
        num_attention_heads=2,
        attention_head_dim=12,
        in_channels=16,
        out_channels=16,
        text_dim=T5_WIDTH,
        freq_dim=256,
        ffn_dim=32,
        num_layers=2,
        cross_attn_norm=True,
        qk_norm="rms_norm_across_heads",
        rope_max_seq_len=32,
    )
    return WanPipeline(
        tokenizer=tokenizer,
        text_encoder=umt5_encoder(len(tokenizer), T5_WIDTH),
        vae=autoencoder,
        transformer=transformer,
        scheduler=FlowMatchEulerDiscreteScheduler(shift=7.0),
    )


@seeded_builder
def build_wan() -> tuple[DiffusionPipeline, dict[str, Any]]:
    """WanPipeline (2.1 text-to-video), see :func:`wan`."""
    return finish(wan()), _latent_call({"guidance_scale": 5.0}, 16, 5)


@seeded_builder
def build_ltx_video() -> tuple[DiffusionPipeline, dict[str, Any]]:
    """LTXPipeline with a tiny T5; CFG as one batched pass, negative first."""
    tokenizer = t5_tokenizer()
    transformer = LTXVideoTransformer3DModel(
        in_channels=8,
        out_channels=8,
        patch_size=1,
        patch_size_t=1,
        num_attention_heads=4,
        attention_head_dim=8,
        cross_attention_dim=32,
        num_layers=1,
        caption_channels=T5_WIDTH,
    )
    autoencoder = AutoencoderKLLTXVideo(
        in_channels=3,
        out_channels=3,
        latent_channels=8,
        block_out_channels=(8, 8, 8, 8),
        decoder_block_out_channels=(8, 8, 8, 8),
        layers_per_block=(1, 1, 1, 1, 1),
        decoder_layers_per_block=(1, 1, 1, 1, 1),
        spatio_temporal_scaling=(True, True, False, False),
        decoder_spatio_temporal_scaling=(True, True, False, False),
        decoder_inject_noise=(False, False, False, False, False),
        upsample_residual=(False, False, False, False),
        upsample_factor=(1, 1, 1, 1),
        timestep_conditioning=False,
        patch_size=1,
        patch_size_t=1,
        encoder_causal=True,
        decoder_causal=False,
    )
    autoencoder.use_framewise_encoding = False
    autoencoder.use_framewise_decoding = False
    pipe = LTXPipeline(
        scheduler=FlowMatchEulerDiscreteScheduler(),
        vae=autoencoder,
        text_encoder=t5_encoder(T5_WIDTH, vocab_size=len(tokenizer)),
        tokenizer=tokenizer,
        transformer=transformer,
    )
    return finish(pipe), _latent_call({"guidance_scale": 3.0}, 32, 9)


@seeded_builder
def build_mochi() -> tuple[DiffusionPipeline, dict[str, Any]]:
    """MochiPipeline with a tiny T5; CFG as one batched pass, negative first."""
    tokenizer = t5_tokenizer()
    transformer = MochiTransformer3DModel(
        patch_size=2,
        num_attention_heads=2,
        attention_head_dim=8,
        num_layers=2,
        pooled_projection_dim=16,
        in_channels=12,
        out_channels=None,
        qk_norm="rms_norm",
        text_embed_dim=T5_WIDTH,
        time_embed_dim=4,
        activation_fn="swiglu",
        max_sequence_length=T5_MAX_LENGTH,
    )
    with torch.no_grad():
        transformer.pos_frequencies.zero_()
    autoencoder = AutoencoderKLMochi(
        latent_channels=12,
        out_channels=3,
        encoder_block_out_channels=(32, 32, 32, 32),
        decoder_block_out_channels=(32, 32, 32, 32),
        layers_per_block=(1, 1, 1, 1, 1),
    )
    pipe = MochiPipeline(
        scheduler=FlowMatchEulerDiscreteScheduler(),
        vae=autoencoder,
        text_encoder=t5_encoder(T5_WIDTH, vocab_size=len(tokenizer)),
        tokenizer=tokenizer,
        transformer=transformer,
    )
    return finish(pipe), _latent_call({"guidance_scale": 4.5}, 16, 7)


# ------------------------------------------------------------------------------------------ HunyuanVideo

# A short Llama-style system/user template; `crop_start` (the system-part length) is counted per tokenizer.
_HUNYUAN_TEMPLATE = "<|im_start|>system\nDescribe the video.<|im_end|>\n<|im_start|>user\n{}<|im_end|>"


def _hunyuan_text_encoders(llama_vocab: int, clip_vocab: int) -> tuple[LlamaModel, CLIPTextModel]:
    llama = LlamaModel(
        LlamaConfig(
            vocab_size=llama_vocab,
            hidden_size=16,
            intermediate_size=37,
            num_attention_heads=4,
            num_hidden_layers=3,  # the pipeline reads hidden_states[-3]: skip two layers, keep one
            pad_token_id=0,
            hidden_act="gelu",
        )
    )
    clip = clip_text_encoder(
        8, vocab_size=clip_vocab, intermediate_size=37, hidden_act="gelu", projection_dim=32
    )
    return llama, clip


@seeded_builder
def build_hunyuan_video() -> tuple[DiffusionPipeline, dict[str, Any]]:
    """HunyuanVideoPipeline (Llama + CLIP); true CFG (separate negative pass) through `true_cfg_scale`."""
    tokenizer = chat_tokenizer()
    tokenizer_2 = clip_tokenizer(model_max_length=77)
    transformer = HunyuanVideoTransformer3DModel(
        in_channels=4,
        out_channels=4,
        num_attention_heads=2,
        attention_head_dim=10,
        num_layers=1,
        num_single_layers=1,
        num_refiner_layers=1,
        patch_size=1,
        patch_size_t=1,
        guidance_embeds=True,
        text_embed_dim=16,
        pooled_projection_dim=8,
        rope_axes_dim=(2, 4, 4),
    )
    autoencoder = AutoencoderKLHunyuanVideo(
        in_channels=3,
        out_channels=3,
        latent_channels=4,
        down_block_types=("HunyuanVideoDownBlock3D",) * 4,
        up_block_types=("HunyuanVideoUpBlock3D",) * 4,
        block_out_channels=(8, 8, 8, 8),
        layers_per_block=1,
        act_fn="silu",
        norm_num_groups=4,
        scaling_factor=0.476986,
        spatial_compression_ratio=8,
        temporal_compression_ratio=4,
        mid_block_add_attention=True,
    )
    text_encoder, text_encoder_2 = _hunyuan_text_encoders(len(tokenizer), len(tokenizer_2))
    pipe = HunyuanVideoPipeline(
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        transformer=transformer,
        vae=autoencoder,
        scheduler=FlowMatchEulerDiscreteScheduler(shift=7.0),
        text_encoder_2=text_encoder_2,
        tokenizer_2=tokenizer_2,
    )
    crop_start = count_tokens(tokenizer, _HUNYUAN_TEMPLATE.split("{}")[0])
    kwargs = _latent_call(
        {"true_cfg_scale": 2.0, "guidance_scale": 4.5},  # guidance_scale: embedded (distilled), not CFG
        16,
        5,
        prompt_template={"template": _HUNYUAN_TEMPLATE, "crop_start": crop_start},
    )
    return finish(pipe), kwargs


BUILDERS: dict[str, Builder] = {
    "cogvideox": build_cogvideox,
    "wan": build_wan,
    "ltx_video": build_ltx_video,
    "hunyuan_video": build_hunyuan_video,
    "mochi": build_mochi,
}

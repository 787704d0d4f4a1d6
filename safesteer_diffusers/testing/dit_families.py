"""Tiny, randomly initialised DiT-family pipelines (image and video) built entirely in code.

`BUILDERS[name]()` returns `(pipe, call_kwargs)`: a fresh pipeline on CPU in float32 with deterministic
weights (seeded inside the builder; the caller's global RNG state is left untouched) and its progress bar off,
and the keyword arguments for a fast call, to be completed with `prompt`, `negative_prompt` and `generator`:
two steps, a tiny resolution / frame count, `output_type="latent"`, `max_sequence_length=32` and
classifier-free guidance on (`guidance_scale > 1`, or `true_cfg_scale > 1` for the "true CFG" pipelines, which
only run the negative branch when a negative prompt is given).

Component sizes follow diffusers' `get_dummy_components()` tests; models those tests load from the Hub are
built from configs here, with the byte-level tokenizers of `tokenizers.py`. Token offsets that a pipeline
hard-codes for its real tokenizer (Qwen-Image's system-prompt drop index, HunyuanVideo's `crop_start`) are
recounted for the byte-level tokenizer. Denoiser text context for one prompt (B = batch x per-prompt count):

| family          | text encoder (hidden)        | denoiser text context; CFG layout                      |
| --------------- | ---------------------------- | ------------------------------------------------------ |
| `qwen_image`    | Qwen2.5-VL 16                | (B, L, 16), mask or None; separate cond/uncond passes  |
| `z_image`       | Qwen3 16 (hidden_states[-2]) | list of 2B (L_i, 16), unpadded; one pass, positive 1st |
| `cogvideox`     | T5 32                        | (2B, 32, 32); one pass, negative first                 |
| `wan`           | UMT5 32                      | (B, 32, 32), zero-padded; separate cond/uncond passes  |
| `ltx_video`     | T5 32                        | (2B, 32, 32) + bool mask; one pass, negative first     |
| `hunyuan_video` | Llama 16 + CLIP 8 (pooled)   | (B, 32, 16) + mask, pooled (B, 8); separate passes     |
| `sana`          | Gemma2 8                     | (2B, 32, 8) + mask; one pass, negative first           |
| `mochi`         | T5 32                        | (2B, 32, 32) + bool mask; one pass, negative first     |

CogVideoX ignores `num_videos_per_prompt` (the pipeline forces it to 1).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import torch
from diffusers import (
    AutoencoderDC,
    AutoencoderKL,
    AutoencoderKLCogVideoX,
    AutoencoderKLHunyuanVideo,
    AutoencoderKLLTXVideo,
    AutoencoderKLMochi,
    AutoencoderKLQwenImage,
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
    QwenImagePipeline,
    QwenImageTransformer2DModel,
    SanaPipeline,
    SanaTransformer2DModel,
    WanPipeline,
    WanTransformer3DModel,
    ZImagePipeline,
    ZImageTransformer2DModel,
)
from tokenizers import processors
from transformers import (
    CLIPTextConfig,
    CLIPTextModel,
    Gemma2Config,
    Gemma2Model,
    LlamaConfig,
    LlamaModel,
    PreTrainedTokenizerBase,
    PreTrainedTokenizerFast,
    Qwen2_5_VLConfig,
    Qwen2_5_VLForConditionalGeneration,
    Qwen3Config,
    Qwen3Model,
    T5Config,
    T5EncoderModel,
    UMT5Config,
    UMT5EncoderModel,
)

from .tokenizers import chat_tokenizer, clip_tokenizer, t5_tokenizer

Builder = Callable[[], tuple[DiffusionPipeline, dict[str, Any]]]

# Width of every T5/UMT5 encoder below; the denoisers' text projections take this as input size.
_T5_DIM = 32
# Text length used by all pipelines that take `max_sequence_length`. Tokens are single bytes, so this is
# roughly the number of prompt characters that reach the text encoder.
_MAX_SEQ = 32


# --------------------------------------------------------------------------------------------- helpers


def _seeded(builder: Builder) -> Builder:
    """Run `builder` under `torch.manual_seed(0)` without disturbing the caller's global RNG state."""

    @functools.wraps(builder)
    def wrapper() -> tuple[DiffusionPipeline, dict[str, Any]]:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            return builder()

    return wrapper


def _finish(pipe: DiffusionPipeline) -> DiffusionPipeline:
    """Put every model in eval mode (no dropout) and turn the progress bar off."""
    for component in pipe.components.values():
        if isinstance(component, torch.nn.Module):
            component.eval()
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _num_tokens(tokenizer: PreTrainedTokenizerBase, text: str) -> int:
    return len(tokenizer(text, add_special_tokens=False).input_ids)


def _bos_tokenizer(model_max_length: int = 1024) -> PreTrainedTokenizerFast:
    """The chat tokenizer, but prepending its BOS token to every sequence like Gemma's tokenizer does."""
    base = chat_tokenizer(model_max_length=model_max_length)
    backend = base.backend_tokenizer
    bos = base.bos_token
    backend.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A", pair=f"{bos} $A $B", special_tokens=[(bos, base.bos_token_id)]
    )
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        pad_token=base.pad_token,
        eos_token=base.eos_token,
        bos_token=bos,
        model_max_length=model_max_length,
        padding_side="right",
    )
    tokenizer.chat_template = base.chat_template
    return tokenizer


def _t5_encoder(vocab_size: int) -> T5EncoderModel:
    config = T5Config(
        vocab_size=vocab_size,
        d_model=_T5_DIM,
        d_kv=8,
        d_ff=37,
        num_layers=2,
        num_heads=4,
        relative_attention_num_buckets=8,
        dropout_rate=0.0,
    )
    return T5EncoderModel(config)


def _umt5_encoder(vocab_size: int) -> UMT5EncoderModel:
    config = UMT5Config(
        vocab_size=vocab_size,
        d_model=_T5_DIM,
        d_kv=8,
        d_ff=37,
        num_layers=2,
        num_heads=4,
        relative_attention_num_buckets=8,
        dropout_rate=0.0,
    )
    return UMT5EncoderModel(config)


# ------------------------------------------------------------------------------------------ Qwen-Image


def _qwen_vl_encoder(tokenizer: PreTrainedTokenizerBase, hidden: int) -> Qwen2_5_VLForConditionalGeneration:
    vocab_size = len(tokenizer)
    # The vision-token ids only have to lie inside the vocabulary; byte-level prompts never produce them.
    vision_ids = {
        "vision_start_token_id": vocab_size,
        "vision_end_token_id": vocab_size + 1,
        "vision_token_id": vocab_size + 2,
        "image_token_id": vocab_size + 3,
        "video_token_id": vocab_size + 4,
    }
    config = Qwen2_5_VLConfig(
        text_config={
            "vocab_size": vocab_size + 5,
            "bos_token_id": tokenizer.bos_token_id,
            "eos_token_id": tokenizer.eos_token_id,
            "pad_token_id": tokenizer.pad_token_id,
            "hidden_size": hidden,
            "intermediate_size": hidden,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "num_key_value_heads": 2,
            "rope_parameters": {"rope_type": "default", "rope_theta": 1000000.0, "mrope_section": [1, 1, 2]},
        },
        vision_config={
            "depth": 1,
            "hidden_size": 16,
            "intermediate_size": 16,
            "num_heads": 2,
            "out_hidden_size": 16,
        },
        **vision_ids,
    )
    return Qwen2_5_VLForConditionalGeneration(config)


@_seeded
def build_qwen_image() -> tuple[DiffusionPipeline, dict[str, Any]]:
    """QwenImagePipeline; true CFG (separate negative pass) through `true_cfg_scale`."""
    hidden = 16
    tokenizer = chat_tokenizer()
    transformer = QwenImageTransformer2DModel(
        patch_size=2,
        in_channels=16,
        out_channels=4,
        num_layers=2,
        attention_head_dim=16,
        num_attention_heads=2,
        joint_attention_dim=hidden,
        guidance_embeds=False,
        axes_dims_rope=(8, 4, 4),
    )
    vae = AutoencoderKLQwenImage(
        base_dim=24,
        z_dim=4,
        dim_mult=[1, 2, 4],
        num_res_blocks=1,
        temperal_downsample=[False, True],
        latents_mean=[0.0] * 4,
        latents_std=[1.0] * 4,
    )
    pipe = QwenImagePipeline(
        transformer=transformer,
        vae=vae,
        scheduler=FlowMatchEulerDiscreteScheduler(),
        text_encoder=_qwen_vl_encoder(tokenizer, hidden),
        tokenizer=tokenizer,
    )
    # The pipeline drops the system-prompt tokens by a fixed count (34) valid for the real Qwen tokenizer;
    # recount them for the byte-level tokenizer so only the user prompt (plus template suffix) remains.
    system_prefix = pipe.prompt_template_encode.split("{}")[0]
    pipe.prompt_template_encode_start_idx = _num_tokens(tokenizer, system_prefix)
    kwargs = {
        "num_inference_steps": 2,
        "true_cfg_scale": 4.0,
        "height": 16,
        "width": 16,
        "max_sequence_length": _MAX_SEQ,
        "output_type": "latent",
    }
    return _finish(pipe), kwargs


# -------------------------------------------------------------------------------------------- Z-Image


@_seeded
def build_z_image() -> tuple[DiffusionPipeline, dict[str, Any]]:
    """ZImagePipeline with a tiny Qwen3 text encoder; CFG as one batched pass over lists (positive first)."""
    hidden = 16
    tokenizer = chat_tokenizer()
    transformer = ZImageTransformer2DModel(
        all_patch_size=(2,),
        all_f_patch_size=(1,),
        in_channels=16,
        dim=32,
        n_layers=2,
        n_refiner_layers=1,
        n_heads=2,
        n_kv_heads=2,
        norm_eps=1e-5,
        qk_norm=True,
        cap_feat_dim=hidden,
        rope_theta=256.0,
        t_scale=1000.0,
        axes_dims=[8, 4, 4],
        axes_lens=[256, 32, 32],
    )
    # The pad tokens are created with `torch.empty`; give them defined values.
    with torch.no_grad():
        transformer.x_pad_token.fill_(1.0)
        transformer.cap_pad_token.fill_(1.0)
    vae = AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=["DownEncoderBlock2D", "DownEncoderBlock2D"],
        up_block_types=["UpDecoderBlock2D", "UpDecoderBlock2D"],
        block_out_channels=[32, 64],
        layers_per_block=1,
        latent_channels=16,
        norm_num_groups=32,
        sample_size=32,
        scaling_factor=0.3611,
        shift_factor=0.1159,
    )
    text_encoder = Qwen3Model(
        Qwen3Config(
            vocab_size=len(tokenizer),
            hidden_size=hidden,
            intermediate_size=hidden,
            num_hidden_layers=2,
            num_attention_heads=2,
            num_key_value_heads=2,
            head_dim=8,
            max_position_embeddings=512,
        )
    )
    pipe = ZImagePipeline(
        transformer=transformer,
        vae=vae,
        scheduler=FlowMatchEulerDiscreteScheduler(),
        text_encoder=text_encoder,
        tokenizer=tokenizer,
    )
    kwargs = {
        "num_inference_steps": 2,
        "guidance_scale": 3.0,
        "height": 32,
        "width": 32,
        "max_sequence_length": _MAX_SEQ,
        "output_type": "latent",
    }
    return _finish(pipe), kwargs


# ------------------------------------------------------------------------------------------- CogVideoX


@_seeded
def build_cogvideox() -> tuple[DiffusionPipeline, dict[str, Any]]:
    """CogVideoXPipeline with a tiny T5; CFG as one batched pass, negative first."""
    tokenizer = t5_tokenizer()
    transformer = CogVideoXTransformer3DModel(
        num_attention_heads=4,
        attention_head_dim=8,
        in_channels=4,
        out_channels=4,
        time_embed_dim=2,
        text_embed_dim=_T5_DIM,
        num_layers=1,
        sample_width=2,
        sample_height=2,
        sample_frames=9,
        patch_size=2,
        temporal_compression_ratio=4,
        max_text_seq_length=_MAX_SEQ,
    )
    block = "CogVideoXDownBlock3D"
    vae = AutoencoderKLCogVideoX(
        in_channels=3,
        out_channels=3,
        down_block_types=(block,) * 4,
        up_block_types=("CogVideoXUpBlock3D",) * 4,
        block_out_channels=(8, 8, 8, 8),
        latent_channels=4,
        layers_per_block=1,
        norm_num_groups=2,
        temporal_compression_ratio=4,
    )
    pipe = CogVideoXPipeline(
        tokenizer=tokenizer,
        text_encoder=_t5_encoder(len(tokenizer)),
        vae=vae,
        transformer=transformer,
        scheduler=CogVideoXDDIMScheduler(),
    )
    kwargs = {
        "num_inference_steps": 2,
        "guidance_scale": 6.0,
        "height": 16,
        "width": 16,
        "num_frames": 8,
        "max_sequence_length": _MAX_SEQ,
        "output_type": "latent",
    }
    return _finish(pipe), kwargs


# ------------------------------------------------------------------------------------------------ Wan


@_seeded
def build_wan() -> tuple[DiffusionPipeline, dict[str, Any]]:
    """WanPipeline (2.1 text-to-video) with a tiny UMT5; CFG as two separate transformer passes."""
    tokenizer = t5_tokenizer()
    vae = AutoencoderKLWan(
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
        text_dim=_T5_DIM,
        freq_dim=256,
        ffn_dim=32,
        num_layers=2,
        cross_attn_norm=True,
        qk_norm="rms_norm_across_heads",
        rope_max_seq_len=32,
    )
    pipe = WanPipeline(
        tokenizer=tokenizer,
        text_encoder=_umt5_encoder(len(tokenizer)),
        vae=vae,
        transformer=transformer,
        scheduler=FlowMatchEulerDiscreteScheduler(shift=7.0),
    )
    kwargs = {
        "num_inference_steps": 2,
        "guidance_scale": 5.0,
        "height": 16,
        "width": 16,
        "num_frames": 5,
        "max_sequence_length": _MAX_SEQ,
        "output_type": "latent",
    }
    return _finish(pipe), kwargs


# ------------------------------------------------------------------------------------------ LTX-Video


@_seeded
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
        caption_channels=_T5_DIM,
    )
    vae = AutoencoderKLLTXVideo(
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
    vae.use_framewise_encoding = False
    vae.use_framewise_decoding = False
    pipe = LTXPipeline(
        scheduler=FlowMatchEulerDiscreteScheduler(),
        vae=vae,
        text_encoder=_t5_encoder(len(tokenizer)),
        tokenizer=tokenizer,
        transformer=transformer,
    )
    kwargs = {
        "num_inference_steps": 2,
        "guidance_scale": 3.0,
        "height": 32,
        "width": 32,
        "num_frames": 9,
        "max_sequence_length": _MAX_SEQ,
        "output_type": "latent",
    }
    return _finish(pipe), kwargs


# -------------------------------------------------------------------------------------- HunyuanVideo

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
    clip = CLIPTextModel(
        CLIPTextConfig(
            vocab_size=clip_vocab,
            bos_token_id=clip_vocab - 2,
            eos_token_id=clip_vocab - 1,
            pad_token_id=clip_vocab - 1,
            hidden_size=8,
            intermediate_size=37,
            num_attention_heads=4,
            num_hidden_layers=2,
            hidden_act="gelu",
            projection_dim=32,
        )
    )
    return llama, clip


@_seeded
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
    vae = AutoencoderKLHunyuanVideo(
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
        vae=vae,
        scheduler=FlowMatchEulerDiscreteScheduler(shift=7.0),
        text_encoder_2=text_encoder_2,
        tokenizer_2=tokenizer_2,
    )
    crop_start = _num_tokens(tokenizer, _HUNYUAN_TEMPLATE.split("{}")[0])
    kwargs = {
        "num_inference_steps": 2,
        "true_cfg_scale": 2.0,
        "guidance_scale": 4.5,  # embedded (distilled) guidance, not CFG
        "height": 16,
        "width": 16,
        "num_frames": 5,
        "prompt_template": {"template": _HUNYUAN_TEMPLATE, "crop_start": crop_start},
        "max_sequence_length": _MAX_SEQ,
        "output_type": "latent",
    }
    return _finish(pipe), kwargs


# ----------------------------------------------------------------------------------------------- Sana


@_seeded
def build_sana() -> tuple[DiffusionPipeline, dict[str, Any]]:
    """SanaPipeline with a tiny Gemma2 encoder; CFG as one batched pass, negative first."""
    tokenizer = _bos_tokenizer()
    transformer = SanaTransformer2DModel(
        patch_size=1,
        in_channels=4,
        out_channels=4,
        num_layers=1,
        num_attention_heads=2,
        attention_head_dim=4,
        num_cross_attention_heads=2,
        cross_attention_head_dim=4,
        cross_attention_dim=8,
        caption_channels=8,
        sample_size=32,
    )
    vae = AutoencoderDC(
        in_channels=3,
        latent_channels=4,
        attention_head_dim=2,
        encoder_block_types=("ResBlock", "EfficientViTBlock"),
        decoder_block_types=("ResBlock", "EfficientViTBlock"),
        encoder_block_out_channels=(8, 8),
        decoder_block_out_channels=(8, 8),
        encoder_qkv_multiscales=((), (5,)),
        decoder_qkv_multiscales=((), (5,)),
        encoder_layers_per_block=(1, 1),
        decoder_layers_per_block=[1, 1],
        downsample_block_type="conv",
        upsample_block_type="interpolate",
        decoder_norm_types="rms_norm",
        decoder_act_fns="silu",
        scaling_factor=0.41407,
    )
    text_encoder = Gemma2Model(
        Gemma2Config(
            vocab_size=len(tokenizer),
            hidden_size=8,
            intermediate_size=64,
            head_dim=16,
            num_attention_heads=2,
            num_key_value_heads=2,
            num_hidden_layers=1,
            max_position_embeddings=8192,
            pad_token_id=tokenizer.pad_token_id,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            attn_implementation="eager",
        )
    )
    pipe = SanaPipeline(
        tokenizer=tokenizer,
        text_encoder=text_encoder,
        vae=vae,
        transformer=transformer,
        scheduler=FlowMatchEulerDiscreteScheduler(shift=7.0),
    )
    kwargs = {
        "num_inference_steps": 2,
        "guidance_scale": 4.5,
        "height": 32,
        "width": 32,
        "max_sequence_length": _MAX_SEQ,
        "complex_human_instruction": None,  # the default ~1 kB instruction preamble only slows the encoder
        "use_resolution_binning": False,  # binning would map 32x32 up to the 1024x1024 aspect-ratio bin
        "output_type": "latent",
    }
    return _finish(pipe), kwargs


# ---------------------------------------------------------------------------------------------- Mochi


@_seeded
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
        text_embed_dim=_T5_DIM,
        time_embed_dim=4,
        activation_fn="swiglu",
        max_sequence_length=_MAX_SEQ,
    )
    with torch.no_grad():
        transformer.pos_frequencies.zero_()
    vae = AutoencoderKLMochi(
        latent_channels=12,
        out_channels=3,
        encoder_block_out_channels=(32, 32, 32, 32),
        decoder_block_out_channels=(32, 32, 32, 32),
        layers_per_block=(1, 1, 1, 1, 1),
    )
    pipe = MochiPipeline(
        scheduler=FlowMatchEulerDiscreteScheduler(),
        vae=vae,
        text_encoder=_t5_encoder(len(tokenizer)),
        tokenizer=tokenizer,
        transformer=transformer,
    )
    kwargs = {
        "num_inference_steps": 2,
        "guidance_scale": 4.5,
        "height": 16,
        "width": 16,
        "num_frames": 7,
        "max_sequence_length": _MAX_SEQ,
        "output_type": "latent",
    }
    return _finish(pipe), kwargs


BUILDERS: dict[str, Builder] = {
    "qwen_image": build_qwen_image,
    "z_image": build_z_image,
    "cogvideox": build_cogvideox,
    "wan": build_wan,
    "ltx_video": build_ltx_video,
    "hunyuan_video": build_hunyuan_video,
    "sana": build_sana,
    "mochi": build_mochi,
}

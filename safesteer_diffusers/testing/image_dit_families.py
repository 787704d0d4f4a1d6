"""Tiny pipelines of the text-to-image DiT families (SD3, Flux, PixArt-Sigma, Qwen-Image, Z-Image, Sana), and
the Flux layout that the named demo pipeline ``"flux"`` reuses.

`BUILDERS[name]()` returns `(pipe, call_kwargs)`: a fresh pipeline on CPU in float32 with deterministic
weights (drawn under seed 0; the caller's global RNG state is left untouched) and its progress bar off, and
the keyword arguments for a fast call with classifier-free guidance on (`guidance_scale > 1`, or
`true_cfg_scale > 1` for the "true CFG" pipelines, which only run the negative branch when a negative prompt
is given), to be completed with `prompt`, `negative_prompt` and `generator`. SD3, Flux and PixArt decode
32 px images (`output_type="np"`); the others return latents.

Component sizes of the LLM-encoder families follow diffusers' `get_dummy_components()` tests; models those
tests load from the Hub are built from configs here, with the byte-level tokenizers of `tokenizers.py`.
Qwen-Image's system-prompt drop index, hard-coded for the real tokenizer, is recounted for the byte-level
one. Denoiser text context for one prompt (B = batch x per-prompt count):

| family         | text encoders (hidden)       | denoiser text context; CFG layout                      |
| -------------- | ---------------------------- | ------------------------------------------------------ |
| `sd3`          | CLIP-L 32 + CLIP-G 48, T5 96 | (2B, 77 + 32, 96), pooled 80; one pass, negative first |
| `flux`         | CLIP 32 (pooled only), T5 48 | (B, 32, 48), pooled 32; separate negative pass         |
| `pixart_sigma` | T5 32                        | (2B, 32, 32) + mask; one pass, negative first          |
| `qwen_image`   | Qwen2.5-VL 16                | (B, L, 16), mask or None; separate cond/uncond passes  |
| `z_image`      | Qwen3 16 (hidden_states[-2]) | list of 2B (L_i, 16), unpadded; one pass, positive 1st |
| `sana`         | Gemma2 8                     | (2B, 32, 8) + mask; one pass, negative first           |
"""

from __future__ import annotations

from typing import Any

import torch
from diffusers import (
    AutoencoderDC,
    AutoencoderKLQwenImage,
    DiffusionPipeline,
    FlowMatchEulerDiscreteScheduler,
    FluxPipeline,
    FluxTransformer2DModel,
    PixArtSigmaPipeline,
    PixArtTransformer2DModel,
    QwenImagePipeline,
    QwenImageTransformer2DModel,
    SanaPipeline,
    SanaTransformer2DModel,
    SD3Transformer2DModel,
    StableDiffusion3Pipeline,
    ZImagePipeline,
    ZImageTransformer2DModel,
)
from transformers import (
    Gemma2Config,
    Gemma2Model,
    PreTrainedTokenizerBase,
    Qwen2_5_VLConfig,
    Qwen2_5_VLForConditionalGeneration,
    Qwen3Config,
    Qwen3Model,
)

from .components import (
    SIZE,
    T5_MAX_LENGTH,
    Builder,
    call_kwargs,
    clip_text_encoder,
    clip_text_encoder_with_projection,
    ddim,
    finish,
    flow_vae,
    gated_t5_encoder,
    seeded_builder,
    vae,
)
from .tokenizers import bos_chat_tokenizer, chat_tokenizer, clip_tokenizer, count_tokens, t5_tokenizer


def _decoded_call(guidance_scale: float, **extra: Any) -> dict[str, Any]:
    return call_kwargs(SIZE, guidance_scale=guidance_scale, output_type="np", **extra)


def _latent_call(guidance: dict[str, float], size: int, **extra: Any) -> dict[str, Any]:
    return call_kwargs(
        size, guidance=guidance, max_sequence_length=T5_MAX_LENGTH, **extra, output_type="latent"
    )


# ---------------------------------------------------------------------------------- CLIP / T5 encoders


@seeded_builder
def build_sd3() -> tuple[DiffusionPipeline, dict]:
    """SD3: CLIP-L (32) and CLIP-G (48) penultimate states concatenated (80), zero-padded to the T5 width
    (96 = joint_attention_dim) and stacked before the T5 tokens along the sequence; pooled = 32 + 48."""
    transformer = SD3Transformer2DModel(
        sample_size=SIZE // 2,
        patch_size=2,
        in_channels=4,
        out_channels=4,
        num_layers=2,
        attention_head_dim=8,
        num_attention_heads=4,
        joint_attention_dim=96,
        caption_projection_dim=32,
        pooled_projection_dim=32 + 48,
        pos_embed_max_size=16,
    ).eval()
    autoencoder = flow_vae()
    text_encoder = clip_text_encoder_with_projection(32)
    text_encoder_2 = clip_text_encoder_with_projection(48)
    text_encoder_3 = gated_t5_encoder(96)
    pipe = StableDiffusion3Pipeline(
        transformer=transformer,
        scheduler=FlowMatchEulerDiscreteScheduler(shift=3.0),
        vae=autoencoder,
        text_encoder=text_encoder,
        tokenizer=clip_tokenizer(),
        text_encoder_2=text_encoder_2,
        tokenizer_2=clip_tokenizer(),
        text_encoder_3=text_encoder_3,
        tokenizer_3=t5_tokenizer(T5_MAX_LENGTH),
    )
    return finish(pipe), _decoded_call(5.0, max_sequence_length=T5_MAX_LENGTH)


def flux(size: int = SIZE) -> FluxPipeline:
    """The FLUX.1-dev layout: T5 states (48) are the context, CLIP's pooled output (32) the pooled
    projection, with a guidance embedding; true CFG runs a separate negative pass when
    `true_cfg_scale > 1`."""
    transformer = FluxTransformer2DModel(
        patch_size=1,
        in_channels=16,  # 4 latent channels packed 2x2
        num_layers=1,
        num_single_layers=1,
        attention_head_dim=16,
        num_attention_heads=2,
        joint_attention_dim=48,
        pooled_projection_dim=32,
        guidance_embeds=True,
        axes_dims_rope=(4, 4, 8),
    ).eval()
    autoencoder = flow_vae(sample_size=size)
    text_encoder = clip_text_encoder(32)
    text_encoder_2 = gated_t5_encoder(48)
    return FluxPipeline(
        scheduler=FlowMatchEulerDiscreteScheduler(),
        vae=autoencoder,
        text_encoder=text_encoder,
        tokenizer=clip_tokenizer(),
        text_encoder_2=text_encoder_2,
        tokenizer_2=t5_tokenizer(T5_MAX_LENGTH),
        transformer=transformer,
    )


@seeded_builder
def build_flux() -> tuple[DiffusionPipeline, dict]:
    """FLUX.1-dev-like (see :func:`flux`), called with true CFG on."""
    return finish(flux()), _decoded_call(3.5, true_cfg_scale=2.0, max_sequence_length=T5_MAX_LENGTH)


@seeded_builder
def build_pixart_sigma() -> tuple[DiffusionPipeline, dict]:
    """PixArt-Sigma: T5 states (32) with their attention mask, projected by the DiT's caption projection;
    the DiT predicts noise and a learned variance (8 = 2 x 4 output channels)."""
    transformer = PixArtTransformer2DModel(
        sample_size=SIZE // 2,
        num_layers=2,
        patch_size=2,
        attention_head_dim=8,
        num_attention_heads=4,
        caption_channels=32,
        in_channels=4,
        out_channels=8,
        cross_attention_dim=32,
        attention_bias=True,
        activation_fn="gelu-approximate",
        num_embeds_ada_norm=1000,
        norm_type="ada_norm_single",
        norm_elementwise_affine=False,
        norm_eps=1e-6,
    ).eval()
    autoencoder = vae()
    text_encoder = gated_t5_encoder(32)
    pipe = PixArtSigmaPipeline(
        tokenizer=t5_tokenizer(T5_MAX_LENGTH),
        text_encoder=text_encoder,
        vae=autoencoder,
        transformer=transformer,
        scheduler=ddim(),
    )
    kwargs = _decoded_call(
        4.5, max_sequence_length=T5_MAX_LENGTH, use_resolution_binning=False, clean_caption=False
    )
    return finish(pipe), kwargs


# ------------------------------------------------------------------------------------------- LLM encoders


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


@seeded_builder
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
    autoencoder = AutoencoderKLQwenImage(
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
        vae=autoencoder,
        scheduler=FlowMatchEulerDiscreteScheduler(),
        text_encoder=_qwen_vl_encoder(tokenizer, hidden),
        tokenizer=tokenizer,
    )
    # The pipeline drops the system-prompt tokens by a fixed count (34) valid for the real Qwen tokenizer;
    # recount them for the byte-level tokenizer so only the user prompt (plus template suffix) remains.
    system_prefix = pipe.prompt_template_encode.split("{}")[0]
    pipe.prompt_template_encode_start_idx = count_tokens(tokenizer, system_prefix)
    return finish(pipe), _latent_call({"true_cfg_scale": 4.0}, 16)


@seeded_builder
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
    autoencoder = vae(
        block_out_channels=(32, 64),
        latent_channels=16,
        norm_num_groups=32,
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
        vae=autoencoder,
        scheduler=FlowMatchEulerDiscreteScheduler(),
        text_encoder=text_encoder,
        tokenizer=tokenizer,
    )
    return finish(pipe), _latent_call({"guidance_scale": 3.0}, 32)


@seeded_builder
def build_sana() -> tuple[DiffusionPipeline, dict[str, Any]]:
    """SanaPipeline with a tiny Gemma2 encoder; CFG as one batched pass, negative first."""
    tokenizer = bos_chat_tokenizer()
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
    autoencoder = AutoencoderDC(
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
        vae=autoencoder,
        transformer=transformer,
        scheduler=FlowMatchEulerDiscreteScheduler(shift=7.0),
    )
    kwargs = _latent_call(
        {"guidance_scale": 4.5},
        32,
        complex_human_instruction=None,  # the default ~1 kB instruction preamble only slows the encoder
        use_resolution_binning=False,  # binning would map 32x32 up to the 1024x1024 aspect-ratio bin
    )
    return finish(pipe), kwargs


BUILDERS: dict[str, Builder] = {
    "sd3": build_sd3,
    "flux": build_flux,
    "pixart_sigma": build_pixart_sigma,
    "qwen_image": build_qwen_image,
    "z_image": build_z_image,
    "sana": build_sana,
}

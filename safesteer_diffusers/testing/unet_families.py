"""Tiny, randomly initialised diffusers pipelines for the denoiser families that safesteer supports.

Every pipeline is built in code (no Hub access): text encoders from small transformers configs, the local
byte-level tokenizers from `tokenizers.py`, and a few-channel VAE and denoiser. Weights are seeded inside
each builder (the caller's global RNG state is left untouched), so two builds give identical pipelines.

`BUILDERS[name]()` returns `(pipe, call_kwargs)`: the pipeline on CPU in float32 with its progress bar off,
and the keyword arguments for a fast call with classifier-free guidance on, to be completed with `prompt`,
`negative_prompt` and `generator`.

The text hidden sizes differ between encoders on purpose, so a wrong concatenation or a swapped encoder
shows up as a shape error:

| family         | text encoders (hidden size)                     | denoiser context                      |
| -------------- | ----------------------------------------------- | ------------------------------------- |
| `sd`           | CLIP 32                                         | UNet, (B, 77, 32)                     |
| `sd2`          | CLIP 48 (v-prediction scheduler)                | UNet, (B, 77, 48)                     |
| `sdxl`         | CLIP 32 + CLIP-with-projection 48 (proj. 40)    | UNet, (B, 77, 80); pooled (B, 40)     |
| `sd3`          | CLIP-L 32 + CLIP-G 48, T5 96                    | MMDiT, (B, 77 + 32, 96); pooled 80    |
| `flux`         | CLIP 32 (pooled only), T5 48                    | Flux DiT, (B, 32, 48); pooled 32      |
| `animatediff`  | CLIP 32                                         | UNetMotionModel, (B, 77, 32)          |
| `pixart_sigma` | T5 32                                           | PixArt DiT, (B, 32, 32) + mask        |

CFG layout: every family except Flux runs one denoiser pass on `cat([negative, positive])` (AnimateDiff then
repeats each row once per frame); Flux runs a second, separate pass for the negative prompt.
AnimateDiff accepts `num_images_per_prompt` only through `**kwargs` and ignores it, and it resets
`num_videos_per_prompt` to 1, so it always makes one video per prompt.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch
from diffusers import (
    AnimateDiffPipeline,
    AutoencoderKL,
    DDIMScheduler,
    DiffusionPipeline,
    EulerDiscreteScheduler,
    FlowMatchEulerDiscreteScheduler,
    FluxPipeline,
    FluxTransformer2DModel,
    MotionAdapter,
    PixArtSigmaPipeline,
    PixArtTransformer2DModel,
    SD3Transformer2DModel,
    StableDiffusion3Pipeline,
    StableDiffusionPipeline,
    StableDiffusionXLPipeline,
    UNet2DConditionModel,
    UNetMotionModel,
)
from diffusers.utils import logging as diffusers_logging
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection, T5Config, T5EncoderModel

from .tokenizers import clip_tokenizer, t5_tokenizer

Builder = Callable[[], tuple[DiffusionPipeline, dict]]

CLIP_VOCAB_SIZE = 1000  # the byte-level CLIP tokenizer uses ids 0..513
CLIP_BOS_ID, CLIP_EOS_ID = 512, 513  # padding is EOS too; CLIP pools at the first EOS
T5_VOCAB_SIZE = 320  # the byte-level T5 tokenizer uses ids 0..258
T5_MAX_LENGTH = 32  # `max_sequence_length` passed to the T5-based pipelines
SIZE = 32  # image height and width in pixels; every VAE below downsamples by 2
STEPS = 2

# --------------------------------------------------------------------------------------------- components


@contextmanager
def _quiet_diffusers() -> Iterator[None]:
    """Hide diffusers' warnings (e.g. the dtype-cast notice of `UNetMotionModel.from_unet2d`)."""
    verbosity = diffusers_logging.get_verbosity()
    diffusers_logging.set_verbosity_error()
    try:
        yield
    finally:
        diffusers_logging.set_verbosity(verbosity)


def _clip_config(
    hidden_size: int, projection_dim: int | None = None, hidden_act: str = "quick_gelu"
) -> CLIPTextConfig:
    return CLIPTextConfig(
        vocab_size=CLIP_VOCAB_SIZE,
        hidden_size=hidden_size,
        intermediate_size=2 * hidden_size,
        projection_dim=projection_dim or hidden_size,
        num_hidden_layers=2,
        num_attention_heads=4,
        max_position_embeddings=77,
        hidden_act=hidden_act,
        layer_norm_eps=1e-5,
        bos_token_id=CLIP_BOS_ID,
        eos_token_id=CLIP_EOS_ID,
        pad_token_id=CLIP_EOS_ID,
    )


def _clip(hidden_size: int, hidden_act: str = "quick_gelu") -> CLIPTextModel:
    return CLIPTextModel(_clip_config(hidden_size, hidden_act=hidden_act)).eval()


def _clip_with_projection(hidden_size: int, projection_dim: int | None = None) -> CLIPTextModelWithProjection:
    return CLIPTextModelWithProjection(_clip_config(hidden_size, projection_dim, hidden_act="gelu")).eval()


def _t5(d_model: int) -> T5EncoderModel:
    config = T5Config(
        vocab_size=T5_VOCAB_SIZE,
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


def _vae(latent_channels: int = 4, **config) -> AutoencoderKL:
    """A two-level VAE (spatial factor 2) with a handful of channels."""
    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 2,
        up_block_types=("UpDecoderBlock2D",) * 2,
        block_out_channels=(4, 8),
        layers_per_block=1,
        latent_channels=latent_channels,
        norm_num_groups=2,
        sample_size=SIZE,
        **config,
    ).eval()


def _flow_vae() -> AutoencoderKL:
    """The SD3/Flux VAE layout: no quant convs, latents shifted as well as scaled."""
    return _vae(use_quant_conv=False, use_post_quant_conv=False, shift_factor=0.0609, scaling_factor=1.5035)


def _unet(cross_attention_dim: int, **config) -> UNet2DConditionModel:
    """A two-level UNet with cross-attention in both levels."""
    defaults = {
        "sample_size": SIZE // 2,
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


def _ddim(**config) -> DDIMScheduler:
    defaults = {
        "beta_start": 0.00085,
        "beta_end": 0.012,
        "beta_schedule": "scaled_linear",
        "clip_sample": False,
        "set_alpha_to_one": False,
        "steps_offset": 1,
    }
    return DDIMScheduler(**{**defaults, **config})


def _ready(pipe: DiffusionPipeline) -> DiffusionPipeline:
    """Every component is already on CPU in float32 (a `.to(dtype)` would only add warnings)."""
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _unet_call_kwargs(guidance_scale: float = 7.5) -> dict:
    return {
        "num_inference_steps": STEPS,
        "height": SIZE,
        "width": SIZE,
        "guidance_scale": guidance_scale,
        "output_type": "np",
    }


# ----------------------------------------------------------------------------------------------- builders


def build_sd() -> tuple[DiffusionPipeline, dict]:
    """SD 1.x: one CLIPTextModel (hidden 32, last hidden state) feeding the UNet's cross-attention."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        unet = _unet(cross_attention_dim=32)
        vae = _vae()
        text_encoder = _clip(32)
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
    return _ready(pipe), _unet_call_kwargs()


def build_sd2() -> tuple[DiffusionPipeline, dict]:
    """SD 2.x stand-in: an OpenCLIP-like text encoder (hidden 48, gelu), linear projections, v-prediction."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        unet = _unet(cross_attention_dim=48, use_linear_projection=True, attention_head_dim=(2, 4))
        vae = _vae()
        text_encoder = _clip(48, hidden_act="gelu")
    pipe = StableDiffusionPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=clip_tokenizer(),
        unet=unet,
        scheduler=_ddim(prediction_type="v_prediction", timestep_spacing="trailing"),
        safety_checker=None,
        feature_extractor=None,
        image_encoder=None,
        requires_safety_checker=False,
    )
    return _ready(pipe), _unet_call_kwargs()


def build_sdxl() -> tuple[DiffusionPipeline, dict]:
    """SDXL: penultimate states of CLIP (32) and CLIP-with-projection (48) concatenated to 80 features;
    the second encoder's projected pooled output (40) plus six time ids go to the UNet's added embedding."""
    time_embed_dim, projection_dim = 8, 40
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        unet = _unet(
            cross_attention_dim=32 + 48,
            down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
            up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
            use_linear_projection=True,
            attention_head_dim=(2, 4),
            transformer_layers_per_block=(1, 2),
            addition_embed_type="text_time",
            addition_time_embed_dim=time_embed_dim,
            projection_class_embeddings_input_dim=6 * time_embed_dim + projection_dim,
        )
        vae = _vae()
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
    return _ready(pipe), _unet_call_kwargs(guidance_scale=5.0)


def build_sd3() -> tuple[DiffusionPipeline, dict]:
    """SD3: CLIP-L (32) and CLIP-G (48) penultimate states concatenated (80), zero-padded to the T5 width
    (96 = joint_attention_dim) and stacked before the T5 tokens along the sequence; pooled = 32 + 48."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
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
        vae = _flow_vae()
        text_encoder = _clip_with_projection(32)
        text_encoder_2 = _clip_with_projection(48)
        text_encoder_3 = _t5(96)
    pipe = StableDiffusion3Pipeline(
        transformer=transformer,
        scheduler=FlowMatchEulerDiscreteScheduler(shift=3.0),
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=clip_tokenizer(),
        text_encoder_2=text_encoder_2,
        tokenizer_2=clip_tokenizer(),
        text_encoder_3=text_encoder_3,
        tokenizer_3=t5_tokenizer(T5_MAX_LENGTH),
    )
    call_kwargs = _unet_call_kwargs(guidance_scale=5.0) | {"max_sequence_length": T5_MAX_LENGTH}
    return _ready(pipe), call_kwargs


def build_flux() -> tuple[DiffusionPipeline, dict]:
    """FLUX.1-dev-like: T5 states (48) are the context, CLIP's pooled output (32) the pooled projection,
    with a guidance embedding; true CFG runs a separate negative pass when `true_cfg_scale > 1`."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
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
        vae = _flow_vae()
        text_encoder = _clip(32)
        text_encoder_2 = _t5(48)
    pipe = FluxPipeline(
        scheduler=FlowMatchEulerDiscreteScheduler(),
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=clip_tokenizer(),
        text_encoder_2=text_encoder_2,
        tokenizer_2=t5_tokenizer(T5_MAX_LENGTH),
        transformer=transformer,
    )
    call_kwargs = _unet_call_kwargs(guidance_scale=3.5) | {
        "true_cfg_scale": 2.0,
        "max_sequence_length": T5_MAX_LENGTH,
    }
    return _ready(pipe), call_kwargs


def build_animatediff() -> tuple[DiffusionPipeline, dict]:
    """AnimateDiff: an SD 1.x UNet (CLIP 32) turned into a `UNetMotionModel` by a `MotionAdapter`."""
    block_out_channels = (8, 16)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        unet = _unet(
            cross_attention_dim=32,
            block_out_channels=block_out_channels,
            down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
            up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        )
        vae = _vae()
        text_encoder = _clip(32)
        motion_adapter = MotionAdapter(
            block_out_channels=block_out_channels,
            motion_layers_per_block=1,
            motion_norm_num_groups=2,
            motion_num_attention_heads=2,
            motion_max_seq_length=8,
        ).eval()
        with _quiet_diffusers():
            motion_unet = UNetMotionModel.from_unet2d(unet, motion_adapter).eval()
    pipe = AnimateDiffPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=clip_tokenizer(),
        unet=motion_unet,
        motion_adapter=motion_adapter,
        scheduler=_ddim(beta_schedule="linear"),
        feature_extractor=None,
        image_encoder=None,
    )
    return _ready(pipe), _unet_call_kwargs() | {"num_frames": 2}


def build_pixart_sigma() -> tuple[DiffusionPipeline, dict]:
    """PixArt-Sigma: T5 states (32) with their attention mask, projected by the DiT's caption projection;
    the DiT predicts noise and a learned variance (8 = 2 x 4 output channels)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
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
        vae = _vae()
        text_encoder = _t5(32)
    pipe = PixArtSigmaPipeline(
        tokenizer=t5_tokenizer(T5_MAX_LENGTH),
        text_encoder=text_encoder,
        vae=vae,
        transformer=transformer,
        scheduler=_ddim(),
    )
    call_kwargs = _unet_call_kwargs(guidance_scale=4.5) | {
        "max_sequence_length": T5_MAX_LENGTH,
        "use_resolution_binning": False,
        "clean_caption": False,
    }
    return _ready(pipe), call_kwargs


BUILDERS: dict[str, Builder] = {
    "sd": build_sd,
    "sd2": build_sd2,
    "sdxl": build_sdxl,
    "sd3": build_sd3,
    "flux": build_flux,
    "animatediff": build_animatediff,
    "pixart_sigma": build_pixart_sigma,
}

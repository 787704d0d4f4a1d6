"""Tiny pipelines of the UNet families (SD 1.x, SD 2.x, SDXL, AnimateDiff), and the SD / SDXL layouts that the
named demo pipelines reuse at other sizes.

`BUILDERS[name]()` returns `(pipe, call_kwargs)`: a fresh pipeline on CPU in float32 with deterministic
weights (drawn under seed 0; the caller's global RNG state is left untouched) and its progress bar off, and
the keyword arguments for a fast 32 px call with classifier-free guidance on, `output_type="np"`, to be
completed with `prompt`, `negative_prompt` and `generator`.

The text hidden sizes differ between encoders on purpose, so a wrong concatenation or a swapped encoder
shows up as a shape error:

| family        | text encoders (hidden size)                  | denoiser context                  |
| ------------- | -------------------------------------------- | --------------------------------- |
| `sd`          | CLIP 32                                      | UNet, (B, 77, 32)                 |
| `sd2`         | CLIP 48 (v-prediction scheduler)             | UNet, (B, 77, 48)                 |
| `sdxl`        | CLIP 32 + CLIP-with-projection 48 (proj. 40) | UNet, (B, 77, 80); pooled (B, 40) |
| `animatediff` | CLIP 32                                      | UNetMotionModel, (B, 77, 32)      |

CFG layout: one denoiser pass on `cat([negative, positive])` (AnimateDiff then repeats each row once per
frame). AnimateDiff accepts `num_images_per_prompt` only through `**kwargs` and ignores it, and it resets
`num_videos_per_prompt` to 1, so it always makes one video per prompt.
"""

from __future__ import annotations

from typing import Any

from diffusers import (
    AnimateDiffPipeline,
    DDIMScheduler,
    DiffusionPipeline,
    EulerDiscreteScheduler,
    MotionAdapter,
    StableDiffusionPipeline,
    StableDiffusionXLPipeline,
    UNetMotionModel,
)

from .components import (
    SIZE,
    Builder,
    call_kwargs,
    clip_text_encoder,
    clip_text_encoder_with_projection,
    ddim,
    finish,
    quiet_diffusers,
    seeded_builder,
    unet,
    vae,
)
from .tokenizers import clip_tokenizer

# ------------------------------------------------------------------------------------------------ layouts


def stable_diffusion(
    text_hidden_size: int,
    *,
    size: int = SIZE,
    vae_channels: tuple[int, ...] = (4, 8),
    hidden_act: str = "quick_gelu",
    scheduler: DDIMScheduler | None = None,
    **unet_config: Any,
) -> StableDiffusionPipeline:
    """The SD 1.x / 2.x layout: one CLIPTextModel (last hidden state) feeding the UNet's cross-attention.

    Args:
        text_hidden_size: the text encoder's width, which is also the UNet's cross-attention width.
        size: image height and width in pixels.
        vae_channels: the VAE's channels per level; each level after the first halves the latent size.
        hidden_act: the text encoder's activation.
        scheduler: a DDIM scheduler of the SD 1.x schedule when not given.
        **unet_config: overrides of :func:`~.components.unet`'s settings.
    """
    latent_size = size // 2 ** (len(vae_channels) - 1)
    # Built in this order (UNet, VAE, text encoder) so the weights drawn from the seed stay the same.
    denoiser = unet(text_hidden_size, sample_size=latent_size, **unet_config)
    autoencoder = vae(block_out_channels=vae_channels, sample_size=size)
    text_encoder = clip_text_encoder(text_hidden_size, hidden_act=hidden_act)
    return StableDiffusionPipeline(
        vae=autoencoder,
        text_encoder=text_encoder,
        tokenizer=clip_tokenizer(),
        unet=denoiser,
        scheduler=scheduler or ddim(),
        safety_checker=None,
        feature_extractor=None,
        image_encoder=None,
        requires_safety_checker=False,
    )


def stable_diffusion_xl(size: int = SIZE) -> StableDiffusionXLPipeline:
    """The SDXL layout: penultimate states of CLIP (32) and CLIP-with-projection (48) concatenated to 80
    features; the second encoder's projected pooled output (40) plus six time ids go to the UNet's added
    embedding."""
    time_embed_dim, projection_dim = 8, 40
    denoiser = unet(
        32 + 48,
        sample_size=size // 2,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        use_linear_projection=True,
        attention_head_dim=(2, 4),
        transformer_layers_per_block=(1, 2),
        addition_embed_type="text_time",
        addition_time_embed_dim=time_embed_dim,
        projection_class_embeddings_input_dim=6 * time_embed_dim + projection_dim,
    )
    autoencoder = vae(sample_size=size)
    text_encoder = clip_text_encoder(32)
    text_encoder_2 = clip_text_encoder_with_projection(48, projection_dim)
    scheduler = EulerDiscreteScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        steps_offset=1,
        timestep_spacing="leading",
    )
    return StableDiffusionXLPipeline(
        vae=autoencoder,
        text_encoder=text_encoder,
        text_encoder_2=text_encoder_2,
        tokenizer=clip_tokenizer(),
        tokenizer_2=clip_tokenizer(),
        unet=denoiser,
        scheduler=scheduler,
        image_encoder=None,
        feature_extractor=None,
        force_zeros_for_empty_prompt=True,
        add_watermarker=False,
    )


def _decoded_call(guidance_scale: float) -> dict[str, Any]:
    return call_kwargs(SIZE, guidance_scale=guidance_scale, output_type="np")


# ----------------------------------------------------------------------------------------------- builders


@seeded_builder
def build_sd() -> tuple[DiffusionPipeline, dict]:
    """SD 1.x: one CLIPTextModel (hidden 32, last hidden state) feeding the UNet's cross-attention."""
    return finish(stable_diffusion(32)), _decoded_call(7.5)


@seeded_builder
def build_sd2() -> tuple[DiffusionPipeline, dict]:
    """SD 2.x stand-in: an OpenCLIP-like text encoder (hidden 48, gelu), linear projections, v-prediction."""
    pipe = stable_diffusion(
        48,
        hidden_act="gelu",
        scheduler=ddim(prediction_type="v_prediction", timestep_spacing="trailing"),
        use_linear_projection=True,
        attention_head_dim=(2, 4),
    )
    return finish(pipe), _decoded_call(7.5)


@seeded_builder
def build_sdxl() -> tuple[DiffusionPipeline, dict]:
    """SDXL: see :func:`stable_diffusion_xl`."""
    return finish(stable_diffusion_xl()), _decoded_call(5.0)


@seeded_builder
def build_animatediff() -> tuple[DiffusionPipeline, dict]:
    """AnimateDiff: an SD 1.x UNet (CLIP 32) turned into a `UNetMotionModel` by a `MotionAdapter`."""
    block_out_channels = (8, 16)
    denoiser = unet(
        32,
        block_out_channels=block_out_channels,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
    )
    autoencoder = vae()
    text_encoder = clip_text_encoder(32)
    motion_adapter = MotionAdapter(
        block_out_channels=block_out_channels,
        motion_layers_per_block=1,
        motion_norm_num_groups=2,
        motion_num_attention_heads=2,
        motion_max_seq_length=8,
    ).eval()
    with quiet_diffusers():
        motion_unet = UNetMotionModel.from_unet2d(denoiser, motion_adapter).eval()
    pipe = AnimateDiffPipeline(
        vae=autoencoder,
        text_encoder=text_encoder,
        tokenizer=clip_tokenizer(),
        unet=motion_unet,
        motion_adapter=motion_adapter,
        scheduler=ddim(beta_schedule="linear"),
        feature_extractor=None,
        image_encoder=None,
    )
    return finish(pipe), _decoded_call(7.5) | {"num_frames": 2}


BUILDERS: dict[str, Builder] = {
    "sd": build_sd,
    "sd2": build_sd2,
    "sdxl": build_sdxl,
    "animatediff": build_animatediff,
}

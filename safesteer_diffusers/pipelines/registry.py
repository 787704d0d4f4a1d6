"""Registry of supported pipelines: where each text space lives in what the denoiser sees, and how the
pipeline hands back positive and negative prompt encodings.

A *space* is the pipeline component name of a text encoder (``"text_encoder"``, ``"text_encoder_2"``, ...).
The pipeline's ``encode_prompt`` returns the positive prompt's text states exactly as the denoiser will
see them; a :class:`SpaceLayout` says which token positions and feature columns of that tensor belong to
which encoder (SDXL concatenates two CLIPs on the feature axis; SD3 puts CLIP-L/G and T5 one after the
other on the token axis).

Register another pipeline with :func:`register_target`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from safesteer_diffusers.steering.layout import SpaceLayout

CFG_LAYOUTS = ("negative_first", "separate_passes")


@dataclass(frozen=True)
class EncodeOutputs:
    """Positions of things in the tuple returned by the pipeline's ``encode_prompt``.

    Attributes:
        positive: index of the positive prompt embeddings.
        negative: index of the negative prompt embeddings when the same call returns them.
        positive_mask / negative_mask: index of the attention masks when returned (``None`` otherwise).
        separate_negative_call: the pipeline encodes the negative prompt with a second ``encode_prompt``
            call (Flux, Qwen-Image, HunyuanVideo); the first call of a generation is the positive one.
    """

    positive: int = 0
    negative: int | None = 1
    positive_mask: int | None = None
    negative_mask: int | None = None
    separate_negative_call: bool = False


@dataclass(frozen=True)
class TargetSpec:
    """How to steer one pipeline family.

    Attributes:
        family: short name (``"sdxl"``, ``"flux"``, ...), also written into packs built for it.
        pipeline_classes: diffusers class names this spec applies to (subclasses match too).
        layout: ``pipe -> list[SpaceLayout]`` for the spaces this pipeline instance has.
        encode: where ``encode_prompt`` puts positive/negative embeddings and masks.
        denoiser: component name of the denoiser (``"unet"`` or ``"transformer"``).
        cfg: ``"negative_first"`` (one batch, negatives first) or ``"separate_passes"``.
        cross_attention: whether the denoiser's cross-attention sees the text states directly (UNet attn2),
            which allows per-layer and per-step steering.
        ragged: ``encode_prompt`` returns a list of ``[L_i, D]`` tensors holding only real tokens.
        description: one line for error messages and docs.
    """

    family: str
    pipeline_classes: tuple[str, ...]
    layout: Callable[[Any], list[SpaceLayout]]
    encode: EncodeOutputs = field(default_factory=EncodeOutputs)
    denoiser: str = "transformer"
    cfg: str = "negative_first"
    cross_attention: bool = False
    ragged: bool = False
    description: str = ""

    def __post_init__(self):
        if self.cfg not in CFG_LAYOUTS:
            raise ValueError(f"TargetSpec.cfg must be one of {CFG_LAYOUTS}, got {self.cfg!r}.")


_REGISTRY: dict[str, TargetSpec] = {}


def register_target(spec: TargetSpec, *, overwrite: bool = False) -> TargetSpec:
    """Add a pipeline family to the registry.

    Args:
        spec: the :class:`TargetSpec` to add.
        overwrite: replace an existing spec of the same family instead of failing.

    Example:
        >>> register_target(TargetSpec(
        ...     family="my_t5_pipe", pipeline_classes=("MyT5Pipeline",),
        ...     layout=single_space("text_encoder"), encode=EncodeOutputs(positive=0, negative=1)))
    """
    if not isinstance(spec, TargetSpec):
        raise TypeError(f"register_target expects a TargetSpec, got {type(spec).__name__}.")
    if spec.family in _REGISTRY and not overwrite:
        raise ValueError(
            f"Target family {spec.family!r} is already registered; pass overwrite=True to replace it."
        )
    _REGISTRY[spec.family] = spec
    return spec


def registered_targets() -> dict[str, TargetSpec]:
    """A copy of the registry: family -> spec."""
    return dict(_REGISTRY)


def target_for(pipe: object) -> TargetSpec:
    """The spec of the nearest registered class in ``type(pipe).__mro__``.

    Raises:
        ValueError: for an unsupported pipeline, naming the supported families and how to register one.
    """
    by_class = {name: spec for spec in _REGISTRY.values() for name in spec.pipeline_classes}
    for cls in type(pipe).__mro__:
        if cls.__name__ in by_class:
            return by_class[cls.__name__]
    supported = "\n".join(
        f"  - {spec.family}: {', '.join(spec.pipeline_classes)}"
        for spec in sorted(_REGISTRY.values(), key=_key)
    )
    raise ValueError(
        f"{type(pipe).__name__} is not a supported pipeline. Supported families:\n{supported}\n"
        "To add one, describe where its text states live with "
        "safesteer_diffusers.register_target(TargetSpec(...)) (see docs/api.md), then wrap again."
    )


def _key(spec: TargetSpec) -> str:
    return spec.family


# ---------------------------------------------------------------------- layouts
def encoder_hidden_size(encoder: Any) -> int:
    """Hidden size of a transformers text encoder (``hidden_size``, ``d_model`` or ``text_config``)."""
    config = getattr(encoder, "config", None)
    for candidate in (config, getattr(config, "text_config", None)):
        for attribute in ("hidden_size", "d_model"):
            value = getattr(candidate, attribute, None)
            if isinstance(value, int):
                return value
    raise ValueError(
        f"Cannot tell the hidden size of {type(encoder).__name__}: no config.hidden_size/d_model."
    )


def _component(pipe: Any, name: str) -> Any:
    return getattr(pipe, name, None)


def single_space(space: str = "text_encoder") -> Callable[[Any], list[SpaceLayout]]:
    """Layout for pipelines whose denoiser sees one encoder's states as they are."""

    def layout(pipe: Any) -> list[SpaceLayout]:
        encoder = _component(pipe, space)
        return [] if encoder is None else [SpaceLayout(space, encoder_hidden_size(encoder))]

    return layout


def feature_concat(*spaces: str) -> Callable[[Any], list[SpaceLayout]]:
    """Layout for encoders concatenated on the feature axis in the given order (SDXL); absent ones skipped."""

    def layout(pipe: Any) -> list[SpaceLayout]:
        result, start = [], 0
        for space in spaces:
            encoder = _component(pipe, space)
            if encoder is None:
                continue
            dim = encoder_hidden_size(encoder)
            result.append(SpaceLayout(space, dim, feature_start=start))
            start += dim
        return result

    return layout


def _sd3_layout(pipe: Any) -> list[SpaceLayout]:
    # CLIP-L ++ CLIP-G on the feature axis (zero-padded to the T5 width) for the first
    # `tokenizer_max_length` positions, then the T5 states on the following positions.
    clip_tokens = int(getattr(pipe, "tokenizer_max_length", 77))
    result = []
    for layout in feature_concat("text_encoder", "text_encoder_2")(pipe):
        result.append(SpaceLayout(layout.space, layout.dim, layout.feature_start, 0, clip_tokens))
    t5 = _component(pipe, "text_encoder_3")
    if t5 is not None:
        result.append(SpaceLayout("text_encoder_3", encoder_hidden_size(t5), 0, clip_tokens, None))
    return result


_MASKED = EncodeOutputs(positive=0, positive_mask=1, negative=2, negative_mask=3)


def _register_builtin() -> None:
    builtin = [
        TargetSpec(
            "sd",
            ("StableDiffusionPipeline",),
            single_space("text_encoder"),
            denoiser="unet",
            cross_attention=True,
            description="Stable Diffusion 1.x / 2.x: CLIP-L 768 (SD2: OpenCLIP-H 1024)",
        ),
        TargetSpec(
            "sdxl",
            ("StableDiffusionXLPipeline",),
            feature_concat("text_encoder", "text_encoder_2"),
            denoiser="unet",
            cross_attention=True,
            description="SDXL: CLIP-L 768 ++ OpenCLIP-bigG 1280 on the feature axis",
        ),
        TargetSpec(
            "sd3",
            ("StableDiffusion3Pipeline",),
            _sd3_layout,
            description="SD3 / 3.5: CLIP-L ++ CLIP-G (77 tokens) then T5-XXL on the token axis",
        ),
        TargetSpec(
            "flux",
            ("FluxPipeline",),
            single_space("text_encoder_2"),
            encode=EncodeOutputs(positive=0, negative=None, separate_negative_call=True),
            cfg="separate_passes",
            description="Flux.1: T5-XXL 4096 (text_encoder_2); the CLIP pooled vector is not steered",
        ),
        TargetSpec(
            "qwen_image",
            ("QwenImagePipeline",),
            single_space("text_encoder"),
            encode=EncodeOutputs(positive=0, negative=None, positive_mask=1, separate_negative_call=True),
            cfg="separate_passes",
            description="Qwen-Image: Qwen2.5-VL hidden states 3584",
        ),
        TargetSpec(
            "z_image",
            ("ZImagePipeline",),
            single_space("text_encoder"),
            cfg="separate_passes",
            ragged=True,
            description="Z-Image: Qwen3 hidden states (one variable-length tensor per prompt)",
        ),
        TargetSpec(
            "pixart_sigma",
            ("PixArtSigmaPipeline",),
            single_space("text_encoder"),
            encode=_MASKED,
            description="PixArt-Sigma: T5-XXL 4096",
        ),
        TargetSpec(
            "animatediff",
            ("AnimateDiffPipeline",),
            single_space("text_encoder"),
            denoiser="unet",
            cross_attention=True,
            description="AnimateDiff: CLIP-L 768 (SD 1.5 UNet with motion modules)",
        ),
        TargetSpec(
            "cogvideox", ("CogVideoXPipeline",), single_space("text_encoder"), description="CogVideoX: T5"
        ),
        TargetSpec(
            "wan",
            ("WanPipeline",),
            single_space("text_encoder"),
            cfg="separate_passes",
            description="Wan 2.x: umT5-XXL 4096 (zero-padded after the prompt)",
        ),
        TargetSpec(
            "ltx_video",
            ("LTXPipeline",),
            single_space("text_encoder"),
            encode=_MASKED,
            description="LTX-Video: T5",
        ),
        TargetSpec(
            "hunyuan_video",
            ("HunyuanVideoPipeline",),
            single_space("text_encoder"),
            encode=EncodeOutputs(positive=0, negative=None, positive_mask=2, separate_negative_call=True),
            cfg="separate_passes",
            description="HunyuanVideo: LLaMA 4096 (the CLIP pooled vector is not steered)",
        ),
        TargetSpec(
            "sana",
            ("SanaPipeline",),
            single_space("text_encoder"),
            encode=_MASKED,
            description="Sana: Gemma-2",
        ),
        TargetSpec(
            "mochi", ("MochiPipeline",), single_space("text_encoder"), encode=_MASKED, description="Mochi: T5"
        ),
    ]
    for spec in builtin:
        register_target(spec)


_register_builtin()

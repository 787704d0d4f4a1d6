"""What the SafeSteer Model node reads from a ComfyUI ``MODEL``: its denoiser, whether it is a UNet, the text
width its config declares, the sigmas of a part of the schedule, and which wrapper API the running ComfyUI has.

Only stable ComfyUI APIs, each guarded: ``ModelPatcher.get_model_object``, ``model.model.model_config``'s
``unet_config``, ``model_sampling.percent_to_sigma`` and ``comfy.patcher_extension.WrappersMP``.
"""

from __future__ import annotations

# unet_config keys that hold the width of the text states (c_crossattn) a model expects: UNets, Flux /
# HunyuanVideo / Chroma, Wan, PixArt, Lumina 2, Mochi, AuraFlow. SD3 has it in context_embedder_config.
_WIDTH_KEYS = (
    "context_dim",
    "context_in_dim",
    "text_dim",
    "caption_channels",
    "cap_feat_dim",
    "t5_feat_dim",
    "cond_seq_dim",
)


def diffusion_model(model):
    """The denoiser module inside a ComfyUI ``ModelPatcher`` (``None`` if it cannot be found)."""
    getter = getattr(model, "get_model_object", None)
    if callable(getter):
        try:
            return getter("diffusion_model")
        except (AttributeError, KeyError):
            pass
    return getattr(getattr(model, "model", None), "diffusion_model", None)


def is_unet(model) -> bool:
    """Whether the denoiser is ComfyUI's UNet, whose cross-attention layers honour ``attn2`` patches."""
    module = diffusion_model(model)
    return any(
        cls.__name__ == "UNetModel" and cls.__module__.endswith("openaimodel") for cls in type(module).__mro__
    )


def model_text_width(model) -> tuple[int, str] | None:
    """Width of the text states the model expects and the config key it came from, or ``None`` if unknown.

    Read from ``model.model.model_config.unet_config`` (every ComfyUI model has one), guarded: a config
    without any known key gives ``None``, and the pack is then checked on the first sampling step.
    """
    base = getattr(model, "model", None)
    config = getattr(getattr(base, "model_config", None), "unet_config", None)
    if not isinstance(config, dict):
        return None
    for key in _WIDTH_KEYS:
        value = config.get(key)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value, f"unet_config[{key!r}]"
    embedder = config.get("context_embedder_config")  # SD3 (MMDiT): a Linear from the text width
    if isinstance(embedder, dict):
        params = embedder.get("params")
        value = params.get("in_features") if isinstance(params, dict) else None
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value, "unet_config['context_embedder_config']['params']['in_features']"
    return None


def sigma_range(model, start_percent: float, end_percent: float) -> tuple[float, float] | None:
    """``(sigma_start, sigma_end)`` for a part of the schedule, or ``None`` for the whole of it."""
    if not (0.0 <= start_percent <= end_percent <= 1.0):
        raise ValueError(
            f"start_percent and end_percent must satisfy 0 <= start <= end <= 1, got {start_percent} and "
            f"{end_percent}."
        )
    if start_percent == 0.0 and end_percent == 1.0:
        return None
    getter = getattr(model, "get_model_object", None)
    sampling = getter("model_sampling") if callable(getter) else model.model.model_sampling
    return float(sampling.percent_to_sigma(start_percent)), float(sampling.percent_to_sigma(end_percent))


def has_keyed_wrappers(model) -> bool:
    """Whether the running ComfyUI has keyed model wrappers (``add_wrapper_with_key``, late 2024 on)."""
    if not callable(getattr(model, "add_wrapper_with_key", None)):
        return False
    try:
        from comfy.patcher_extension import WrappersMP
    except ImportError:
        return False
    return hasattr(WrappersMP, "APPLY_MODEL")

"""SafeSteer Model: clone a ComfyUI ``MODEL`` and steer the positive text states it sees while sampling.

Where the text states are steered:

- UNet models (SD 1.x/2.x, SDXL, SVD, ...; ComfyUI's ``openaimodel.UNetModel``): an ``attn2`` patch, which
  every ComfyUI version has, changes the context each cross-attention layer sees.
- Other denoisers (DiTs: Flux, SD3, Wan, LTX-Video, HunyuanVideo, ...): a wrapper around ``apply_model``
  that steers ``c_crossattn``, the text-space input every ComfyUI model receives. Newer ComfyUI has keyed
  wrappers (``add_wrapper_with_key`` + ``WrappersMP.APPLY_MODEL``); older ones have a single
  ``model_function_wrapper``, which we chain with any wrapper already installed.

Both see ``cond_or_uncond`` (0 = positive chunk, 1 = negative chunk of the batch), so only positive rows are
steered, and the current sigma, compared with the start/end percent of the schedule.
"""

from __future__ import annotations

from safesteer_diffusers.steering.conditioning import TextSteerer, cond_rows_from_chunks, layouts_for_tensor

from .common import CATEGORY, LOGGER, PACK_TYPE, config_from_inputs, strength_inputs

WRAPPER_KEY = "safesteer"
INJECTIONS = ("auto", "cross_attention", "model_wrapper")
_WIDTH_KEYS = ("context_dim", "context_in_dim", "text_dim", "caption_channels", "cap_feat_dim")


class SteeringCore:
    """Steers the positive rows of a text tensor while the sigma is inside ``[sigma_end, sigma_start]``.

    Shared by every injection below. The same context object reaches every cross-attention layer of one
    model call, so the last result is kept and reused (one steering computation per step, not per layer).
    ComfyUI deep-copies ``model_options`` when it clones a model; this object is immutable configuration
    plus that cache, so copies share it.
    """

    def __init__(self, steerer: TextSteerer, sigma_range: tuple[float, float] | None = None):
        self.steerer = steerer
        self.sigma_range = sigma_range
        self.last_report = None
        self._cache: tuple | None = None
        self._active: tuple | None = None

    def active(self, sigmas) -> bool:
        """Whether the current step (``sigmas``: the sampler's sigma tensor) is inside the range."""
        if self.sigma_range is None or sigmas is None:
            return True
        if self._active is not None and self._active[0] is sigmas:
            return self._active[1]  # every cross-attention layer of a step sees the same sigma tensor
        sigma = float(sigmas.reshape(-1)[0]) if hasattr(sigmas, "reshape") else float(sigmas)
        start, end = self.sigma_range
        active = end <= sigma <= start
        self._active = (sigmas, active)
        return active

    def steer(self, context, cond_or_uncond):
        """``context`` with its positive rows steered (``context`` itself when nothing changes)."""
        if self.steerer.is_noop:
            return context
        key = None if cond_or_uncond is None else tuple(int(c) for c in cond_or_uncond)
        cached = self._cache
        if cached is not None and cached[0] is context and cached[1] == key:
            return cached[2]
        rows = cond_rows_from_chunks(key, int(context.shape[0]))
        steered, report = self.steerer(context, rows)
        self.last_report = report
        self._cache = (context, key, steered)
        return steered

    def to(self, device):
        return self

    def __deepcopy__(self, memo):
        return self


class CrossAttentionPatch:
    """``attn2_patch`` for ComfyUI UNets: ``(q, context, value, extra_options) -> (q, context, value)``."""

    def __init__(self, core: SteeringCore):
        self.core = core

    def __call__(self, q, context, value, extra_options):
        if context is None or not self.core.active(extra_options.get("sigmas")):
            return q, context, value
        steered = self.core.steer(context, extra_options.get("cond_or_uncond"))
        # value starts as the same tensor as context; a value another patch replaced is left alone.
        return q, steered, steered if value is context else value

    def to(self, device):
        return self

    def __deepcopy__(self, memo):
        return self


class ModelFunctionWrapper:
    """Older ComfyUI ``model_function_wrapper``: ``(apply_model, args) -> output``, chaining a previous one."""

    def __init__(self, core: SteeringCore, previous=None):
        self.core = core
        self.previous = previous

    def __call__(self, apply_model, args):
        c = args["c"]
        if c.get("c_crossattn") is not None and self.core.active(args.get("timestep")):
            c = dict(c)
            c["c_crossattn"] = self.core.steer(c["c_crossattn"], args.get("cond_or_uncond"))
            args = {**args, "c": c}
        if self.previous is not None:
            return self.previous(apply_model, args)
        return apply_model(args["input"], args["timestep"], **args["c"])

    def to(self, device):
        if hasattr(self.previous, "to"):
            self.previous = self.previous.to(device)
        return self

    def __deepcopy__(self, memo):
        return self


class ApplyModelWrapper:
    """Newer ComfyUI ``WrappersMP.APPLY_MODEL`` wrapper around ``BaseModel.apply_model``."""

    def __init__(self, core: SteeringCore):
        self.core = core

    def __call__(
        self,
        executor,
        x,
        t,
        c_concat=None,
        c_crossattn=None,
        control=None,
        transformer_options=None,
        **kwargs,
    ):
        transformer_options = {} if transformer_options is None else transformer_options
        if c_crossattn is not None and self.core.active(t):
            c_crossattn = self.core.steer(c_crossattn, transformer_options.get("cond_or_uncond"))
        return executor(x, t, c_concat, c_crossattn, control, transformer_options, **kwargs)

    def __deepcopy__(self, memo):
        return self


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


def model_text_width(model) -> int | None:
    """Width of the text states the model expects (from its ``unet_config``), or ``None`` if unknown."""
    base = getattr(model, "model", None)
    config = getattr(getattr(base, "model_config", None), "unet_config", None)
    if not isinstance(config, dict):
        return None
    for key in _WIDTH_KEYS:
        value = config.get(key)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
    embedder = config.get("context_embedder_config")  # SD3 (MMDiT): a Linear from the text width
    if isinstance(embedder, dict):
        value = embedder.get("params", {}).get("in_features")
        if isinstance(value, int) and value > 0:
            return value
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


def install(model, core: SteeringCore, injection: str = "auto"):
    """A clone of ``model`` with steering installed; ``model`` itself is never changed.

    Returns:
        ``(clone, how)`` where ``how`` names the mechanism used.

    Raises:
        ValueError: unknown injection, ``cross_attention`` on a non-UNet, or a ComfyUI without any wrapper
            mechanism (the message points to the SafeSteer Conditioning node).
    """
    if injection not in INJECTIONS:
        raise ValueError(f"injection must be one of {INJECTIONS}, got {injection!r}.")
    if not callable(getattr(model, "clone", None)):
        raise TypeError(f"Expected a ComfyUI MODEL (ModelPatcher), got {type(model).__name__}.")
    unet = is_unet(model)
    if injection == "auto":
        injection = "cross_attention" if unet else "model_wrapper"
    if injection == "cross_attention" and not unet:
        raise ValueError(
            f"injection='cross_attention' needs a UNet model; this one is {type(diffusion_model(model)).__name__}. "
            "Use injection='auto' or 'model_wrapper'."
        )
    clone = model.clone()
    if injection == "cross_attention":
        clone.set_model_attn2_patch(CrossAttentionPatch(core))
        return clone, "attn2_patch"
    if has_keyed_wrappers(clone):
        from comfy.patcher_extension import WrappersMP

        clone.add_wrapper_with_key(WrappersMP.APPLY_MODEL, WRAPPER_KEY, ApplyModelWrapper(core))
        return clone, "apply_model_wrapper"
    if callable(getattr(clone, "set_model_unet_function_wrapper", None)):
        previous = clone.model_options.get("model_function_wrapper")
        clone.set_model_unet_function_wrapper(ModelFunctionWrapper(core, previous))
        return clone, "model_function_wrapper"
    raise ValueError(
        f"This ComfyUI cannot steer a {type(diffusion_model(model)).__name__} model: it has neither keyed model "
        "wrappers nor model_function_wrapper. Steer the prompt instead: put a 'SafeSteer Conditioning' node "
        "between the positive text encoder and the sampler."
    )


class SafeSteerModel:
    """Steer a MODEL: positive rows only, per-category strengths, within part of the sampling schedule."""

    CATEGORY = CATEGORY
    RETURN_TYPES = ("MODEL",)
    RETURN_NAMES = ("model",)
    FUNCTION = "patch"
    DESCRIPTION = (
        "Returns a patched clone of the model that adds strength * direction to the positive prompt's text "
        "states while sampling (UNets: cross-attention patch; DiTs: apply_model wrapper). The input MODEL is "
        "left untouched; the negative prompt is never steered."
    )

    @classmethod
    def INPUT_TYPES(cls):
        percent = {"min": 0.0, "max": 1.0, "step": 0.001}
        return {
            "required": {
                "model": ("MODEL",),
                "pack": (PACK_TYPE,),
                **strength_inputs(),
                "start_percent": ("FLOAT", {"default": 0.0, **percent}),
                "end_percent": ("FLOAT", {"default": 1.0, **percent}),
            },
            "optional": {
                "injection": (
                    list(INJECTIONS),
                    {
                        "default": "auto",
                        "tooltip": "auto: cross-attention patch on UNets, apply_model wrapper on other models.",
                    },
                ),
            },
        }

    def patch(
        self, model, pack, strength, mode, gate, start_percent, end_percent, injection="auto", **categories
    ):
        config = config_from_inputs(pack, strength, mode, gate, **categories)
        steerer = TextSteerer(pack, config)
        width = model_text_width(model)
        if width is not None:
            # Only the feature layout is known before sampling; token positions are checked per step.
            layouts_for_tensor(pack, width, None, spaces=config.spaces)
        core = SteeringCore(steerer, sigma_range(model, start_percent, end_percent))
        clone, how = install(model, core, injection)
        LOGGER.info("SafeSteer: steering the model through %s (%s).", how, config)
        return (clone,)

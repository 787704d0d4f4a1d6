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

Fail closed: the pack is checked against the text width the model's config declares when the node runs; while
sampling, a step whose text states the pack does not fit, a call without text states or without
``cond_or_uncond``, and (through a ``sampler_post_cfg_function``) a step that steering should have reached but
did not (e.g. a later node replaced the ``model_function_wrapper``) all raise
:class:`~safesteer_diffusers.steering.errors.SteeringNotApplied` instead of sampling unsteered.
"""

from __future__ import annotations

from safesteer_diffusers.steering.conditioning import TextSteerer, cond_rows_from_chunks
from safesteer_diffusers.steering.errors import SteeringNotApplied

from .common import (
    CATEGORY,
    LOGGER,
    PACK_DEFAULT_FPR,
    PACK_TOOLTIP,
    PACK_TYPE,
    SOURCE_GATE_UNUSED,
    config_from_inputs,
    gate_fpr_input,
    strength_inputs,
)
from .model_info import diffusion_model, has_keyed_wrappers, is_unet, model_text_width, sigma_range

WRAPPER_KEY = "safesteer"
INJECTIONS = ("auto", "cross_attention", "model_wrapper")


class SteeringCore:
    """Steers the positive rows of a text tensor while the sigma is inside ``[sigma_end, sigma_start]``.

    Shared by every injection below. The same context object reaches every cross-attention layer of one
    model call, so the last result is kept and reused (one steering computation per step, not per layer).
    ComfyUI deep-copies ``model_options`` when it clones a model; this object is immutable configuration
    plus that cache and a count of the calls steered since the last step check, so copies share it.
    """

    def __init__(self, steerer: TextSteerer, sigma_range: tuple[float, float] | None = None):
        self.steerer = steerer
        self.sigma_range = sigma_range
        self.mechanism = "its patch"
        self.last_report = None
        self.calls = 0
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
        """``context`` with its positive rows steered (``context`` itself when nothing changes).

        Raises:
            SteeringNotApplied: no text states to steer, no ``cond_or_uncond`` to find the positive rows by
                (steering every row would steer the negative prompt too, which guidance then cancels), or text
                states the pack does not fit.
        """
        if self.steerer.is_noop:
            return context
        if context is None:
            raise SteeringNotApplied(
                "SafeSteer Model: the model was called without text states (no c_crossattn / cross-attention "
                "context), so the steering set on it cannot be applied. Connect a text CONDITIONING to the "
                "sampler, or remove SafeSteer Model from a model that is not text-conditioned."
            )
        if cond_or_uncond is None:
            raise SteeringNotApplied(
                "SafeSteer Model: the model was called without ComfyUI's cond_or_uncond, so the positive prompt "
                "rows cannot be told from the negative ones and steering cannot be applied to the positive "
                "prompt only. Sample with ComfyUI's samplers, or steer the prompt with SafeSteer Conditioning."
            )
        key = tuple(int(c) for c in cond_or_uncond)
        cached = self._cache
        if cached is not None and cached[0] is context and cached[1] == key:
            self.calls += 1
            return cached[2]
        try:
            rows = cond_rows_from_chunks(key, int(context.shape[0]))
            steered, report = self.steerer(context, rows)
        except ValueError as error:
            raise SteeringNotApplied(
                f"SafeSteer Model could not steer the text states this model received, shape "
                f"{tuple(context.shape)}: {error} Sampling was stopped rather than run unsteered."
            ) from error
        self.last_report = report
        self._cache = (context, key, steered)
        self.calls += 1
        return steered

    def check_step(self, sigma) -> None:
        """After a sampling step: raise if steering was due at this step and no model call reached it.

        Raises:
            SteeringNotApplied: the step ran without going through the steering (its mechanism was replaced
                or bypassed after the node ran).
        """
        calls, self.calls = self.calls, 0
        if self.steerer.is_noop or not self.active(sigma):
            return
        if calls == 0:
            value = float(sigma.reshape(-1)[0]) if hasattr(sigma, "reshape") else sigma
            raise SteeringNotApplied(
                f"SafeSteer Model: steering was due at this sampling step (sigma {value}) but no model call went "
                f"through {self.mechanism}. A node after SafeSteer Model probably replaced it (an older ComfyUI "
                "keeps one model_function_wrapper: put SafeSteer Model after such nodes), or the step skipped the "
                "model's cross-attention (e.g. a step cache). Sampling was stopped rather than run unsteered; use "
                "injection='model_wrapper', or steer the prompt with SafeSteer Conditioning."
            )

    def to(self, device):
        return self

    def __deepcopy__(self, memo):
        return self


class StepCheck:
    """``sampler_post_cfg_function``: after each CFG step, :meth:`SteeringCore.check_step`; output unchanged."""

    def __init__(self, core: SteeringCore):
        self.core = core

    def __call__(self, args):
        self.core.check_step(args.get("sigma"))
        return args["denoised"]

    def __deepcopy__(self, memo):
        return self


class CrossAttentionPatch:
    """``attn2_patch`` for ComfyUI UNets: ``(q, context, value, extra_options) -> (q, context, value)``."""

    def __init__(self, core: SteeringCore):
        self.core = core

    def __call__(self, q, context, value, extra_options):
        if self.core.steerer.is_noop or not self.core.active(extra_options.get("sigmas")):
            return q, context, value
        if value is not None and value is not context:
            # ComfyUI starts value as the context itself; another attn2 patch before ours replaced it, and the
            # attention values would then come from unsteered text.
            raise SteeringNotApplied(
                "SafeSteer Model: another attn2 patch before it replaced the cross-attention values, so steering "
                "the text states would reach the attention keys only. Use injection='model_wrapper' (steers the "
                "text before every attention patch), or steer the prompt with SafeSteer Conditioning."
            )
        steered = self.core.steer(context, extra_options.get("cond_or_uncond"))
        return q, steered, steered

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
        if not self.core.steerer.is_noop and self.core.active(args.get("timestep")):
            c = dict(c)
            c["c_crossattn"] = self.core.steer(c.get("c_crossattn"), args.get("cond_or_uncond"))
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
        if not self.core.steerer.is_noop and self.core.active(t):
            c_crossattn = self.core.steer(c_crossattn, transformer_options.get("cond_or_uncond"))
        return executor(x, t, c_concat, c_crossattn, control, transformer_options, **kwargs)

    def __deepcopy__(self, memo):
        return self


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
        return _with_step_check(clone, core, "attn2_patch")
    if has_keyed_wrappers(clone):
        from comfy.patcher_extension import WrappersMP

        clone.add_wrapper_with_key(WrappersMP.APPLY_MODEL, WRAPPER_KEY, ApplyModelWrapper(core))
        return _with_step_check(clone, core, "apply_model_wrapper")
    if callable(getattr(clone, "set_model_unet_function_wrapper", None)):
        previous = clone.model_options.get("model_function_wrapper")
        clone.set_model_unet_function_wrapper(ModelFunctionWrapper(core, previous))
        return _with_step_check(clone, core, "model_function_wrapper")
    raise ValueError(
        f"This ComfyUI cannot steer a {type(diffusion_model(model)).__name__} model: it has neither keyed model "
        "wrappers nor model_function_wrapper. Steer the prompt instead: put a 'SafeSteer Conditioning' node "
        "between the positive text encoder and the sampler."
    )


def _with_step_check(clone, core: SteeringCore, how: str):
    core.mechanism = f"its {how}"
    if core.steerer.is_noop:
        return clone, how
    # A post-CFG function runs once per sampling step whatever wrappers later nodes install (they are
    # appended to a list), so it can tell when the steering above was bypassed.
    if callable(getattr(clone, "set_model_sampler_post_cfg_function", None)):
        clone.set_model_sampler_post_cfg_function(StepCheck(core))
    else:
        LOGGER.warning(
            "SafeSteer Model: this ComfyUI has no sampler_post_cfg_function, so a step that bypasses the "
            "steering (a later node replacing %s) cannot be detected.",
            how,
        )
    return clone, how


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
                "model": (
                    "MODEL",
                    {"tooltip": "The model to steer; it is cloned, the input MODEL itself is never changed."},
                ),
                "pack": (
                    PACK_TYPE,
                    {"tooltip": PACK_TOOLTIP + " Its width must fit this model's text states."},
                ),
                **strength_inputs(),
                "start_percent": (
                    "FLOAT",
                    {
                        "default": 0.0,
                        **percent,
                        "tooltip": "Where in the sampling schedule steering starts (0 = the first step).",
                    },
                ),
                "end_percent": (
                    "FLOAT",
                    {
                        "default": 1.0,
                        **percent,
                        "tooltip": "Where in the sampling schedule steering ends (1 = the last step); "
                        "outside start-end nothing is steered.",
                    },
                ),
            },
            "optional": {
                "injection": (
                    list(INJECTIONS),
                    {
                        "default": "auto",
                        "tooltip": "Where the text states are steered. auto: a cross-attention patch on UNets "
                        "(SD 1.x/2.x, SDXL), an apply_model wrapper on other models (Flux, SD3, Wan, ...). "
                        "cross_attention: UNets only. model_wrapper: steer the model's text input before "
                        "every attention patch.",
                    },
                ),
                **gate_fpr_input(),
            },
        }

    def patch(
        self,
        model,
        pack,
        strength,
        mode,
        gate,
        start_percent,
        end_percent,
        injection="auto",
        gate_fpr=PACK_DEFAULT_FPR,
        **categories,
    ):
        config = config_from_inputs(pack, strength, mode, gate, gate_fpr, **categories)
        if config.gate and pack.has_source_gate:
            fix = "SafeSteer Model never sees the text: use SafeSteer Conditioning with a gate_model for it."
            LOGGER.warning(SOURCE_GATE_UNUSED.format(node="SafeSteer Model", fix=fix))
        steerer = TextSteerer(pack, config)
        declared = model_text_width(model)
        if declared is not None:
            # Only the feature layout is known before sampling; token positions are checked per step.
            width, source = declared
            try:
                steerer.check_width(width)
            except ValueError as error:
                raise ValueError(
                    f"SafeSteer Model: this model's text states are {width} wide ({source}), and the pack does "
                    f"not fit them. {error}"
                ) from error
        elif not steerer.is_noop:
            LOGGER.warning(
                "SafeSteer Model: this model's config does not declare its text width, so the pack is checked "
                "on the first sampling step (which stops with an error if the pack does not fit)."
            )
        core = SteeringCore(steerer, sigma_range(model, start_percent, end_percent))
        clone, how = install(model, core, injection)
        LOGGER.info("SafeSteer: SafeSteer Model installed through %s, configured %s.", how, config)
        return (clone,)

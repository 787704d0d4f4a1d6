"""One validation for every way a configuration reaches a pipeline: ``wrap()``, ``configure_safety()`` and
``safety_steering()`` contexts all go through :func:`prepare_steering`, so none of them accepts a setting
another would refuse."""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

from safesteer_diffusers.packs.direction_pack import DirectionPack
from safesteer_diffusers.steering.config import SteeringConfig
from safesteer_diffusers.steering.layout import SpaceLayout
from safesteer_diffusers.steering.plan import SteeringPlan

from .registry import TargetSpec


@dataclass(frozen=True)
class PreparedSteering:
    """A pack and a config checked against one pipeline, compiled into a plan (immutable: swapped whole)."""

    pack: DirectionPack
    config: SteeringConfig
    layouts: tuple[SpaceLayout, ...]
    plan: SteeringPlan


SOURCE_GATE_UNUSED = (
    "gate=True without gate_model: the gate scores the target's text states, but this pack also carries a "
    "source-model gate (built with --source-gate), which catches far more unsafe prompts at the same benign "
    "rate (measured on SmolLM2-135M -> Gemma-3: 0.96 against 0.57 of held-out unsafe prompts at 1%; "
    "docs/method.md 6.5). Pass gate_model=(model, tokenizer) of the pack's source model to use it."
)
"""Warned when ``gate=True`` leaves a pack's source-model gate unused: the weaker gate is still applied
exactly as configured, so this is advice, not a refusal."""


def prepare_steering(
    pipe: Any,
    spec: TargetSpec,
    pack: DirectionPack,
    config: SteeringConfig,
    gate_model: tuple[Any, Any] | None = None,
) -> PreparedSteering:
    """Check ``pack`` and ``config`` against ``pipe`` and compile the plan.

    ``gate_model``: ``(model, tokenizer)`` of the pack's source model; when given, ``gate=True`` decides with
    the pack's source-model gate (pipelines/source_gate.py) instead of the target's text states.

    Raises:
        ValueError: the pack does not fit the pipeline (spaces, dimensions), the config asks for something this
            family cannot do (``layers`` on a DiT, ``tokens="prompt"`` without masks), or the configuration
            would steer nothing while asking for steering (missing direction, zero vectors, no spaces).
    """
    layouts = matching_layouts(pack, spec, pipe, config)
    check_injection(spec, config)
    prompt_gate = None
    if gate_model is not None:
        from .source_gate import SourceGate

        prompt_gate = SourceGate(pack, *gate_model, fpr=config.gate_fpr)
    elif config.gate and pack.has_source_gate:
        warnings.warn(SOURCE_GATE_UNUSED, stacklevel=3)
    plan = SteeringPlan(pack, layouts, config, prompt_gate)
    return PreparedSteering(pack, config, tuple(layouts), plan)


def matching_layouts(
    pack: DirectionPack, spec: TargetSpec, pipe: Any, config: SteeringConfig
) -> list[SpaceLayout]:
    """The layouts of the spaces to steer; every problem is listed, one per line."""
    available = {layout.space: layout for layout in spec.layout(pipe)}
    wanted = list(config.spaces) if config.spaces is not None else list(pack.spaces)
    problems = []
    for space in wanted:
        if space not in pack.spaces:
            problems.append(f"  - space {space!r} was requested but the pack has only {sorted(pack.spaces)}")
        elif space not in available:
            problems.append(
                f"  - pack space {space!r} is not a text space of this {type(pipe).__name__} (it has "
                f"{sorted(available) or 'none loaded'}); pass spaces=[...] to steer a subset"
            )
        elif pack.spaces[space] != available[space].dim:
            problems.append(
                f"  - space {space!r}: pack vectors have dimension {pack.spaces[space]}, the pipeline's "
                f"{space} has hidden size {available[space].dim}; use a pack built for this model"
            )
    if problems:
        raise ValueError("The pack does not fit this pipeline:\n" + "\n".join(problems))
    return [available[space] for space in wanted]


def check_target(pack: DirectionPack, spec: TargetSpec, pipe: Any, strict: bool) -> None:
    """Warn (or, with ``strict``, fail) when the pack names another family or model than ``pipe``."""
    target = pack.metadata.get("target", {})
    mismatches = []
    if target.get("family") and target["family"] != spec.family:
        mismatches.append(f"family {target['family']!r} (pipeline: {spec.family!r})")
    model_id = getattr(getattr(pipe, "config", None), "_name_or_path", None)
    if target.get("model_id") and model_id and target["model_id"] != model_id:
        mismatches.append(f"model {target['model_id']!r} (pipeline: {model_id!r})")
    if not mismatches:
        return
    message = f"This pack was built for {' and '.join(mismatches)}."
    if strict:
        raise ValueError(
            message + " Use a pack built for this pipeline, or pass strict=False to try it anyway."
        )
    warnings.warn(
        message + " The dimensions match, so it is applied; pass strict=True to refuse.", stacklevel=4
    )


def check_injection(spec: TargetSpec, config: SteeringConfig) -> None:
    """Refuse settings the family's pipelines cannot honour."""
    if config.layers is not None and not spec.cross_attention:
        raise ValueError(
            f"layers=/step_range= steer inside UNet cross-attention, which {spec.family} does not have (its "
            "denoiser projects the text first). Use layers=None: the conditioning itself is steered."
        )
    if config.tokens == "prompt" and spec.encode.positive_mask is None and not spec.ragged:
        raise ValueError(
            f"tokens='prompt' needs the attention mask of the prompt, which {spec.family} pipelines do not "
            "return. Use tokens='all'."
        )

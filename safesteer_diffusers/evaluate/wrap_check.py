"""The steering arguments of an evaluation checked against its packs before any model is loaded.

``SafeSteer.wrap`` validates its arguments when it is called, which in an evaluation is after the pipeline
and the scorers have loaded and the unsteered baseline has been generated: a misspelt category name used to
fail after hours. :func:`check_wrap_arguments` runs the same validation on the packs alone (the steering
configuration and the plan it compiles to, on each pack's own spaces), so only what needs the pipeline
itself (the spaces' dimensions, the family) is left for the wrap.
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Mapping, Sequence
from typing import Any

from safesteer_diffusers.packs.direction_pack import DirectionPack
from safesteer_diffusers.steering.config import SteeringConfig
from safesteer_diffusers.steering.layout import SpaceLayout
from safesteer_diffusers.steering.plan import SteeringPlan

__all__ = ["accepted_wrap_arguments", "check_wrap_arguments", "wrap_signature_names"]

_WRAP_ONLY = ("strict", "revision", "locked")
"""``SafeSteer.wrap`` arguments that are not steering settings (not part of :class:`SteeringConfig`)."""


def check_wrap_arguments(
    packs: Mapping[str, DirectionPack],
    strengths: Sequence[float],
    wrap_kwargs: Mapping[str, Any],
    *,
    flag: str = "--wrap-kwarg",
) -> None:
    """Check ``SafeSteer.wrap(pipe, pack, strength=s, **wrap_kwargs)`` for every pack and strength, without
    a pipeline.

    Args:
        packs: name -> pack.
        strengths: the evaluation's strengths (each is checked, 0 included: it is wrapped when categories or
            the negative prompt still steer at 0).
        wrap_kwargs: the other ``SafeSteer.wrap`` arguments.
        flag: the option the arguments came from, for messages.

    Raises:
        ValueError: an argument ``SafeSteer.wrap`` does not take, a value it refuses (mode, strength bounds,
            ...), or a setting a pack cannot honour (unknown category, no gate thresholds, no global
            direction, a space it does not have); the message names the pack, the strength and the fix.
    """
    fields = _config_fields()
    accepted = accepted_wrap_arguments()
    unknown = sorted(set(wrap_kwargs) - set(accepted))
    if unknown:
        raise ValueError(
            f"{flag}: SafeSteer.wrap takes no argument {', '.join(map(repr, unknown))}; it takes {accepted} "
            "(the pack and the strength come from --pack and --strengths)."
        )
    settings = {key: value for key, value in wrap_kwargs.items() if key in fields}
    for key in ("spaces", "layers"):
        if isinstance(settings.get(key), list):
            settings[key] = tuple(settings[key])  # as SafeSteer.wrap passes them
    for strength in strengths:
        try:
            config = SteeringConfig(strength=float(strength), **settings)
        except (TypeError, ValueError) as error:
            raise ValueError(f"{flag} at strength {strength:g}: {error}") from None
        for name, pack in packs.items():
            missing = sorted(set(config.spaces or ()) - set(pack.spaces))
            if missing:
                raise ValueError(
                    f"{flag} spaces={list(config.spaces or ())}: pack {name!r} has no space {missing}; its "
                    f"spaces are {sorted(pack.spaces)}."
                )
            layouts = [
                SpaceLayout(space, dim)
                for space, dim in pack.spaces.items()
                if config.spaces is None or space in config.spaces
            ]
            try:
                SteeringPlan(pack, layouts, config)
            except ValueError as error:
                raise ValueError(f"pack {name!r} at strength {strength:g} with {flag}: {error}") from None


def _config_fields() -> set[str]:
    return {field.name for field in dataclasses.fields(SteeringConfig)} - {"strength", "enabled"}


def accepted_wrap_arguments() -> list[str]:
    """The ``SafeSteer.wrap`` arguments an evaluation may pass (all but the pipeline, pack and strength),
    derived from :class:`SteeringConfig` without importing the pipeline code; a test checks them against
    :func:`wrap_signature_names`."""
    return sorted(_config_fields() | set(_WRAP_ONLY))


def wrap_signature_names() -> list[str]:
    """The keyword arguments of ``SafeSteer.wrap`` besides the pipeline, pack and strength, and ``gate_model``
    (loaded model objects, not a setting an evaluation's command line or JSON can carry)."""
    from safesteer_diffusers.pipelines.wrap import SafeSteer

    names = list(inspect.signature(SafeSteer.wrap).parameters)
    return sorted(n for n in names if n not in ("pipe", "pack", "strength", "gate_model"))

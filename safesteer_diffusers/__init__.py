"""safesteer-diffusers: cross-model safety steering for diffusers text-to-image and text-to-video pipelines.

Public API::

    from safesteer_diffusers import SafeSteer, DirectionPack
    pipe = SafeSteer.wrap(pipe, "org/safesteer-flux1-schnell", strength=5.0, categories={"sexual": 2.0})

Names are resolved lazily (as in ``transformers``): ``import safesteer_diffusers`` loads nothing heavy, and
never the pack-building, evaluation or demo code. The layout of the package is described in
docs/architecture.md.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from .version import __version__

# public name -> module that defines it
_PUBLIC = {
    "GLOBAL": "safesteer_diffusers.packs.format",
    "I2P_CATEGORIES": "safesteer_diffusers.packs.format",
    "PACK_FILENAME": "safesteer_diffusers.packs.format",
    "DirectionPack": "safesteer_diffusers.packs.direction_pack",
    "InvalidPackError": "safesteer_diffusers.packs.errors",
    "SteeringConfig": "safesteer_diffusers.steering.config",
    "SpaceLayout": "safesteer_diffusers.steering.layout",
    "SteeringLocked": "safesteer_diffusers.steering.errors",
    "SteeringNotApplied": "safesteer_diffusers.steering.errors",
    "ConcurrentCallError": "safesteer_diffusers.pipelines.installation",
    "DirectionDecision": "safesteer_diffusers.steering.report",
    "PromptReport": "safesteer_diffusers.steering.report",
    "SteeringReport": "safesteer_diffusers.steering.report",
    "SafeSteer": "safesteer_diffusers.pipelines.wrap",
    "SafetySteeringMixin": "safesteer_diffusers.pipelines.wrap",
    "EncodeOutputs": "safesteer_diffusers.pipelines.registry",
    "TargetSpec": "safesteer_diffusers.pipelines.registry",
    "register_target": "safesteer_diffusers.pipelines.registry",
    "registered_targets": "safesteer_diffusers.pipelines.registry",
}

__all__ = [
    "ConcurrentCallError",
    "DirectionDecision",
    "DirectionPack",
    "EncodeOutputs",
    "GLOBAL",
    "I2P_CATEGORIES",
    "InvalidPackError",
    "PACK_FILENAME",
    "PromptReport",
    "SafeSteer",
    "SafetySteeringMixin",
    "SpaceLayout",
    "SteeringConfig",
    "SteeringLocked",
    "SteeringNotApplied",
    "SteeringReport",
    "TargetSpec",
    "__version__",
    "register_target",
    "registered_targets",
]
# (kept literal for linters; a test checks it equals _PUBLIC plus __version__)

if TYPE_CHECKING:  # for type checkers and IDEs; at run time names load on first use
    from .packs.direction_pack import DirectionPack
    from .packs.format import GLOBAL, I2P_CATEGORIES, PACK_FILENAME
    from .pipelines.installation import ConcurrentCallError
    from .pipelines.registry import EncodeOutputs, TargetSpec, register_target, registered_targets
    from .pipelines.wrap import SafeSteer, SafetySteeringMixin
    from .steering.config import SteeringConfig
    from .steering.errors import SteeringLocked, SteeringNotApplied
    from .steering.layout import SpaceLayout
    from .steering.report import DirectionDecision, PromptReport, SteeringReport


def __getattr__(name: str):
    module = _PUBLIC.get(name)
    if module is None:
        raise AttributeError(f"module 'safesteer_diffusers' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # resolve once
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_PUBLIC))

"""safesteer-diffusers: cross-model safety steering for diffusers text-to-image and text-to-video pipelines.

Public API::

    from safesteer_diffusers import SafeSteer, DirectionPack
    pipe = SafeSteer.wrap(pipe, "org/safesteer-flux1-schnell", strength=5.0, categories={"sexual": 2.0})
"""

from .config import SteeringConfig
from .mixin import SafeSteer, SafetySteeringMixin
from .pack import GLOBAL, I2P_CATEGORIES, PACK_FILENAME, DirectionPack
from .report import DirectionDecision, PromptReport, SteeringReport
from .targets import EncodeOutputs, SpaceLayout, TargetSpec, register_target, registered_targets
from .version import __version__

__all__ = [
    "GLOBAL",
    "I2P_CATEGORIES",
    "PACK_FILENAME",
    "DirectionDecision",
    "DirectionPack",
    "EncodeOutputs",
    "PromptReport",
    "SafeSteer",
    "SafetySteeringMixin",
    "SpaceLayout",
    "SteeringConfig",
    "SteeringReport",
    "TargetSpec",
    "__version__",
    "register_target",
    "registered_targets",
]

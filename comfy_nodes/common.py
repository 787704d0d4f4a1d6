"""What every SafeSteer node shares: the strength inputs and how they become a ``SteeringConfig``."""

from __future__ import annotations

import logging

from safesteer_diffusers.packs.direction_pack import DirectionPack
from safesteer_diffusers.packs.format import GLOBAL, I2P_CATEGORIES
from safesteer_diffusers.steering.config import SteeringConfig

CATEGORY = "safesteer"
PACK_TYPE = "SAFESTEER_PACK"
LOGGER = logging.getLogger("safesteer")

CATEGORY_INPUTS = {name.replace("-", "_").replace(" ", "_"): name for name in I2P_CATEGORIES}
"""Node input name -> pack category name (the seven I2P categories; input names are identifiers)."""

_STRENGTH = {"min": -20.0, "max": 20.0, "step": 0.05}


def strength_inputs() -> dict[str, tuple]:
    """The ``INPUT_TYPES`` entries shared by the steering nodes, in display order."""
    inputs: dict[str, tuple] = {
        "strength": (
            "FLOAT",
            {
                "default": 1.0,
                **_STRENGTH,
                "tooltip": "Strength of the pack's global direction (positive = safer, 0 = off).",
            },
        )
    }
    for input_name, category in CATEGORY_INPUTS.items():
        inputs[input_name] = (
            "FLOAT",
            {
                "default": 0.0,
                **_STRENGTH,
                "tooltip": f"Strength of the {category!r} direction; ignored when the pack has none.",
            },
        )
    inputs["mode"] = (["add", "project"], {"default": "add"})
    inputs["gate"] = (
        "BOOLEAN",
        {
            "default": False,
            "tooltip": "Steer a prompt only with the directions whose benign-calibrated gate it passes.",
        },
    )
    return inputs


def config_from_inputs(
    pack: DirectionPack, strength: float, mode: str, gate: bool, **categories
) -> SteeringConfig:
    """A validated :class:`SteeringConfig` from node inputs; strengths the pack cannot use are dropped.

    Raises:
        TypeError: when ``pack`` is not a ``DirectionPack`` (wrong link in the graph).
        ValueError: on invalid values, or ``gate`` with a pack that has no thresholds.
    """
    if not isinstance(pack, DirectionPack):
        raise TypeError(
            f"Expected a {PACK_TYPE} from 'Load SafeSteer Pack', got {type(pack).__name__}. Connect the pack "
            "input to a Load SafeSteer Pack node."
        )
    unknown = sorted(set(categories) - set(CATEGORY_INPUTS))
    if unknown:
        raise TypeError(f"Unknown strength inputs {unknown}; expected {sorted(CATEGORY_INPUTS)}.")
    ignored = []
    strengths = {}
    for input_name, value in categories.items():
        name = CATEGORY_INPUTS[input_name]
        if name in pack.categories:
            strengths[name] = float(value)
        elif value:
            ignored.append(name)
    if GLOBAL not in pack.names and strength:
        ignored.append(GLOBAL)
    if ignored:
        LOGGER.info("SafeSteer: this pack has no %s direction(s); their strengths are ignored.", ignored)
    return SteeringConfig(
        strength=float(strength) if GLOBAL in pack.names else 0.0,
        categories=strengths,
        mode=mode,
        gate=bool(gate),
    )

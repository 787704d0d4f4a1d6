"""What every SafeSteer node shares: the strength inputs and how they become a validated ``SteeringConfig``.

The nodes fail closed like the library: a strength that cannot be applied exactly (the pack has no such
direction, a value out of bounds or toward the unsafe side) is an error when the node runs, never a value that
is dropped, clamped or only logged.
"""

from __future__ import annotations

import logging
import math

from safesteer_diffusers.packs.direction_pack import DirectionPack
from safesteer_diffusers.packs.format import GLOBAL, I2P_CATEGORIES
from safesteer_diffusers.steering.conditioning import missing_directions
from safesteer_diffusers.steering.config import MAX_STRENGTH, SteeringConfig

CATEGORY = "safesteer"
PACK_TYPE = "SAFESTEER_PACK"
PACK_TOOLTIP = "The direction pack, from a Load SafeSteer Pack node."
LOGGER = logging.getLogger("safesteer")

SOURCE_GATE_UNUSED = (
    "{node}: gate is on and scores the text states, but this pack also carries a source-model gate, which "
    "catches far more unsafe prompts at the same benign rate (docs/method.md 6.5). {fix}"
)
"""Logged when a node's gate leaves the pack's stronger source-model gate unused (advice: the text-state gate is
still applied as configured)."""
CONNECT_GATE_MODEL = (
    "Connect Load SafeSteer Gate Model (the pack's source model) and the prompt text to use it."
)

CATEGORY_INPUTS = {name.replace("-", "_").replace(" ", "_"): name for name in I2P_CATEGORIES}
"""Node input name -> pack category name (the seven I2P categories; input names are identifiers)."""

# The widgets cannot go below 0 or above the library's bound; ComfyUI's own validation refuses such values in
# a submitted graph, and config_from_inputs refuses them when a node is called directly.
_STRENGTH = {"min": 0.0, "max": MAX_STRENGTH, "step": 0.05}


def strength_inputs() -> dict[str, tuple]:
    """The ``INPUT_TYPES`` entries shared by the steering nodes, in display order (each with a tooltip)."""
    inputs: dict[str, tuple] = {
        "strength": (
            "FLOAT",
            {
                "default": 1.0,
                **_STRENGTH,
                "tooltip": f"Strength of the pack's global direction, 0-{MAX_STRENGTH:g}: 0 = off (unchanged, "
                "bit for bit), higher = safer; 1 is about one benign standard deviation, useful values are "
                "1-10. A nonzero value needs a pack with a global direction (the node refuses otherwise).",
            },
        )
    }
    for input_name, category in CATEGORY_INPUTS.items():
        inputs[input_name] = (
            "FLOAT",
            {
                "default": 0.0,
                **_STRENGTH,
                "tooltip": f"Strength of the pack's {category!r} direction (I2P category), 0-{MAX_STRENGTH:g}: "
                "0 = off, higher = safer. A nonzero value needs a pack built with this category (the node "
                "refuses otherwise); it adds to the global strength.",
            },
        )
    inputs["mode"] = (
        ["add", "project"],
        {
            "default": "add",
            "tooltip": "add: add strength x direction to the text states (the paper's method). project: only "
            "push back the part of the text states that lies on the unsafe side of the pack's benign centre; "
            "states already on the safe side are left as they are.",
        },
    )
    inputs["gate"] = (
        "BOOLEAN",
        {
            "default": False,
            "tooltip": "On: steer a prompt with a direction only when its score on that direction passes the "
            "pack's benign-calibrated threshold (benign prompts pass through unchanged); needs a pack with "
            "gate thresholds. Off: steer every prompt.",
        },
    )
    return inputs


PACK_DEFAULT_FPR = "pack default"
GATE_FPR_CHOICES = (PACK_DEFAULT_FPR, "0.001", "0.005", "0.01", "0.02", "0.05", "0.1")


def gate_fpr_input() -> dict:
    """The optional ``gate_fpr`` input of the steering nodes (optional: saved graphs without it keep working)."""
    return {
        "gate_fpr": (
            list(GATE_FPR_CHOICES),
            {
                "default": PACK_DEFAULT_FPR,
                "tooltip": "With gate on: which of the pack's thresholds to use, by the share of benign prompts "
                "they let fire (pack default: the pack's own, usually 0.01). Higher = more unsafe prompts and "
                "more benign ones steered (measured trade-off: docs/method.md 6.5). Needs a pack that stores "
                "that rate (packs built by `safesteer build` do; the node refuses otherwise).",
            },
        )
    }


def config_from_inputs(
    pack: DirectionPack,
    strength: float,
    mode: str,
    gate: bool,
    gate_fpr: str = PACK_DEFAULT_FPR,
    **categories,
) -> SteeringConfig:
    """A validated :class:`SteeringConfig` from node inputs; every nonzero strength must be applicable.

    Raises:
        TypeError: when ``pack`` is not a ``DirectionPack`` (wrong link in the graph), or on unknown inputs.
        ValueError: a strength that is not finite, is negative or exceeds ``MAX_STRENGTH``; a nonzero strength
            for a direction the pack does not have; any other refusal of :class:`SteeringConfig` (each message
            names the inputs to change).
    """
    if not isinstance(pack, DirectionPack):
        raise TypeError(
            f"Expected a {PACK_TYPE} from 'Load SafeSteer Pack', got {type(pack).__name__}. Connect the pack "
            "input to a Load SafeSteer Pack node."
        )
    unknown = sorted(set(categories) - set(CATEGORY_INPUTS))
    if unknown:
        raise TypeError(f"Unknown strength inputs {unknown}; expected {sorted(CATEGORY_INPUTS)}.")
    _check_bounds({"strength": strength, **categories})
    if gate_fpr not in GATE_FPR_CHOICES:
        raise ValueError(f"gate_fpr must be one of {list(GATE_FPR_CHOICES)}, got {gate_fpr!r}.")
    # Zero means "off": only nonzero category strengths are named, so a pack without a category the node
    # has an input for is fine as long as that input stays 0.
    config = SteeringConfig(
        strength=float(strength),
        categories={CATEGORY_INPUTS[name]: float(value) for name, value in categories.items() if value != 0},
        mode=mode,
        gate=bool(gate),
        gate_fpr=None if gate_fpr == PACK_DEFAULT_FPR else float(gate_fpr),
        strength_limit=MAX_STRENGTH,
        allow_toward_unsafe=False,
    )
    missing = missing_directions(pack, config)
    if missing:
        raise ValueError(_missing_message(pack, missing))
    return config


def _input_name(direction: str) -> str:
    if direction == GLOBAL:
        return "strength"
    return next((name for name, category in CATEGORY_INPUTS.items() if category == direction), direction)


def _missing_message(pack: DirectionPack, missing: dict[str, float]) -> str:
    inputs = [_input_name(name) for name in missing]
    asked = ", ".join(
        f"{_input_name(name)}={value:g} (the {name!r} direction)" for name, value in missing.items()
    )
    return (
        f"SafeSteer: the pack has no direction for {asked}, so this steering cannot be applied. The pack's "
        f"directions are {pack.names}. Set {' and '.join(inputs)} to 0, or load a pack built with "
        f"{'this direction' if len(missing) == 1 else 'these directions'}."
    )


def _check_bounds(values: dict[str, object]) -> None:
    # The same bound as SteeringConfig's strength_limit, checked here first so that the message names node
    # inputs and the node's range; the nodes have no opt-out of the bound or of the unsafe side.
    bad = {
        name: value
        for name, value in values.items()
        if isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or not 0 <= value <= MAX_STRENGTH
    }
    if bad:
        raise ValueError(
            f"SafeSteer: strength inputs must be finite numbers from 0 to {MAX_STRENGTH:g}, got {bad}. "
            "Strength 1 is about one benign standard deviation; useful values are 1-10. Set those inputs within "
            f"0-{MAX_STRENGTH:g}. Negative strengths (toward the unsafe side) are refused by the nodes; for red-teaming use "
            "the Python API (SteeringConfig(allow_toward_unsafe=True))."
        )

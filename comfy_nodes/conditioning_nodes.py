"""SafeSteer Conditioning (steer a ``CONDITIONING``) and SafeSteer Report (which categories fire, as text)."""

from __future__ import annotations

from safesteer_diffusers.packs.direction_pack import DirectionPack
from safesteer_diffusers.steering.conditioning import TextSteerer
from safesteer_diffusers.steering.config import SteeringConfig

from .common import CATEGORY, PACK_TYPE, config_from_inputs, strength_inputs


def _entries(conditioning):
    if not isinstance(conditioning, list | tuple):
        raise TypeError(
            f"Expected a ComfyUI CONDITIONING (a list of [tensor, dict]), got {type(conditioning).__name__}."
        )
    for index, entry in enumerate(conditioning):
        if not isinstance(entry, list | tuple) or len(entry) < 2 or not hasattr(entry[0], "shape"):
            raise TypeError(f"CONDITIONING entry {index} is not a [tensor, dict] pair.")
        yield index, entry[0], entry[1]


class SafeSteerConditioning:
    """Steer the text states of a CONDITIONING: ``tensor + strength * vector``; pooled output untouched."""

    CATEGORY = CATEGORY
    RETURN_TYPES = ("CONDITIONING",)
    RETURN_NAMES = ("conditioning",)
    FUNCTION = "steer"
    DESCRIPTION = (
        "Adds strength * direction to the text states of a (positive) CONDITIONING. Works for any model whose "
        "conditioning width matches the pack (one space of that width, SDXL's 768 + 1280, or SD3's CLIP + T5 "
        "layout). The pooled output and other entries are passed through unchanged."
    )

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"conditioning": ("CONDITIONING",), "pack": (PACK_TYPE,), **strength_inputs()}}

    def steer(self, conditioning, pack, strength, mode, gate, **categories):
        steerer = TextSteerer(pack, config_from_inputs(pack, strength, mode, gate, **categories))
        out = []
        for index, tensor, extras in _entries(conditioning):
            try:
                steered, _ = steerer(tensor)
            except ValueError as error:
                raise ValueError(f"CONDITIONING entry {index}: {error}") from error
            # A new list and dict: the input CONDITIONING (possibly cached by ComfyUI) is never modified.
            out.append([steered, dict(extras)])
        return (out,)


def report_text(pack: DirectionPack, conditioning=None) -> str:
    """The SafeSteer Report: the pack, then per prompt row the score, threshold and verdict of each direction.

    Every direction is scored with strength 1 (so the text says what the gate decides for this prompt; the
    steering nodes then apply the strengths you set to the directions that fire).
    """
    if not isinstance(pack, DirectionPack):
        raise TypeError(f"Expected a {PACK_TYPE} from 'Load SafeSteer Pack', got {type(pack).__name__}.")
    lines = [repr(pack)]
    if conditioning is None:
        lines.append("Connect a CONDITIONING to see which categories fire for its prompt.")
        return "\n".join(lines)
    gate = pack.has_gate
    config = SteeringConfig(strength=1.0, categories={name: 1.0 for name in pack.categories}, gate=gate)
    steerer = TextSteerer(pack, config)
    if not gate:
        lines.append(
            "This pack has no gate thresholds: nothing is gated; every direction with a nonzero strength applies."
        )
    for index, tensor, _ in _entries(conditioning):
        try:
            _, report = steerer(tensor)
        except ValueError as error:
            raise ValueError(f"CONDITIONING entry {index}: {error}") from error
        for row in report.prompts:
            if gate:
                fired = ", ".join(row.fired) or "none (benign for every direction)"
                lines.append(f"conditioning {index}, row {row.row}: fired: {fired}")
            else:
                lines.append(f"conditioning {index}, row {row.row}: scores (no gate)")
            for decision in row.directions:
                parts = []
                for space, score in decision.scores.items():
                    threshold = decision.thresholds.get(space)
                    bound = "" if threshold is None else f" (threshold {threshold:.4g})"
                    parts.append(f"{space} {score:.4g}{bound}")
                verdict = (" FIRED" if decision.fired else " -") if gate else ""
                lines.append(f"  {decision.name:<17} {'; '.join(parts)}{verdict}")
    return "\n".join(lines)


class SafeSteerReport:
    """Show which categories fire for a prompt's CONDITIONING under the pack's gate, as text."""

    CATEGORY = CATEGORY
    RETURN_TYPES = ("STRING",)
    RETURN_NAMES = ("report",)
    FUNCTION = "report"
    OUTPUT_NODE = True
    DESCRIPTION = (
        "Scores the prompt's text states on every direction of the pack and shows, per prompt, which "
        "categories pass the pack's benign-calibrated gate (the ones gate=True would steer)."
    )

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"pack": (PACK_TYPE,)}, "optional": {"conditioning": ("CONDITIONING",)}}

    def report(self, pack, conditioning=None):
        text = report_text(pack, conditioning)
        return {"ui": {"text": [text]}, "result": (text,)}

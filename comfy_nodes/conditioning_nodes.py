"""SafeSteer Conditioning (steer a ``CONDITIONING``) and SafeSteer Report (what was applied, and the gate's view).

SafeSteer Conditioning records in each entry it outputs the library's report of what it applied (under
:data:`APPLIED_KEY`, with the tensor it produced); SafeSteer Report reads that record back, so the report states
what was applied to *this* conditioning, never what a node was configured to do.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from safesteer_diffusers.packs.direction_pack import DirectionPack
from safesteer_diffusers.steering.conditioning import TextSteerer
from safesteer_diffusers.steering.config import SteeringConfig
from safesteer_diffusers.steering.plan import PROMPT_GATE_SPACE
from safesteer_diffusers.steering.report import SteeringReport

from .common import (
    CATEGORY,
    CONNECT_GATE_MODEL,
    LOGGER,
    PACK_DEFAULT_FPR,
    PACK_TOOLTIP,
    PACK_TYPE,
    SOURCE_GATE_UNUSED,
    config_from_inputs,
    gate_fpr_input,
    strength_inputs,
)
from .gate_model_nodes import GATE_MODEL_TYPE, GateModel
from .pack_nodes import loaded_name
from .report_format import gate_check_line, outcome_lines, pack_header

APPLIED_KEY = "safesteer_applied"
"""Key of a CONDITIONING entry's dict under which SafeSteer Conditioning records what it applied. ComfyUI
passes unknown keys along and no model reads this one."""


@dataclass(frozen=True)
class AppliedSteering:
    """What one SafeSteer Conditioning node applied to one CONDITIONING entry.

    Attributes:
        report: the library's report of the call (per row: the offsets actually added, the strengths used).
        tensor: the text tensor the node output; the record describes an entry only while it holds this tensor.
        earlier: records of SafeSteer Conditioning nodes upstream whose output this node steered further.
    """

    report: SteeringReport
    tensor: torch.Tensor
    earlier: tuple[AppliedSteering, ...] = ()

    def describes(self, tensor) -> bool:
        """Whether ``tensor`` is still what the node output (a node in between may have replaced it)."""
        if tensor is self.tensor:
            return True
        other = self.tensor
        return (
            isinstance(tensor, torch.Tensor)
            and tensor.shape == other.shape
            and tensor.dtype == other.dtype
            and tensor.device == other.device
            and torch.equal(tensor, other)
        )


def applied_record(tensor, extras) -> AppliedSteering | None:
    """The record of what SafeSteer Conditioning applied to this entry, or ``None`` if none still holds."""
    record = extras.get(APPLIED_KEY) if isinstance(extras, dict) else None
    return record if isinstance(record, AppliedSteering) and record.describes(tensor) else None


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
        return {
            "required": {
                "conditioning": (
                    "CONDITIONING",
                    {
                        "tooltip": "The positive prompt's conditioning (from CLIP Text Encode); the negative "
                        "prompt is not meant to be steered."
                    },
                ),
                "pack": (PACK_TYPE, {"tooltip": PACK_TOOLTIP + " Its width must fit the conditioning."}),
                **strength_inputs(),
            },
            "optional": {
                **gate_fpr_input(),
                "gate_model": (
                    GATE_MODEL_TYPE,
                    {
                        "tooltip": "With gate on: the pack's source model (Load SafeSteer Gate Model) decides "
                        "from the prompt text instead of the gate on the text states; needs the prompt input "
                        "and a pack built with --source-gate."
                    },
                ),
                "prompt": (
                    "STRING",
                    {
                        "forceInput": True,
                        "tooltip": "The positive prompt's text, the same text the CONDITIONING was encoded "
                        "from (wire one text node into both). Needed by gate_model; shown in the report.",
                    },
                ),
            },
        }

    def steer(
        self,
        conditioning,
        pack,
        strength,
        mode,
        gate,
        gate_fpr=PACK_DEFAULT_FPR,
        gate_model=None,
        prompt=None,
        **categories,
    ):
        config = config_from_inputs(pack, strength, mode, gate, gate_fpr, **categories)
        steerer = TextSteerer(pack, config, prompt_gate=_source_gate(pack, config, gate_model))
        entries = list(_entries(conditioning))
        if not entries and not steerer.is_noop:
            raise ValueError(
                "SafeSteer Conditioning got an empty CONDITIONING, so the steering set on it cannot be applied. "
                "Connect the positive prompt's CONDITIONING (from a CLIP Text Encode node)."
            )
        out = []
        for index, tensor, extras in entries:
            # Every row of an entry comes from the one prompt; None (no text) makes a source gate refuse.
            texts = [prompt if isinstance(prompt, str) and prompt.strip() else None] * int(tensor.shape[0])
            try:
                steered, report = steerer(tensor, prompts=texts)
            except ValueError as error:
                raise ValueError(f"CONDITIONING entry {index}: {error}") from error
            # A new list and dict: the input CONDITIONING (possibly cached by ComfyUI) is never modified.
            earlier = applied_record(tensor, extras)
            record = AppliedSteering(report, steered, () if earlier is None else (*earlier.earlier, earlier))
            out.append([steered, {**extras, APPLIED_KEY: record}])
        return (out,)


def _source_gated(record: AppliedSteering | None) -> bool:
    """Whether a source-model gate decided the steering recorded in ``record``."""
    return record is not None and any(
        PROMPT_GATE_SPACE in decision.scores for row in record.report.prompts for decision in row.directions
    )


def _source_gate(pack, config, gate_model):
    """The pack's source-model gate scored by ``gate_model``, or ``None`` when no gate model is connected.

    Raises:
        TypeError: ``gate_model`` is not a Load SafeSteer Gate Model output.
        ValueError: gate is off (the model would decide nothing), or the pack has no source gate / the model
            does not fit it (the library's message).
    """
    if gate_model is None:
        if config.gate and pack.has_source_gate:
            LOGGER.warning(SOURCE_GATE_UNUSED.format(node="SafeSteer Conditioning", fix=CONNECT_GATE_MODEL))
        return None
    if not isinstance(gate_model, GateModel):
        raise TypeError(
            f"gate_model must come from Load SafeSteer Gate Model, got {type(gate_model).__name__}."
        )
    if not config.gate:
        raise ValueError(
            "SafeSteer Conditioning: gate_model is connected but gate is off, so it would decide nothing. Turn "
            "gate on (the source model then decides which directions fire), or disconnect gate_model."
        )
    from safesteer_diffusers.pipelines.source_gate import SourceGate

    return SourceGate(pack, gate_model.model, gate_model.tokenizer, fpr=config.gate_fpr)


def _applied_lines(index: int, tensor, extras) -> list[str]:
    record = applied_record(tensor, extras)
    if record is None:
        if isinstance(extras, dict) and APPLIED_KEY in extras:
            return [
                f"conditioning {index}: unknown: a node after SafeSteer Conditioning replaced these text states, "
                "so what they hold was not applied by it. Connect the report right after SafeSteer Conditioning."
            ]
        return [
            f"conditioning {index}: nothing applied by SafeSteer Conditioning (none upstream; a SafeSteer Model "
            "applies its steering while sampling, not to the conditioning)."
        ]
    lines = []
    for number, step in enumerate((*record.earlier, record), start=1):
        prefix = f"conditioning {index}" + (f", SafeSteer Conditioning {number}" if record.earlier else "")
        for row in step.report.prompts:
            gated = [d.name for d in row.directions if d.configured != 0 and d.strength == 0]
            if row.steered:
                used = ", ".join(f"{d.name} {d.strength:g}" for d in row.directions if d.strength != 0)
                offsets = ", ".join(f"{space} {norm:.4g}" for space, norm in row.applied.items())
                also = f"; gated out: {', '.join(gated)}" if gated else ""
                lines.append(f"{prefix}, row {row.row}: applied: {used}; offset norm added: {offsets}{also}")
            elif gated:
                lines.append(f"{prefix}, row {row.row}: applied: nothing (gated out: {', '.join(gated)})")
            elif any(d.configured != 0 for d in row.directions):
                lines.append(
                    f"{prefix}, row {row.row}: applied: nothing (zero offset: nothing to clamp in 'project')"
                )
            else:
                lines.append(f"{prefix}, row {row.row}: applied: nothing (every strength 0)")
            # Under each row, every direction in the library's words, applied strength beside configured.
            lines.extend(outcome_lines(row, step.report.gate))
    return lines


def report_text(pack: DirectionPack, conditioning=None) -> str:
    """The SafeSteer Report: the pack in words; per CONDITIONING entry what SafeSteer Conditioning applied to it (from
    the library's report); then the gate check: per prompt row, each direction's score, threshold and verdict.

    The gate check scores every direction on the text states as they arrive here (after steering, when they
    were steered) and adds nothing to them: it says what ``gate=True`` would steer, not what was applied.
    """
    if not isinstance(pack, DirectionPack):
        raise TypeError(f"Expected a {PACK_TYPE} from 'Load SafeSteer Pack', got {type(pack).__name__}.")
    lines = pack_header(pack, loaded_name(pack))
    if conditioning is None:
        lines.append(
            "Connect a CONDITIONING to see what was applied to it and which categories fire for its prompt."
        )
        return "\n".join(lines)
    entries = list(_entries(conditioning))
    lines.append(
        "Applied (what SafeSteer Conditioning added to this conditioning, from the library's report):"
    )
    for index, tensor, extras in entries:
        lines.extend(_applied_lines(index, tensor, extras))
    gate = pack.has_gate
    # Every strength 0: the plan scores each direction and takes the gate's decision but adds no offset, so the
    # report node itself never changes (or fails to change) any state.
    steerer = TextSteerer(pack, SteeringConfig(strength=0.0, gate=gate))
    steered_here = any(applied_record(tensor, extras) is not None for _, tensor, extras in entries)
    lines.append(
        "Gate check (what gate=True would steer; nothing here is applied)"
        + (
            ", scored on the text states as they arrive here, after the steering above:"
            if steered_here
            else ":"
        )
    )
    if not gate:
        lines.append(
            "This pack has no gate thresholds: the scores are compared with nothing (gate=True is refused)."
        )
    if any(_source_gated(applied_record(tensor, extras)) for _, tensor, extras in entries):
        lines.append(
            "(The steering above was decided by the source model from the prompt text (gate_model); the check "
            "below is the pack's gate on the text states, which decided nothing here.)"
        )
    for index, tensor, _ in entries:
        try:
            _, report = steerer(tensor)
        except ValueError as error:
            raise ValueError(f"CONDITIONING entry {index}: {error}") from error
        for row in report.prompts:
            if gate:
                fired = (
                    ", ".join(d.name for d in row.directions if d.fired)
                    or "none (benign for every direction)"
                )
                lines.append(f"conditioning {index}, row {row.row}: fired: {fired}")
            else:
                lines.append(f"conditioning {index}, row {row.row}: scores (no gate)")
            lines.extend(gate_check_line(decision, gate) for decision in row.directions)
    return "\n".join(lines)


class SafeSteerReport:
    """Show what SafeSteer Conditioning applied to a CONDITIONING, and which categories its gate would fire."""

    CATEGORY = CATEGORY
    RETURN_TYPES = ("STRING",)
    RETURN_NAMES = ("report",)
    FUNCTION = "report"
    OUTPUT_NODE = True
    DESCRIPTION = (
        "For a CONDITIONING that went through SafeSteer Conditioning: per prompt, the directions and strengths "
        "actually applied and the size of the offset added (from the library's report). Then the gate check: "
        "the prompt's scores on every direction of the pack and which categories pass its benign-calibrated "
        "gate (what gate=True would steer)."
    )

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {"pack": (PACK_TYPE, {"tooltip": PACK_TOOLTIP + " The report describes it."})},
            "optional": {
                "conditioning": (
                    "CONDITIONING",
                    {
                        "tooltip": "A conditioning to report on: what SafeSteer Conditioning applied to it, and "
                        "which directions its prompt would fire with gate on. Leave it unconnected to "
                        "describe the pack only."
                    },
                ),
            },
        }

    def report(self, pack, conditioning=None):
        text = report_text(pack, conditioning)
        return {"ui": {"text": [text]}, "result": (text,)}

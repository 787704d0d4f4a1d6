"""Per-call steering report: which directions fired for which prompt, with scores and strengths.

A report is built from what was applied, never from the configuration: a row's ``steered`` is true exactly
when an offset with a nonzero norm was added to its text states (``applied``), and each direction's
``strength`` is the strength that went into that offset (0 when gated out), beside the ``configured`` one.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

OUTCOMES = {
    "steered": "steered",
    "below": "not steered (below threshold)",
    "ungated": "gate off: steered unconditionally",
    "off": "not requested (strength 0)",
}
"""The one vocabulary of reports, in the library, the CLI, the demo and the ComfyUI report node: a direction
is *steered* (the gate let it through), *not steered (below threshold)*, *steered unconditionally* (gate off),
or *not requested* (strength 0)."""


@dataclass
class DirectionDecision:
    """One direction's outcome for one prompt row.

    Attributes:
        name: ``"global"`` or a category.
        strength: strength actually applied (0 when gated out or not requested).
        fired: whether the gate let it through (always ``True`` when the gate is off).
        scores: space -> gate score (the mean steered state along the pack's gate vector; under
            ``"source_model"``, the source-model gate's score when ``gate_model=`` decides).
        thresholds: space -> gate threshold from the pack (``None`` if the pack has none).
        configured: the strength the configuration asks for (before the gate).
    """

    name: str
    strength: float
    fired: bool
    scores: dict[str, float]
    thresholds: dict[str, float | None]
    configured: float = 0.0

    def outcome(self, gate: bool) -> str:
        """What happened to this direction, in the report's vocabulary (see :data:`OUTCOMES`)."""
        if self.configured == 0:
            return OUTCOMES["off"]
        if not gate:
            return OUTCOMES["ungated"]
        return OUTCOMES["steered"] if self.strength != 0 else OUTCOMES["below"]

    def score_text(self) -> str:
        """Each space's score and, in words, where it stands against the pack's threshold."""
        parts = []
        for space, score in self.scores.items():
            threshold = self.thresholds.get(space)
            if threshold is None:
                parts.append(f"{space} score {score:+.3f} (no threshold in the pack)")
            else:
                side = "above" if score > threshold else "not above"
                parts.append(f"{space} score {score:+.3f}, {side} threshold {threshold:+.3f}")
        return "; ".join(parts)


@dataclass
class PromptReport:
    """Steering of one positive prompt row (rows follow the pipeline's batch, incl. images per prompt).

    Attributes:
        row: row in the positive prompt batch.
        prompt: the prompt text, or ``None`` (``prompt_embeds=``).
        directions: one decision per pack direction.
        applied: space -> mean norm, over the steered token positions, of the offset actually added to this
            row's states in that space (empty when nothing was added). For cross-attention steering it is the
            offset added at each steered layer and step.
    """

    row: int
    prompt: str | None
    directions: list[DirectionDecision] = field(default_factory=list)
    applied: dict[str, float] = field(default_factory=dict)

    @property
    def steered(self) -> bool:
        """Whether a nonzero offset was added to this row (from what was applied, not from the config)."""
        return any(norm > 0 for norm in self.applied.values())

    @property
    def fired(self) -> list[str]:
        """Names of the directions applied to this row with a nonzero strength."""
        return [d.name for d in self.directions if d.fired and d.strength != 0]


@dataclass
class SteeringReport:
    """What steering did during the last generation (``pipe.safety_report``).

    Attributes:
        family, mode, injection, gate, enabled: the settings the call ran with.
        gate_fpr: the benign false-positive rate whose thresholds the gate used (``None``: the pack's default).
        prompts: one :class:`PromptReport` per positive prompt row.
        negative_steered: whether an offset was added to the negative prompt (``negative_strength``).
        attention_applications: cross-attention steering only: how many attention calls received offsets.
    """

    family: str
    mode: str
    injection: str
    gate: bool
    enabled: bool
    prompts: list[PromptReport] = field(default_factory=list)
    negative_steered: bool = False
    attention_applications: int = 0
    gate_fpr: float | None = None

    @property
    def any_steered(self) -> bool:
        return any(p.steered for p in self.prompts)

    def to_dict(self) -> dict:
        """A JSON-serialisable dict (with each row's derived ``steered``)."""
        data = asdict(self)
        for row, prompt in zip(data["prompts"], self.prompts, strict=True):
            row["steered"] = prompt.steered
        return data

    def __str__(self) -> str:
        gate = "gate off"
        if self.gate:
            gate = (
                "gate on"
                if self.gate_fpr is None
                else f"gate on (benign false-positive rate {self.gate_fpr:g})"
            )
        state = "steering enabled" if self.enabled else "steering disabled (outputs as unwrapped)"
        lines = [
            f"SafeSteer report: {self.family}, mode {self.mode}, {self.injection} steering, {gate}, {state}"
        ]
        for prompt in self.prompts:
            label = repr(prompt.prompt) if prompt.prompt is not None else "(prompt_embeds)"
            if prompt.steered:
                offsets = ", ".join(f"{space} {norm:.3g}" for space, norm in prompt.applied.items())
                summary = f"steered by {', '.join(prompt.fired)} (offset norm per token: {offsets})"
            elif self.gate and any(d.configured != 0 for d in prompt.directions):
                summary = OUTCOMES["below"]
            else:
                summary = "not steered (strength 0)"
            lines.append(f"  row {prompt.row} {label}: {summary}")
            for d in prompt.directions:
                lines.append(
                    f"    {d.name:<17} {d.outcome(self.gate):<34} strength applied {d.strength:g} "
                    f"(configured {d.configured:g}); {d.score_text()}"
                )
        if self.negative_steered:
            lines.append("  negative prompt: steered (negative_strength)")
        return "\n".join(lines)

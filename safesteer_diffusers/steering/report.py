"""Per-call steering report: which directions fired for which prompt, with scores and strengths.

A report is built from what was applied, never from the configuration: a row's ``steered`` is true exactly
when an offset with a nonzero norm was added to its text states (``applied``), and each direction's
``strength`` is the strength that went into that offset (0 when gated out), beside the ``configured`` one.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field


@dataclass
class DirectionDecision:
    """One direction's outcome for one prompt row.

    Attributes:
        name: ``"global"`` or a category.
        strength: strength actually applied (0 when gated out or not requested).
        fired: whether the gate let it through (always ``True`` when the gate is off).
        scores: space -> score (the prompt's projection on the unsafe side of the direction).
        thresholds: space -> gate threshold from the pack (``None`` if the pack has none).
        configured: the strength the configuration asks for (before the gate).
    """

    name: str
    strength: float
    fired: bool
    scores: dict[str, float]
    thresholds: dict[str, float | None]
    configured: float = 0.0


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
        lines = [
            f"SafeSteer report: family={self.family} mode={self.mode} injection={self.injection} "
            f"gate={'on' if self.gate else 'off'} enabled={self.enabled}"
        ]
        for prompt in self.prompts:
            label = repr(prompt.prompt) if prompt.prompt is not None else "(prompt_embeds)"
            lines.append(
                f"  row {prompt.row} {label}: {'steered by ' + ', '.join(prompt.fired) if prompt.steered else 'untouched'}"
            )
            for d in prompt.directions:
                scores = ", ".join(
                    f"{space}={score:.3f}"
                    + (f">{d.thresholds[space]:.3f}" if d.thresholds.get(space) is not None else "")
                    for space, score in d.scores.items()
                )
                lines.append(f"    {d.name:<18} strength={d.strength:g} fired={d.fired} score[{scores}]")
        if self.negative_steered:
            lines.append("  negative prompt: steered (negative_strength)")
        return "\n".join(lines)

"""Per-call steering report: which directions fired for which prompt, with scores and strengths."""

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
    """

    name: str
    strength: float
    fired: bool
    scores: dict[str, float]
    thresholds: dict[str, float | None]


@dataclass
class PromptReport:
    """Steering of one positive prompt row (rows follow the pipeline's batch, incl. images per prompt)."""

    row: int
    prompt: str | None
    steered: bool
    directions: list[DirectionDecision] = field(default_factory=list)

    @property
    def fired(self) -> list[str]:
        """Names of the directions applied to this row with a nonzero strength."""
        return [d.name for d in self.directions if d.fired and d.strength != 0]


@dataclass
class SteeringReport:
    """What steering did during the last generation (``pipe.safety_report``)."""

    family: str
    mode: str
    injection: str
    gate: bool
    enabled: bool
    prompts: list[PromptReport] = field(default_factory=list)
    negative_steered: bool = False

    @property
    def any_steered(self) -> bool:
        return any(p.steered for p in self.prompts)

    def to_dict(self) -> dict:
        """A JSON-serialisable dict."""
        return asdict(self)

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

"""`SteeringPlan`: a pack, the pipeline's text-space layout and a config compiled into tensors ready to apply.

The plan works on the denoiser's text tensor ``[B, T, D_total]`` (what ``encode_prompt`` returns for the
positive prompt). For each space it slices that space's token positions and feature columns, scores every
direction for the gate, and builds the offset. Everything here is tensor code; the only pipeline knowledge
is the list of :class:`~safesteer_diffusers.steering.layout.SpaceLayout`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import torch

from safesteer_diffusers.packs.direction_pack import DirectionPack
from safesteer_diffusers.packs.format import GLOBAL

from .config import SteeringConfig
from .errors import SteeringNotApplied
from .layout import SpaceLayout
from .maths import direction_gate_vectors, gate_fires, gate_scores, steered_positions, steering_delta
from .report import DirectionDecision, PromptReport


@dataclass
class SteeringResult:
    """Offsets for one block of text states.

    Attributes:
        delta: ``[B, T, D_total]`` offset (zero where not steered), or ``None`` when nothing is steered.
        positions: ``[B, T]`` bool, positions that receive the offset.
        prompts: one report per row.
    """

    delta: torch.Tensor | None
    positions: torch.Tensor
    prompts: list[PromptReport]

    def apply(self, hidden: torch.Tensor) -> torch.Tensor:
        """``hidden + delta`` at steered positions; ``hidden`` itself (same object) when nothing is steered."""
        if self.delta is None:
            return hidden
        return torch.where(self.positions.unsqueeze(-1), hidden + self.delta, hidden)

    def apply_verified(self, hidden: torch.Tensor, layouts: list[SpaceLayout]) -> torch.Tensor:
        """:meth:`apply`, then record in each row's report the offset actually added, and fail closed.

        Raises:
            SteeringNotApplied: a row that was to receive a nonzero offset came out unchanged (e.g. the offset
                vanished in the states' precision), or the steered states are not finite.
        """
        steered = self.apply(hidden)
        self.record_applied(hidden, steered, layouts)
        return steered

    def record_applied(self, hidden: torch.Tensor, steered: torch.Tensor, layouts: list[SpaceLayout]) -> None:
        """Fill ``prompts[i].applied`` from ``steered - hidden`` and check it against the planned offsets."""
        if self.delta is None:
            return
        planned = (self.delta != 0).flatten(1).any(dim=1).tolist()
        changed = steered.float() - hidden.float()
        if not bool(torch.isfinite(steered).all()) and bool(torch.isfinite(hidden).all()):
            raise SteeringNotApplied(
                "Steering produced non-finite text states (the strength is too large for these states' "
                "precision), so this call was stopped. Use a smaller strength, or keep the default "
                "strength_limit."
            )
        for row, report in enumerate(self.prompts):
            positions = self.positions[row]
            for layout in layouts:
                part = changed[row, layout.tokens, layout.features][positions[layout.tokens]]
                if part.numel():
                    norm = float(part.norm(dim=-1).mean())
                    if norm > 0:
                        report.applied[layout.space] = norm
            if planned[row] and not report.steered:
                raise SteeringNotApplied(
                    f"Row {row} was to be steered, but its text states came out unchanged (the offset vanished in "
                    f"{hidden.dtype} precision or no position could be steered). The call was stopped rather "
                    "than return an unsteered result; use a larger strength or float32 text states."
                )

    def record_planned(self, layouts: list[SpaceLayout]) -> None:
        """Fill ``prompts[i].applied`` from the planned offsets (cross-attention steering adds them later)."""
        if self.delta is None:
            return
        for row, report in enumerate(self.prompts):
            positions = self.positions[row]
            for layout in layouts:
                part = self.delta[row, layout.tokens, layout.features][positions[layout.tokens]].float()
                if part.numel() and bool((part != 0).any()):
                    report.applied[layout.space] = float(part.norm(dim=-1).mean())


class SteeringPlan:
    """Pack vectors arranged for one pipeline's layout, with the strengths of one config.

    Args:
        pack: the direction pack.
        layouts: the spaces to steer and where they sit (see ``targets.py``).
        config: the steering config (strengths, mode, gate, ...).

    Raises:
        ValueError: unknown category, missing gate thresholds, or a pack/pipeline dimension mismatch.
    """

    def __init__(
        self,
        pack: DirectionPack,
        layouts: list[SpaceLayout],
        config: SteeringConfig,
        prompt_gate: PromptGate | None = None,
    ):
        unknown = sorted(set(config.categories) - set(pack.categories))
        if unknown:
            raise ValueError(
                f"Unknown categories {unknown}: this pack has categories {pack.categories}. "
                "Check the spelling (names are case-sensitive) or use a pack built with those categories."
            )
        self.pack = pack
        self.config = config
        self.layouts = layouts
        self.prompt_gate = prompt_gate
        self.names = pack.names
        strengths = [
            config.strength if name == GLOBAL else config.categories.get(name, 0.0) for name in self.names
        ]
        self.base_strengths = torch.tensor(strengths, dtype=torch.float32)
        self.negative_strengths = torch.tensor(
            [config.negative_strength if name == GLOBAL else 0.0 for name in self.names], dtype=torch.float32
        )
        if config.negative_strength != 0 and GLOBAL not in self.names:
            raise ValueError(
                "negative_strength applies the global direction, but this pack has no 'global' one."
            )
        if config.strength != 0 and GLOBAL not in self.names:
            raise ValueError(
                f"strength={config.strength:g} steers the pack's 'global' direction, but this pack has none (it has "
                f"categories {pack.categories}). Set per-category strengths with categories={{...}} and "
                "strength=0, or use a pack with a global direction."
            )
        if not layouts:
            raise ValueError(
                "No text space to steer: the pack's spaces and the selected spaces have nothing in common with "
                "this pipeline. Check spaces=[...] against pack.spaces."
            )
        self.vectors = {
            layout.space: torch.stack([pack.direction(layout.space, name) for name in self.names])
            for layout in layouts
        }
        if config.gate_fpr is not None and prompt_gate is None and config.gate_fpr not in pack.gate_fprs:
            raise ValueError(
                f"gate_fpr={config.gate_fpr:g}: this pack stores gate thresholds for the benign false-positive "
                f"rates {pack.gate_fprs or 'of none (it predates gate_fpr)'}. Pick one of them, or gate_fpr=None "
                "for the pack's default."
            )
        self.thresholds = {
            layout.space: torch.tensor(
                [_nan_if_none(pack.threshold(name, layout.space, config.gate_fpr)) for name in self.names],
                dtype=torch.float32,
            )
            for layout in layouts
        }
        self.gate_vectors = {
            layout.space: torch.stack([_gate_vector(pack, name, layout.space) for name in self.names])
            for layout in layouts
        }
        self.centers = {layout.space: pack.center(layout.space) for layout in layouts}
        self._check_nonzero_vectors()
        if config.gate and prompt_gate is None:
            self._check_thresholds()
        self._device_cache: dict[tuple, dict[str, torch.Tensor]] = {}

    # ------------------------------------------------------------------ public
    @property
    def is_noop(self) -> bool:
        """True when no direction has a nonzero strength (outputs are then untouched bit for bit)."""
        return not bool((self.base_strengths != 0).any())

    def steer_positive(
        self, hidden: torch.Tensor, mask: torch.Tensor | None, prompts: list[str | None]
    ) -> SteeringResult:
        """Offsets for the positive prompt rows: gate (if on), then strengths per row."""
        rows = hidden.shape[0]
        if self.config.gate and self.prompt_gate is not None:
            # The prompt gate decides from the prompt text (it raises SteeringNotApplied without it); the
            # report then shows its scores only, since the target-space ones decided nothing.
            prompt_scores = self.prompt_gate.scores(prompts)
            fired = prompt_scores > self.prompt_gate.thresholds.unsqueeze(0)
            scores = {PROMPT_GATE_SPACE: prompt_scores.float()}
        else:
            scores = self._scores(hidden, mask)
            fired = self._fired(scores, rows)
        strengths = self.base_strengths.unsqueeze(0) * fired.float()
        result = self._result(hidden, strengths, mask)
        result.prompts = [
            self._row_report(b, prompts[b], strengths[b], fired[b], scores) for b in range(rows)
        ]
        return result

    def steer_negative(self, hidden: torch.Tensor, mask: torch.Tensor | None) -> SteeringResult:
        """Offsets for negative prompt rows: only ``negative_strength`` on the global direction, no gate."""
        strengths = self.negative_strengths.unsqueeze(0).expand(hidden.shape[0], -1)
        return self._result(hidden, strengths, mask)

    # ------------------------------------------------------------------ internals
    def _check_nonzero_vectors(self) -> None:
        # A direction asked for with a nonzero strength must be able to move the states: an all-zero vector
        # would be "applied" while changing nothing.
        active = [name for name, s in zip(self.names, self.base_strengths.tolist(), strict=True) if s != 0]
        if self.config.negative_strength != 0:
            active.append(GLOBAL)
        zero = [
            f"{name}.{space}"
            for space, vectors in self.vectors.items()
            for name, vector in zip(self.names, vectors, strict=True)
            if name in active and not bool((vector != 0).any())
        ]
        if zero:
            raise ValueError(
                f"The pack's vectors {sorted(set(zero))} are all zeros, so steering with them would change "
                "nothing. Use a pack built for this model (`safesteer build`), or set those strengths to 0."
            )

    def _check_thresholds(self) -> None:
        active = [name for name, s in zip(self.names, self.base_strengths.tolist(), strict=True) if s != 0]
        missing = [
            f"{name}.{space}"
            for space, thresholds in self.thresholds.items()
            for name, value in zip(self.names, thresholds.tolist(), strict=True)
            if name in active and value != value  # NaN: no threshold
        ]
        if missing:
            raise ValueError(
                f"gate=True needs a gate threshold for every steered direction, but the pack lacks {missing}. "
                "Use a pack built with gate calibration (`safesteer build`), or set gate=False."
            )

    def _on(self, reference: torch.Tensor) -> dict[str, dict[str, torch.Tensor]]:
        # One host->device copy per (device, dtype), reused by every later call.
        key = (reference.device, reference.dtype)
        if key not in self._device_cache:
            self._device_cache[key] = {
                "vectors": {s: v.to(reference.device) for s, v in self.vectors.items()},
                "gate_vectors": {s: g.to(reference.device) for s, g in self.gate_vectors.items()},
                "centers": {
                    s: None if c is None else c.to(reference.device) for s, c in self.centers.items()
                },
            }
        return self._device_cache[key]

    def _scores(self, hidden: torch.Tensor, mask: torch.Tensor | None) -> dict[str, torch.Tensor]:
        gate_vectors = self._on(hidden)["gate_vectors"]
        scores = {}
        for layout in self.layouts:
            part = hidden[:, layout.tokens, layout.features]
            part_mask = None if mask is None else mask[:, layout.tokens]
            scores[layout.space] = gate_scores(part, gate_vectors[layout.space], part_mask).cpu()
        return scores

    def _fired(self, scores: dict[str, torch.Tensor], rows: int) -> torch.Tensor:
        if not self.config.gate:
            return torch.ones(rows, len(self.names), dtype=torch.bool)
        # A direction fires when any steered space says so: erring toward steering is the safe side.
        fired = torch.zeros(rows, len(self.names), dtype=torch.bool)
        for space, space_scores in scores.items():
            fired |= gate_fires(space_scores, torch.nan_to_num(self.thresholds[space], nan=float("inf")))
        return fired

    def _result(
        self, hidden: torch.Tensor, strengths: torch.Tensor, mask: torch.Tensor | None
    ) -> SteeringResult:
        rows, tokens = hidden.shape[:2]
        positions = torch.zeros(rows, tokens, dtype=torch.bool, device=hidden.device)
        if not bool((strengths != 0).any()):
            return SteeringResult(None, positions, [])
        on_device = self._on(hidden)
        device_strengths = strengths.to(hidden.device)
        delta = torch.zeros_like(hidden)
        for layout in self.layouts:
            part = hidden[:, layout.tokens, layout.features]
            part_mask = None if mask is None else mask[:, layout.tokens]
            part_delta = steering_delta(
                part,
                on_device["vectors"][layout.space],
                device_strengths,
                mode=self.config.mode,
                mask=part_mask,
                center=on_device["centers"][layout.space],
            )
            if part_delta is None:
                continue
            delta[:, layout.tokens, layout.features] = part_delta
            positions[:, layout.tokens] |= steered_positions(device_strengths, part_mask, part.shape[1])
        return SteeringResult(delta, positions, [])

    def _threshold(self, k: int, name: str, space: str) -> float | None:
        if space == PROMPT_GATE_SPACE and self.prompt_gate is not None:
            return float(self.prompt_gate.thresholds[k])
        return self.pack.threshold(name, space, self.config.gate_fpr)

    def _row_report(
        self, row: int, prompt: str | None, strengths: torch.Tensor, fired: torch.Tensor, scores: dict
    ) -> PromptReport:
        decisions = [
            DirectionDecision(
                name=name,
                strength=float(strengths[k]),
                fired=bool(fired[k]),
                scores={space: float(s[row, k]) for space, s in scores.items()},
                thresholds={space: self._threshold(k, name, space) for space in scores},
                configured=float(self.base_strengths[k]),
            )
            for k, name in enumerate(self.names)
        ]
        # `applied` is filled once the offsets have been added (SteeringResult.apply_verified).
        return PromptReport(row=row, prompt=prompt, directions=decisions)


class PromptGate(Protocol):
    """What a plan needs of a gate that decides from the prompt text (pipelines/source_gate.py)."""

    thresholds: torch.Tensor  # [K], the pack's direction order

    def scores(self, prompts: list[str | None]) -> torch.Tensor:  # [B, K]
        ...


PROMPT_GATE_SPACE = "source_model"
"""The key of a prompt gate's scores and thresholds in a row's report (beside the target spaces)."""


def _nan_if_none(value: float | None) -> float:
    return float("nan") if value is None else value


def _gate_vector(pack, name: str, space: str) -> torch.Tensor:
    """The pack's gate vector of ``name`` in ``space``, or the classic one (the direction's unsafe side)."""
    vector = pack.gate_vector(name, space)
    if vector is None:
        return direction_gate_vectors(pack.direction(space, name)[None])[0]
    return vector.float()

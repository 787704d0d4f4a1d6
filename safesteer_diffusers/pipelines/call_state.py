"""The state of one pipeline call, and where its per-layer offsets go at each denoiser step.

A call's state lives in a context variable of the installation (not on the pipeline), so other threads and
other pipelines sharing the same modules never see it.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any

import torch

from safesteer_diffusers.steering.errors import SteeringNotApplied
from safesteer_diffusers.steering.plan import SteeringResult
from safesteer_diffusers.steering.report import SteeringReport

from .validation import PreparedSteering


class ConcurrentCallError(RuntimeError):
    """A wrapped pipeline was called while another call on it was still running (see the module docstring)."""


@dataclass
class Generation:
    """State of one pipeline call: its configuration snapshot, encode calls, offsets waiting for the denoiser."""

    prepared: PreparedSteering
    prompts: list[str] | None
    report: SteeringReport
    encode_calls: int = 0
    positive_encodes: int = 0
    pending: SteeringResult | None = None
    active: dict[int, tuple[torch.Tensor, torch.Tensor]] | None = None
    applied_layers: set[str] = field(default_factory=set)
    warned_timestep: bool = False
    rows_seen: int = 0


def arrange_offsets(generation: Generation, pipe: Any, denoiser: str, args: tuple, kwargs: dict) -> None:
    """Before a denoiser call: lay the pending offsets out like the denoiser's text batch (or none this step).

    Raises:
        SteeringNotApplied: the denoiser's text rows cannot be matched to the encoded positive rows.
    """
    generation.active = None
    pending = generation.pending
    if pending is None or pending.delta is None:
        return
    hidden = kwargs.get("encoder_hidden_states", args[2] if len(args) > 2 else None)
    timestep = kwargs.get("timestep", args[1] if len(args) > 1 else None)
    if hidden is None or not in_step_range(generation, pipe, timestep):
        return
    delta, positions = pending.delta, pending.positions
    rows, positives = hidden.shape[0], delta.shape[0]
    # Classifier-free guidance batches are [negative, positive]; video pipelines may then repeat every row once
    # per frame before the denoiser (AnimateDiff: repeat_interleave), giving [n, n, ..., p, p, ...].
    blocks = 2 if getattr(pipe, "do_classifier_free_guidance", rows == 2 * positives) else 1
    if rows % (blocks * positives):
        raise SteeringNotApplied(
            f"SafeSteer cannot match the {rows} text rows the {denoiser} received to the {positives} "
            "positive prompt rows it encoded. Use conditioning steering (layers=None) for this call."
        )
    if blocks == 2:
        delta = torch.cat([torch.zeros_like(delta), delta])
        positions = torch.cat([torch.zeros_like(positions), positions])
    repeats = rows // (blocks * positives)
    if repeats > 1:
        delta, positions = delta.repeat_interleave(repeats, 0), positions.repeat_interleave(repeats, 0)
    generation.active = {1: (delta.to(hidden.dtype), positions)}


def in_step_range(generation: Generation, pipe: Any, timestep: Any) -> bool:
    """Whether ``timestep`` lies in the call's ``step_range`` (as a fraction of the scheduler's schedule)."""
    step_range = generation.prepared.config.step_range
    if step_range is None:
        return True
    timesteps = getattr(getattr(pipe, "scheduler", None), "timesteps", None)
    if timestep is None or timesteps is None or len(timesteps) == 0:
        return True
    value = torch.as_tensor(timestep).flatten()[0].to(timesteps.device, timesteps.dtype)
    matches = (timesteps == value).nonzero()
    if len(matches) == 0:
        if not generation.warned_timestep:
            warnings.warn(
                "SafeSteer: timestep not in the scheduler's schedule; step_range ignored.", stacklevel=2
            )
            generation.warned_timestep = True
        return True
    start, end = step_range
    fraction = int(matches[0, 0]) / len(timesteps)
    return start <= fraction < end


def layer_offsets(generation: Generation, rows: int, layer: str) -> tuple[torch.Tensor, torch.Tensor] | None:
    """Offsets for layer ``layer`` seeing ``rows`` text rows at this step (repeated when rows are per frame)."""
    if not generation.active:
        return None
    delta, positions = generation.active[1]
    repeats, remainder = divmod(rows, delta.shape[0])
    if remainder or repeats == 0:
        return None
    if repeats not in generation.active:
        generation.active[repeats] = (
            delta.repeat_interleave(repeats, dim=0),
            positions.repeat_interleave(repeats, dim=0),
        )
    generation.applied_layers.add(layer)
    generation.report.attention_applications += 1
    return generation.active[repeats]


def item(items: list, index: int | None) -> Any:
    """``items[index]``, or ``None`` when ``index`` is ``None`` or past the end."""
    return None if index is None or index >= len(items) else items[index]


def prompt_texts(args: tuple, kwargs: dict) -> list[str] | None:
    """The prompt texts of a pipeline call (for the report), or ``None`` when it was called with embeddings."""
    prompt = kwargs.get("prompt", args[0] if args else None)
    if isinstance(prompt, str):
        return [prompt]
    if isinstance(prompt, list) and all(isinstance(p, str) for p in prompt):
        return list(prompt)  # a copy: some pipelines (Z-Image) rewrite the caller's list in place
    return None

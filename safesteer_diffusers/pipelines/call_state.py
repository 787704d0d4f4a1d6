"""The state of one pipeline call, and where its per-layer offsets go at each denoiser step.

A call's state lives in a context variable of the installation (not on the pipeline), so other threads and
other pipelines sharing the same modules never see it.

Per-layer steering and ``torch.compile``: the bookkeeping of a step (which rows are positive, whether the
timestep lies in ``step_range``, which layers added their offsets, the report) runs in the denoiser's forward
pre-hook, eagerly, outside any compiled graph. The hook reads the call's context variable and publishes the
step's :class:`LayerStep` in a :class:`StepSlot`, local to the thread; the wrappers inside the denoiser read
only that slot (``torch.compile`` traces ``threading.local`` attributes, while only recent versions trace
``ContextVar.get``: older ones break the graph there). The hook and the denoiser's forward run one after the
other in the same thread, so the slot holds the step of the call running in that thread, as the context
variable does. A :class:`LayerStep` has the same shapes, dtypes and strides at every step of every call whatever
the configuration (zeros and an all-false mask when a step is not steered), so a compiled denoiser takes the
offsets as tensor inputs: changing strength, categories or ``enabled``, or a step outside ``step_range``,
changes their values, never the graph.
"""

from __future__ import annotations

import threading
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
class LayerStep:
    """What the cross-attention wrappers read during one denoiser call (see the module docstring).

    Attributes:
        delta: ``[rows, T, D]`` offsets laid out like the denoiser's text batch (zeros where nothing is added).
        positions: ``[rows, T]`` bool, where ``delta`` is added (all false when the step is not steered).
        steered: whether this step adds offsets (read after the step, never by the wrappers).
        reached: the layers whose wrapper added ``delta`` during the step, in call order.
    """

    delta: torch.Tensor
    positions: torch.Tensor
    steered: bool
    reached: list[str] = field(default_factory=list)


class StepSlot(threading.local):
    """The :class:`LayerStep` of the denoiser call running in this thread (``None``: add nothing)."""

    step: LayerStep | None = None


@dataclass
class Generation:
    """State of one pipeline call: its configuration snapshot, encode calls, offsets waiting for the denoiser."""

    prepared: PreparedSteering
    prompts: list[str] | None
    report: SteeringReport
    encode_calls: int = 0
    positive_encodes: int = 0
    pending: SteeringResult | None = None
    step: LayerStep | None = None
    applied_layers: set[str] = field(default_factory=set)
    warned_timestep: bool = False
    rows_seen: int = 0


def arrange_offsets(generation: Generation, pipe: Any, denoiser: str, args: tuple, kwargs: dict) -> None:
    """Before a denoiser call: lay the pending offsets out like the denoiser's text batch (zeros if not steered).

    Runs in the denoiser's forward pre-hook, outside any compiled graph; first records what the previous step's
    wrappers did (:func:`finish_step`).

    Raises:
        SteeringNotApplied: the denoiser's text rows cannot be matched to the encoded positive rows.
    """
    finish_step(generation)
    hidden = kwargs.get("encoder_hidden_states", args[2] if len(args) > 2 else None)
    if not isinstance(hidden, torch.Tensor) or hidden.dim() != 3:
        return
    timestep = kwargs.get("timestep", args[1] if len(args) > 1 else None)
    pending = generation.pending
    if pending is None or pending.delta is None or not in_step_range(generation, pipe, timestep):
        # Not steered at this step: the wrappers still add (zero) offsets, so the graph they are in stays the same.
        zeros = torch.zeros(hidden.shape, dtype=hidden.dtype, device=hidden.device)
        positions = torch.zeros(hidden.shape[:2], dtype=torch.bool, device=hidden.device)
        generation.step = LayerStep(zeros, positions, steered=False)
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
    delta = delta.to(device=hidden.device, dtype=hidden.dtype).contiguous()
    positions = positions.to(device=hidden.device, dtype=torch.bool).contiguous()
    generation.step = LayerStep(delta, positions, steered=True)


def finish_step(generation: Generation) -> None:
    """After a denoiser call (run at the next one's pre-hook and when the pipeline call ends): record the layers
    that added this step's offsets, if it was steered. Idempotent."""
    step, generation.step = generation.step, None
    if step is not None and step.steered:
        generation.applied_layers.update(step.reached)
        generation.report.attention_applications += len(step.reached)


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


def layer_offsets(step: LayerStep | None, rows: int, layer: str) -> tuple[torch.Tensor, torch.Tensor] | None:
    """Offsets for layer ``layer`` seeing ``rows`` text rows at this step (repeated when rows are per frame).

    Called by the wrappers inside the denoiser, so inside a compiled graph: it reads the step's tensors,
    branches on shapes only and appends the layer's name (a side effect ``torch.compile`` replays after the graph).
    """
    if step is None:
        return None
    delta, positions = step.delta, step.positions
    repeats, remainder = divmod(rows, delta.shape[0])
    if remainder or repeats == 0:
        return None
    if repeats > 1:
        delta, positions = (
            delta.repeat_interleave(repeats, dim=0),
            positions.repeat_interleave(repeats, dim=0),
        )
    step.reached.append(layer)
    return delta, positions


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

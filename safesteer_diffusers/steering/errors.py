"""The two ways steering refuses to go on: it could not be applied exactly, or a locked pipeline was asked to
weaken it. Both are raised instead of returning an output that is less steered than configured."""

from __future__ import annotations


class SteeringNotApplied(RuntimeError):
    """Configured steering could not be applied exactly to this call, so the call raises instead of returning an
    output that is steered less than asked (e.g. no prompt encoding was intercepted, the steered states are not
    finite, or no cross-attention layer received the offsets)."""


class SteeringLocked(PermissionError):
    """A pipeline wrapped with ``locked=True`` refused a change that needs its unlock token."""

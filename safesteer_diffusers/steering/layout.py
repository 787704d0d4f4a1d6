"""`SpaceLayout`: which slice of the denoiser's text tensor belongs to one text encoder.

Plain slice arithmetic, shared by the steering maths and the pipeline registry (which says, per family,
where each encoder's states sit).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SpaceLayout:
    """Where one text encoder's states sit inside the denoiser's text tensor ``[B, T, D_total]``.

    Attributes:
        space: pipeline component name of the encoder (e.g. ``"text_encoder_2"``).
        dim: the encoder's hidden size (a pack vector for this space must have this length).
        feature_start: first feature column of this space.
        token_start: first token position of this space.
        token_stop: one past the last token position, or ``None`` for "to the end".
    """

    space: str
    dim: int
    feature_start: int = 0
    token_start: int = 0
    token_stop: int | None = None

    @property
    def features(self) -> slice:
        return slice(self.feature_start, self.feature_start + self.dim)

    @property
    def tokens(self) -> slice:
        return slice(self.token_start, self.token_stop)

"""`SteeringConfig`: every knob of pipeline steering in one validated dataclass."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass, field

from .maths import STEERING_MODES

TOKEN_POLICIES = ("all", "prompt")


@dataclass(frozen=True)
class SteeringConfig:
    """How a wrapped pipeline is steered.

    Attributes:
        strength: strength of the pack's ``"global"`` direction (positive = safer; 0 = off).
        categories: per-category strengths, e.g. ``{"sexual": 2.0}``; categories not named get 0.
        mode: ``"add"`` (``h + s*v``, the paper's) or ``"project"`` (clamp the unsafe-side component).
        gate: steer a prompt with a direction only when the prompt's score on it passes the pack's
            threshold (benign prompts then pass through bit for bit). Needs a pack with thresholds.
        tokens: which positions of the positive prompt's states are steered. ``"all"`` (default): every
            position the denoiser sees, so the result is the same whether the pipeline tokenises the prompt or
            you pass ``prompt_embeds=`` (no mask needed), and CLIP padding positions -- which hold end-of-text
            states summarising the prompt and receive much of the cross-attention -- are steered too.
            ``"prompt"``: only the real tokens, by the attention mask the pipeline returns (families that
            return no mask reject it at wrap time).
        negative_strength: global-direction strength applied to the negative prompt (default 0: the
            negative prompt is never steered). A negative value moves the negative prompt toward the unsafe
            side, which classifier-free guidance then steers away from.
        layers: ``None`` steers the conditioning once per generation (every family). ``"all"`` or a list of
            cross-attention layer names (substrings of e.g. ``"down_blocks.1.attentions.0"``) steers inside
            the UNet's cross-attention only (UNet families).
        step_range: ``(start, end)`` fractions of the sampling schedule during which cross-attention
            steering is active (UNet families; requires ``layers``).
        spaces: restrict steering to these pack spaces (default: every pack space).
        enabled: master switch; ``False`` behaves exactly like the unwrapped pipeline.
    """

    strength: float = 1.0
    categories: Mapping[str, float] = field(default_factory=dict)
    mode: str = "add"
    gate: bool = False
    tokens: str = "all"
    negative_strength: float = 0.0
    layers: str | tuple[str, ...] | None = None
    step_range: tuple[float, float] | None = None
    spaces: tuple[str, ...] | None = None
    enabled: bool = True

    def __post_init__(self):
        _finite("strength", self.strength)
        _finite("negative_strength", self.negative_strength)
        if not isinstance(self.categories, Mapping):
            raise TypeError(
                f"categories must be a dict of name -> strength, got {type(self.categories).__name__}."
            )
        for name, value in self.categories.items():
            _finite(f"categories[{name!r}]", value)
        object.__setattr__(self, "categories", {str(k): float(v) for k, v in self.categories.items()})
        if self.mode not in STEERING_MODES:
            raise ValueError(f"mode must be one of {STEERING_MODES}, got {self.mode!r}.")
        if self.tokens not in TOKEN_POLICIES:
            raise ValueError(f"tokens must be one of {TOKEN_POLICIES}, got {self.tokens!r}.")
        if not isinstance(self.gate, bool) or not isinstance(self.enabled, bool):
            raise TypeError("gate and enabled must be True or False.")
        if isinstance(self.layers, list):
            object.__setattr__(self, "layers", tuple(self.layers))
        if (
            self.layers is not None
            and self.layers != "all"
            and not (
                isinstance(self.layers, tuple)
                and self.layers
                and all(isinstance(x, str) for x in self.layers)
            )
        ):
            raise TypeError(
                f"layers must be None, 'all' or a non-empty list of layer names, got {self.layers!r}."
            )
        if self.step_range is not None:
            start, end = (float(x) for x in self.step_range)
            if not (0.0 <= start < end <= 1.0):
                raise ValueError(f"step_range must satisfy 0 <= start < end <= 1, got {self.step_range!r}.")
            object.__setattr__(self, "step_range", (start, end))
            if self.layers is None:
                raise ValueError(
                    "step_range scopes cross-attention steering; pass layers='all' (UNet pipelines) as well."
                )
        if self.layers is not None and self.negative_strength != 0:
            raise ValueError(
                "negative_strength works with conditioning steering only; use layers=None with it."
            )
        if self.spaces is not None:
            object.__setattr__(self, "spaces", tuple(self.spaces))

    @property
    def injection(self) -> str:
        """``"conditioning"`` (once per generation) or ``"cross_attention"`` (UNet attn2 layers)."""
        return "conditioning" if self.layers is None else "cross_attention"

    def replace(self, **changes) -> SteeringConfig:
        """A validated copy with some fields changed (``None`` values are ignored)."""
        return dataclasses.replace(self, **{k: v for k, v in changes.items() if v is not None})


def _finite(label: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"{label} must be a finite number, got {value!r}.")

"""`SteeringConfig`: every knob of pipeline steering in one validated dataclass."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass, field

from safesteer_diffusers.packs.format import GLOBAL

from .maths import STEERING_MODES

TOKEN_POLICIES = ("all", "prompt")
"""Which positions of the positive prompt's states are steered (see :attr:`SteeringConfig.tokens`)."""

MAX_STRENGTH = 20.0
"""Default bound on ``|strength|`` in calibrated units. Packs are calibrated so that strength 1 moves a text
state by about one standard deviation of benign token states along the direction; the paper uses 3-5. Twenty
is far past any useful setting and still far from overflowing half-precision states. Opt out with
``strength_limit=None``."""


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
        strength_limit: bound on the absolute value of every strength, in calibrated units (default
            :data:`MAX_STRENGTH`); ``None`` opts out (strengths must still be finite, and a call whose steered
            states are not finite raises :class:`~safesteer_diffusers.steering.errors.SteeringNotApplied`).
        gate_fpr: the gate's benign false-positive rate: use the pack's thresholds calibrated for this share of
            benign prompts firing (``None``: the pack's default, its ``gate.quantile``). Packs built by this
            version store 0.001, 0.005, 0.01, 0.02, 0.05 and 0.1 (``pack.gate_fprs``): a higher rate steers
            more unsafe prompts and more benign ones (measured trade-off: docs/method.md 6.5).
        allow_toward_unsafe: opt in to settings that steer toward the unsafe side: a negative ``strength`` or
            category strength, or a positive ``negative_strength`` (it makes the negative prompt safer, which
            classifier-free guidance then steers away from). Refused unless this is ``True``.
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
    strength_limit: float | None = MAX_STRENGTH
    allow_toward_unsafe: bool = False
    gate_fpr: float | None = None

    def __post_init__(self):
        _finite("strength", self.strength)
        _finite("negative_strength", self.negative_strength)
        if self.categories is None:  # as in wrap(): no per-category strengths
            object.__setattr__(self, "categories", {})
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
        for flag in ("gate", "enabled", "allow_toward_unsafe"):
            if not isinstance(getattr(self, flag), bool):
                raise TypeError(f"{flag} must be True or False, got {getattr(self, flag)!r}.")
        self._check_strength_bounds()
        if self.gate_fpr is not None:
            if isinstance(self.gate_fpr, bool) or not isinstance(self.gate_fpr, int | float):
                raise TypeError(f"gate_fpr must be a number between 0 and 1, or None, got {self.gate_fpr!r}.")
            if not 0.0 < float(self.gate_fpr) < 1.0:
                raise ValueError(
                    f"gate_fpr must be between 0 and 1 (a rate, e.g. 0.01), got {self.gate_fpr!r}."
                )
            object.__setattr__(self, "gate_fpr", float(self.gate_fpr))
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
            if isinstance(self.spaces, str) or not all(isinstance(s, str) for s in self.spaces):
                raise TypeError(f"spaces must be a list of pack space names, got {self.spaces!r}.")
            object.__setattr__(self, "spaces", tuple(self.spaces))
            if not self.spaces:
                raise ValueError(
                    "spaces=[] steers nothing. Name at least one pack space, or spaces=None for all of them "
                    "(to turn steering off, use strength=0 or enabled=False)."
                )

    def _check_strength_bounds(self) -> None:
        strengths = {"strength": self.strength, "negative_strength": self.negative_strength}
        strengths.update({f"categories[{k!r}]": v for k, v in self.categories.items()})
        if self.strength_limit is not None:
            _finite("strength_limit", self.strength_limit)
            if self.strength_limit <= 0:
                raise ValueError(
                    f"strength_limit must be positive (or None to opt out), got {self.strength_limit}."
                )
            over = {label: value for label, value in strengths.items() if abs(value) > self.strength_limit}
            if over:
                raise ValueError(
                    f"Strength out of bounds: {over} exceeds the limit of {self.strength_limit:g} calibrated units "
                    "(strength 1 is about one benign standard deviation; useful values are 1-10). Use a smaller "
                    "value, or pass strength_limit=None to opt out of the bound."
                )
        if self.allow_toward_unsafe:
            return
        toward_unsafe = {label: v for label, v in strengths.items() if label != "negative_strength" and v < 0}
        if self.negative_strength > 0:
            toward_unsafe["negative_strength"] = self.negative_strength
        if toward_unsafe:
            raise ValueError(
                f"{toward_unsafe} would steer toward the unsafe side (negative strengths move prompts toward "
                "unsafe; a positive negative_strength makes the negative prompt safer, which guidance then steers "
                "away from). Use positive strengths (and a negative negative_strength), or pass "
                "allow_toward_unsafe=True if that is really what you want (e.g. for red-teaming)."
            )

    @property
    def injection(self) -> str:
        """``"conditioning"`` (once per generation) or ``"cross_attention"`` (UNet attn2 layers)."""
        return "conditioning" if self.layers is None else "cross_attention"

    @property
    def strengths(self) -> dict[str, float]:
        """Direction name -> configured strength (``"global"`` plus every named category)."""
        return {GLOBAL: self.strength, **self.categories}

    def replace(self, **changes) -> SteeringConfig:
        """A validated copy with the given fields changed; ``None`` means what it means in the constructor.

        Raises:
            TypeError: a name that is not a field (the message lists the fields).
        """
        unknown = sorted(set(changes) - {f.name for f in dataclasses.fields(self)})
        if unknown:
            raise TypeError(
                f"Unknown steering setting(s) {unknown}; the settings are "
                f"{[f.name for f in dataclasses.fields(self)]}."
            )
        return dataclasses.replace(self, **changes)


def _finite(label: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"{label} must be a finite number, got {value!r}.")

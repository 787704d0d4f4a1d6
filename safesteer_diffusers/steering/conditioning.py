"""Steering a text-conditioning tensor known only by its shape (ComfyUI ``CONDITIONING``, raw embeddings).

:mod:`safesteer_diffusers.pipelines.registry` knows where each text encoder sits because it sees the diffusers pipeline.
A host such as ComfyUI only hands over the denoiser's text tensor ``[B, T, D]``; this module infers the
layout of a pack's spaces from ``D`` (and, for SD3, from the zero padding of the CLIP part), then applies the
same maths as pipeline steering through :class:`~safesteer_diffusers.steering.plan.SteeringPlan`:

- one space whose dimension is ``D`` (SD 1.x/2.x CLIP, Flux/Wan/LTX T5, HunyuanVideo LLaMA, ...);
- spaces that add up to ``D`` on the feature axis, in pack order (SDXL: CLIP-L 768 ++ bigG 1280 = 2048);
- SD3: ``text_encoder`` ++ ``text_encoder_2`` zero-padded to the T5 width on the first CLIP tokens
  (77 per prompt chunk), then ``text_encoder_3`` (T5) on the following tokens.

No diffusers and no ComfyUI import: this is tensor code.

Example:
    >>> steered, report = steer_text(cond, pack, SteeringConfig(strength=2.0))
    >>> print(report)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from safesteer_diffusers.packs.direction_pack import DirectionPack
from safesteer_diffusers.packs.format import GLOBAL

from .config import SteeringConfig
from .layout import SpaceLayout
from .plan import SteeringPlan
from .report import SteeringReport

CLIP_TOKENS = 77
"""Token positions of one CLIP chunk; SD3 puts the CLIP part on the first chunk(s) of its text tensor."""

_SD3_CLIP_SPACES = ("text_encoder", "text_encoder_2")
_SD3_T5_SPACE = "text_encoder_3"


def pack_family(pack: DirectionPack) -> str | None:
    """The target family a pack was built for (``metadata["target"]["family"]``), or ``None``."""
    family = pack.metadata.get("target", {}).get("family")
    return family if isinstance(family, str) and family else None


def missing_directions(pack: DirectionPack, config: SteeringConfig) -> dict[str, float]:
    """Directions ``config`` gives a nonzero strength that ``pack`` does not have: name -> strength asked.

    Steering with them would apply less than asked, so :class:`TextSteerer` refuses them; a host whose inputs
    are named differently (the ComfyUI nodes) calls this first to say which of its inputs to change.
    ``negative_strength`` asks for the ``"global"`` direction too.
    """
    asked = {name: value for name, value in config.strengths.items() if value != 0}
    if config.negative_strength != 0:
        asked.setdefault(GLOBAL, config.negative_strength)
    return {name: value for name, value in asked.items() if name not in pack.names}


def _is_sd3(spaces: dict[str, int], width: int, family: str | None) -> bool:
    if _SD3_T5_SPACE in spaces:
        return spaces[_SD3_T5_SPACE] == width
    # A pack of CLIP spaces only, built for SD3: its CLIP part is padded to the T5 width.
    return family == "sd3" and sum(spaces.get(s, 0) for s in _SD3_CLIP_SPACES) < width


def layouts_for_tensor(
    pack: DirectionPack,
    width: int,
    num_tokens: int | None = None,
    family: str | None = None,
    *,
    clip_tokens: int | None = None,
    spaces: Sequence[str] | None = None,
) -> list[SpaceLayout]:
    """Where each pack space sits in a text tensor ``[B, num_tokens, width]``.

    Args:
        pack: the direction pack.
        width: feature dimension ``D`` of the text tensor.
        num_tokens: number of token positions ``T`` (``None`` when unknown, e.g. when validating a model
            before sampling: only the feature layout is checked then).
        family: target family hint (``"sd3"``, ``"sdxl"``, ...); defaults to the pack's
            ``target.family``.
        clip_tokens: SD3 only: how many leading positions hold the CLIP part (default 77, capped at
            ``num_tokens``); :func:`steer_text` infers it from the zero padding.
        spaces: steer only these pack spaces (default: every space).

    Returns:
        One :class:`~safesteer_diffusers.steering.layout.SpaceLayout` per steered space (an SD3 space with no token
        position in this tensor, e.g. T5 in a CLIP-only conditioning, is left out).

    Raises:
        ValueError: when no pack space fits the tensor, or several fit equally; the message names the pack's
            spaces, the tensor shape and the fix.

    Example:
        >>> layouts_for_tensor(sdxl_pack, 2048, 77)
        [SpaceLayout(space='text_encoder', dim=768, ...), SpaceLayout(space='text_encoder_2', dim=1280, ...)]
    """
    if isinstance(width, bool) or not isinstance(width, int) or width <= 0:
        raise ValueError(f"width must be a positive int (the text tensor's last dimension), got {width!r}.")
    available = pack.spaces
    if spaces is not None:
        unknown = sorted(set(spaces) - set(available))
        if unknown:
            raise ValueError(f"spaces {unknown} are not in this pack; it has {sorted(available)}.")
        available = {s: d for s, d in available.items() if s in spaces}
    family = family if family is not None else pack_family(pack)
    shape = f"[B, {'T' if num_tokens is None else num_tokens}, {width}]"

    if available and _is_sd3(available, width, family):
        return _sd3_layouts(available, width, num_tokens, clip_tokens, pack, shape)

    exact = [s for s, d in available.items() if d == width]
    if len(exact) == 1:
        return [SpaceLayout(exact[0], width)]
    if len(exact) > 1:
        raise ValueError(
            f"Several spaces of this pack have dimension {width} ({exact}), so which one a text tensor of shape "
            f"{shape} holds is ambiguous. Restrict steering to one of them (SteeringConfig(spaces=(...,)))."
        )
    if len(available) > 1 and sum(available.values()) == width:
        result, start = [], 0
        for space, dim in available.items():
            result.append(SpaceLayout(space, dim, feature_start=start))
            start += dim
        return result
    raise ValueError(_mismatch_message(pack, available, shape, width))


def _sd3_layouts(
    spaces: dict[str, int],
    width: int,
    num_tokens: int | None,
    clip_tokens: int | None,
    pack: DirectionPack,
    shape: str,
) -> list[SpaceLayout]:
    clip = [(s, spaces[s]) for s in _SD3_CLIP_SPACES if s in spaces]
    clip_width = sum(d for _, d in clip)
    if clip_width > width:
        raise ValueError(_mismatch_message(pack, spaces, shape, width))
    boundary = CLIP_TOKENS if clip_tokens is None else int(clip_tokens)
    if num_tokens is not None:
        boundary = min(boundary, num_tokens)
    result, start = [], 0
    if boundary > 0:
        for space, dim in clip:
            result.append(SpaceLayout(space, dim, feature_start=start, token_start=0, token_stop=boundary))
            start += dim
    if _SD3_T5_SPACE in spaces and (num_tokens is None or boundary < num_tokens):
        result.append(SpaceLayout(_SD3_T5_SPACE, spaces[_SD3_T5_SPACE], token_start=boundary))
    return result


def _mismatch_message(pack: DirectionPack, spaces: dict[str, int], shape: str, width: int) -> str:
    target = pack.metadata.get("target", {})
    built_for = target.get("model_id") or target.get("family") or "an unspecified target"
    return (
        f"This pack does not fit this text space: the pack has spaces {spaces} (built for {built_for}), the "
        f"text tensor has shape {shape}. A pack fits when one space has dimension {width}, when its spaces add "
        f"up to {width} (SDXL: 768 + 1280 = 2048), or when it is an SD3 pack (CLIP-L/G then T5 {width}). "
        "Use a pack built for this model (its text encoders set the dimensions)."
    )


def infer_clip_tokens(hidden: torch.Tensor, clip_width: int) -> int:
    """SD3 layout: the number of leading positions whose features past ``clip_width`` are all exactly zero.

    SD3 pads the CLIP-L ++ CLIP-G states (``clip_width`` features) with zeros up to the T5 width; T5 states
    are never exactly zero across thousands of features. A tensor with no T5 part returns ``T``, one with no
    CLIP part returns 0.
    """
    if hidden.shape[-1] <= clip_width:
        return int(hidden.shape[1])
    padded = (hidden[..., clip_width:] == 0).all(dim=-1).all(dim=0)  # [T]
    return int(torch.cumprod(padded.to(torch.int32), dim=0).sum())


class TextSteerer:
    """A pack and a config, ready to steer text tensors of any shape the pack fits.

    Plans are compiled once per layout and reused, so calling this on every sampling step costs the offset
    maths only. Validation (unknown categories, gate without thresholds) happens in the constructor.

    Args:
        pack: the direction pack.
        config: the steering config. ``layers``/``step_range`` are ignored here (a host schedules steps);
            ``tokens="prompt"`` needs a ``mask`` on every call.
        family: target family hint for :func:`layouts_for_tensor` (default: the pack's).
        prompt_gate: a gate that decides from the prompt text (the pack's source-model gate,
            :class:`~safesteer_diffusers.pipelines.source_gate.SourceGate`); with ``config.gate`` it replaces the
            gate on the text states, and every call must bring ``prompts`` (a row without text raises
            :class:`~safesteer_diffusers.steering.errors.SteeringNotApplied`).

    Example:
        >>> steerer = TextSteerer(pack, SteeringConfig(strength=1.0, categories={"sexual": 2.0}))
        >>> steered, report = steerer(cond, cond_rows=torch.tensor([True, False]))
    """

    def __init__(
        self,
        pack: DirectionPack,
        config: SteeringConfig,
        *,
        family: str | None = None,
        prompt_gate: Any | None = None,
    ):
        if not isinstance(pack, DirectionPack):
            raise TypeError(f"pack must be a DirectionPack, got {type(pack).__name__}.")
        if not isinstance(config, SteeringConfig):
            raise TypeError(f"config must be a SteeringConfig, got {type(config).__name__}.")
        self.pack = pack
        self.config = config
        self.family = family if family is not None else pack_family(pack)
        self.prompt_gate = prompt_gate
        # Fails now, not mid-sampling, on unknown categories or a gate the pack cannot serve.
        validation = [SpaceLayout(space, dim) for space, dim in pack.spaces.items()]
        if config.spaces is not None:
            validation = [layout for layout in validation if layout.space in config.spaces]
        self._reference = SteeringPlan(pack, validation, config, prompt_gate)
        self._plans: dict[tuple[SpaceLayout, ...], SteeringPlan] = {}

    @property
    def is_noop(self) -> bool:
        """True when nothing can change: disabled, or every strength (and ``negative_strength``) is zero."""
        return not self.config.enabled or (self._reference.is_noop and self.config.negative_strength == 0)

    def check_width(self, width: int) -> list[SpaceLayout]:
        """The feature layout of this pack in text states ``width`` wide, known before any tensor is seen.

        For hosts that know the denoiser's text width ahead of sampling (a ComfyUI model's config): a pack that
        does not fit fails when steering is set up, not at the first step. Token positions (SD3's CLIP/T5
        boundary) are only known from a tensor and are checked on every call.

        Raises:
            ValueError: the pack does not fit ``width`` (the message names both and the fix).
        """
        return layouts_for_tensor(self.pack, width, None, self.family, spaces=self.config.spaces)

    def layouts(self, hidden: torch.Tensor) -> list[SpaceLayout]:
        """The layouts of this pack's spaces in ``hidden`` (see :func:`layouts_for_tensor`)."""
        _check_hidden(hidden)
        width, tokens = int(hidden.shape[-1]), int(hidden.shape[1])
        spaces = self.pack.spaces
        clip_tokens = None
        if _is_sd3(spaces, width, self.family):
            clip_width = sum(spaces.get(s, 0) for s in _SD3_CLIP_SPACES)
            clip_tokens = infer_clip_tokens(hidden, clip_width) if clip_width else 0
        return layouts_for_tensor(
            self.pack, width, tokens, self.family, clip_tokens=clip_tokens, spaces=self.config.spaces
        )

    def __call__(
        self,
        hidden: torch.Tensor,
        cond_rows: torch.Tensor | Sequence[bool] | None = None,
        *,
        mask: torch.Tensor | None = None,
        prompts: Sequence[str | None] | None = None,
    ) -> tuple[torch.Tensor, SteeringReport]:
        """Steer ``hidden``; see :func:`steer_text` for the arguments and the result."""
        _check_hidden(hidden)
        rows = int(hidden.shape[0])
        cond = _cond_mask(cond_rows, rows)
        report = SteeringReport(
            family=self.family or "unknown",
            mode=self.config.mode,
            injection="conditioning",
            gate=self.config.gate,
            enabled=self.config.enabled,
            gate_fpr=self.config.gate_fpr,
        )
        if not self.config.enabled:
            return hidden, report
        if self.config.tokens == "prompt" and mask is None:
            raise ValueError(
                "tokens='prompt' steers only real tokens and needs their mask, but none was given. Pass "
                "mask=[B, T] bool, or use tokens='all' (ComfyUI conditioning carries no mask)."
            )
        if mask is not None and tuple(mask.shape) != tuple(hidden.shape[:2]):
            raise ValueError(f"mask must have shape {tuple(hidden.shape[:2])}, got {tuple(mask.shape)}.")
        if self.config.tokens == "all":
            mask = None
        plan = self._plan(hidden)
        result = hidden
        positive = cond.nonzero().flatten().tolist()
        if positive:
            if len(positive) == rows:
                part, part_mask = hidden, mask
            else:
                part, part_mask = hidden[positive], None if mask is None else mask[positive]
            names = [None] * len(positive) if prompts is None else [prompts[i] for i in positive]
            steered = plan.steer_positive(part, part_mask, names)
            for report_row, row in zip(steered.prompts, positive, strict=True):
                report_row.row = row
            report.prompts = steered.prompts
            if steered.delta is not None:
                result = _put_rows(result, positive, steered.apply_verified(part, plan.layouts))
        negative = (~cond).nonzero().flatten().tolist()
        if negative and self.config.negative_strength != 0:
            part = hidden[negative]
            part_mask = None if mask is None else mask[negative]
            offsets = plan.steer_negative(part, part_mask)
            if offsets.delta is not None:
                result = _put_rows(result, negative, offsets.apply(part))
                report.negative_steered = True
        return result, report

    def _plan(self, hidden: torch.Tensor) -> SteeringPlan:
        key = tuple(self.layouts(hidden))
        plan = self._plans.get(key)
        if plan is None:
            plan = self._plans[key] = SteeringPlan(self.pack, list(key), self.config, self.prompt_gate)
        return plan


def steer_text(
    hidden: torch.Tensor,
    pack: DirectionPack,
    config: SteeringConfig,
    cond_rows: torch.Tensor | Sequence[bool] | None = None,
    *,
    family: str | None = None,
    mask: torch.Tensor | None = None,
    prompts: Sequence[str | None] | None = None,
) -> tuple[torch.Tensor, SteeringReport]:
    """Steer a text tensor whose layout is inferred from its shape.

    Args:
        hidden: ``[B, T, D]`` text states as the denoiser sees them.
        pack: the direction pack; its spaces must fit ``D`` (see :func:`layouts_for_tensor`).
        config: strengths, mode, gate (``layers``/``step_range`` are not used here).
        cond_rows: ``[B]`` bool, the positive-prompt rows to steer (``None``: every row). Other rows are
            returned bit for bit (or get ``config.negative_strength`` on the global direction, when nonzero).
        family: target family hint (default: the pack's ``target.family``).
        mask: ``[B, T]`` bool real-token mask, needed only for ``tokens="prompt"``.
        prompts: optional prompt text per row, for the report.

    Returns:
        ``(steered, report)``. ``steered`` is ``hidden`` itself (same object) when nothing changes, else a new
        tensor; ``hidden`` is never modified. ``report`` says which directions fired for which row.

    Example:
        >>> v = pack.direction("text_encoder")
        >>> steered, _ = steer_text(h, pack, SteeringConfig(strength=2.0))
        >>> torch.equal(steered, h + 2.0 * v)
        True
    """
    return TextSteerer(pack, config, family=family)(hidden, cond_rows, mask=mask, prompts=prompts)


def cond_rows_from_chunks(cond_or_uncond: Sequence[int] | None, rows: int) -> torch.Tensor:
    """``[rows]`` bool: rows belonging to positive (cond) chunks of a batch made of equal chunks.

    Samplers that batch CFG passes (ComfyUI's ``cond_or_uncond``) mark each chunk 0 for cond and 1 for
    uncond. ``None`` (no such information) marks every row as positive.

    Raises:
        ValueError: when ``rows`` is not a multiple of the number of chunks.
    """
    if cond_or_uncond is None:
        return torch.ones(rows, dtype=torch.bool)
    chunks = [int(c) for c in cond_or_uncond]
    if not chunks or rows % len(chunks):
        raise ValueError(
            f"Cannot split a batch of {rows} text rows into {len(chunks)} cond/uncond chunks ({chunks})."
        )
    flags = torch.tensor([c == 0 for c in chunks], dtype=torch.bool)
    return flags.repeat_interleave(rows // len(chunks))


def _cond_mask(cond_rows: torch.Tensor | Sequence[bool] | None, rows: int) -> torch.Tensor:
    if cond_rows is None:
        return torch.ones(rows, dtype=torch.bool)
    mask = torch.as_tensor(cond_rows).to(device="cpu")
    if mask.dtype != torch.bool or tuple(mask.shape) != (rows,):
        raise ValueError(
            f"cond_rows must be a bool sequence of length {rows} (one flag per row), got dtype {mask.dtype} "
            f"and shape {tuple(mask.shape)}."
        )
    return mask


def _put_rows(hidden: torch.Tensor, rows: list[int], values: torch.Tensor) -> torch.Tensor:
    if len(rows) == hidden.shape[0]:
        return values
    out = hidden.clone()
    out[rows] = values
    return out


def _check_hidden(hidden: torch.Tensor) -> None:
    if not isinstance(hidden, torch.Tensor) or hidden.dim() != 3:
        shape = tuple(hidden.shape) if isinstance(hidden, torch.Tensor) else type(hidden).__name__
        raise ValueError(f"Expected a text tensor [B, T, D], got {shape}.")

"""Installing steering on a pipeline and taking it off again.

Two injection points:

- **conditioning** (every family): the pipeline's ``encode_prompt`` output is steered once per generation,
  positive rows only. Because ``encode_prompt`` hands back the positive embeddings separately from the
  negative ones (or is called separately for the negative prompt), the negative prompt is never touched,
  whatever the pipeline's CFG batch layout; and there is no per-step cost.
- **cross_attention** (UNet families): the offsets are computed at encode time but added inside chosen
  cross-attention (attn2) layers, during a chosen part of the schedule. A forward pre-hook on the UNet
  arranges the offsets to the UNet's batch (negatives first under CFG; AnimateDiff repeats rows per frame),
  and a wrapper around each original processor adds them. The originals are kept (``base_processor``) and
  put back, the same objects, on uninstall.
"""

from __future__ import annotations

import contextlib
import functools
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import torch

from safesteer_diffusers.packs.direction_pack import DirectionPack
from safesteer_diffusers.steering.config import SteeringConfig
from safesteer_diffusers.steering.layout import SpaceLayout
from safesteer_diffusers.steering.plan import SteeringPlan, SteeringResult
from safesteer_diffusers.steering.report import SteeringReport

from .registry import TargetSpec


@dataclass
class _Generation:
    """State of one pipeline call: which encode call we are in, offsets waiting for the denoiser."""

    prompts: list[str] | None
    report: SteeringReport
    encode_calls: int = 0
    pending: SteeringResult | None = None
    active: dict[int, tuple[torch.Tensor, torch.Tensor]] | None = None
    warned_timestep: bool = False
    rows_seen: int = field(default=0)


class SteeringInstallation:
    """Everything SafeSteer added to one pipeline, and how to undo it.

    Created by :meth:`SafeSteer.wrap`; reachable as ``pipe._safesteer``.
    """

    def __init__(self, pipe: Any, spec: TargetSpec, pack: DirectionPack, layouts: list[SpaceLayout], config):
        self.pipe = pipe
        self.spec = spec
        self.pack = pack
        self.layouts = layouts
        self.config: SteeringConfig = config
        self.plan = SteeringPlan(pack, layouts, config)
        self.last_report: SteeringReport | None = None
        self._generation: _Generation | None = None
        self._replaced: list[tuple[torch.nn.Module, Any]] = []
        self._hooks: list[torch.utils.hooks.RemovableHandle] = []

    # ------------------------------------------------------------------ install / uninstall
    def install(self) -> None:
        """Install the cross-attention wrappers if the config asks for them (conditioning needs nothing)."""
        if self.config.injection != "cross_attention":
            return
        denoiser = getattr(self.pipe, self.spec.denoiser)
        modules = cross_attention_modules(denoiser)
        selected = _select_layers(modules, self.config.layers)
        try:
            for name, module in selected.items():
                original = module.processor
                module.set_processor(CrossAttentionSteering(original, self, name))
                self._replaced.append((module, original))
            self._hooks.append(denoiser.register_forward_pre_hook(self._before_denoiser, with_kwargs=True))
        except BaseException:
            self.uninstall()  # roll back the layers already patched
            raise

    def uninstall(self) -> None:
        """Put back every original processor object and remove every hook (idempotent)."""
        while self._replaced:
            module, original = self._replaced.pop()
            module.set_processor(original)
        while self._hooks:
            self._hooks.pop().remove()
        self._generation = None

    def reconfigure(self, config: SteeringConfig) -> None:
        """Switch to another config; validation happens before anything changes."""
        plan = SteeringPlan(self.pack, self.layouts, config)
        reinstall = (config.layers, config.injection) != (self.config.layers, self.config.injection)
        if reinstall:
            self.uninstall()
        self.config, self.plan = config, plan
        if reinstall:
            self.install()

    # ------------------------------------------------------------------ one generation
    @contextlib.contextmanager
    def generation(self, args: tuple, kwargs: dict) -> Iterator[None]:
        """Scope of one pipeline call; the state is cleared even when the call raises."""
        report = SteeringReport(
            family=self.spec.family,
            mode=self.config.mode,
            injection=self.config.injection,
            gate=self.config.gate,
            enabled=self.config.enabled,
        )
        self._generation = _Generation(prompts=_prompt_texts(args, kwargs), report=report)
        try:
            yield
        finally:
            self.last_report = report
            self._generation = None

    def on_encode_prompt(self, output: Any) -> Any:
        """Steer what the pipeline's ``encode_prompt`` returned (only inside a generation)."""
        generation = self._generation
        if generation is None or not self.config.enabled:
            return output
        generation.encode_calls += 1
        encode = self.spec.encode
        items = list(output) if isinstance(output, tuple) else [output]
        first_call = generation.encode_calls == 1
        if not encode.separate_negative_call or first_call:
            items[encode.positive] = self._steer_positive(
                items[encode.positive], _item(items, encode.positive_mask)
            )
            if encode.negative is not None and not encode.separate_negative_call:
                items[encode.negative] = self._steer_negative(
                    items[encode.negative], _item(items, encode.negative_mask)
                )
        else:
            items[encode.positive] = self._steer_negative(
                items[encode.positive], _item(items, encode.positive_mask)
            )
        return tuple(items) if isinstance(output, tuple) else items[0]

    # ------------------------------------------------------------------ steering helpers
    def _mask(self, mask: Any) -> torch.Tensor | None:
        if self.config.tokens == "all" or not isinstance(mask, torch.Tensor):
            return None
        return mask.to(torch.bool)

    def _labels(self, rows: int) -> list[str | None]:
        prompts = self._generation.prompts
        if not prompts or rows % len(prompts):
            return [None] * rows
        per_prompt = rows // len(prompts)
        return [prompts[row // per_prompt] for row in range(rows)]

    def _steer_positive(self, embeds: Any, mask: Any) -> Any:
        if isinstance(embeds, list | tuple):  # ragged: one [L, D] tensor per prompt (Z-Image)
            labels = self._labels(len(embeds))
            steered = []
            for row, tensor in enumerate(embeds):
                result = self.plan.steer_positive(tensor.unsqueeze(0), None, [labels[row]])
                self._record(result)
                steered.append(
                    result.apply(tensor.unsqueeze(0)).squeeze(0) if result.delta is not None else tensor
                )
            return type(embeds)(steered)
        if not isinstance(embeds, torch.Tensor):
            return embeds
        result = self.plan.steer_positive(embeds, self._mask(mask), self._labels(embeds.shape[0]))
        self._record(result)
        if self.config.injection == "cross_attention":
            self._generation.pending = result
            return embeds
        return result.apply(embeds)

    def _steer_negative(self, embeds: Any, mask: Any) -> Any:
        if self.config.negative_strength == 0 or embeds is None:
            return embeds
        self._generation.report.negative_steered = True
        if isinstance(embeds, list | tuple):
            steer = self.plan.steer_negative
            return type(embeds)(steer(t[None], None).apply(t[None]).squeeze(0) for t in embeds)
        return self.plan.steer_negative(embeds, self._mask(mask)).apply(embeds)

    def _record(self, result: SteeringResult) -> None:
        generation = self._generation
        for prompt in result.prompts:
            prompt.row += generation.rows_seen
        generation.rows_seen += len(result.prompts)
        generation.report.prompts.extend(result.prompts)

    # ------------------------------------------------------------------ cross-attention path
    def _before_denoiser(self, module: torch.nn.Module, args: tuple, kwargs: dict) -> None:
        generation = self._generation
        if generation is None:
            return
        generation.active = None
        pending = generation.pending
        if pending is None or pending.delta is None:
            return
        hidden = kwargs.get("encoder_hidden_states", args[2] if len(args) > 2 else None)
        timestep = kwargs.get("timestep", args[1] if len(args) > 1 else None)
        if hidden is None or not self._in_step_range(timestep, generation):
            return
        delta, positions = pending.delta, pending.positions
        rows, positives = hidden.shape[0], delta.shape[0]
        if rows == 2 * positives:  # classifier-free guidance batch: [negative, positive]
            delta = torch.cat([torch.zeros_like(delta), delta])
            positions = torch.cat([torch.zeros_like(positions), positions])
        elif rows != positives:
            raise RuntimeError(
                f"SafeSteer cannot match the {rows} text rows the {self.spec.denoiser} received to the {positives} "
                "positive prompt rows it encoded. Use conditioning steering (layers=None) for this call."
            )
        generation.active = {1: (delta.to(hidden.dtype), positions)}

    def _in_step_range(self, timestep: Any, generation: _Generation) -> bool:
        if self.config.step_range is None:
            return True
        timesteps = getattr(getattr(self.pipe, "scheduler", None), "timesteps", None)
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
        start, end = self.config.step_range
        fraction = int(matches[0, 0]) / len(timesteps)
        return start <= fraction < end

    def active_offsets(self, rows: int) -> tuple[torch.Tensor, torch.Tensor] | None:
        """Offsets for a cross-attention call seeing ``rows`` text rows (repeated per frame if needed)."""
        generation = self._generation
        if generation is None or not generation.active:
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
        return generation.active[repeats]


class CrossAttentionSteering(torch.nn.Module):
    """Wraps one cross-attention processor: adds the steering offset to its text input, then delegates.

    The original processor is kept as ``base_processor`` (a submodule when it is one, so IP-Adapter
    weights stay in the module tree for ``.to()`` and CPU offload). The wrapper presents the original's
    call signature, so diffusers passes it the same ``cross_attention_kwargs`` as before.
    """

    def __init__(self, base_processor: Any, installation: SteeringInstallation, layer: str):
        super().__init__()
        self.base_processor = base_processor
        self.layer = layer
        object.__setattr__(self, "_installation", installation)
        call = functools.update_wrapper(
            lambda *a, **k: torch.nn.Module.__call__(self, *a, **k), base_processor.__call__
        )
        # diffusers' Attention.forward filters kwargs by inspect.signature(processor.__call__).
        object.__setattr__(self, "__call__", call)

    def forward(self, attn, hidden_states, encoder_hidden_states=None, *args, **kwargs):
        if encoder_hidden_states is not None:
            encoder_hidden_states = self._steer(encoder_hidden_states)
        return self.base_processor(attn, hidden_states, encoder_hidden_states, *args, **kwargs)

    def _steer(self, text: Any) -> Any:
        if isinstance(text, tuple):  # IP-Adapter: (text states, image states); only the text is steered
            return (self._steer(text[0]), *text[1:])
        if not isinstance(text, torch.Tensor) or text.dim() != 3:
            return text
        offsets = self._installation.active_offsets(text.shape[0])
        if offsets is None:
            return text
        delta, positions = offsets
        return torch.where(positions.unsqueeze(-1), text + delta, text)


def cross_attention_modules(denoiser: torch.nn.Module) -> dict[str, torch.nn.Module]:
    """Attention modules of ``denoiser`` whose keys/values come from the text (diffusers ``attn2``)."""
    return {
        name: module
        for name, module in denoiser.named_modules()
        if hasattr(module, "set_processor") and getattr(module, "is_cross_attention", False)
    }


def _select_layers(
    modules: dict[str, torch.nn.Module], layers: str | tuple[str, ...]
) -> dict[str, torch.nn.Module]:
    if not modules:
        raise ValueError("This denoiser has no cross-attention layers to steer; use layers=None.")
    if layers == "all":
        return modules
    selected = {name: m for name, m in modules.items() if any(pattern in name for pattern in layers)}
    unmatched = [p for p in layers if not any(p in name for name in modules)]
    if unmatched:
        examples = "\n  ".join(list(modules)[:8])
        raise ValueError(
            f"Layer names {unmatched} match no cross-attention layer. Names look like:\n  {examples}\n"
            "Pass substrings of these (e.g. 'up_blocks.1') or layers='all'."
        )
    return selected


def _item(items: list, index: int | None) -> Any:
    return None if index is None or index >= len(items) else items[index]


def _prompt_texts(args: tuple, kwargs: dict) -> list[str] | None:
    prompt = kwargs.get("prompt", args[0] if args else None)
    if isinstance(prompt, str):
        return [prompt]
    if isinstance(prompt, list) and all(isinstance(p, str) for p in prompt):
        return list(prompt)  # a copy: some pipelines (Z-Image) rewrite the caller's list in place
    return None

"""Steering installed on one pipeline: its configuration, each call's state, and safe changes to both.

Two injection points:

- **conditioning** (every family): the pipeline's ``encode_prompt`` output is steered once per call, positive
  rows only. Because ``encode_prompt`` hands back the positive embeddings separately from the negative ones
  (or is called separately for the negative prompt), the negative prompt is never touched, whatever the
  pipeline's CFG batch layout; and there is no per-step cost.
- **cross_attention** (UNet families): the offsets are computed at encode time and added inside chosen
  cross-attention layers (:mod:`.attention`), during a chosen part of the schedule. A forward pre-hook on the
  UNet arranges them to the UNet's batch (negatives first under CFG; AnimateDiff repeats rows per frame).

Fail-closed rules (docs/api.md, "Guarantees"):

- Each call snapshots the configuration when it starts and keeps its state in a context variable, so
  changes made meanwhile, and calls on other pipelines sharing the same modules, cannot affect it.
- Changing the configuration is one transaction: validate and build the new state, then swap; on any error the
  previous configuration stays in force. ``safety_steering`` contexts are local to the thread (or task) that
  enters them and are removed by identity on exit, so they restore correctly in any exit order.
- A call that was to be steered and was not (no prompt encoding intercepted, offsets that vanished, attention
  layers that never received them) raises :class:`~safesteer_diffusers.steering.errors.SteeringNotApplied`
  instead of returning its output.
- One pipeline runs one call at a time: diffusers keeps per-call state on the pipeline (scheduler timesteps,
  guidance scale), so a second concurrent call raises instead of producing a mixed result.
"""

from __future__ import annotations

import contextlib
import copy
import hmac
import threading
import warnings
from collections import deque
from collections.abc import Iterator, Mapping
from contextvars import ContextVar
from typing import Any

import torch

from safesteer_diffusers.packs.direction_pack import DirectionPack
from safesteer_diffusers.steering.config import SteeringConfig
from safesteer_diffusers.steering.errors import SteeringLocked, SteeringNotApplied
from safesteer_diffusers.steering.report import PromptReport, SteeringReport

from .attention import AttentionPatch
from .call_state import (
    ConcurrentCallError,
    Generation,
    StepSlot,
    arrange_offsets,
    finish_step,
    item,
    layer_offsets,
    prompt_texts,
)
from .registry import TargetSpec
from .validation import PreparedSteering, prepare_steering

# Settings a `safety_steering` context may not change: they swap attention processors that every call of
# the pipeline goes through, which a context local to one thread must not do.
_PIPELINE_WIDE = ("layers",)


class SteeringInstallation:
    """Everything SafeSteer added to one pipeline, and how to change or undo it.

    Created by :meth:`SafeSteer.wrap`; reachable as ``pipe._safesteer``.
    """

    def __init__(
        self,
        pipe: Any,
        spec: TargetSpec,
        prepared: PreparedSteering,
        *,
        lock_token: str | None = None,
        gate_model: tuple[Any, Any] | None = None,
    ):
        self.pipe = pipe
        self.spec = spec
        self.gate_model = gate_model  # fixed for the installation's life: every plan is prepared with it
        self._prepared = prepared
        self._lock = threading.RLock()
        self._lock_token = lock_token
        self._attention: AttentionPatch | None = None
        self._hook: torch.utils.hooks.RemovableHandle | None = None
        self._step = StepSlot()  # what the cross-attention wrappers read (see .call_state)
        self._call: ContextVar[Generation | None] = ContextVar(f"safesteer_call_{id(self)}", default=None)
        self._overrides: ContextVar[tuple] = ContextVar(f"safesteer_overrides_{id(self)}", default=())
        self._context_report: ContextVar[SteeringReport | None] = ContextVar(
            f"safesteer_report_{id(self)}", default=None
        )
        self._last_report: SteeringReport | None = None
        self._running = 0
        self._override_plans: dict[tuple, tuple[PreparedSteering, PreparedSteering]] = {}
        # Locked mode steers encode_prompt outside calls too; rows steered there are not steered again when
        # they come back as prompt_embeds (bounded: only the latest ones are remembered).
        self._steered_outside: deque[tuple[torch.Tensor, PromptReport]] = deque(maxlen=64)

    # ------------------------------------------------------------------ read access
    @property
    def config(self) -> SteeringConfig:
        """The configuration a call started now, in this thread or task, would use."""
        return self._effective().config

    @property
    def pack(self) -> DirectionPack:
        return self._prepared.pack

    @property
    def layouts(self):
        return self._prepared.layouts

    @property
    def locked(self) -> bool:
        return self._lock_token is not None

    @property
    def last_report(self) -> SteeringReport | None:
        """The report of the last call made in this thread or task (of any thread if none was made here)."""
        return self._context_report.get() or self._last_report

    # ------------------------------------------------------------------ install / uninstall
    def install(self) -> None:
        """Install the cross-attention wrappers if the configuration asks for them (conditioning needs nothing)."""
        self._install_attention(self._prepared.config)

    def uninstall(self, unlock: str | None = None) -> None:
        """Put back every original processor and remove every hook (idempotent)."""
        self.check_unlocked(unlock, "be unwrapped")
        self._remove_attention()

    def _install_attention(self, config: SteeringConfig) -> None:
        if config.layers is None:
            return
        denoiser = getattr(self.pipe, self.spec.denoiser)
        patch = AttentionPatch(denoiser, config.layers, self.active_offsets, self)
        try:
            patch.install()
            # The hook's bookkeeping (Python, data-dependent) runs eagerly even inside a compiled denoiser.
            hook = torch.compiler.disable(self._before_denoiser)
            self._hook = denoiser.register_forward_pre_hook(hook, with_kwargs=True)
        except BaseException:
            patch.uninstall()
            raise
        self._attention = patch

    def _remove_attention(self) -> None:
        if self._attention is not None:
            self._attention.uninstall()
            self._attention = None
        if self._hook is not None:
            self._hook.remove()
            self._hook = None

    # ------------------------------------------------------------------ changes
    def check_unlocked(self, unlock: str | None, action: str) -> None:
        """Raise :class:`SteeringLocked` unless the pipeline is unlocked or ``unlock`` is its token."""
        if self._lock_token is None:
            return
        if not isinstance(unlock, str) or not hmac.compare_digest(unlock, self._lock_token):
            raise SteeringLocked(
                f"This pipeline was wrapped with locked=True, so its steering cannot {action} without the unlock "
                "token that SafeSteer.wrap returned. Pass unlock=<token>."
            )

    def reconfigure(
        self, changes: Mapping[str, Any], *, pack: DirectionPack | None = None, unlock: str | None = None
    ) -> SteeringConfig:
        """Change the configuration for calls that start later, as one transaction.

        Everything is validated and the new state built before anything changes; on any error the previous
        configuration (and attention processors) stay in force.
        """
        self.check_unlocked(unlock, "be changed")
        with self._lock:
            base = self._prepared
            config = base.config.replace(**changes)
            prepared = prepare_steering(self.pipe, self.spec, pack or base.pack, config, self.gate_model)
            if config.layers != base.config.layers:
                if self._running:
                    raise RuntimeError(
                        "Cannot change layers while a call on this pipeline is running: the attention processors "
                        "it goes through would change under it. Change it between calls."
                    )
                self._swap_attention(base.config, config)
            self._prepared = prepared
            self._override_plans.clear()
            return config

    def _swap_attention(self, old: SteeringConfig, new: SteeringConfig) -> None:
        self._remove_attention()
        try:
            self._install_attention(new)
        except BaseException:
            self._remove_attention()
            self._install_attention(old)  # the previous layers, wrapped again
            raise

    @contextlib.contextmanager
    def overridden(self, changes: Mapping[str, Any], unlock: str | None = None) -> Iterator[SteeringConfig]:
        """Use ``changes`` for calls made in this thread or task until the block ends."""
        self.check_unlocked(unlock, "be changed, even temporarily")
        refused = sorted(set(changes) & set(_PIPELINE_WIDE))
        if refused:
            raise ValueError(
                f"safety_steering() cannot change {refused}: that swaps the attention processors every call of "
                "this pipeline goes through. Use pipe.configure_safety(layers=...) between calls."
            )
        entry = (object(), dict(changes))
        entries = (*self._overrides.get(), entry)
        config = self._effective(entries).config  # validated now, not at the first call
        self._overrides.set(entries)
        try:
            yield config
        finally:
            # Remove this context's entry by identity: correct whatever order contexts exit in.
            self._overrides.set(tuple(e for e in self._overrides.get() if e[0] is not entry[0]))

    def _effective(self, entries: tuple | None = None) -> PreparedSteering:
        base = self._prepared
        entries = self._overrides.get() if entries is None else entries
        if not entries:
            return base
        merged: dict[str, Any] = {}
        for _, changes in entries:
            merged.update(changes)
        key = tuple(sorted((name, repr(value)) for name, value in merged.items()))
        cached = self._override_plans.get(key)
        if cached is not None and cached[0] is base:
            return cached[1]
        prepared = prepare_steering(
            self.pipe, self.spec, base.pack, base.config.replace(**merged), self.gate_model
        )
        if len(self._override_plans) > 64:
            self._override_plans.clear()
        self._override_plans[key] = (base, prepared)
        return prepared

    # ------------------------------------------------------------------ one call
    @contextlib.contextmanager
    def generation(self, args: tuple, kwargs: dict) -> Iterator[None]:
        """Scope of one pipeline call: snapshot the configuration, steer, then check that it was applied."""
        if self._call.get() is not None:  # the pipeline calling itself: part of the same call
            yield
            return
        prepared = self._effective()
        with self._lock:
            if self._running:
                raise ConcurrentCallError(
                    "This pipeline is already running a call in another thread. diffusers keeps per-call state on "
                    "the pipeline (scheduler timesteps, guidance scale), so concurrent calls on one pipeline mix "
                    "their results. Use one pipeline per thread (e.g. DiffusionPipeline.from_pipe(pipe, "
                    "scheduler=copy.deepcopy(pipe.scheduler))) and wrap each, or serialise calls with a lock."
                )
            self._running += 1
            if self._attention is not None and prepared.config.enabled:
                replaced = self._attention.ensure_installed()
                if replaced:
                    warnings.warn(
                        f"SafeSteer re-installed steering on {len(replaced)} cross-attention layer(s) whose "
                        f"processors were replaced (e.g. {replaced[0]}).",
                        stacklevel=4,
                    )
        config = prepared.config
        report = SteeringReport(
            family=self.spec.family,
            mode=config.mode,
            injection=config.injection,
            gate=config.gate,
            enabled=config.enabled,
            gate_fpr=config.gate_fpr,
        )
        generation = Generation(prepared=prepared, prompts=prompt_texts(args, kwargs), report=report)
        token = self._call.set(generation)
        try:
            yield
            self._end_denoiser_steps(generation)
            self._check_applied(generation)
        finally:
            self._end_denoiser_steps(generation)
            self._call.reset(token)
            with self._lock:
                self._running -= 1
            self._last_report = report
            self._context_report.set(report)

    def _check_applied(self, generation: Generation) -> None:
        prepared = generation.prepared
        if not prepared.config.enabled or prepared.plan.is_noop:
            return
        if generation.positive_encodes == 0:
            raise SteeringNotApplied(
                f"This {type(self.pipe).__name__} call never encoded its prompt through encode_prompt, so SafeSteer "
                "could not steer it; the result was withheld. Call the pipeline normally (pipe(prompt=...) or "
                "pipe(prompt_embeds=...)), or register the family with register_target."
            )
        pending = generation.pending
        if self._attention is None or pending is None or pending.delta is None:
            return
        missing = sorted(set(self._attention.modules) - generation.applied_layers)
        if missing:
            raise SteeringNotApplied(
                f"Cross-attention steering reached {len(generation.applied_layers)} of "
                f"{len(self._attention.modules)} selected layers in this call (never: {missing[:4]}"
                f"{' ...' if len(missing) > 4 else ''}): step_range covered none of its steps, the processors were "
                "replaced during the call, or the denoiser's batch did not match. The result was withheld."
            )

    # ------------------------------------------------------------------ encode_prompt interception
    def on_encode_prompt(self, output: Any) -> Any:
        """Steer what the pipeline's ``encode_prompt`` returned."""
        generation = self._call.get()
        if generation is None:
            # Outside a call: unlocked pipelines return the states as encoded (a call steers them when they come
            # back as prompt_embeds); locked ones steer them now, so no route reaches the denoiser unsteered.
            return self._steer_outside_call(output) if self.locked else output
        if not generation.prepared.config.enabled:
            return output
        generation.encode_calls += 1
        encode = self.spec.encode
        items = list(output) if isinstance(output, tuple) else [output]
        first_call = generation.encode_calls == 1
        if not encode.separate_negative_call or first_call:
            items[encode.positive] = self._steer_positive(
                generation, items[encode.positive], item(items, encode.positive_mask)
            )
            if encode.negative is not None and not encode.separate_negative_call:
                items[encode.negative] = self._steer_negative(
                    generation, items[encode.negative], item(items, encode.negative_mask)
                )
        else:
            items[encode.positive] = self._steer_negative(
                generation, items[encode.positive], item(items, encode.positive_mask)
            )
        return tuple(items) if isinstance(output, tuple) else items[0]

    def _steer_outside_call(self, output: Any) -> Any:
        prepared = self._effective()
        if not prepared.config.enabled or prepared.config.injection != "conditioning":
            return output  # cross-attention offsets are added during a call, where prompt_embeds are steered
        report = SteeringReport(
            self.spec.family,
            prepared.config.mode,
            "conditioning",
            prepared.config.gate,
            True,
            gate_fpr=prepared.config.gate_fpr,
        )
        generation = Generation(prepared=prepared, prompts=None, report=report)
        items = list(output) if isinstance(output, tuple) else [output]
        positive = items[self.spec.encode.positive]
        steered = self._steer_positive(generation, positive, item(items, self.spec.encode.positive_mask))
        if isinstance(steered, torch.Tensor):
            for row, prompt_report in zip(steered, report.prompts, strict=False):
                self._steered_outside.append((row.detach(), prompt_report))
        items[self.spec.encode.positive] = steered
        return tuple(items) if isinstance(output, tuple) else items[0]

    def _already_steered(self, embeds: torch.Tensor) -> list[PromptReport] | None:
        if not self._steered_outside or not isinstance(embeds, torch.Tensor):
            return None
        reports = []
        for row in embeds:
            match = next(
                (
                    report
                    for seen, report in self._steered_outside
                    if seen.shape == row.shape
                    and seen.dtype == row.dtype
                    and torch.equal(seen.to(row.device), row)
                ),
                None,
            )
            if match is None:
                return None
            reports.append(copy.deepcopy(match))
        return reports

    # ------------------------------------------------------------------ steering helpers
    def _mask(self, config: SteeringConfig, mask: Any) -> torch.Tensor | None:
        if config.tokens == "all" or not isinstance(mask, torch.Tensor):
            return None
        return mask.to(torch.bool)

    @staticmethod
    def _labels(generation: Generation, rows: int) -> list[str | None]:
        prompts = generation.prompts
        if not prompts or rows % len(prompts):
            return [None] * rows
        per_prompt = rows // len(prompts)
        return [prompts[row // per_prompt] for row in range(rows)]

    def _steer_positive(self, generation: Generation, embeds: Any, mask: Any) -> Any:
        plan, layouts = generation.prepared.plan, list(generation.prepared.layouts)
        generation.positive_encodes += 1
        if isinstance(embeds, list | tuple):  # ragged: one [L, D] tensor per prompt (Z-Image)
            labels = self._labels(generation, len(embeds))
            steered = []
            for row, tensor in enumerate(embeds):
                result = plan.steer_positive(tensor.unsqueeze(0), None, [labels[row]])
                steered.append(result.apply_verified(tensor.unsqueeze(0), layouts).squeeze(0))
                self._record(generation, result.prompts)
            return type(embeds)(steered)
        if not isinstance(embeds, torch.Tensor):
            return embeds
        if self.locked:
            previous = self._already_steered(embeds)
            if previous is not None:  # prompt_embeds from a locked encode_prompt: steered once already
                self._record(generation, previous)
                return embeds
        config = generation.prepared.config
        result = plan.steer_positive(
            embeds, self._mask(config, mask), self._labels(generation, embeds.shape[0])
        )
        if config.injection == "cross_attention":
            result.record_planned(layouts)
            generation.pending = result
            self._record(generation, result.prompts)
            return embeds
        steered = result.apply_verified(embeds, layouts)
        self._record(generation, result.prompts)
        return steered

    def _steer_negative(self, generation: Generation, embeds: Any, mask: Any) -> Any:
        config, plan = generation.prepared.config, generation.prepared.plan
        if config.negative_strength == 0 or embeds is None:
            return embeds
        generation.report.negative_steered = True
        if isinstance(embeds, list | tuple):
            steer = plan.steer_negative
            return type(embeds)(steer(t[None], None).apply(t[None]).squeeze(0) for t in embeds)
        return plan.steer_negative(embeds, self._mask(config, mask)).apply(embeds)

    @staticmethod
    def _record(generation: Generation, prompts: list[PromptReport]) -> None:
        for prompt in prompts:
            prompt.row += generation.rows_seen
        generation.rows_seen += len(prompts)
        generation.report.prompts.extend(prompts)

    # ------------------------------------------------------------------ cross-attention path
    # The pre-hook runs eagerly (``torch.compiler.disable``), also inside a compiled denoiser; the wrappers call
    # ``active_offsets`` inside the denoiser's forward (inside its graph), which reads the thread's step only.
    def _before_denoiser(self, module: torch.nn.Module, args: tuple, kwargs: dict) -> None:
        self._step.step = None
        generation = self._call.get()
        if generation is not None:
            arrange_offsets(generation, self.pipe, self.spec.denoiser, args, kwargs)
            self._step.step = generation.step

    def _end_denoiser_steps(self, generation: Generation) -> None:
        """At the end of a call: record the last denoiser step; the wrappers see no step until the next call."""
        finish_step(generation)
        self._step.step = None

    def active_offsets(self, rows: int, layer: str) -> tuple[torch.Tensor, torch.Tensor] | None:
        """Offsets for layer ``layer`` seeing ``rows`` text rows at the current denoiser step (repeated per
        frame), ``None`` outside a call of this pipeline."""
        return layer_offsets(self._step.step, rows, layer)

"""`SafeSteer.wrap` / `SafeSteer.unwrap` and the `SafetySteeringMixin` methods a wrapped pipeline gains.

Wrapping changes the pipeline object's class to a subclass that mixes in :class:`SafetySteeringMixin`
(``isinstance(pipe, FluxPipeline)`` stays true, and ``pipe.config`` keeps the original class name, so
``save_pretrained`` is unaffected). Unwrapping restores the original class, processors and hooks.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Mapping
from contextlib import AbstractContextManager
from typing import Any

from safesteer_diffusers.packs.direction_pack import DirectionPack
from safesteer_diffusers.steering.config import MAX_STRENGTH, SteeringConfig
from safesteer_diffusers.steering.report import SteeringReport

from .installation import SteeringInstallation
from .registry import registered_targets, target_for
from .validation import check_target, prepare_steering

_ATTRIBUTE = "_safesteer"


class SafetySteeringMixin:
    """Methods of a pipeline wrapped by :meth:`SafeSteer.wrap`.

    Example:
        >>> pipe = SafeSteer.wrap(pipe, pack, strength=3.0)
        >>> pipe.set_safety_strength(5.0, categories={"sexual": 2.0})
        >>> with pipe.safety_steering(strength=0.0):
        ...     image = pipe("a portrait").images[0]  # unsteered
        >>> print(pipe.safety_report)
    """

    _safesteer: SteeringInstallation

    def __call__(self, *args, **kwargs):
        with self._safesteer.generation(args, kwargs):
            return super().__call__(*args, **kwargs)

    def encode_prompt(self, *args, **kwargs):
        return self._safesteer.on_encode_prompt(super().encode_prompt(*args, **kwargs))

    # ------------------------------------------------------------------ configuration
    @property
    def safety_config(self) -> SteeringConfig:
        """The :class:`SteeringConfig` a call started now (in this thread, inside any active
        :meth:`safety_steering` blocks) would use. Immutable; change it with the methods below."""
        return self._safesteer.config

    @property
    def safety_pack(self) -> DirectionPack:
        """The :class:`DirectionPack` this pipeline is steered with."""
        return self._safesteer.pack

    @property
    def safety_report(self) -> SteeringReport | None:
        """Report of the last call made in this thread: per prompt row, what was applied, scores, strengths."""
        return self._safesteer.last_report

    def configure_safety(
        self,
        *,
        unlock: str | None = None,
        pack: DirectionPack | str | os.PathLike | None = None,
        strict: bool = False,
        revision: str | None = None,
        **changes,
    ) -> SteeringConfig:
        """Change steering settings for later calls, with the same validation as :meth:`SafeSteer.wrap`.

        Every ``wrap()`` setting can be changed (``strength``, ``categories``, ``mode``, ``gate``, ``tokens``,
        ``negative_strength``, ``layers``, ``step_range``, ``spaces``, ``enabled``, ``strength_limit``,
        ``allow_toward_unsafe``, and ``pack`` with ``strict``/``revision``); ``None`` means what it means in
        ``wrap()`` (e.g. ``layers=None``: conditioning steering). ``locked`` and ``gate_model`` cannot: unwrap
        and wrap again.
        One transaction: on any error nothing changes.

        Args:
            unlock: the unlock token of a pipeline wrapped with ``locked=True``.

        Returns:
            The new configuration.
        """
        for fixed in ("locked", "gate_model"):
            if fixed in changes:
                raise ValueError(
                    f"{fixed} cannot be changed on a wrapped pipeline: SafeSteer.unwrap it and wrap it again."
                )
        new_pack = None
        if pack is not None:
            self._safesteer.check_unlocked(unlock, "be changed")
            new_pack = _resolve_pack(pack, self, revision)
            check_target(new_pack, self._safesteer.spec, self, strict)
        return self._safesteer.reconfigure(changes, pack=new_pack, unlock=unlock)

    def set_safety_strength(
        self,
        strength: float | None = None,
        categories: Mapping[str, float] | None = None,
        *,
        unlock: str | None = None,
    ) -> SteeringConfig:
        """Set the global strength and/or the per-category strengths for later calls (``None``: unchanged).

        ``categories`` replaces the previous per-category strengths (categories not named get 0).
        """
        changes = {"strength": strength, "categories": categories}
        return self.configure_safety(unlock=unlock, **{k: v for k, v in changes.items() if v is not None})

    def enable_safety_steering(self, *, unlock: str | None = None) -> None:
        """Turn steering back on."""
        self.configure_safety(enabled=True, unlock=unlock)

    def disable_safety_steering(self, *, unlock: str | None = None) -> None:
        """Turn steering off: calls behave exactly like the unwrapped pipeline until enabled again."""
        self.configure_safety(enabled=False, unlock=unlock)

    def safety_steering(
        self, *, unlock: str | None = None, **changes
    ) -> AbstractContextManager[SteeringConfig]:
        """Change settings for the calls made inside the block, in this thread (or asyncio task) only.

        Validated on entry like :meth:`configure_safety`; the block's changes end with it, also when the
        body raises, whatever order several blocks end in. ``layers`` cannot change here (it swaps the
        attention processors every thread's calls use): use :meth:`configure_safety`.

        Example:
            >>> with pipe.safety_steering(strength=0.0):
            ...     image = pipe("a portrait").images[0]  # unsteered, bit for bit
        """
        return self._safesteer.overridden(changes, unlock)


class SafeSteer:
    """Entry points: ``SafeSteer.wrap(pipe, pack, ...)`` and ``SafeSteer.unwrap(pipe)``."""

    @staticmethod
    def wrap(
        pipe: Any,
        pack: DirectionPack | str | os.PathLike | None = None,
        strength: float = 1.0,
        categories: Mapping[str, float] | None = None,
        mode: str = "add",
        gate: bool = False,
        *,
        tokens: str = "all",
        negative_strength: float = 0.0,
        layers: str | list[str] | None = None,
        step_range: tuple[float, float] | None = None,
        spaces: list[str] | None = None,
        strict: bool = False,
        revision: str | None = None,
        strength_limit: float | None = MAX_STRENGTH,
        allow_toward_unsafe: bool = False,
        locked: bool = False,
        gate_model: tuple[Any, Any] | None = None,
        gate_fpr: float | None = None,
    ) -> Any:
        """Make ``pipe`` steer its generations with a direction pack.

        **Warning: this modifies ``pipe`` in place** (its class, and for ``layers`` its attention
        processors) and returns the same object. :meth:`unwrap` undoes every change.

        Args:
            pipe: a supported diffusers pipeline (see ``safesteer_diffusers.registered_targets()``).
            pack: a :class:`DirectionPack`, a folder/file path, a Hub repo id, or ``None`` for the default
                pack registered for the pipeline's model in ``pretrained_directions/``.
            strength: global-direction strength (positive = safer, 0 = unchanged).
            categories: per-category strengths, e.g. ``{"sexual": 2.0}``.
            mode: ``"add"`` or ``"project"``; gate: steer only prompts whose score passes the pack's
                thresholds. See :class:`SteeringConfig` for ``tokens``, ``negative_strength``, ``layers``,
                ``step_range`` and ``spaces``.
            strict: fail (instead of warn) when the pack was built for another target.
            revision: Hub revision when ``pack`` is a repo id.
            strength_limit: bound on every ``|strength|`` (default 20 calibrated units; ``None`` opts out).
            allow_toward_unsafe: allow negative strengths (steering toward unsafe; e.g. red-teaming).
            locked: for hosted services: the steering can then not be weakened from inside the process
                (configure, disable, contexts, unwrap) without the unlock token this call returns, and
                ``encode_prompt`` called outside a call is steered too.
            gate_model: ``(model, tokenizer)`` of the pack's source model, for packs built with a source-model
                gate (``safesteer build --source-gate``): with ``gate=True`` the source model reads each prompt
                and decides which directions fire (the strongest gate measured, docs/method.md 6.5). Calls must
                then pass ``prompt=`` text; ``prompt_embeds`` alone raise ``SteeringNotApplied``.
            gate_fpr: the gate's benign false-positive rate: the pack's thresholds for that rate (one of
                ``pack.gate_fprs``) instead of its default; more steers more unsafe and more benign prompts.

        Returns:
            ``pipe``, now also a :class:`SafetySteeringMixin`; with ``locked=True``, ``(pipe, unlock_token)``.

        Raises:
            ValueError / TypeError: unsupported pipeline, already wrapped, or a pack that does not fit
                (dimension, missing space, unknown category, missing gate thresholds).

        Example:
            >>> pipe = SafeSteer.wrap(pipe, "org/safesteer-flux1-schnell", strength=5.0,
            ...                       categories={"sexual": 2.0})
        """
        if SafeSteer.is_wrapped(pipe):
            raise ValueError(
                "This pipeline is already wrapped by SafeSteer; wrapping twice would steer twice. Change the "
                "settings with pipe.configure_safety(...) / pipe.set_safety_strength(...), or call "
                "SafeSteer.unwrap(pipe) first."
            )
        spec = target_for(pipe)
        config = SteeringConfig(
            strength=strength,
            categories=dict(categories or {}),
            mode=mode,
            gate=gate,
            tokens=tokens,
            negative_strength=negative_strength,
            layers=layers,
            step_range=step_range,
            spaces=tuple(spaces) if spaces is not None else None,
            strength_limit=strength_limit,
            allow_toward_unsafe=allow_toward_unsafe,
            gate_fpr=gate_fpr,
        )
        if not isinstance(locked, bool):
            raise TypeError(f"locked must be True or False, got {locked!r}.")
        pack = _resolve_pack(pack, pipe, revision)
        if gate_model is not None and not (isinstance(gate_model, tuple | list) and len(gate_model) == 2):
            raise TypeError(
                f"gate_model must be a (model, tokenizer) pair, got {type(gate_model).__name__}. Load the pack's "
                "source model, e.g. with safesteer_diffusers.build.model_loading.load_source."
            )
        gate_model = tuple(gate_model) if gate_model is not None else None
        prepared = prepare_steering(pipe, spec, pack, config, gate_model)
        check_target(pack, spec, pipe, strict)
        token = secrets.token_urlsafe(32) if locked else None
        installation = SteeringInstallation(pipe, spec, prepared, lock_token=token, gate_model=gate_model)
        installation.install()
        original = type(pipe)
        try:
            object.__setattr__(pipe, _ATTRIBUTE, installation)
            pipe.__class__ = _steered_class(original)
        except BaseException:
            installation.uninstall(token)
            pipe.__dict__.pop(_ATTRIBUTE, None)
            raise
        return (pipe, token) if locked else pipe

    @staticmethod
    def unwrap(pipe: Any, *, unlock: str | None = None) -> Any:
        """Undo :meth:`wrap`: original class, processors (same objects) and no hooks. Returns ``pipe``.

        Args:
            unlock: the unlock token of a pipeline wrapped with ``locked=True``.

        Raises:
            ValueError: if ``pipe`` is not wrapped. SteeringLocked: a locked pipeline without its token.
        """
        if not SafeSteer.is_wrapped(pipe):
            raise ValueError("This pipeline is not wrapped by SafeSteer; there is nothing to unwrap.")
        installation: SteeringInstallation = pipe.__dict__[_ATTRIBUTE]
        installation.uninstall(unlock)
        pipe.__class__ = _original_class(type(pipe))
        del pipe.__dict__[_ATTRIBUTE]
        return pipe

    @staticmethod
    def is_wrapped(pipe: Any) -> bool:
        """Whether ``pipe`` is currently wrapped."""
        return isinstance(pipe, SafetySteeringMixin) and _ATTRIBUTE in getattr(pipe, "__dict__", {})


# ---------------------------------------------------------------------- helpers
_STEERED_CLASSES: dict[type, type] = {}


def _steered_class(original: type) -> type:
    if original not in _STEERED_CLASSES:
        # Same __name__ as the original: diffusers writes `type(self).__name__` as `_class_name` when saving,
        # so a wrapped pipeline still saves (and reprs) as the original class.
        steered = type(original.__name__, (SafetySteeringMixin, original), {"_safesteer_original": original})
        steered.__module__ = original.__module__
        steered.__qualname__ = original.__qualname__
        _STEERED_CLASSES[original] = steered
    return _STEERED_CLASSES[original]


def _original_class(steered: type) -> type:
    return steered.__dict__["_safesteer_original"]


def _resolve_pack(pack: Any, pipe: Any, revision: str | None) -> DirectionPack:
    if isinstance(pack, DirectionPack):
        return pack
    if pack is None:
        from safesteer_diffusers.packs.catalogue import default_pack_for

        return default_pack_for(pipe, families=registered_targets())
    if isinstance(pack, str | os.PathLike):
        return DirectionPack.from_pretrained(pack, revision=revision)
    raise TypeError(
        f"pack must be a DirectionPack, a path, a Hub repo id or None, got {type(pack).__name__}."
    )

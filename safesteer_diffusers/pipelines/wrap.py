"""`SafeSteer.wrap` / `SafeSteer.unwrap` and the `SafetySteeringMixin` methods a wrapped pipeline gains.

Wrapping changes the pipeline object's class to a subclass that mixes in :class:`SafetySteeringMixin`
(``isinstance(pipe, FluxPipeline)`` stays true, and ``pipe.config`` keeps the original class name, so
``save_pretrained`` is unaffected). Unwrapping restores the original class, processors and hooks.
"""

from __future__ import annotations

import contextlib
import os
import warnings
from collections.abc import Iterator, Mapping
from typing import Any

from safesteer_diffusers.packs.direction_pack import DirectionPack
from safesteer_diffusers.steering.config import SteeringConfig
from safesteer_diffusers.steering.layout import SpaceLayout
from safesteer_diffusers.steering.report import SteeringReport

from .installation import SteeringInstallation
from .registry import TargetSpec, target_for

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
        """The current :class:`SteeringConfig` (immutable; change it with the methods below)."""
        return self._safesteer.config

    @property
    def safety_pack(self) -> DirectionPack:
        """The :class:`DirectionPack` this pipeline is steered with."""
        return self._safesteer.pack

    @property
    def safety_report(self) -> SteeringReport | None:
        """Report of the last generation: per prompt row, which directions fired, scores and strengths."""
        return self._safesteer.last_report

    def configure_safety(self, **changes) -> SteeringConfig:
        """Change any :class:`SteeringConfig` field(s) for later calls; validated before anything changes."""
        config = self._safesteer.config.replace(**changes)
        self._safesteer.reconfigure(config)
        return config

    def set_safety_strength(
        self, strength: float | None = None, categories: Mapping[str, float] | None = None
    ):
        """Set the global strength and/or the per-category strengths for later calls.

        ``categories`` replaces the previous per-category strengths (categories not named get 0).
        """
        return self.configure_safety(strength=strength, categories=categories)

    def enable_safety_steering(self) -> None:
        """Turn steering back on."""
        self.configure_safety(enabled=True)

    def disable_safety_steering(self) -> None:
        """Turn steering off: calls behave exactly like the unwrapped pipeline until enabled again."""
        self.configure_safety(enabled=False)

    @contextlib.contextmanager
    def safety_steering(self, **changes) -> Iterator[SteeringConfig]:
        """Temporarily change the config (e.g. ``strength=0.0`` or ``enabled=False``); restored on exit,
        also when the body raises."""
        previous = self._safesteer.config
        config = self.configure_safety(**changes)
        try:
            yield config
        finally:
            self._safesteer.reconfigure(previous)


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

        Returns:
            ``pipe``, now also a :class:`SafetySteeringMixin`.

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
        )
        pack = _resolve_pack(pack, pipe, revision)
        layouts = _matching_layouts(pack, spec, pipe, config)
        _check_target(pack, spec, pipe, strict)
        _check_injection(spec, config)
        installation = SteeringInstallation(pipe, spec, pack, layouts, config)
        installation.install()
        original = type(pipe)
        try:
            object.__setattr__(pipe, _ATTRIBUTE, installation)
            pipe.__class__ = _steered_class(original)
        except BaseException:
            installation.uninstall()
            pipe.__dict__.pop(_ATTRIBUTE, None)
            raise
        return pipe

    @staticmethod
    def unwrap(pipe: Any) -> Any:
        """Undo :meth:`wrap`: original class, processors (same objects) and no hooks. Returns ``pipe``.

        Raises:
            ValueError: if ``pipe`` is not wrapped.
        """
        if not SafeSteer.is_wrapped(pipe):
            raise ValueError("This pipeline is not wrapped by SafeSteer; there is nothing to unwrap.")
        installation: SteeringInstallation = pipe.__dict__[_ATTRIBUTE]
        installation.uninstall()
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

        return default_pack_for(pipe)
    if isinstance(pack, str | os.PathLike):
        return DirectionPack.from_pretrained(pack, revision=revision)
    raise TypeError(
        f"pack must be a DirectionPack, a path, a Hub repo id or None, got {type(pack).__name__}."
    )


def _matching_layouts(
    pack: DirectionPack, spec: TargetSpec, pipe: Any, config: SteeringConfig
) -> list[SpaceLayout]:
    available = {layout.space: layout for layout in spec.layout(pipe)}
    wanted = list(config.spaces) if config.spaces is not None else list(pack.spaces)
    problems = []
    for space in wanted:
        if space not in pack.spaces:
            problems.append(f"  - space {space!r} was requested but the pack has only {sorted(pack.spaces)}")
        elif space not in available:
            problems.append(
                f"  - pack space {space!r} is not a text space of this {type(pipe).__name__} (it has "
                f"{sorted(available) or 'none loaded'}); pass spaces=[...] to steer a subset"
            )
        elif pack.spaces[space] != available[space].dim:
            problems.append(
                f"  - space {space!r}: pack vectors have dimension {pack.spaces[space]}, the pipeline's "
                f"{space} has hidden size {available[space].dim}; use a pack built for this model"
            )
    if problems:
        raise ValueError("The pack does not fit this pipeline:\n" + "\n".join(problems))
    return [available[space] for space in wanted]


def _check_target(pack: DirectionPack, spec: TargetSpec, pipe: Any, strict: bool) -> None:
    target = pack.metadata.get("target", {})
    mismatches = []
    if target.get("family") and target["family"] != spec.family:
        mismatches.append(f"family {target['family']!r} (pipeline: {spec.family!r})")
    model_id = getattr(getattr(pipe, "config", None), "_name_or_path", None)
    if target.get("model_id") and model_id and target["model_id"] != model_id:
        mismatches.append(f"model {target['model_id']!r} (pipeline: {model_id!r})")
    if not mismatches:
        return
    message = f"This pack was built for {' and '.join(mismatches)}."
    if strict:
        raise ValueError(
            message + " Use a pack built for this pipeline, or pass strict=False to try it anyway."
        )
    warnings.warn(
        message + " The dimensions match, so it is applied; pass strict=True to refuse.", stacklevel=3
    )


def _check_injection(spec: TargetSpec, config: SteeringConfig) -> None:
    if config.layers is not None and not spec.cross_attention:
        raise ValueError(
            f"layers=/step_range= steer inside UNet cross-attention, which {spec.family} does not have (its "
            "denoiser projects the text first). Use layers=None: the conditioning itself is steered."
        )
    if config.tokens == "prompt" and spec.encode.positive_mask is None and not spec.ragged:
        raise ValueError(
            f"tokens='prompt' needs the attention mask of the prompt, which {spec.family} pipelines do not "
            "return. Use tokens='all'."
        )

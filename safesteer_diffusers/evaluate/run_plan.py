"""What an evaluation run will do, decided before any model runs.

- :class:`EvalSettings`: the caller's settings (strengths, seeds, call and wrap arguments, ...).
- :class:`RunPlan`: those settings checked against the packs, prompts and scorers, the items to generate
  (:func:`~safesteer_diffusers.evaluate.work_items.plan_items`), whether strength 0 is shared by the packs,
  the ``run.json`` configuration (with :func:`pack_fingerprint` per pack), the check that earlier result
  rows belong to these prompts, and the plan printed before a run (:meth:`RunPlan.describe`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image

from safesteer_diffusers.build.prompts.readers import PromptRecord
from safesteer_diffusers.packs.direction_pack import DirectionPack

from .detectors import Detector
from .images import existing_images
from .quality import ClipScorer, FidScorer
from .stats import COMBINE_MODES
from .work_items import PromptSet, WorkItem, format_strength, plan_items

__all__ = ["EvalSettings", "RunPlan", "pack_fingerprint"]


@dataclass
class EvalSettings:
    """How to generate and summarise (everything but the models and the prompts).

    Attributes:
        strengths: global steering strengths (0 = the unsteered pipeline).
        seeds: images per prompt; seeds are the prompt's own (I2P ``evaluation_seed``) or ``base_seed``,
            then consecutive.
        base_seed: first seed of prompts without a seed column.
        combine: ``"any"`` (an item is unsafe when any detector flags it) or ``"all"``.
        call_kwargs: arguments of every pipeline call (``num_inference_steps``, ``height``, ...).
        wrap_kwargs: arguments of ``SafeSteer.wrap`` besides the pack and strength (``gate``, ``mode``,
            ``categories``, ...).
        video_frames: frames sampled evenly (first and last included) from each video.
        batch_size: prompts per pipeline call (1 reproduces any item exactly whatever the sharding).
        grid_prompts: prompts shown in the per-strength grids (0: no grid).
        confidence, resamples: bootstrap interval of the ASR.
        progress: show progress bars.
        allow_config_change: reuse an output folder whose images were made with other settings.
        share_baseline: generate strength 0 once for all packs; ``None``: when no per-category strength is set.
    """

    strengths: Sequence[float] = (0.0, 1.0, 3.0, 5.0)
    seeds: int = 1
    base_seed: int = 0
    combine: str = "any"
    call_kwargs: Mapping[str, Any] = field(default_factory=dict)
    wrap_kwargs: Mapping[str, Any] = field(default_factory=dict)
    video_frames: int = 4
    batch_size: int = 1
    grid_prompts: int = 4
    confidence: float = 0.95
    resamples: int = 1000
    progress: bool = True
    allow_config_change: bool = False
    share_baseline: bool | None = None


def pack_fingerprint(pack: DirectionPack) -> str:
    """Short hash of a pack's directions (every space and direction), to notice a changed pack.

    Returns:
        16 hex digits.
    """
    digest = hashlib.sha256()
    for name in ["global", *sorted(pack.categories)]:
        for space in sorted(pack.spaces):
            try:
                vector = pack.direction(space, name)
            except (KeyError, ValueError):
                continue
            digest.update(f"{name}|{space}|".encode())
            digest.update(vector.detach().float().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


@dataclass
class RunPlan:
    """An evaluation's checked arguments and its items (made by :meth:`make`).

    Attributes:
        settings: the settings the plan was made from.
        packs: pack names, in the caller's order.
        strengths: the strengths, as floats.
        sets: the unsafe and/or benign prompt sets, in that order.
        items: every item of the run (see :func:`~safesteer_diffusers.evaluate.work_items.plan_items`).
        share_baseline: strength 0 is generated once (pack ``baseline``) and shared by the packs.
        call_kwargs, wrap_kwargs: the checked pipeline-call and ``SafeSteer.wrap`` arguments.
        detectors: detector names (unique).
        clip: the CLIP scorer's name, or ``None``.
        fid: the FID scorer's name, or ``None``.
        reference_images: FID's reference images (a folder, or a list of images or paths), or ``None``.
    """

    settings: EvalSettings
    packs: list[str]
    strengths: list[float]
    sets: list[PromptSet]
    items: list[WorkItem]
    share_baseline: bool
    call_kwargs: dict[str, Any]
    wrap_kwargs: dict[str, Any]
    detectors: list[str]
    clip: str | None = None
    fid: str | None = None
    reference_images: str | Path | Sequence[Image.Image | str | Path] | None = None

    @classmethod
    def make(
        cls,
        packs: Sequence[str],
        settings: EvalSettings,
        *,
        prompts: PromptSet | Sequence[PromptRecord] | None = None,
        benign_prompts: PromptSet | Sequence[PromptRecord] | None = None,
        detectors: Sequence[Detector] = (),
        clip: ClipScorer | None = None,
        fid: FidScorer | None = None,
        reference_images: str | Path | Sequence[Image.Image | str | Path] | None = None,
    ) -> RunPlan:
        """Check the arguments of :func:`~safesteer_diffusers.evaluate.runner.run_evaluation` and list its items.

        Args:
            packs: pack names.
            settings: see :class:`EvalSettings`.
            prompts, benign_prompts: unsafe and benign prompts (a :class:`PromptSet`, records or strings).
            detectors, clip, fid: the scorers (only their names are kept).
            reference_images: FID's reference images.

        Returns:
            The plan.

        Raises:
            ValueError: an argument the run cannot use; the message says which and what to do.
        """
        if settings.combine not in COMBINE_MODES:
            raise ValueError(f"combine must be one of {COMBINE_MODES}, got {settings.combine!r}.")
        if not packs:
            raise ValueError("Pass at least one pack to evaluate (--pack PATH).")
        unsafe_set = _prompt_set(prompts, "unsafe")
        benign_set = _prompt_set(benign_prompts, "benign")
        if unsafe_set is None and benign_set is None:
            raise ValueError(
                "Nothing to generate: pass unsafe prompts (--prompts) and/or benign prompts (--benign-prompts)."
            )
        if fid is not None and (reference_images is None or benign_set is None):
            raise ValueError(
                "FID needs benign prompts (--benign-prompts) and reference images (--reference-images)."
            )
        if settings.video_frames < 1 or settings.batch_size < 1:
            raise ValueError("video_frames and batch_size must be >= 1.")
        call_kwargs = dict(settings.call_kwargs)
        if call_kwargs.get("output_type") == "latent":
            raise ValueError("output_type='latent' gives no image to score; drop it from the call arguments.")
        if (
            call_kwargs.get("num_images_per_prompt", 1) != 1
            or call_kwargs.get("num_videos_per_prompt", 1) != 1
        ):
            raise ValueError("Use --seeds N for several images per prompt, not num_images_per_prompt.")
        for reserved in ("prompt", "generator", "prompt_embeds"):
            if reserved in call_kwargs:
                raise ValueError(
                    f"{reserved!r} is set by the evaluation for each item; remove it from the call arguments."
                )
        wrap_kwargs = dict(settings.wrap_kwargs)
        for reserved in ("pack", "strength"):
            if reserved in wrap_kwargs:
                raise ValueError(f"{reserved!r} is set by the evaluation; use --pack / --strengths.")
        share = settings.share_baseline
        if share is None:
            # Strength 0 is the plain pipeline unless categories or the negative prompt still steer.
            share = not any(
                float(v) != 0 for v in (wrap_kwargs.get("categories") or {}).values()
            ) and not float(wrap_kwargs.get("negative_strength") or 0.0)
        names = list(packs)
        strengths = [float(s) for s in settings.strengths]
        sets = [s for s in (unsafe_set, benign_set) if s is not None]
        items = plan_items(
            names, strengths, sets, seeds=settings.seeds, base_seed=settings.base_seed, share_baseline=share
        )
        detector_names = [d.name for d in detectors]
        if len(set(detector_names)) != len(detector_names):
            raise ValueError(f"Detector names must be unique, got {detector_names}.")
        return cls(
            settings=settings,
            packs=names,
            strengths=strengths,
            sets=sets,
            items=items,
            share_baseline=share,
            call_kwargs=call_kwargs,
            wrap_kwargs=wrap_kwargs,
            detectors=detector_names,
            clip=clip.name if clip is not None else None,
            fid=fid.name if fid is not None else None,
            reference_images=reference_images,
        )

    @property
    def prompt_counts(self) -> str:
        """The prompts per set, e.g. ``"3 unsafe, 3 benign"``."""
        return ", ".join(f"{len(s.records)} {s.name}" for s in self.sets)

    def run_config(
        self, packs: Mapping[str, DirectionPack], run_info: Mapping[str, Any] | None
    ) -> dict[str, Any]:
        """What the images depend on, recorded in ``run.json`` and checked on reruns.

        Args:
            packs: name -> pack (each is fingerprinted).
            run_info: the caller's extra generation settings (the CLI's pipeline id, dtype, revision).

        Returns:
            The configuration (see :func:`~safesteer_diffusers.evaluate.store.check_run_config`).
        """
        return {
            **dict(run_info or {}),
            "call_kwargs": self.call_kwargs,
            "wrap_kwargs": self.wrap_kwargs,
            "video_frames": self.settings.video_frames,
            "packs": {name: pack_fingerprint(pack) for name, pack in packs.items()},
        }

    def check_rows(self, rows: Mapping[str, Mapping[str, Any]]) -> None:
        """Refuse result rows written for other prompts under the same keys (a changed prompt file).

        Raises:
            ValueError: counts the mismatched rows and shows the first.
        """
        mismatched = [
            (item.key, rows[item.key].get("prompt"), item.prompt)
            for item in self.items
            if item.key in rows and rows[item.key].get("prompt") != item.prompt
        ]
        if mismatched:
            key, old, new = mismatched[0]
            raise ValueError(
                f"{len(mismatched)} result row(s) in this folder were made for other prompts under the same keys, "
                f"e.g. {key}: {old!r} there, {new!r} now. The prompt file changed (or --limit/--prompt-col did): "
                "use a new --out folder."
            )

    def describe(self, rows: Mapping[str, Mapping[str, Any]], out: Path, world: int) -> str:
        """The plan as printed before a run: sizes, work already done in ``out``, work left, scoring.

        Args:
            rows: the result rows already in ``out``, by key.
            out: the output folder (images on disk there are scored, not generated).
            world: number of processes the work is spread over.

        Returns:
            Several lines of text.
        """
        items, settings = self.items, self.settings
        with_row = sum(1 for item in items if item.key in rows)
        on_disk = sum(1 for item in items if item.key not in rows and existing_images(out, item.image_stem))
        to_generate = len(items) - with_row - on_disk
        cells = len(self.packs) * len(self.strengths)
        lines = [
            f"safesteer eval: {len(self.packs)} pack(s) x {len(self.strengths)} strength(s) "
            f"({', '.join(format_strength(s) for s in self.strengths)}) on {self.prompt_counts} prompt(s), "
            f"{settings.seeds} seed(s)",
            f"  plan: {len(items)} generations"
            + (
                f" (strength 0 generated once and shared by the packs; {cells} cells)"
                if self.share_baseline and 0 in self.strengths
                else ""
            ),
            f"  already done: {with_row} with results, {on_disk} images on disk to score; "
            f"to generate now: {to_generate}" + (f" over {world} processes" if world > 1 else ""),
        ]
        overridden = sorted({i.guidance_scale for i in items if i.guidance_scale is not None})
        if overridden and "guidance_scale" in self.call_kwargs:
            lines.append(
                f"  note: the prompts' own guidance scales ({', '.join(f'{g:g}' for g in overridden[:5])}) "
                f"replace guidance_scale={self.call_kwargs['guidance_scale']} for those prompts; --guidance-col "
                "none keeps yours"
            )
        steps = self.call_kwargs.get("num_inference_steps")
        if steps:
            lines.append(
                f"  denoising: {to_generate} x {steps} steps = {to_generate * int(steps)} denoiser steps"
            )
        scoring = [
            f"detectors {', '.join(self.detectors)} ({settings.combine}-of)"
            if self.detectors
            else "no detector (no ASR)",
            f"CLIP score ({self.clip})" if self.clip is not None else "no CLIP score",
        ]
        if self.fid is not None:
            references = self.reference_images
            count = (
                len(references)
                if isinstance(references, Sequence) and not isinstance(references, str)
                else None
            )
            scoring.append(
                f"FID ({self.fid}) vs " + (f"{count} images" if count is not None else str(references))
            )
        lines.append("  scoring: " + "; ".join(scoring))
        return "\n".join(lines)


def _prompt_set(value: PromptSet | Sequence[PromptRecord] | None, name: str) -> PromptSet | None:
    if value is None:
        return None
    if isinstance(value, PromptSet):
        if value.name != name:
            raise ValueError(f"Expected the {name!r} prompt set, got {value.name!r}.")
        return value
    records = list(value)
    if not records:
        raise ValueError(f"The {name} prompt list is empty.")
    if isinstance(records[0], str):
        records = [PromptRecord(prompt=text) for text in records]
    return PromptSet(name, records)

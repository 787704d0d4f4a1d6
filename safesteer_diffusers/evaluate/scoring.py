"""Scoring of an evaluation's items: which scores an item's result row still lacks (a new detector, another
CLIP model), the detectors and the CLIP score run on its images, and the result row written to
``results.jsonl`` (:class:`ItemScorer`). FID is not per item: see :mod:`.fid_cells`."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from .detectors import Detector
from .images import load_images
from .quality import ClipScorer
from .stats import combine_flags
from .work_items import WorkItem

__all__ = ["ItemScorer"]


class ItemScorer:
    """Scores items' images with the detectors and the CLIP scorer and builds their result rows.

    Args:
        out: the output folder the image paths are relative to.
        detectors: unsafe-content detectors (unique names).
        clip: CLIP scorer, or ``None``.
        combine: ``"any"`` or ``"all"``: how the detectors' flags make the row's ``unsafe``.
        rank: this process's rank, recorded in each row.
    """

    def __init__(
        self, out: Path, detectors: Sequence[Detector], clip: ClipScorer | None, *, combine: str, rank: int
    ) -> None:
        self.out = out
        self.detectors = list(detectors)
        self.clip = clip
        self.combine = combine
        self.rank = rank

    def missing(self, row: Mapping[str, Any] | None) -> tuple[list[Detector], bool]:
        """The detectors whose flag ``row`` lacks, and whether it lacks this CLIP model's score.

        Args:
            row: an item's result row, or ``None`` (no row yet: every score is missing).
        """
        if row is None:
            return list(self.detectors), self.clip is not None
        detectors = [d for d in self.detectors if d.name not in row.get("flags", {})]
        clip = self.clip is not None and (
            row.get("clip_score") is None or row.get("clip_model") != self.clip.name
        )
        return detectors, clip

    def is_complete(self, row: Mapping[str, Any] | None) -> bool:
        """Whether ``row`` exists and holds every requested score (the item needs no work)."""
        if row is None:
            return False
        detectors, clip = self.missing(row)
        return not detectors and not clip

    def row(
        self,
        item: WorkItem,
        old: Mapping[str, Any] | None,
        paths: list[str],
        seconds: float | None = None,
        fired: list[str] | None = None,
    ) -> dict[str, Any]:
        """The item's result row: ``old`` completed with the missing scores, or new scores throughout for
        freshly generated images.

        Args:
            item: the item.
            old: its earlier row, or ``None``.
            paths: its images, relative to the output folder.
            seconds: generation time per item when the images were just generated (``None``: on disk).
            fired: directions that steered the item's generation (``None``: unknown or unsteered).

        Returns:
            The row (JSON-serialisable; see ``results.jsonl`` in docs/evaluation.md).

        Raises:
            ValueError: a detector returned a result count other than the image count.
        """
        row = dict(old or {})
        detectors, clip = self.missing(old)
        if seconds is not None:  # freshly generated: earlier scores belong to older images
            row, detectors, clip = {}, list(self.detectors), self.clip is not None
        images = load_images(self.out, paths)
        timing = dict(row.get("timing") or {})
        if seconds is not None:
            timing["generate_s"] = round(seconds, 4)
        flags, scores, details = (
            dict(row.get("flags") or {}),
            dict(row.get("scores") or {}),
            dict(row.get("details") or {}),
        )
        began = time.perf_counter()
        for detector in detectors:
            found = detector.detect(images)
            if len(found) != len(images):
                raise ValueError(
                    f"Detector {detector.name!r} returned {len(found)} results for {len(images)} images."
                )
            scores[detector.name] = max(float(d.score) for d in found)
            flags[detector.name] = any(bool(d.flagged) for d in found)  # a video: unsafe if any frame is
            details[detector.name] = [d.details for d in found]
        if detectors:
            timing["detect_s"] = round(time.perf_counter() - began, 4)
        if clip:
            began = time.perf_counter()
            values = self.clip.score(images, [item.prompt] * len(images))
            row["clip_score"] = sum(values) / len(values)
            row["clip_model"] = self.clip.name
            timing["clip_s"] = round(time.perf_counter() - began, 4)
        names = [d.name for d in self.detectors]
        row.update(
            key=item.key,
            pack=item.pack,
            strength=item.strength,
            set=item.set,
            prompt_index=item.index,
            prompt=item.prompt,
            categories=list(item.categories),
            seed=item.seed,
            guidance_scale=item.guidance_scale,
            images=paths,
            frames=len(paths) if len(paths) > 1 or paths[0].endswith("_f00.png") else None,
            scores=scores,
            flags=flags,
            details=details,
            unsafe=combine_flags(flags, names, self.combine) if names else None,
            timing=timing,
            rank=self.rank,
        )
        if fired is not None:
            row["steered_by"] = fired
        return row

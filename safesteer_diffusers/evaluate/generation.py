"""Generation of an evaluation's items: the pipeline wrapped with a pack at a strength (:func:`steered`), one
call per batch of items with per-item CPU seeds and the prompt's own guidance scale, the images saved under
each item's stem (:class:`ItemGenerator`), and the images an earlier run already saved
(:func:`images_on_disk`)."""

from __future__ import annotations

import inspect
import itertools
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NamedTuple

import torch

from safesteer_diffusers.packs.direction_pack import DirectionPack
from safesteer_diffusers.pipelines.wrap import SafeSteer

from .images import existing_images, output_images, save_images
from .work_items import BASELINE, WorkItem

__all__ = ["Generated", "ItemGenerator", "images_on_disk", "steered"]


class Generated(NamedTuple):
    """One generated item: its image paths (relative to the output folder), the seconds per item of its
    pipeline call, and the directions its steering report says fired (``None`` unsteered)."""

    paths: list[str]
    seconds: float
    fired: list[str] | None


@contextmanager
def steered(
    pipe: Any, pack: DirectionPack | None, strength: float, wrap_kwargs: Mapping[str, Any]
) -> Iterator[Any]:
    """``pipe`` wrapped with ``pack`` at ``strength`` for the ``with`` block, unwrapped after it; ``pipe``
    itself when ``pack`` is ``None`` (the shared strength-0 baseline)."""
    if pack is None:
        yield pipe
        return
    wrapped = SafeSteer.wrap(pipe, pack, strength=strength, **wrap_kwargs)
    try:
        yield wrapped
    finally:
        SafeSteer.unwrap(wrapped)


def images_on_disk(out: Path, item: WorkItem, row: Mapping[str, Any] | None) -> list[str]:
    """The item's images already in ``out``: those its result row lists, else any under its stem.

    Returns:
        Paths relative to ``out``; ``[]`` when the item has to be generated.
    """
    paths = [p for p in (row or {}).get("images", []) if (out / p).is_file()]
    return paths or existing_images(out, item.image_stem)


class ItemGenerator:
    """Runs the pipeline for items and saves their images under ``out``.

    Args:
        pipe: the unwrapped pipeline (wrapped per pack and strength, unwrapped again).
        packs: name -> pack.
        out: the output folder.
        call_kwargs: arguments of every pipeline call.
        wrap_kwargs: ``SafeSteer.wrap`` arguments besides the pack and strength.
        gate_model: ``(model, tokenizer)`` of the packs' source-model gate (``SafeSteer.wrap(gate_model=...)``),
            or ``None``.
        batch_size: prompts per call.
        video_frames: frames kept from each video.
    """

    def __init__(
        self,
        pipe: Any,
        packs: Mapping[str, DirectionPack],
        out: Path,
        *,
        call_kwargs: Mapping[str, Any],
        wrap_kwargs: Mapping[str, Any],
        gate_model: tuple[Any, Any] | None = None,
        batch_size: int,
        video_frames: int,
    ) -> None:
        self.pipe = pipe
        self.packs = packs
        self.out = out
        self.call_kwargs = call_kwargs
        self.wrap_kwargs = {**wrap_kwargs, **({"gate_model": gate_model} if gate_model is not None else {})}
        self.batch_size = batch_size
        self.video_frames = video_frames
        parameters = inspect.signature(type(pipe).__call__).parameters if pipe is not None else {}
        # A prompt's own guidance scale (I2P) is passed only to pipelines that take one.
        self.takes_guidance = "guidance_scale" in parameters or any(
            p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()
        )

    def check_fit(self, cells: Sequence[tuple[str, float]]) -> None:
        """Wrap and unwrap the pipeline once per pack of ``cells`` (``(pack, strength)`` pairs to generate),
        so that a pack that does not fit the pipeline fails before any image is generated, and the wrap's
        own notices (a pack built for another model) appear once, before the progress bar.

        Raises:
            ValueError: what ``SafeSteer.wrap`` raises for a pack and these wrap arguments.
        """
        checked: set[str] = set()
        for pack, strength in cells:
            if pack == BASELINE or pack in checked:
                continue
            checked.add(pack)
            try:
                with steered(self.pipe, self.packs[pack], strength, self.wrap_kwargs):
                    pass
            except ValueError as error:
                raise ValueError(f"Pack {pack!r} cannot steer this pipeline: {error}") from None

    def generate(self, pack: str, strength: float, items: Sequence[WorkItem]) -> dict[str, Generated]:
        """Generate ``items`` (all of pack ``pack`` at ``strength``) and save their images.

        Args:
            pack: a pack name, or :data:`~safesteer_diffusers.evaluate.work_items.BASELINE` (unsteered).
            strength: the global strength.
            items: the items, in plan order.

        Returns:
            Item key -> :class:`Generated`.
        """
        pack_object = None if pack == BASELINE else self.packs[pack]
        made = {}
        with steered(self.pipe, pack_object, strength, self.wrap_kwargs) as pipe, torch.no_grad():
            # Items of one batch share a guidance scale (I2P gives one per prompt).
            for _, same_guidance in itertools.groupby(items, key=lambda i: i.guidance_scale):
                same = list(same_guidance)
                for start in range(0, len(same), self.batch_size):
                    batch = same[start : start + self.batch_size]
                    kwargs = {"output_type": "np", **self.call_kwargs}
                    if batch[0].guidance_scale is not None and self.takes_guidance:
                        kwargs["guidance_scale"] = batch[0].guidance_scale
                    # CPU generators: the same noise for a seed on any device and in any batch position.
                    generators = [torch.Generator("cpu").manual_seed(item.seed) for item in batch]
                    began = time.perf_counter()
                    output = pipe(
                        prompt=[item.prompt for item in batch],
                        generator=generators if len(generators) > 1 else generators[0],
                        **kwargs,
                    )
                    seconds = (time.perf_counter() - began) / len(batch)
                    video = getattr(output, "frames", None) is not None
                    images = output_images(output, len(batch), self.video_frames)
                    report = getattr(pipe, "safety_report", None) if pack_object is not None else None
                    for b, item in enumerate(batch):
                        paths = save_images(self.out, item.image_stem, images[b], video)
                        fired = None
                        if report is not None and b < len(report.prompts):
                            fired = list(report.prompts[b].fired)
                        made[item.key] = Generated(paths, seconds, fired)
        return made

"""An evaluation's images on disk: a pipeline output as PIL images (the images of a text-to-image call,
evenly sampled frames of a text-to-video call), saving them under an item's stem, finding and opening them
again. (The per-strength grids are drawn by :func:`safesteer_diffusers.utils.images.make_grid`.)"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from safesteer_diffusers.utils.images import to_pil

__all__ = ["existing_images", "frame_indices", "load_images", "output_images", "save_images"]


def frame_indices(count: int, sampled: int) -> list[int]:
    """``sampled`` frame indices spread evenly over ``count`` frames, first and last included.

    Example::

        frame_indices(16, 4)   # [0, 5, 10, 15]
    """
    if count < 1:
        raise ValueError(f"A video needs at least one frame, got {count}.")
    if sampled < 1:
        raise ValueError(f"Sample at least one frame, got {sampled}.")
    if sampled >= count:
        return list(range(count))
    return sorted({int(round(i)) for i in np.linspace(0, count - 1, sampled)})


def output_images(output: Any, batch: int, video_frames: int) -> list[list[Image.Image]]:
    """Per prompt of the batch, its image (one-element list) or its sampled video frames.

    Accepts diffusers outputs with ``images`` (PIL list, ``[B, H, W, C]`` array or tensor) or ``frames``
    (``[B, F, H, W, C]`` array, ``[B, F, C, H, W]`` tensor, or lists of PIL frames).

    Raises:
        ValueError: an output without images or frames (e.g. ``output_type="latent"``).
    """
    frames = getattr(output, "frames", None)
    if frames is not None:
        videos = []
        for b in range(batch):
            video = frames[b]
            if torch.is_tensor(video) and video.ndim == 4 and video.shape[1] in (1, 3):
                video = video.permute(0, 2, 3, 1)  # [F, C, H, W] -> [F, H, W, C]
            count = len(video)
            videos.append([to_pil(video[i]) for i in frame_indices(count, video_frames)])
        return videos
    images = getattr(output, "images", None)
    if images is None:
        raise ValueError(
            f"The pipeline returned {type(output).__name__} with neither images nor frames; the evaluation needs "
            "decoded images (do not pass output_type='latent')."
        )
    return [[to_pil(images[b])] for b in range(batch)]


def save_images(out: Path, stem: str, images: Sequence[Image.Image], video: bool) -> list[str]:
    """Write an item's images as PNG (``<stem>.png``, or ``<stem>_f00.png``... for video frames); returns
    their paths relative to ``out``."""
    paths = [f"{stem}.png"] if not video else [f"{stem}_f{i:02d}.png" for i in range(len(images))]
    for relative, image in zip(paths, images, strict=True):
        target = out / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        temporary = target.with_suffix(".tmp.png")
        image.save(temporary)
        temporary.replace(target)  # never leave a half-written PNG under the final name
    return paths


def existing_images(out: Path, stem: str) -> list[str]:
    """Paths (relative to ``out``) of an item's images already on disk, ``[]`` when there are none."""
    single = out / f"{stem}.png"
    if single.is_file():
        return [f"{stem}.png"]
    stem_path = out / stem
    frames = (
        sorted(stem_path.parent.glob(f"{stem_path.name}_f[0-9][0-9].png"))
        if stem_path.parent.is_dir()
        else []
    )
    return [str(p.relative_to(out).as_posix()) for p in frames]


def load_images(out: Path, paths: Sequence[str]) -> list[Image.Image]:
    """Open an item's images (fully read, files closed)."""
    images = []
    for relative in paths:
        with Image.open(out / relative) as image:
            images.append(image.convert("RGB"))
    return images

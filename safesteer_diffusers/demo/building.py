"""Step 2 of the demo: building the pack from the loaded source and target with the demo's build settings
(:func:`demo_build_config`, also those of the shipped demo recipe), and comparing it with the shipped default
pack that ``SafeSteer.wrap(pipe)`` finds for the target."""

from __future__ import annotations

import os

import torch

from safesteer_diffusers.packs.direction_pack import DirectionPack

from .config import DemoConfig

__all__ = ["build_demo_pack", "compare_with_default", "demo_build_config"]


def build_demo_pack(config: DemoConfig, source: dict, target: dict) -> tuple[DirectionPack, dict]:
    """Build the pack: directions in the source from the embedded pairs, alignment to the target on the first
    ``config.anchors`` embedded benign anchors (see :func:`demo_build_config`).

    Args:
        config: the run's settings.
        source: the loaded source model (:func:`~safesteer_diffusers.demo.models.load_demo_source`).
        target: the loaded target (:func:`~safesteer_diffusers.demo.models.load_demo_target`).

    Returns:
        The pack and its build report.
    """
    from safesteer_diffusers.build.driver import BuildConfig, build_pack
    from safesteer_diffusers.build.prompts.embedded import load_pairs
    from safesteer_diffusers.packs.format import I2P_CATEGORIES

    pairs = None
    if config.pairs_per_category:
        pairs = [p for c in I2P_CATEGORIES for p in load_pairs(c)[: config.pairs_per_category]]
    build_config = demo_build_config(max_anchors=config.anchors, seed=config.seed)
    result = build_pack(
        source["model"],
        source["tokenizer"],
        target["pipe"],
        pairs=pairs,
        config=BuildConfig(**build_config),
        source_id=source["id"],
        source_revision=source["revision"],
        target_id=target["id"],
        progress=config.progress,
        source_identity=source.get("identity"),
    )
    return result.pack, result.report


def demo_build_config(max_anchors: int = 400, seed: int = 0) -> dict:
    """The :class:`~safesteer_diffusers.build.driver.BuildConfig` fields of the demo (and of its shipped recipe)."""
    return {
        "align": "svd",
        "layer": "auto",
        "pooling": "mean",
        "max_anchors": max_anchors,
        "seed": seed,
        "batch_size": 32,
    }


def compare_with_default(model_id: str, pack: DirectionPack) -> tuple[str, dict | None]:
    """Show that ``SafeSteer.wrap(pipe)`` with no pack finds the shipped default for this model id, and how
    close it is to the pack built now.

    Args:
        model_id: the target's model id.
        pack: the pack built by the run.

    Returns:
        The message to print, and ``{"path", "min_cosine_to_built"}`` for ``demo.json`` (``None`` when no
        default is registered for ``model_id``).
    """
    from safesteer_diffusers.packs.catalogue import find_default_pack

    try:
        path, shipped = find_default_pack(model_id)
    except ValueError as error:
        return f"\nSafeSteer.wrap(pipe) without a pack: {str(error).splitlines()[0]}", None
    common = [n for n in pack.names if n in shipped.names]
    cosines = []
    for space in pack.spaces:
        if space in shipped.spaces:
            for name in common:
                a, b = pack.direction(space, name), shipped.direction(space, name)
                cosines.append(float(torch.nn.functional.cosine_similarity(a, b, dim=0)))
    where = "the Hub" if path is None else str(path)
    if path is not None and not os.path.relpath(path).startswith(".."):
        where = os.path.relpath(path)
    same = f"min cosine to the pack built now: {min(cosines):.4f}" if cosines else ""
    message = (
        f"\nSafeSteer.wrap(pipe) without a pack finds the registered default for {model_id}: {where} ({same})"
    )
    return message, {"path": str(path), "min_cosine_to_built": min(cosines) if cosines else None}

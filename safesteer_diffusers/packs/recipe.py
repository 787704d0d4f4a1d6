"""Pack recipes as data: the ``recipe.yaml`` schema, its validation and loading.

Owns what a recipe *is*: the dataclasses (:class:`Recipe` and its sections), :func:`load_recipe` /
:func:`recipe_from_dict` (every problem of a file reported at once, with its key path and the fix), and the
vocabularies a recipe chooses from (pooling, alignment methods, token policies, calibration statistics).
``build/`` imports those vocabularies from here, so each list is written once and the schema can validate
without importing the pack-building code. (About 480 lines: the schema and its validator are kept in one
module on purpose, each section's dataclass beside the checks that fill it.) Finding the recipes of the catalogue is
:mod:`safesteer_diffusers.packs.catalogue`'s job, building one is
:mod:`safesteer_diffusers.build.recipes`', rendering its card :mod:`safesteer_diffusers.packs.recipe_card`'s.

One ``recipe.yaml`` per pack in ``pretrained_directions/<name>/`` states everything that decides a pack's
vectors: the source model and revision, the layer policy and pooling, the prompt sets, the alignment and the
calibration. ``safesteer build --recipe <file>`` reproduces the pack; the command line then only chooses where
and how it runs (``--out``, ``--device``, ``--dtype``, ``--device-map``, cache flags, ``--batch-size``).

Format (``recipe_version: 1``; unknown keys are errors, so a typo never silently falls back to a default)::

    recipe_version: 1
    name: flux1-schnell-from-llama31-8b          # = the folder name
    description: One paragraph for the card.
    default: true                                # the default pack for target.model (SafeSteer.wrap(pipe))
    published: null                              # or {repo, commit, sha256}: the only pin ever downloaded
    needs:    {gated: [meta-llama/Llama-3.1-8B-Instruct], gpu_memory_gb: 28, download_gb: 26, minutes: 30}
    source:   {model: meta-llama/Llama-3.1-8B-Instruct, revision: main, dtype: bfloat16,
               layer: auto, layers: null, pooling: mean, chat_template: false}
    target:   {model: black-forest-labs/FLUX.1-schnell, revision: main, family: flux, dtype: bfloat16,
               call_kwargs: {max_sequence_length: 256}}
    prompts:  {pairs: embedded, anchors: embedded, max_anchors: null, categories: null}
    alignment:   {method: svd, anchors: auto, holdout: 0.2}
    calibration: {statistic: token_std, tokens: all, gate_quantile: 0.99, gate: probe,
                  source_gate: false, source_gate_framing: auto}
    build:       {seed: 0, batch_size: 16}

``published`` and ``needs`` (the trust rules: only a pinned pack is ever downloaded) are
:mod:`safesteer_diffusers.packs.recipe_distribution`'s.

Example::

    from safesteer_diffusers.packs.recipe import load_recipe

    recipe = load_recipe("pretrained_directions/tiny-sd-demo-from-minilm/recipe.yaml")
    recipe.source.model, recipe.target.family, recipe.alignment.method
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Collection
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from safesteer_diffusers.utils.dtypes import DTYPES

from .format import I2P_CATEGORIES
from .pins import PinnedPack
from .recipe_distribution import BuildNeeds, needs_from_data, publication_problems, published_from_data

RECIPE_FILENAME = "recipe.yaml"
RECIPE_VERSION = 1
EMBEDDED = "embedded"
POOLINGS = ("mean", "last")
"""Source pooling over a prompt's real tokens: ``"mean"``, or the ``"last"`` token."""
ALIGNMENT_METHODS = ("svd", "ridge", "mlp")
"""The alignment maps (:mod:`safesteer_diffusers.build.alignment`)."""
ALIGN_METHODS = (*ALIGNMENT_METHODS, "auto")
"""What a recipe (and ``safesteer build --align``) may choose: a map, or ``"auto"`` (best held-out R^2)."""
ALIGN_ON = ("auto", "all", "sensitive")
"""Which anchors fit the map (``BuildConfig.align_on``): ``"auto"`` (the sensitive-topic ones when there are
enough), ``"all"``, or only the ``"sensitive"`` ones."""
TOKEN_POLICIES = ("all", "prompt")
"""Steering token policies a pack can be calibrated for (the values of ``SteeringConfig.tokens``)."""
CALIBRATION_STATISTICS = ("token_std",)
GATE_KINDS = ("probe", "direction")
"""What a gate scores along: a carried source probe (default) or the steering direction's unsafe side."""
SOURCE_GATE_FRAMINGS = ("auto", "chat", "plain")
"""How a source-model gate reads a prompt (``BuildConfig.source_gate_framing``): ``"chat"`` (one user turn of the
tokenizer's chat template), ``"plain"`` (as written), or ``"auto"`` (chat when the tokenizer has a template)."""
"""What pack builds calibrate by (``build.calibration.calibrate`` also offers ``"mean_norm"``; builds don't)."""
_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,95}$")


def _one_of(names) -> str:
    """``"a, b or c"``: a list of choices in the field help of the schema."""
    names = list(names)
    return f"{', '.join(names[:-1])} or {names[-1]}"


# --------------------------------------------------------------------------------------------- schema
@dataclass(frozen=True)
class SourceRecipe:
    """The source language model the directions are estimated in."""

    model: str = field(metadata={"help": "transformers model id or folder (causal LM or encoder)"})
    revision: str | None = field(
        default=None, metadata={"help": "Hub branch/tag/commit; 'pypi:<pin>' for a PyPI-packaged copy"}
    )
    dtype: str | None = field(default=None, metadata={"help": _one_of(DTYPES)})
    layer: int | str = field(default="auto", metadata={"help": "hidden-state index, or 'auto'"})
    layers: tuple[int, ...] | None = field(default=None, metadata={"help": "candidate layers for 'auto'"})
    pooling: str = field(default="mean", metadata={"help": "'mean' over real tokens or 'last' token"})
    chat_template: bool = field(
        default=False,
        metadata={"help": "write each source prompt as a user turn of the tokenizer's chat template"},
    )


@dataclass(frozen=True)
class TargetRecipe:
    """The target diffusers pipeline whose text space the pack steers."""

    model: str = field(metadata={"help": "diffusers pipeline id or folder"})
    family: str = field(
        metadata={"help": "registry family (sd, sdxl, sd3, flux, qwen_image, z_image, wan, ...)"}
    )
    revision: str | None = field(default=None, metadata={"help": "Hub branch/tag/commit"})
    dtype: str | None = field(default=None, metadata={"help": _one_of(DTYPES)})
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

    method: str = field(default="svd", metadata={"help": _one_of(ALIGN_METHODS)})
    anchors: str = field(default="auto", metadata={"help": f"anchors that fit the map: {_one_of(ALIGN_ON)}"})
    holdout: float = field(default=0.2, metadata={"help": "share of anchors held out for model selection"})


@dataclass(frozen=True)
class CalibrationRecipe:
    """How vector lengths and gate thresholds are set from benign statistics."""

    statistic: str = field(default="token_std", metadata={"help": "benign token std along the direction"})
    tokens: str = field(
        default="all", metadata={"help": f"steering token policy to calibrate for: {_one_of(TOKEN_POLICIES)}"}
    )
    gate_quantile: float = field(
        default=0.99, metadata={"help": "gate = this quantile of benign anchor scores"}
    )
    gate: str = field(
        default="probe",
        metadata={
            "help": f"what the gate scores along: {_one_of(GATE_KINDS)} (probe: carried source classifier)"
        },
    )
    source_gate: bool = field(
        default=False,
        metadata={"help": "also store a gate scored by the source model at inference (gate_model=)"},
    )
    source_gate_framing: str = field(
        default="auto",
        metadata={"help": f"how that gate's model reads a prompt: {_one_of(SOURCE_GATE_FRAMINGS)}"},
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
    published: PinnedPack | None = None
    needs: BuildNeeds = field(default_factory=BuildNeeds)
    prompts: PromptsRecipe = field(default_factory=PromptsRecipe)
    alignment: AlignmentRecipe = field(default_factory=AlignmentRecipe)
    calibration: CalibrationRecipe = field(default_factory=CalibrationRecipe)
    build: BuildRecipe = field(default_factory=BuildRecipe)
    recipe_version: int = RECIPE_VERSION
    path: Path | None = None

    @property
    def folder(self) -> Path | None:
        """The folder of :attr:`path` (relative prompt files resolve from it), ``None`` for in-code recipes."""
        return None if self.path is None else self.path.parent

    @property
    def hub_repo(self) -> str | None:
        """The Hub repo the pack is published in (``None`` when not published: no repo is ever assumed)."""
        return None if self.published is None else self.published.repo

    def to_dict(self) -> dict:
        """The recipe as plain data, in file order (``path`` left out)."""
        sections = ("source", "target", "prompts", "alignment", "calibration", "build")
        data: dict[str, Any] = {
            "recipe_version": self.recipe_version,
            "name": self.name,
            "description": self.description,
            "default": self.default,
            "published": None if self.published is None else dict(self.published.__dict__),
            "needs": self.needs.to_dict(),
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
_TOP = ("recipe_version", "name", "description", "default", "published", "needs", *_SECTIONS)


class RecipeError(ValueError):
    """A recipe that does not validate; the message lists every problem with its key path and the fix."""


def load_recipe(path: str | Path, *, families: Collection[str] | None = None) -> Recipe:
    """Read and validate a ``recipe.yaml`` (a folder holding one works too).

    Args:
        path: the ``recipe.yaml``, or the pack folder that holds one.
        families: the pipeline families ``target.family`` may name (``None``: not checked). The pack format
            does not know the pipeline registry; callers that do pass
            ``safesteer_diffusers.registered_targets()``.

    Returns:
        The validated :class:`Recipe`, with :attr:`Recipe.path` set (resolved).

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
    return recipe_from_dict(data, path=path, families=families)


def recipe_from_dict(
    data: Any, *, path: Path | None = None, families: Collection[str] | None = None
) -> Recipe:
    """Validate plain data (as read from YAML) into a :class:`Recipe`.

    Invalid values are replaced by defaults while checking, so one error lists every problem of the data.

    Args:
        data: the parsed YAML mapping.
        path: the file it came from (named in errors, and the base of relative prompt files).
        families: the pipeline families ``target.family`` may name (``None``: not checked).

    Returns:
        The validated :class:`Recipe`.

    Raises:
        RecipeError: listing every problem found, each with its key path and the fix.

    Example:
        >>> recipe_from_dict({"recipe_version": 1, "name": "mine", "source": {"model": "org/lm"},
        ...                   "target": {"model": "org/pipe", "family": "sd"}})
    """
    where = str(path) if path is not None else "recipe"
    problems: list[str] = []
    if not isinstance(data, dict):
        raise RecipeError(
            f"{where}: a recipe is a mapping of keys (recipe_version, name, source, target, ...), "
            f"got {type(data).__name__}."
        )
    if "hub_repo" in data:
        # recipe_version 1 files written before pins: a repo id alone let whoever holds it serve any vectors.
        problems.append(
            "hub_repo: no longer read (a repo id alone is never downloaded); delete it, or, once the pack is "
            "published, pin it: `published: {repo: org/name, commit: <40 hex>, sha256: <64 hex>}`"
        )
    _unknown({k: v for k, v in data.items() if k != "hub_repo"}, _TOP, "", problems)
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
    published = published_from_data(data.get("published"), problems)
    needs = needs_from_data(data.get("needs"), problems)
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
        sections[key] = _section(cls, value, key, problems, families)
    source, target = sections["source"], sections["target"]
    problems += publication_problems(published, source.model, source.revision, target.model, target.revision)
    if problems:
        raise RecipeError(f"{where} does not validate:\n" + "\n".join(f"  - {p}" for p in problems))
    return Recipe(
        name=name,
        description=description.strip(),
        default=default,
        published=published,
        needs=needs,
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


def _section(cls, data: dict, key: str, problems: list[str], families: Collection[str] | None):
    prefix = f"{key}."
    names = [f.name for f in fields(cls)]
    _unknown(data, names, prefix, problems)
    values: dict[str, Any] = {}
    if cls is SourceRecipe:
        values["model"] = _typed(data, "model", str, prefix, problems, required=True, default="")
        values["revision"] = _revision(data, prefix, problems)
        values["dtype"] = _choice(data, "dtype", tuple(DTYPES), prefix, problems, None)
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
        values["chat_template"] = _typed(data, "chat_template", bool, prefix, problems, default=False)
    elif cls is TargetRecipe:
        values["model"] = _typed(data, "model", str, prefix, problems, required=True, default="")
        family = _typed(data, "family", str, prefix, problems, required=True, default="")
        problem = family_problem(family, families) if family and families is not None else None
        if problem:
            problems.append(f"{prefix}{problem}")
        values["family"] = family
        values["revision"] = _revision(data, prefix, problems)
        values["dtype"] = _choice(data, "dtype", tuple(DTYPES), prefix, problems, None)
        call_kwargs = data.get("call_kwargs") or {}
        if not isinstance(call_kwargs, dict) or not all(isinstance(k, str) for k in call_kwargs):
            problems.append(f"{prefix}call_kwargs: expected a mapping of pipe(...) argument names to values")
            call_kwargs = {}
        values["call_kwargs"] = dict(call_kwargs)
    elif cls is PromptsRecipe:
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
        values["anchors"] = _choice(data, "anchors", ALIGN_ON, prefix, problems, "auto")
        values["holdout"] = _fraction(data, "holdout", prefix, problems, 0.2)
    elif cls is CalibrationRecipe:
        values["statistic"] = _choice(
            data, "statistic", CALIBRATION_STATISTICS, prefix, problems, "token_std"
        )
        values["tokens"] = _choice(data, "tokens", TOKEN_POLICIES, prefix, problems, "all")
        values["gate_quantile"] = _fraction(data, "gate_quantile", prefix, problems, 0.99)
        values["gate"] = _choice(data, "gate", GATE_KINDS, prefix, problems, "probe")
        values["source_gate"] = _typed(data, "source_gate", bool, prefix, problems, default=False)
        values["source_gate_framing"] = _choice(
            data, "source_gate_framing", SOURCE_GATE_FRAMINGS, prefix, problems, "auto"
        )
        if values["source_gate_framing"] != "auto" and not values["source_gate"]:
            problems.append(
                f"{prefix}source_gate_framing: {values['source_gate_framing']!r} only applies with "
                "source_gate: true; set it, or remove source_gate_framing"
            )
    elif cls is BuildRecipe:
        seed = _typed(data, "seed", int, prefix, problems, default=0)
        values["seed"] = seed
        values["batch_size"] = _positive_int(data, "batch_size", prefix, problems, 16)
    # Invalid values were replaced by defaults above, so every problem of the file is reported at once.
    return cls(**values)


def family_problem(family: str, families: Collection[str]) -> str | None:
    """``None`` when ``family`` is one of ``families``, else the message (with the closest name) saying so."""
    known = sorted(families)
    if family in known:
        return None
    close = difflib.get_close_matches(family, known, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return f"family: {family!r} is not a registered family{hint}; known: {', '.join(known)}"


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

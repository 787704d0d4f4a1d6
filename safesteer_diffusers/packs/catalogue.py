"""Default packs: the catalogue in ``pretrained_directions/`` (and ``$SAFESTEER_PACKS_PATH``), by target model.

Each catalogue folder holds a ``recipe.yaml`` (how the pack is built, its Hub repo, whether it is the
default for its target model), a ``README.md`` card and, once built, ``safesteer_pack.safetensors``. A folder
of ``$SAFESTEER_PACKS_PATH`` may also hold bare pack files (no recipe).

``SafeSteer.wrap(pipe)`` with no pack calls :func:`default_pack_for`, which resolves the pipeline's model id
(``pipe.config._name_or_path``) in this order:

1. a built pack for that model: folders in search order (``$SAFESTEER_PACKS_PATH`` entries, then
   ``pretrained_directions/``), and within a folder the one whose recipe says ``default: true`` first;
2. the Hub repo of the registered default recipe for that model (``hub_repo``; the Hugging Face cache makes
   this work offline once downloaded);
3. otherwise a ``ValueError`` that lists what exists and how to build or pass a pack.

``safesteer list-packs`` prints :func:`catalogue`; :func:`recipe_files` / :func:`load_recipes` list the recipes
alone. What a recipe contains and how it validates is :mod:`safesteer_diffusers.packs.recipe`.
"""

from __future__ import annotations

import os
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .direction_pack import DirectionPack
from .format import PACK_FILENAME
from .recipe import RECIPE_FILENAME, Recipe, load_recipe

PACKS_PATH_ENV = "SAFESTEER_PACKS_PATH"
_REPO_PACKS = Path(__file__).resolve().parents[2] / "pretrained_directions"

BUILT = "built"
IN_HUB_CACHE = "in Hub cache"
EXPECTED_ON_HUB = "expected on the Hub"
NOT_BUILT = "not built"


def pack_folders() -> list[Path]:
    """Folders searched for default packs, in search order.

    Returns:
        ``$SAFESTEER_PACKS_PATH`` entries (``os.pathsep``-separated), then ``pretrained_directions/``.
    """
    extra = [Path(p) for p in os.environ.get(PACKS_PATH_ENV, "").split(os.pathsep) if p]
    return [*extra, _REPO_PACKS]


def available_packs() -> dict[Path, dict]:
    """Every pack file found in :func:`pack_folders` (one level of sub-folders).

    Returns:
        Pack file -> its ``target`` metadata; packs that fail to load are left out.
    """
    found: dict[Path, dict] = {}
    for folder in pack_folders():
        if not folder.is_dir():
            continue
        for path in sorted(folder.glob(f"*/{PACK_FILENAME}")) + sorted(folder.glob(PACK_FILENAME)):
            try:
                found[path] = DirectionPack.from_file(path).metadata.get("target", {})
            except ValueError:
                continue  # a broken pack is reported when it is asked for by path, not while listing
    return found


def recipe_files(folders: list[Path] | None = None) -> list[Path]:
    """Every ``<folder>/<name>/recipe.yaml`` in the default pack folders (or ``folders``), sorted.

    Args:
        folders: folders to search (default: :func:`pack_folders`); missing ones are skipped.

    Returns:
        The recipe files, sorted within each folder, folders in the order given.
    """
    found: list[Path] = []
    for folder in folders if folders is not None else pack_folders():
        if Path(folder).is_dir():
            found.extend(sorted(Path(folder).glob(f"*/{RECIPE_FILENAME}")))
    return found


def load_recipes(folders: list[Path] | None = None, families: Collection[str] | None = None) -> list[Recipe]:
    """Every recipe of :func:`recipe_files`, validated (the first invalid one raises).

    Args:
        folders: folders to search (default: :func:`pack_folders`).
        families: pipeline families a recipe's ``target.family`` may name (``None``: not checked).

    Returns:
        The :class:`~safesteer_diffusers.packs.recipe.Recipe` objects, in :func:`recipe_files` order.
    """
    return [load_recipe(path, families=families) for path in recipe_files(folders)]


@dataclass(frozen=True)
class CatalogueEntry:
    """One pack the library knows about.

    Attributes:
        name: folder name (= recipe name), or the pack file's folder for bare packs.
        target: target model id the pack is (or will be) built for.
        source: source model id (``None`` for native/manual packs).
        status: ``"built"`` (pack file here), ``"in Hub cache"`` (downloaded before), ``"expected on the Hub"``
            (recipe only; ``hub_repo`` says where), or ``"not built"`` (recipe without a Hub repo).
        default: whether it is the registered default for ``target``.
        pack_path: the pack file when built.
        recipe_path: the ``recipe.yaml`` when there is one.
        hub_repo: the intended/published Hub repo id.
        family: the target's pipeline family.
        root: the searched folder (of :func:`pack_folders`) it was found in.
    """

    name: str
    target: str | None
    source: str | None
    status: str
    default: bool
    pack_path: Path | None
    recipe_path: Path | None
    hub_repo: str | None
    family: str | None
    root: Path | None = None

    def to_dict(self) -> dict:
        """JSON-ready fields (paths as strings), as ``safesteer list-packs --json`` prints them."""
        return {key: str(value) if isinstance(value, Path) else value for key, value in self.__dict__.items()}


def catalogue(families: Collection[str] | None = None) -> list[CatalogueEntry]:
    """Every registered recipe and every built pack in :func:`pack_folders`, in search order.

    Args:
        families: pipeline families a recipe's ``target.family`` may name (``None``: not checked; callers
            that know the pipeline registry pass ``registered_targets()``).

    Returns:
        One :class:`CatalogueEntry` per folder holding a recipe and/or a pack (a folder searched twice counts
        once); packs that fail to load are left out.

    Raises:
        ValueError: when a ``recipe.yaml`` does not validate (the message names the file and the fix).
    """
    entries: list[CatalogueEntry] = []
    seen: set[Path] = set()
    for folder in pack_folders():
        if not folder.is_dir():
            continue
        for sub in [folder, *sorted(p for p in folder.iterdir() if p.is_dir())]:
            recipe_file, pack_file = sub / RECIPE_FILENAME, sub / PACK_FILENAME
            if sub.resolve() in seen or not (recipe_file.is_file() or pack_file.is_file()):
                continue
            seen.add(sub.resolve())
            recipe = load_recipe(recipe_file, families=families) if recipe_file.is_file() else None
            target = source = family = None
            if pack_file.is_file():
                try:
                    metadata = DirectionPack.from_file(pack_file).metadata
                except ValueError:
                    continue
                target = metadata.get("target", {}).get("model_id")
                family = metadata.get("target", {}).get("family")
                source = metadata.get("source", {}).get("model_id")
                status = BUILT
            if recipe is not None:
                target = target or recipe.target.model
                family = family or recipe.target.family
                source = source or recipe.source.model
                if not pack_file.is_file():
                    status = _hub_status(recipe.hub_repo)
            entries.append(
                CatalogueEntry(
                    name=recipe.name if recipe else sub.name,
                    target=target,
                    source=source,
                    status=status,
                    default=bool(recipe and recipe.default),
                    pack_path=pack_file if pack_file.is_file() else None,
                    recipe_path=recipe_file if recipe else None,
                    hub_repo=recipe.hub_repo if recipe else None,
                    family=family,
                    root=folder,
                )
            )
    return entries


def _hub_status(repo_id: str | None) -> str:
    if not repo_id:
        return NOT_BUILT
    try:
        from huggingface_hub import try_to_load_from_cache

        cached = try_to_load_from_cache(repo_id, PACK_FILENAME)
    except Exception:  # noqa: BLE001 (a malformed cache must not break listing)
        cached = None
    return IN_HUB_CACHE if isinstance(cached, str) else EXPECTED_ON_HUB


def find_default_pack(
    model_id: str | None, families: Collection[str] | None = None
) -> tuple[Path | None, DirectionPack]:
    """The registered default pack for a target model id (resolution order: the module docstring).

    Args:
        model_id: the target pipeline's model id (``pipe.config._name_or_path``).
        families: passed to :func:`catalogue`.

    Returns:
        ``(pack_file, pack)``; ``pack_file`` is ``None`` when the pack came from the Hub.

    Raises:
        ValueError: when none is built or reachable; the message lists the packs and how to get one.
    """
    entries = catalogue(families)
    mine = [e for e in entries if model_id and e.target == model_id]
    roots = pack_folders()
    # Search order first ($SAFESTEER_PACKS_PATH before the shipped catalogue), then the recipe's default flag.
    mine.sort(key=lambda e: (roots.index(e.root) if e.root in roots else len(roots), not e.default))
    for entry in mine:
        if entry.pack_path is not None:
            return entry.pack_path, DirectionPack.from_file(entry.pack_path)
    hub_errors = []
    for entry in mine:
        if entry.hub_repo:
            try:
                return None, DirectionPack.from_pretrained(entry.hub_repo)
            except ValueError as error:
                hub_errors.append((entry, str(error).splitlines()[0]))
    if hub_errors:
        entry, reason = hub_errors[0]
        raise ValueError(
            f"The default pack for model {model_id!r} is expected on the Hub at {entry.hub_repo!r} but could not "
            f"be loaded: {reason}\nBuild it locally instead (it then becomes the default): "
            f"safesteer build --recipe {entry.recipe_path}\nor pass a pack explicitly: "
            "SafeSteer.wrap(pipe, 'org/pack-repo' or 'path/to/pack')."
        )
    listing = (
        "\n".join(f"  - {e.name}: {e.target or '?'} ({e.status})" for e in entries if e.status == BUILT)
        or "  (none)"
    )
    raise ValueError(
        f"No default pack is registered for model {model_id!r}. Packs found:\n{listing}\n"
        "Pass one explicitly: SafeSteer.wrap(pipe, 'org/pack-repo' or 'path/to/pack'), build one with "
        "`safesteer build` (see `safesteer list-packs` for recipes), or add a folder to $SAFESTEER_PACKS_PATH."
    )


def default_pack_for(pipe: Any, families: Collection[str] | None = None) -> DirectionPack:
    """The registered default pack for this pipeline's model id (see the module docstring for the order).

    Args:
        pipe: a diffusers pipeline (its ``config._name_or_path`` names the model).
        families: passed to :func:`catalogue`.

    Returns:
        The pack.

    Raises:
        ValueError: when none matches; lists the packs that exist and how to pass one.
    """
    model_id = getattr(getattr(pipe, "config", None), "_name_or_path", None)
    return find_default_pack(model_id, families)[1]

"""Default packs: the catalogue of recipes and built packs by target model, and the fail-closed default lookup.

Where the catalogue is read from (:func:`pack_folders`): ``$SAFESTEER_PACKS_PATH`` entries, then the shipped
catalogue (:data:`SHIPPED_PACKS`): ``pretrained_directions/`` at the top of a checkout, or the same files
installed as package data (``safesteer_diffusers/pretrained_directions/``) from a wheel. Each folder holds a
``recipe.yaml`` (how the pack is built, whether and where it is published, what building it needs), a
``README.md`` card and, once built, ``safesteer_pack.safetensors``. A folder of ``$SAFESTEER_PACKS_PATH`` may
also hold bare pack files (no recipe). Trusted catalogue files of your own (``$SAFESTEER_CATALOGUE``) add
pinned Hub packs (:mod:`safesteer_diffusers.packs.trusted`).

``SafeSteer.wrap(pipe)`` with no pack calls :func:`default_pack_for`, which resolves the pipeline's model id
(``pipe.config._name_or_path``) in this order, and fails closed:

1. a built pack on disk for that model: folders in search order, within a folder the ``default: true``
   recipe first (no network);
2. a pinned Hub pack for that model: entries of the trusted catalogue files first, then recipes marked
   ``published`` (default first); downloaded at the pinned commit only and refused unless the file's
   SHA-256 matches the pin (:func:`safesteer_diffusers.packs.hub.download_pinned`);
3. otherwise a ``ValueError``. An unpublished recipe never causes a network request: the error says that no
   pack has been published for the model, what building one needs and the exact command.

``safesteer list-packs`` prints :func:`catalogue`; :func:`recipe_files` / :func:`load_recipes` list the recipes
alone. What a recipe contains is :mod:`safesteer_diffusers.packs.recipe`.
"""

from __future__ import annotations

import os
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .direction_pack import DirectionPack
from .format import PACK_FILENAME
from .hub import download_pinned
from .pins import PIN_FORM, PinMismatchError, PinnedPack
from .recipe import RECIPE_FILENAME, Recipe, load_recipe
from .trusted import CATALOGUE_ENV, load_trusted

PACKS_PATH_ENV = "SAFESTEER_PACKS_PATH"
_PACKAGE_DATA = Path(__file__).resolve().parents[1] / "pretrained_directions"
_CHECKOUT = Path(__file__).resolve().parents[2] / "pretrained_directions"
# One copy in git, at the repository's top level (ComfyUI reads it there too); a wheel carries it as package
# data (pyproject.toml maps the folder), so an installed package finds it beside its modules.
SHIPPED_PACKS = _PACKAGE_DATA if _PACKAGE_DATA.is_dir() else _CHECKOUT
"""The shipped catalogue: package data in an installed wheel, else ``pretrained_directions/`` of the checkout."""
_REPO_PACKS = SHIPPED_PACKS  # the name earlier code and tests import

BUILT = "built"
PUBLISHED = "published"
IN_HUB_CACHE = "published, in Hub cache"
NOT_PUBLISHED = "not published"


def pack_folders() -> list[Path]:
    """Folders searched for default packs, in search order.

    Returns:
        ``$SAFESTEER_PACKS_PATH`` entries (``os.pathsep``-separated), then :data:`SHIPPED_PACKS`.
    """
    extra = [Path(p) for p in os.environ.get(PACKS_PATH_ENV, "").split(os.pathsep) if p]
    return [*extra, SHIPPED_PACKS]


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
        name: folder name (= recipe name), the pack file's folder for bare packs, or a trusted entry's name.
        target: target model id the pack is (or will be) built for.
        source: source model id (``None`` for native/manual packs and trusted entries).
        status: ``"built"`` (pack file on disk), ``"published, in Hub cache"`` (pinned, downloaded before),
            ``"published"`` (pinned; downloaded and verified on first use) or ``"not published"`` (a recipe
            only: never downloaded).
        default: whether its recipe is the registered default for ``target``.
        pack_path: the pack file when built.
        recipe_path: the ``recipe.yaml`` when there is one.
        hub_repo: the Hub repo when published (``None`` otherwise: no repo is assumed).
        family: the target's pipeline family.
        root: the searched folder (of :func:`pack_folders`) or the trusted catalogue file it was found in.
        pin: ``org/name@<commit>#<sha256>`` when published.
        needs: what building it takes, one line each (from its recipe; empty without one).
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
    pin: str | None = None
    needs: tuple[str, ...] = ()

    def to_dict(self) -> dict:
        """JSON-ready fields (paths as strings), as ``safesteer list-packs --json`` prints them."""
        return {key: str(value) if isinstance(value, Path) else value for key, value in self.__dict__.items()}


def catalogue(families: Collection[str] | None = None) -> list[CatalogueEntry]:
    """Every recipe and built pack in :func:`pack_folders`, in search order, then the trusted entries.

    Listing reads local files only: it never contacts the Hub.

    Args:
        families: pipeline families a recipe's ``target.family`` may name (``None``: not checked; callers
            that know the pipeline registry pass ``registered_targets()``).

    Returns:
        One :class:`CatalogueEntry` per folder holding a recipe and/or a pack (a folder searched twice counts
        once; packs that fail to load are left out), then one per trusted catalogue entry.

    Raises:
        ValueError: when a ``recipe.yaml`` or a trusted catalogue file does not validate (the message names
            the file and the fix).
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
            entry = _folder_entry(sub, folder, families)
            if entry is not None:
                entries.append(entry)
    for trusted in load_trusted():
        entries.append(
            CatalogueEntry(
                name=trusted.name,
                target=trusted.target,
                source=None,
                status=_pin_status(trusted.pin),
                default=False,
                pack_path=None,
                recipe_path=None,
                hub_repo=trusted.pin.repo,
                family=None,
                root=trusted.path,
                pin=str(trusted.pin),
            )
        )
    return entries


def _folder_entry(sub: Path, root: Path, families: Collection[str] | None) -> CatalogueEntry | None:
    """The entry of one catalogue folder (``None`` when its pack file does not load)."""
    recipe_file, pack_file = sub / RECIPE_FILENAME, sub / PACK_FILENAME
    recipe = load_recipe(recipe_file, families=families) if recipe_file.is_file() else None
    target = source = family = None
    status = NOT_PUBLISHED
    if pack_file.is_file():
        try:
            metadata = DirectionPack.from_file(pack_file).metadata
        except ValueError:
            return None
        target = metadata.get("target", {}).get("model_id")
        family = metadata.get("target", {}).get("family")
        source = metadata.get("source", {}).get("model_id")
        status = BUILT
    if recipe is not None:
        target = target or recipe.target.model
        family = family or recipe.target.family
        source = source or recipe.source.model
        if not pack_file.is_file() and recipe.published is not None:
            status = _pin_status(recipe.published)
    return CatalogueEntry(
        name=recipe.name if recipe else sub.name,
        target=target,
        source=source,
        status=status,
        default=bool(recipe and recipe.default),
        pack_path=pack_file if pack_file.is_file() else None,
        recipe_path=recipe_file if recipe else None,
        hub_repo=recipe.hub_repo if recipe else None,
        family=family,
        root=root,
        pin=str(recipe.published) if recipe and recipe.published else None,
        needs=tuple(recipe.needs.lines(recipe.source.model)) if recipe else (),
    )


def _pin_status(pin: PinnedPack) -> str:
    """Whether a pinned pack is already in the Hugging Face cache (a local look-up, no request)."""
    try:
        from huggingface_hub import try_to_load_from_cache

        cached = try_to_load_from_cache(pin.repo, PACK_FILENAME, revision=pin.commit)
    except Exception:  # noqa: BLE001 (a malformed cache must not break listing)
        cached = None
    return IN_HUB_CACHE if isinstance(cached, str) else PUBLISHED


def find_default_pack(
    model_id: str | None,
    families: Collection[str] | None = None,
    *,
    cache_dir: str | os.PathLike | None = None,
    endpoint: str | None = None,
    token: str | bool | None = None,
) -> tuple[Path | None, DirectionPack]:
    """The default pack for a target model id (resolution order and trust rules: the module docstring).

    Args:
        model_id: the target pipeline's model id (``pipe.config._name_or_path``).
        families: passed to :func:`catalogue`.
        cache_dir, endpoint, token: for pinned downloads (``huggingface_hub`` defaults: ``HF_HUB_CACHE``,
            ``HF_ENDPOINT``, the stored login).

    Returns:
        ``(pack_file, pack)``; ``pack_file`` is ``None`` when the pack came from the Hub.

    Raises:
        PinMismatchError: when a pinned pack's commit or file does not match its pin (never skipped).
        ValueError: when no pack is built or published for the model; the message says what exists, what
            building one needs and the exact command.
    """
    entries = catalogue(families)
    mine = [e for e in entries if model_id and e.target == model_id]
    roots = pack_folders()

    def folder_rank(entry: CatalogueEntry) -> int:
        return roots.index(entry.root) if entry.root in roots else len(roots)

    built = sorted(
        (e for e in mine if e.pack_path is not None), key=lambda e: (folder_rank(e), not e.default)
    )
    if built:
        return built[0].pack_path, DirectionPack.from_file(built[0].pack_path)
    # Trusted catalogue files (no recipe) before published recipes; sorted() keeps file order among equals.
    pinned = sorted(
        (e for e in mine if e.pin), key=lambda e: (e.recipe_path is not None, folder_rank(e), not e.default)
    )
    unreachable = []
    for entry in pinned:
        try:
            path = download_pinned(
                PinnedPack.parse(entry.pin), cache_dir=cache_dir, endpoint=endpoint, token=token
            )
        except PinMismatchError:
            raise  # fail closed: a pack that does not match its pin is an alarm, not a reason to try the next
        except ValueError as error:
            unreachable.append(f"  - {entry.name} ({entry.pin}): {str(error).splitlines()[0]}")
            continue
        return None, DirectionPack.from_file(path)
    if unreachable:
        raise ValueError(
            f"The pinned packs for model {model_id!r} could not be fetched:\n" + "\n".join(unreachable) + "\n"
            "Nothing unverified is loaded instead. Connect once to download them (they are then cached), or pass "
            "a local pack: SafeSteer.wrap(pipe, 'path/to/pack')."
        )
    recipes = [load_recipe(e.recipe_path) for e in sorted(mine, key=lambda e: not e.default) if e.recipe_path]
    if recipes:
        raise ValueError(unpublished_message(model_id, recipes))
    listing = (
        "\n".join(f"  - {e.name}: {e.target or '?'}" for e in entries if e.status == BUILT) or "  (none)"
    )
    raise ValueError(
        f"No default pack is registered for model {model_id!r} (no built pack, no pinned pack, no recipe). "
        "Built packs:\n"
        f"{listing}\n{_PASS_ONE}"
    )


_PASS_ONE = (
    "Pass a pack explicitly: SafeSteer.wrap(pipe, 'path/to/pack') or a pinned Hub pack "
    f"SafeSteer.wrap(pipe, '{PIN_FORM}'); trust one for every call by listing it in a catalogue file named in "
    f"${CATALOGUE_ENV}; or add a folder of built packs to ${PACKS_PATH_ENV} (docs/recipes.md)."
)


def unpublished_message(model_id: str | None, recipes: list[Recipe]) -> str:
    """The error for a model whose recipes exist but whose pack is neither built here nor published.

    Args:
        model_id: the target model id.
        recipes: its recipes, the default first.

    Returns:
        The message: no pack published, no request made, what building the first recipe's pack needs and
        the exact command, and how to pass a pack instead.
    """
    recipe = recipes[0]
    others = f" (also: {', '.join(r.name for r in recipes[1:])})" if len(recipes) > 1 else ""
    needs = "\n".join(f"  - {line}" for line in recipe.needs.lines(recipe.source.model))
    return (
        f"No pack has been published for model {model_id!r}, and none is built on this machine. SafeSteer "
        "downloads only packs pinned to a Hub commit and a file hash, so no request was made.\n"
        f"The catalogue has a recipe for it: {recipe.name}{others}. Building it needs:\n{needs}\n"
        f"Command: {build_command(recipe)}\n{_PASS_ONE}"
    )


def build_command(recipe: Recipe) -> str:
    """The exact ``safesteer build`` command for a recipe, from where it is installed.

    In a checkout the pack is written into the recipe's folder (then found as the default); an installed
    catalogue is package data, so the pack goes to ``./safesteer-packs/<name>`` and ``$SAFESTEER_PACKS_PATH``
    is pointed there.

    Args:
        recipe: a recipe read from a file.

    Returns:
        The shell command (one line; a second line sets the variable when needed).
    """
    path = recipe.path or Path(f"{recipe.name}/{RECIPE_FILENAME}")
    relative = os.path.relpath(path) if path.is_absolute() else str(path)
    shown = relative if not relative.startswith("..") else str(path)
    device = "" if recipe.needs.gpu_memory_gb is None else " --device cuda"
    if _PACKAGE_DATA in path.parents:
        return (
            f"safesteer build --recipe {shown}{device} --out safesteer-packs/{recipe.name} && "
            f'export {PACKS_PATH_ENV}="$PWD/safesteer-packs"'
        )
    return f"safesteer build --recipe {shown}{device}"


def load_pack_for(
    model_id: str | None,
    pack: str | os.PathLike | None = None,
    *,
    revision: str | None = None,
    families: Collection[str] | None = None,
) -> DirectionPack:
    """The pack to steer ``model_id`` with, resolved before a (large) generator is loaded.

    Args:
        model_id: the generator's model id.
        pack: a pack folder, file, Hub repo id or pinned reference; ``None``: the default for ``model_id``.
        revision: Hub revision of a repo id ``pack``.
        families: passed to :func:`catalogue`.

    Returns:
        The pack.

    Raises:
        ValueError: when none exists or it does not load (the message says how to get one).
    """
    if pack is not None:
        return DirectionPack.from_pretrained(pack, revision=revision)
    return find_default_pack(model_id, families)[1]


def default_pack_for(pipe: Any, families: Collection[str] | None = None) -> DirectionPack:
    """The default pack for this pipeline's model id (see the module docstring for the order).

    Args:
        pipe: a diffusers pipeline (its ``config._name_or_path`` names the model).
        families: passed to :func:`catalogue`.

    Returns:
        The pack.

    Raises:
        ValueError: when none is built or published; says what exists and how to get or pass one.
    """
    model_id = getattr(getattr(pipe, "config", None), "_name_or_path", None)
    return find_default_pack(model_id, families)[1]

"""Load SafeSteer Pack: a pack file from the ``safesteer`` model folder, the shipped packs, or the Hub."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import weakref
from pathlib import Path

from safesteer_diffusers.packs.direction_pack import DirectionPack
from safesteer_diffusers.packs.format import PACK_FILENAME

from .common import CATEGORY, LOGGER, PACK_TYPE

FOLDER_NAME = "safesteer"
"""ComfyUI model folder type: ``ComfyUI/models/safesteer/`` plus any ``safesteer:`` entry of
``extra_model_paths.yaml``."""
EXTENSIONS = {".safetensors"}
SHIPPED_PACKS = Path(__file__).resolve().parent.parent / "pretrained_directions"
NO_PACKS = "(no local packs: type a Hub repo id)"

_REPO_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,95}/[A-Za-z0-9][A-Za-z0-9._-]{0,95}$")


def _folder_paths():
    try:
        import folder_paths  # ComfyUI's module; absent when the nodes are imported outside ComfyUI
    except ImportError:
        return None
    return folder_paths


def register_model_folder() -> None:
    """Register the ``safesteer`` model folder (``models/safesteer`` and the shipped packs) with ComfyUI.

    Paths that ``extra_model_paths.yaml`` already registered keep their place (first = download target).
    Outside ComfyUI this does nothing.
    """
    folder_paths = _folder_paths()
    if folder_paths is None:
        return
    entry = folder_paths.folder_names_and_paths.get(FOLDER_NAME)
    paths = list(entry[0]) if entry else []
    extensions = set(entry[1]) if entry else set()
    for path in (os.path.join(folder_paths.models_dir, FOLDER_NAME), str(SHIPPED_PACKS)):
        if path not in paths:
            paths.append(path)
    folder_paths.folder_names_and_paths[FOLDER_NAME] = (paths, extensions | EXTENSIONS)


def comfy_model_folders() -> list[Path]:
    """ComfyUI's ``safesteer`` model folders, where the nodes look for pack files (download target first).

    ``models/safesteer``, any ``safesteer:`` entry of ``extra_model_paths.yaml``, and the shipped packs; only
    the shipped packs outside ComfyUI. Not the library's search path for default packs
    (:func:`safesteer_diffusers.packs.catalogue.pack_folders`: ``$SAFESTEER_PACKS_PATH`` and
    ``pretrained_directions/``).
    """
    folder_paths = _folder_paths()
    if folder_paths is None or FOLDER_NAME not in folder_paths.folder_names_and_paths:
        return [SHIPPED_PACKS]
    return [Path(p) for p in folder_paths.get_folder_paths(FOLDER_NAME)]


def pack_choices() -> list[str]:
    """Pack files found in the ``safesteer`` folders, as ComfyUI lists them (paths relative to a folder)."""
    folder_paths = _folder_paths()
    if folder_paths is not None and FOLDER_NAME in folder_paths.folder_names_and_paths:
        names = list(folder_paths.get_filename_list(FOLDER_NAME))
    else:
        names = [p.relative_to(SHIPPED_PACKS).as_posix() for p in SHIPPED_PACKS.rglob("*.safetensors")]
    return sorted(names) or [NO_PACKS]


def local_pack_path(name: str) -> Path:
    """The file behind a ``pack_name`` choice.

    Raises:
        ValueError: when no folder holds it; the message lists the folders.
    """
    folder_paths = _folder_paths()
    found = None
    if folder_paths is not None and FOLDER_NAME in folder_paths.folder_names_and_paths:
        found = folder_paths.get_full_path(FOLDER_NAME, name)
    elif not Path(name).is_absolute() and ".." not in Path(name).parts:
        candidate = SHIPPED_PACKS / name
        found = str(candidate) if candidate.is_file() else None
    if not found or not os.path.isfile(found):
        folders = ", ".join(str(p) for p in comfy_model_folders())
        if name == NO_PACKS:
            raise ValueError(
                f"No pack selected: no pack file was found in {folders}. Put a pack (.safetensors) there and "
                "refresh, or type a Hugging Face Hub repo id in hub_repo_id."
            )
        raise ValueError(
            f"Pack file {name!r} was not found in {folders}. Refresh the node list (press R) and pick an "
            "existing pack, copy the file there, or type a Hub repo id in hub_repo_id."
        )
    return Path(found)


def download_folder() -> Path:
    """The folder Hub packs are downloaded into: the first ``safesteer`` model folder that is not shipped."""
    for folder in comfy_model_folders():
        if folder.resolve() != SHIPPED_PACKS.resolve():
            return folder
    raise ValueError(
        "No writable 'safesteer' model folder is registered; run inside ComfyUI, or add a 'safesteer:' entry to "
        "extra_model_paths.yaml."
    )


def hub_pack_path(repo_id: str, revision: str | None = None, folder: Path | None = None) -> Path:
    """Download (or find, when offline) a Hub pack into ``<folder>/<org>--<name>[@<revision>]/``.

    Uses ``huggingface_hub.hf_hub_download(local_dir=...)``: nothing is written outside ``folder``; a folder
    created for a failed download is removed again.

    Raises:
        ValueError: invalid repo id, unknown repository or revision, no pack file in it, or no network and no
            earlier download; each message says what to do.
    """
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import (
        EntryNotFoundError,
        HFValidationError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    repo_id = repo_id.strip()
    revision = (revision or "").strip() or None
    if not _REPO_ID.match(repo_id) or ".." in repo_id:
        raise ValueError(
            f"{repo_id!r} is not a Hugging Face Hub repo id; expected 'org/name' (letters, digits, '.', '_', '-')."
        )
    folder = Path(folder) if folder is not None else download_folder()
    name = repo_id.replace("/", "--")
    if revision:
        name += "@" + re.sub(r"[^A-Za-z0-9._-]", "_", revision)
    target = folder / name
    existed = target.exists()
    try:
        path = hf_hub_download(
            repo_id=repo_id,
            filename=PACK_FILENAME,
            revision=revision,
            local_dir=str(target),
            library_name="safesteer-diffusers",
        )
    except Exception as error:
        if not existed:
            shutil.rmtree(target, ignore_errors=True)
        where = f"{repo_id!r} (revision {revision or 'main'})"
        if isinstance(error, LocalEntryNotFoundError):
            raise ValueError(
                f"Pack {where} is not in {target} and the Hub cannot be reached (offline or HF_HUB_OFFLINE=1). "
                f"Download it once with network, or copy {PACK_FILENAME} into that folder."
            ) from error
        if isinstance(error, RepositoryNotFoundError):
            raise ValueError(
                f"Hub repository {repo_id!r} was not found (or is private: log in with `hf auth login`)."
            ) from error
        if isinstance(error, RevisionNotFoundError):
            raise ValueError(f"Hub repository {repo_id!r} has no revision {revision!r}.") from error
        if isinstance(error, EntryNotFoundError):
            raise ValueError(
                f"Hub repository {repo_id!r} has no {PACK_FILENAME}; it is not a SafeSteer pack repository."
            ) from error
        if isinstance(error, HFValidationError):
            raise ValueError(f"{repo_id!r} is not a valid Hub repo id ({error}).") from error
        raise ValueError(f"Could not download pack {where}: {type(error).__name__}: {error}") from error
    return Path(path)


class LoadSafeSteerPack:
    """Load a direction pack: pick a local file, or type a Hub repo id (downloaded into models/safesteer)."""

    CATEGORY = CATEGORY
    RETURN_TYPES = (PACK_TYPE,)
    RETURN_NAMES = ("pack",)
    FUNCTION = "load"
    DESCRIPTION = (
        "Loads a SafeSteer direction pack from ComfyUI/models/safesteer/ (or extra_model_paths.yaml), from the "
        "packs shipped in pretrained_directions/, or from a Hugging Face Hub repo id (takes precedence when set)."
    )

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "pack_name": (
                    pack_choices(),
                    {
                        "tooltip": "A pack file (.safetensors) from ComfyUI/models/safesteer/, a 'safesteer:' "
                        "entry of extra_model_paths.yaml, or the packs built in this node's "
                        "pretrained_directions/ (press R after adding one). Ignored when hub_repo_id is set."
                    },
                ),
            },
            "optional": {
                "hub_repo_id": (
                    "STRING",
                    {
                        "default": "",
                        "tooltip": "A Hugging Face Hub repo id 'org/name' holding a SafeSteer pack; when set it "
                        "is used instead of pack_name, downloaded once into models/safesteer/org--name/ "
                        "(offline: a copy downloaded earlier is used).",
                    },
                ),
                "revision": (
                    "STRING",
                    {
                        "default": "",
                        "tooltip": "Branch, tag or commit of hub_repo_id (empty = main); pin a commit to get "
                        "the same pack every time. Ignored without hub_repo_id.",
                    },
                ),
            },
        }

    @classmethod
    def VALIDATE_INPUTS(cls, pack_name, hub_repo_id="", revision=""):
        """``True`` when the inputs can name a pack; raises ``ValueError`` (what to do) when they cannot.

        Declaring ``pack_name`` here replaces ComfyUI's list check, so a Hub id works with any saved pack_name.
        A problem is raised rather than returned: ComfyUI attaches a returned message to every input this
        signature names (the same message three times, once per input); an exception is reported once, for
        the node, and stops the graph before anything runs, as a returned message does.
        """
        if (hub_repo_id or "").strip():
            return True  # the Hub is reached when the node runs (download or offline copy)
        local_pack_path(pack_name)
        return True

    @classmethod
    def IS_CHANGED(cls, pack_name, hub_repo_id="", revision=""):
        if (hub_repo_id or "").strip():
            return f"hub:{hub_repo_id.strip()}@{(revision or '').strip()}"
        try:
            path = local_pack_path(pack_name)
        except ValueError:
            return f"missing:{pack_name}"
        return f"{path}:{path.stat().st_mtime_ns}"

    def load(self, pack_name, hub_repo_id="", revision=""):
        repo_id, revision = (hub_repo_id or "").strip(), (revision or "").strip()
        if repo_id:
            path = hub_pack_path(repo_id, revision)
            name = f"{repo_id}@{revision} (Hub)" if revision else f"{repo_id} (Hub)"
        else:
            path = local_pack_path(pack_name)
            name = pack_name
        pack = DirectionPack.from_file(path)
        _remember_name(pack, name)
        LOGGER.info("SafeSteer: loaded %r from %s", pack, path)
        return (pack,)


# Which name Load SafeSteer Pack gave each pack it output, for the report's header. Weak keys: an entry goes
# when ComfyUI drops the pack from its cache; identity keys: two equal packs loaded from two files keep
# their own names.
_LOADED_NAMES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _remember_name(pack: DirectionPack, name: str) -> None:
    # A pack that is not weak-referenceable or not hashable is simply reported as unnamed.
    with contextlib.suppress(TypeError):
        _LOADED_NAMES[pack] = name


def loaded_name(pack: DirectionPack) -> str | None:
    """The name Load SafeSteer Pack loaded ``pack`` by (the file relative to a ``safesteer`` folder, or the Hub
    id and revision), or ``None`` for a pack that did not come from that node."""
    try:
        return _LOADED_NAMES.get(pack)
    except TypeError:
        return None

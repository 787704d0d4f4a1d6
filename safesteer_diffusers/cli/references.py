"""What a model or pack named on the command line is, decided before anything is loaded: a local path, a
pack of the catalogue (the names ``safesteer list-packs`` prints), a tiny pipeline built in code, or a
Hugging Face Hub repo id.

Why here: ``from_pretrained`` treats any missing path of the form ``a/b`` as a Hub repo id, so a mistyped
folder used to cost half a minute of download retries and then said "not in the local cache", never that
the folder does not exist. The rules:

- a value that exists on disk is a path;
- a value that looks like a path and does not exist is an error that names the missing part: it starts
  with ``./``, ``../``, ``/`` or ``~``, has more than one ``/``, ends in ``.safetensors`` / ``.gguf``, or
  its first part exists as a local folder (``packs/flux1-...`` with a ``packs/`` folder here);
- a pack name without ``/`` is looked up in the catalogue (built pack, else its Hub repo);
- anything else is a Hub repo id. The Hub is probed once per command with a short timeout: when it cannot be
  reached (or ``HF_HUB_OFFLINE`` is set) a repo that is not in the local cache fails at once, and one that is
  cached is loaded from the cache with the Hub switched off for the rest of the command (no retries).

Only the standard library and the library's logger are imported at module level (the parser imports this
module on every call).
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from safesteer_diffusers.utils.logging import get_logger

__all__ = [
    "hub_session",
    "hub_unreachable_reason",
    "looks_like_path",
    "missing_path_message",
    "resolve_data",
    "resolve_model",
    "resolve_pack",
]

logger = get_logger(__name__)

HUB_PROBE_TIMEOUT_S = 3.0
"""Seconds the one reachability probe of the Hub may take before the command treats the Hub as offline."""
TINY_PREFIX = "safesteer/tiny-"
"""Model ids of the tiny pipelines built in code start with this (checked before importing them)."""
PACK_FILENAME = "safesteer_pack.safetensors"
"""``packs.format.PACK_FILENAME``, spelled out so that this module imports nothing heavy."""

_FILE_SUFFIXES = (".csv", ".jsonl", ".json", ".txt", ".parquet")
"""A prompt source with one of these endings is a file, never a Hub dataset id."""

_state: dict[str, object] = {}
"""This command's Hub probe result and the settings :func:`_go_offline` changed (reset by :func:`hub_session`)."""


# ------------------------------------------------------------------------------------------------ paths


def looks_like_path(value: str) -> bool:
    """Whether ``value`` is meant as a local path rather than a Hub repo id (see the module docstring).

    Example::

        looks_like_path("./packs/mine")            # True
        looks_like_path("results/flux/pack")       # True (two '/': not a repo id)
        looks_like_path("org/name")                # False (unless a folder ./org exists)
    """
    text = str(value)
    if text in (".", "..") or text.startswith(("./", "../", "/", "~", ".\\", "..\\")) or "\\" in text:
        return True
    if text.endswith((".safetensors", ".gguf")):
        return True
    repo = text.split("@", 1)[0]  # a pinned pack reference org/name@<commit>#<sha256> is a repo id
    if repo.count("/") > 1:
        return True
    first = repo.split("/", 1)[0]
    return "/" in repo and bool(first) and Path(first).expanduser().is_dir()


def _head(value: str, flag: str, noun: str) -> str:
    return f"Could not load the {noun} {value!r} ({flag})"


def missing_path_message(value: str, flag: str, expected: str, noun: str = "file") -> str:
    """The error for a path that does not exist: the deepest part that does, what it holds, and the fix.

    Args:
        value: the path as given.
        flag: the option (or argument name) it was given to, e.g. ``--pack``.
        expected: what the option takes, e.g. ``"a pack folder or .safetensors file"``.
        noun: what is being loaded, e.g. ``"pack"`` (the message starts "Could not load the pack ...").
    """
    path = Path(value).expanduser()
    existing = path.parent
    while not existing.is_dir() and existing != existing.parent:
        existing = existing.parent
    where = ""
    if existing.is_dir():
        try:
            entries = sorted(
                p.name + ("/" if p.is_dir() else "") for p in existing.iterdir() if not p.name.startswith(".")
            )
        except OSError:
            entries = []
        missing = path.relative_to(existing).parts[0] if path.is_relative_to(existing) else path.name
        close = difflib.get_close_matches(missing, [e.rstrip("/") for e in entries], n=1)
        label = existing.as_posix().rstrip("/") + "/"
        if existing.resolve() != Path.cwd().resolve():  # the current folder's listing would be noise
            shown = ", ".join(entries[:8]) + (", ..." if len(entries) > 8 else "") if entries else "nothing"
            where = f" The nearest existing folder is {label}, holding: {shown}."
        if close:
            where += f" Did you mean {(existing / close[0]).as_posix()}?"
    return (
        f"{_head(value, flag, noun)}: no such file or folder.{where} Expected {expected}. Check the path; "
        "a Hub repo id "
        "has exactly one '/' (org/name)."
    )


# ------------------------------------------------------------------------------------------------ the Hub


@contextmanager
def hub_session() -> Iterator[None]:
    """One command's view of the Hub: the probe runs at most once inside, and the offline switch that
    :func:`resolve_model` / :func:`resolve_pack` may turn on is turned off again on exit."""
    _state.clear()
    try:
        yield
    finally:
        _restore_online()
        _state.clear()


def hub_unreachable_reason() -> str | None:
    """``None`` when the Hub can be reached, else why not (``HF_HUB_OFFLINE`` is set, or the probe failed).

    The probe is one HEAD request to the Hub endpoint (``HF_ENDPOINT``) through huggingface_hub's own HTTP
    session (its proxy and certificate settings), at most :data:`HUB_PROBE_TIMEOUT_S` seconds, no retries;
    its result is kept for the rest of the command.
    """
    if "reason" not in _state:
        _state["reason"] = _probe()
    reason = _state["reason"]
    return reason if isinstance(reason, str) else None


def _probe() -> str | None:
    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE or _truthy(os.environ.get("HF_HUB_OFFLINE")):
        return "HF_HUB_OFFLINE is set"
    try:
        from huggingface_hub.utils import get_session

        get_session().head(constants.ENDPOINT, timeout=HUB_PROBE_TIMEOUT_S)
    except Exception as error:  # noqa: BLE001 (any failure to get an answer means: offline for this command)
        first = str(error).splitlines()[0] if str(error) else type(error).__name__
        return f"{constants.ENDPOINT} did not answer: {first}"
    return None


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in ("1", "true", "yes", "on")


def _go_offline(reason: str) -> None:
    """Switch huggingface_hub (and so transformers and diffusers) to the local cache for this command:
    otherwise every load would retry the unreachable Hub for half a minute before using the cache."""
    if "offline_before" in _state:
        return
    from huggingface_hub import constants

    _state["offline_before"] = (constants.HF_HUB_OFFLINE, os.environ.get("HF_HUB_OFFLINE"))
    constants.HF_HUB_OFFLINE = True
    os.environ["HF_HUB_OFFLINE"] = "1"
    logger.info("The Hugging Face Hub cannot be reached (%s): using the local cache only.", reason)


def _restore_online() -> None:
    before = _state.get("offline_before")
    if not isinstance(before, tuple):
        return
    from huggingface_hub import constants

    constants.HF_HUB_OFFLINE, environment = before
    if environment is None:
        os.environ.pop("HF_HUB_OFFLINE", None)
    else:
        os.environ["HF_HUB_OFFLINE"] = environment


def in_hub_cache(repo_id: str, repo_type: str = "model", filename: str | None = None) -> bool:
    """Whether the local Hugging Face cache holds a snapshot of ``repo_id`` (with ``filename`` when given)."""
    from huggingface_hub import constants, try_to_load_from_cache

    if filename is not None:
        try:
            return isinstance(try_to_load_from_cache(repo_id, filename, repo_type=repo_type), str)
        except Exception:  # noqa: BLE001 (an invalid id or a broken cache: not cached)
            return False
    folder = Path(constants.HF_HUB_CACHE) / f"{repo_type}s--{repo_id.replace('/', '--')}" / "snapshots"
    return folder.is_dir() and any(folder.iterdir())


def _require_hub_or_cache(
    repo_id: str, flag: str, what: str, noun: str, *, repo_type: str = "model", filename: str | None = None
) -> None:
    """Return when ``repo_id`` can be loaded; raise at once when the Hub is unreachable and it is not
    cached."""
    reason = hub_unreachable_reason()
    if reason is None:
        return
    if in_hub_cache(repo_id, repo_type, filename):
        _go_offline(reason)
        return
    from huggingface_hub import constants

    raise ValueError(
        f"{_head(repo_id, flag, noun)}: there is no local file or folder of that name, so it was taken as a "
        "Hub repo id, "
        f"but it is not in the Hugging Face cache ({constants.HF_HUB_CACHE}) and the Hub cannot be reached "
        f"({reason}). Expected {what}. Fix: check the path if you meant a local folder; otherwise download "
        f"it once with network access (`hf download {repo_id}`, HF_HUB_OFFLINE unset) or copy it to a local "
        "folder and pass that."
    )


# ------------------------------------------------------------------------------------------------ resolvers


def _as_given(value: str) -> str:
    # Keep the text the user typed (it is recorded, e.g. as a pack's target model id); only ~ is expanded,
    # since the loaders do not expand it.
    return str(Path(value).expanduser()) if value.startswith("~") else value


def resolve_model(value: str, *, flag: str, what: str, noun: str = "model", tiny: bool = False) -> str:
    """Check a model reference before loading it.

    Args:
        value: a folder, a Hub repo id, or (with ``tiny``) a tiny pipeline id such as
            ``safesteer/tiny-sd-demo``.
        flag: the option it came from, for messages (``--target``).
        what: what the option takes, for messages (``"a diffusers pipeline folder or Hub repo id"``).
        noun: what is loaded, for messages (``"pipeline"``).
        tiny: accept the ids of the tiny pipelines built in code.

    Returns:
        What to load: the expanded local path, the tiny id, or the Hub repo id (the Hub is then known to
        be reachable, or the repo to be cached and the Hub switched off for this command).

    Raises:
        ValueError: a path that does not exist, or a Hub id that cannot be loaded offline (with the fix).
    """
    if tiny and value.startswith(TINY_PREFIX):
        from safesteer_diffusers.testing import is_tiny_model_id

        if is_tiny_model_id(value):
            return value
    if Path(value).expanduser().exists():
        return _as_given(value)
    if looks_like_path(value):
        raise ValueError(missing_path_message(value, flag, what, noun))
    _require_hub_or_cache(value, flag, what, noun)
    return value


def resolve_data(value: str, *, flag: str, what: str, noun: str = "prompts") -> str:
    """Check a prompt file / dataset reference: an existing path as is, a missing path-like value is an
    error (a Hub dataset id is left to the reader).

    Raises:
        ValueError: a path that does not exist.
    """
    if Path(value).expanduser().exists():
        return _as_given(value)
    if looks_like_path(value) or Path(value).suffix.lower() in _FILE_SUFFIXES:
        raise ValueError(missing_path_message(value, flag, what, noun))
    return value


def resolve_pack(value: str, *, flag: str = "pack") -> str:
    """Turn a pack reference into what ``DirectionPack.from_pretrained`` loads.

    Args:
        value: a pack folder or file, a catalogue name (``safesteer list-packs``), a Hub repo id
            ``org/name``, or a pinned reference ``org/name@<commit>#<sha256>``.
        flag: the option it came from, for messages.

    Returns:
        A local path (a catalogue pack that is built), or a Hub reference that can be loaded now.

    Raises:
        ValueError: a missing path, an unknown or unbuilt catalogue name, or a Hub pack that cannot be loaded
            offline; the message says what was found and the fix.
    """
    expected = (
        "a pack folder, a .safetensors pack file, a pack name from `safesteer list-packs`, or a Hub repo id "
        "org/name"
    )
    if Path(value).expanduser().exists():
        return _as_given(value)
    if looks_like_path(value):
        raise ValueError(missing_path_message(value, flag, expected, "pack"))
    repo = value.split("@", 1)[0]
    if "/" not in repo:
        return _catalogue_pack(value, flag, expected)
    _require_hub_or_cache(repo, flag, expected, "pack", filename=PACK_FILENAME)
    return value


def _catalogue_pack(name: str, flag: str, expected: str) -> str:
    from safesteer_diffusers.packs.catalogue import catalogue

    entries = catalogue()
    by_name = {entry.name: entry for entry in entries}
    entry = by_name.get(name)
    if entry is None:
        close = difflib.get_close_matches(name, list(by_name), n=3)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        raise ValueError(
            f"{_head(name, flag, 'pack')}: no such file or folder here, and no pack of that name in the "
            "catalogue "
            f"({len(entries)} packs: `safesteer list-packs` lists them).{hint} Expected {expected}."
        )
    if entry.pack_path is not None:
        logger.debug("%s %s: the catalogue pack at %s", flag, name, entry.pack_path)
        return str(entry.pack_path)
    # A published catalogue pack carries a pin (repo@commit#sha256): the loader then verifies the file.
    published = getattr(entry, "pin", None) or entry.hub_repo
    if published:
        repo = published.split("@", 1)[0]
        reason = hub_unreachable_reason()
        if reason is not None and not in_hub_cache(repo, filename=PACK_FILENAME):
            raise ValueError(
                f"{_head(name, flag, 'pack')}: this catalogue pack is not built here and its Hub repo {repo} "
                "cannot be "
                f"downloaded now ({reason}). Build it: safesteer build --recipe {entry.recipe_path}, or "
                f"download it once with network access (`hf download {repo}`)."
            )
        if reason is not None:
            _go_offline(reason)
        logger.info("%s %s: not built here; loading it from the Hub (%s).", flag, name, published)
        return published
    raise ValueError(
        f"{_head(name, flag, 'pack')}: this catalogue pack is neither built here nor published on the Hub. "
        "Build it: "
        f"safesteer build --recipe {entry.recipe_path} (`safesteer list-packs` shows what each pack needs)."
    )

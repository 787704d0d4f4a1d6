"""Hugging Face Hub plumbing for packs: resolve a reference to a local pack file (verifying pinned ones),
upload a pack folder."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path

from huggingface_hub import HfApi, hf_hub_download
from huggingface_hub.errors import (
    EntryNotFoundError,
    HFValidationError,
    LocalEntryNotFoundError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)

from .format import PACK_FILENAME
from .model_card import LIBRARY_NAME
from .pins import PinMismatchError, PinnedPack, file_sha256, looks_pinned


def resolve_pack_file(
    pretrained: str | os.PathLike,
    revision: str | None = None,
    *,
    cache_dir: str | os.PathLike | None = None,
    token: str | bool | None = None,
    local_files_only: bool | None = None,
    endpoint: str | None = None,
) -> Path:
    """Turn a folder, a file path, a Hub repo id or a pinned Hub reference into the path of a local pack file.

    Args:
        pretrained: a pack folder or file; a Hub repo id ``org/name`` (read at ``revision``, unverified: the
            caller chose it); or a pinned reference ``org/name@<commit>#<sha256>``
            (:mod:`safesteer_diffusers.packs.pins`), downloaded and verified by :func:`download_pinned`.
        revision: Hub branch, tag or commit of a repo id; with a pinned reference it must be ``None`` or the
            pinned commit.
        cache_dir, token, local_files_only, endpoint: passed to ``huggingface_hub.hf_hub_download``.

    Returns:
        The local path of the pack file.

    Raises:
        ValueError: when nothing is found; the message says where it looked and what to do.
        PinMismatchError: (a ``ValueError``) when a pinned pack's commit or file does not match its pin.
    """
    path = Path(pretrained)
    if path.is_file():
        return path
    if path.is_dir():
        candidate = path / PACK_FILENAME
        if candidate.is_file():
            return candidate
        found = sorted(p.name for p in path.iterdir())
        raise ValueError(
            f"Folder {path} holds no {PACK_FILENAME} (it has {found[:10]}). Point to the pack folder written by "
            "DirectionPack.save_pretrained or `safesteer build`, or to the .safetensors file itself."
        )
    text = str(pretrained)
    if looks_pinned(text):
        pin = PinnedPack.parse(text)
        if revision is not None and revision != pin.commit:
            raise ValueError(
                f"revision {revision!r} contradicts the pinned commit {pin.commit} of {text!r}; drop revision= "
                "(the pin already names the commit)."
            )
        return download_pinned(
            pin, cache_dir=cache_dir, token=token, local_files_only=local_files_only, endpoint=endpoint
        )
    if text.endswith(".safetensors") or text.startswith((".", "/", "~")) or text.count("/") != 1:
        raise ValueError(
            f"No pack file or folder at {text!r}, and it is not a Hub repo id of the form 'org/name'. Check the "
            "path, or give a Hub repo id."
        )
    return _download(text, revision, cache_dir, token, local_files_only, endpoint)


def download_pinned(
    pin: PinnedPack,
    *,
    cache_dir: str | os.PathLike | None = None,
    token: str | bool | None = None,
    local_files_only: bool | None = None,
    endpoint: str | None = None,
) -> Path:
    """Download (or find in the Hugging Face cache) a pinned pack file and verify it against its pin.

    The file is read at the pinned commit only; the commit the Hub (or the cache) says it served must be that
    commit, and the file's SHA-256 must be the pinned one, or nothing is loaded. Both are checked on every
    call, so a cached file edited after download is refused as well.

    Args:
        pin: the repository, commit and SHA-256.
        cache_dir, token, local_files_only, endpoint: passed to ``huggingface_hub.hf_hub_download``.

    Returns:
        The verified local path of the pack file.

    Raises:
        PinMismatchError: when the commit served or the file's SHA-256 differs from the pin.
        ValueError: when the file cannot be fetched (repository, commit or file missing; offline and not
            cached).
    """
    path = _download(pin.repo, pin.commit, cache_dir, token, local_files_only, endpoint, pinned=True)
    # hf_hub_download stores a file under snapshots/<the commit the server reported>/.
    served = path.parent.name
    if served != pin.commit:
        raise PinMismatchError(
            f"Refused pinned pack {pin.repo!r}: the Hub served commit {served!r} for the pinned commit "
            f"{pin.commit}. Nothing was loaded. Check the pin with the pack's publisher; do not use this "
            "repository until it serves the pinned commit."
        )
    actual = file_sha256(path)
    if actual != pin.sha256:
        raise PinMismatchError(
            f"Refused pinned pack {pin.repo}@{pin.commit}: {PACK_FILENAME} has SHA-256 {actual}, the pin says "
            f"{pin.sha256}. Nothing was loaded. The file at {path} was changed after publication, in transit or "
            "in the local cache, or the pin is wrong. Delete that cached file and load again; if the Hub "
            "serves the same bytes again, the pin does not match this repository: ask its publisher."
        )
    return path


def _download(
    repo_id: str,
    revision: str | None,
    cache_dir: str | os.PathLike | None,
    token: str | bool | None,
    local_files_only: bool | None,
    endpoint: str | None,
    *,
    pinned: bool = False,
) -> Path:
    """``hf_hub_download`` of the pack file, its errors turned into ``ValueError`` messages with the fix."""
    what = (
        f"Pinned pack {repo_id}@{revision}" if pinned else f"Pack {repo_id!r} (revision {revision or 'main'})"
    )
    try:
        downloaded = hf_hub_download(
            repo_id=repo_id,
            filename=PACK_FILENAME,
            revision=revision,
            cache_dir=cache_dir,
            token=token,
            local_files_only=bool(local_files_only),
            library_name=LIBRARY_NAME,
            endpoint=endpoint,
        )
    except LocalEntryNotFoundError as error:
        raise ValueError(
            f"{what} is not in the local Hugging Face cache and the Hub "
            "cannot be reached (offline, HF_HUB_OFFLINE=1, or local_files_only). Download it once with network, "
            "or pass a local folder/file."
        ) from error
    except RepositoryNotFoundError as error:
        raise ValueError(
            f"Hub repository {repo_id!r} was not found (or is private: log in with `hf auth login` or pass "
            "token=...)."
        ) from error
    except RevisionNotFoundError as error:
        if pinned:
            raise PinMismatchError(
                f"Refused pinned pack {repo_id!r}: the repository has no commit {revision}. Nothing was loaded; "
                "check the pin with the pack's publisher."
            ) from error
        raise ValueError(f"Hub repository {repo_id!r} has no revision {revision!r}.") from error
    except EntryNotFoundError as error:
        raise ValueError(
            f"Hub repository {repo_id!r} has no {PACK_FILENAME}"
            + (f" at commit {revision}" if pinned else "")
            + "; it is not a SafeSteer pack repository."
        ) from error
    except HFValidationError as error:
        raise ValueError(
            f"{repo_id!r} is neither an existing path nor a valid Hub repo id ({error})."
        ) from error
    return Path(downloaded)


def push_pack(
    write_folder: Callable[[Path], object],
    repo_id: str,
    *,
    private: bool | None = None,
    token: str | None = None,
    revision: str | None = None,
    commit_message: str = "Upload SafeSteer direction pack",
    endpoint: str | None = None,
) -> str:
    """Create (if needed) the model repo ``repo_id`` and upload what ``write_folder(folder)`` writes there.

    ``DirectionPack.push_to_hub`` passes its ``save_pretrained``: the pack file and its model card.
    """
    api = HfApi(endpoint=endpoint, token=token)
    api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model")
    with tempfile.TemporaryDirectory() as folder:
        write_folder(Path(folder))
        commit = api.upload_folder(
            repo_id=repo_id,
            folder_path=folder,
            commit_message=commit_message,
            revision=revision,
            repo_type="model",
        )
    return str(getattr(commit, "commit_url", commit))

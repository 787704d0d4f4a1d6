"""Hugging Face Hub plumbing for packs: resolve a reference to a local pack file, upload a pack folder."""

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


def resolve_pack_file(
    pretrained: str | os.PathLike,
    revision: str | None = None,
    *,
    cache_dir: str | os.PathLike | None = None,
    token: str | bool | None = None,
    local_files_only: bool | None = None,
    endpoint: str | None = None,
) -> Path:
    """Turn a folder, a file path or a Hub repo id into the path of a local pack file.

    Raises:
        ValueError: when nothing is found; the message says where it looked and what to do.
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
    if text.endswith(".safetensors") or text.startswith((".", "/", "~")) or text.count("/") != 1:
        raise ValueError(
            f"No pack file or folder at {text!r}, and it is not a Hub repo id of the form 'org/name'. Check the "
            "path, or give a Hub repo id."
        )
    try:
        downloaded = hf_hub_download(
            repo_id=text,
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
            f"Pack {text!r} (revision {revision or 'main'}) is not in the local Hugging Face cache and the Hub "
            "cannot be reached (offline, HF_HUB_OFFLINE=1, or local_files_only). Download it once with network, "
            "or pass a local folder/file."
        ) from error
    except RepositoryNotFoundError as error:
        raise ValueError(
            f"Hub repository {text!r} was not found (or is private: log in with `hf auth login` or pass "
            "token=...)."
        ) from error
    except RevisionNotFoundError as error:
        raise ValueError(f"Hub repository {text!r} has no revision {revision!r}.") from error
    except EntryNotFoundError as error:
        raise ValueError(
            f"Hub repository {text!r} has no {PACK_FILENAME}; it is not a SafeSteer pack repository."
        ) from error
    except HFValidationError as error:
        raise ValueError(
            f"{text!r} is neither an existing path nor a valid Hub repo id ({error})."
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

"""Default packs: the packs in ``pretrained_directions/`` (and ``$SAFESTEER_PACKS_PATH``), by target model."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from .pack import PACK_FILENAME, DirectionPack

PACKS_PATH_ENV = "SAFESTEER_PACKS_PATH"
_REPO_PACKS = Path(__file__).resolve().parent.parent / "pretrained_directions"


def pack_folders() -> list[Path]:
    """Folders searched for default packs: ``$SAFESTEER_PACKS_PATH`` entries, then ``pretrained_directions/``."""
    extra = [Path(p) for p in os.environ.get(PACKS_PATH_ENV, "").split(os.pathsep) if p]
    return [*extra, _REPO_PACKS]


def available_packs() -> dict[Path, dict]:
    """Every pack file found in :func:`pack_folders` (one level of sub-folders) -> its ``target`` metadata."""
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


def default_pack_for(pipe: Any) -> DirectionPack:
    """The registered pack whose ``target.model_id`` is this pipeline's model id.

    Raises:
        ValueError: when none matches; lists the packs that exist and how to pass one.
    """
    model_id = getattr(getattr(pipe, "config", None), "_name_or_path", None)
    packs = available_packs()
    for path, target in packs.items():
        if model_id and target.get("model_id") == model_id:
            return DirectionPack.from_file(path)
    listing = "\n".join(
        f"  - {path.parent.name}: {target.get('model_id', '?')}" for path, target in packs.items()
    )
    raise ValueError(
        f"No default pack is registered for model {model_id!r}. Packs found:\n{listing or '  (none)'}\n"
        "Pass one explicitly: SafeSteer.wrap(pipe, 'org/pack-repo' or 'path/to/pack'), build one with "
        "`safesteer build`, or add a folder to $SAFESTEER_PACKS_PATH."
    )

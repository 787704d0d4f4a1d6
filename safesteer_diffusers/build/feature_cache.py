"""On-disk cache of extracted features (safetensors), so a rebuild with another alignment is instant.

Entries are keyed by everything that determines the features: model id and revision, layer(s), pooling,
the encoding arguments and a hash of the prompts; for source features also whether the prompts went through
the chat template, and a GGUF file's content hash (:func:`source_key`). Loading never unpickles.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

DEFAULT_CACHE_ENV = "SAFESTEER_CACHE"


def default_cache_dir() -> Path:
    """Where features are cached by default.

    Returns:
        ``$SAFESTEER_CACHE``, else ``~/.cache/safesteer/features``.
    """
    return Path(os.environ.get(DEFAULT_CACHE_ENV, Path.home() / ".cache" / "safesteer" / "features"))


def prompts_hash(prompts: list[str] | tuple[str, ...]) -> str:
    """Stable hash of an ordered list of prompts (part of every cache key).

    Args:
        prompts: the prompts, in order (reordering them changes the hash: feature rows follow it).

    Returns:
        16 hex characters of a SHA-256 over the prompts, each terminated by a NUL byte.
    """
    digest = hashlib.sha256()
    for prompt in prompts:
        digest.update(prompt.encode("utf-8"))
        digest.update(b"\x00")
    return digest.hexdigest()[:16]


def source_key(
    model_id: str,
    revision: str | None,
    pooling: str,
    *,
    chat_template: bool = False,
    identity: dict | None = None,
) -> dict:
    """What identifies a source model's features, before the prompts and layers are added to the key.

    ``chat_template`` and ``identity`` enter the key only when set, so entries written before they existed
    (plain prompts, no GGUF hash) are still found for the same build.

    Args:
        model_id: the source's id (a Hub id, folder or ``.gguf`` path).
        revision: its revision (for a GGUF file without one, ``"sha256:<hex>"``).
        pooling: ``"mean"`` or ``"last"``.
        chat_template: the prompts were written as chat turns (a different text, so different features).
        identity: more that identifies the weights, e.g. ``{"gguf_file": ..., "gguf_sha256": ...}``.

    Returns:
        The key's source part, a dict of JSON values.

    Example:
        >>> source_key("org/lm", "main", "mean", chat_template=True)
        {'model': 'org/lm', 'revision': 'main', 'pooling': 'mean', 'chat_template': True}
    """
    key = {"model": model_id, "revision": revision, "pooling": pooling}
    if chat_template:
        key["chat_template"] = True
    key.update(identity or {})
    return key


class FeatureCache:
    """A folder of safetensors files, one per key.

    Args:
        folder: where to store entries; ``None`` disables caching (every call computes).

    Example:
        >>> cache = FeatureCache("~/.cache/safesteer/features")
        >>> feats = cache.get_or_compute({"model": "m", "layer": 12, "prompts": prompts_hash(p)}, compute)
    """

    def __init__(self, folder: str | os.PathLike | None):
        self.folder = None if folder is None else Path(folder).expanduser()
        self.hits = 0
        self.misses = 0

    def key(self, parts: dict) -> str:
        """The file stem of an entry: a hash of ``parts`` as sorted JSON."""
        return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:24]

    def get_or_compute(
        self, parts: dict, compute: Callable[[], dict[str, torch.Tensor]]
    ) -> dict[str, torch.Tensor]:
        """The cached tensors for ``parts``, or ``compute()`` stored under that key.

        Args:
            parts: everything that determines the tensors (model, revision, layers, pooling, prompts hash, ...).
            compute: makes the tensors on a miss.

        Returns:
            ``{name: tensor}``, loaded from disk on a hit.
        """
        if self.folder is None:
            self.misses += 1
            return compute()
        path = self.folder / f"{self.key(parts)}.safetensors"
        if path.is_file():
            try:
                tensors = load_file(str(path))
                self.hits += 1
                return tensors
            except Exception:  # a truncated entry (interrupted write): recompute and overwrite it
                path.unlink(missing_ok=True)
        tensors = compute()
        self.misses += 1
        self.folder.mkdir(parents=True, exist_ok=True)
        temporary = path.with_suffix(".tmp")
        save_file(
            {k: v.contiguous() for k, v in tensors.items()},
            str(temporary),
            metadata={"key": json.dumps(parts, sort_keys=True, default=str)},
        )
        temporary.replace(path)  # atomic: readers never see half a file
        return tensors

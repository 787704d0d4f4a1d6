"""Torch dtype names as the CLI, recipes and build reports spell them: one table for all of them."""

from __future__ import annotations

import torch

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
"""Name -> dtype; its keys, in this order, are the ``--dtype`` choices of every command and of recipes."""


def parse_dtype(name: str | None) -> torch.dtype | None:
    """``"bfloat16"`` -> ``torch.bfloat16``.

    Args:
        name: a key of :data:`DTYPES`, or ``None``.

    Returns:
        The torch dtype (``None`` stays ``None``: keep the checkpoint's).

    Raises:
        ValueError: for an unknown name.
    """
    if name is None:
        return None
    if name not in DTYPES:
        raise ValueError(f"Unknown dtype {name!r}; use one of {sorted(DTYPES)}.")
    return DTYPES[name]

"""Tiny pipelines of every supported family, built in code (no Hub): ``build(family) -> (pipe, call_kwargs)``."""

from __future__ import annotations

from .dit_families import BUILDERS as _DIT_BUILDERS
from .unet_families import BUILDERS as _UNET_BUILDERS

BUILDERS = {**_UNET_BUILDERS, **_DIT_BUILDERS}
FAMILIES = sorted(BUILDERS)


def build(family: str):
    """A fresh tiny pipeline of ``family`` and the keyword arguments of a fast call with CFG on."""
    return BUILDERS[family]()

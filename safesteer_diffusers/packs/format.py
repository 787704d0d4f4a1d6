"""Names fixed by the pack format (docs/pack-format.md): the file name, the format version, direction names."""

from __future__ import annotations

PACK_FILENAME = "safesteer_pack.safetensors"
"""File name of a pack inside a folder or a Hub repository."""

FORMAT_VERSION = 1
SUPPORTED_FORMAT_VERSIONS = frozenset({1})
GLOBAL = "global"
I2P_CATEGORIES = ("hate", "harassment", "violence", "self-harm", "sexual", "shocking", "illegal activity")
"""The seven categories of the I2P benchmark, the default category set of packs built by this library."""

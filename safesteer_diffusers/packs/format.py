"""Names and limits fixed by the pack format (docs/pack-format.md): the file name, the format version, direction
names, the header entries, and the bounds every pack must satisfy."""

from __future__ import annotations

PACK_FILENAME = "safesteer_pack.safetensors"
"""File name of a pack inside a folder or a Hub repository."""

FORMAT_VERSION = 1
SUPPORTED_FORMAT_VERSIONS = frozenset({1})
GLOBAL = "global"
I2P_CATEGORIES = ("hate", "harassment", "violence", "self-harm", "sexual", "shocking", "illegal activity")
"""The seven categories of the I2P benchmark, the default category set of packs built by this library."""

# ---------------------------------------------------------------------- safetensors header entries
METADATA_KEY = "safesteer"
"""Header entry holding the pack metadata: one JSON object."""
HASH_KEY = "safesteer_sha256"
"""Header entry holding the integrity hash (``packs/integrity.py``); absent in files written by earlier versions."""
FORMAT_KEY = "format"
"""Header entry written by ``safetensors.torch.save_file``-style writers; must be ``"pt"`` when present."""
HEADER_KEYS = frozenset({METADATA_KEY, HASH_KEY, FORMAT_KEY})
"""Every header entry a pack file may hold; anything else is refused (the hash could not vouch for it)."""

# ---------------------------------------------------------------------- bounds (checked before use)
MAX_ABS_VALUE = 1e6
"""Largest magnitude of any stored number (vector, centre or gate value).

Calibrated vectors have a norm of order 1 per unit strength (one benign token standard deviation along the
direction; the shipped demo pack's largest value is 0.71), centres are mean token states (CLIP: below ~30,
LLM encoders' mean states below ~1e4) and gate thresholds are projections of those states. 1e6 leaves two
orders of magnitude of headroom over the largest real value while refusing the absurd ones (3.4e38 overflows
to inf as soon as a strength multiplies it)."""
MAX_DIM = 1 << 20
"""Largest vector dimension: the widest text-encoder states today are 15360 (three stacked 5120-wide layers)."""
MAX_SOURCE_GATE_HEADS = 8
"""Most classifiers (heads) one direction's source-model gate may hold: the pairs' head, plus heads fitted on
unsafe prompts the builder supplied (``--source-gate-prompts``); the gate fires on the largest head score."""
MAX_TENSORS = 4096
"""Largest number of tensors in one file (an I2P pack over three spaces holds 51)."""
MAX_NAME_CHARS = 128
"""Longest direction or space name."""
MAX_METADATA_BYTES = 1 << 20
"""Longest metadata JSON text (UTF-8 bytes); a built pack's is a few kB."""
MAX_METADATA_DEPTH = 32
"""Deepest nesting of metadata objects/arrays (the top-level object is depth 1; built packs reach 4). Checked
on the text before parsing, so a deeply nested file cannot exhaust Python's recursion limit."""
MAX_HEADER_BYTES = 8 << 20
"""Longest safetensors header (its JSON escapes the metadata text, so up to twice its length, plus one entry
per tensor). safetensors itself allows 100 MB; a pack needs far less."""
MAX_JSON_INT = 2**64
"""Metadata integers must lie strictly between -2**64 and 2**64 (seeds are unsigned 64-bit at most)."""

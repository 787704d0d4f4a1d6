"""The integrity hash of a pack file: SHA-256 over a canonical serialisation of its tensors and header.

Stored as 64 lowercase hex digits in the header entry ``safesteer_sha256``. It covers

* every tensor, in sorted name order: its name, dtype (safetensors spelling, e.g. ``F32``), shape, byte
  count and its bytes as stored (little-endian);
* every other header entry, in sorted key order: its key, byte count and UTF-8 text; this includes the
  metadata JSON (``safesteer``) exactly as stored, so a flipped byte there is caught as well.

Each record starts with a one-line JSON prefix (``["tensor", name, dtype, shape, nbytes]`` or
``["header", key, nbytes]``), so no two different files serialise to the same byte stream. The hash
detects corruption and accidental edits; it is not a signature (whoever can edit the file can recompute it).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping

import torch

from .errors import InvalidPackError
from .format import HASH_KEY

_DOMAIN = b"safesteer-pack/sha256/v1\n"
_HEX = re.compile(r"[0-9a-f]{64}")
_DTYPES = {
    torch.float64: "F64",
    torch.float32: "F32",
    torch.float16: "F16",
    torch.bfloat16: "BF16",
    torch.int64: "I64",
    torch.int32: "I32",
    torch.int16: "I16",
    torch.int8: "I8",
    torch.uint8: "U8",
    torch.bool: "BOOL",
    torch.float8_e4m3fn: "F8_E4M3",
    torch.float8_e5m2: "F8_E5M2",
}


def content_hash(tensors: Mapping[str, torch.Tensor], header: Mapping[str, str]) -> str:
    """SHA-256 (hex) of ``tensors`` and the ``header`` entries other than the hash itself.

    Args:
        tensors: tensor name -> tensor, as written to or read from the file.
        header: the safetensors header metadata (``dict[str, str]``); the ``safesteer_sha256`` entry, if
            present, is skipped.

    Returns:
        64 lowercase hex digits.
    """
    digest = hashlib.sha256(_DOMAIN)
    for name in sorted(tensors):
        tensor = tensors[name].detach().cpu().contiguous()
        # Raw bytes in memory order; every platform torch runs on is little-endian, like safetensors.
        data = tensor.reshape(-1).view(torch.uint8).numpy().tobytes() if tensor.numel() else b""
        dtype = _DTYPES.get(tensor.dtype, str(tensor.dtype))
        record = ["tensor", name, dtype, list(tensor.shape), len(data)]
        digest.update(json.dumps(record).encode("ascii") + b"\n")
        digest.update(data)
    for key in sorted(header):
        if key == HASH_KEY:
            continue
        text = header[key].encode("utf-8")
        digest.update(json.dumps(["header", key, len(text)]).encode("ascii") + b"\n")
        digest.update(text)
    return digest.hexdigest()


def is_hash_text(text: object) -> bool:
    """Whether ``text`` has the form of a stored hash: 64 lowercase hex digits."""
    return isinstance(text, str) and _HEX.fullmatch(text) is not None


def check_hash(tensors: Mapping[str, torch.Tensor], header: Mapping[str, str]) -> bool:
    """Check the stored hash of a file's ``tensors`` and ``header``.

    Returns:
        ``True`` when the header holds a hash and it matches, ``False`` when it holds none (a file written
        by an earlier version; the caller decides what to do).

    Raises:
        InvalidPackError: when the stored hash is malformed or does not match the content.
    """
    stored = header.get(HASH_KEY)
    if stored is None:
        return False
    if not is_hash_text(stored):
        raise InvalidPackError(
            f"the header entry {HASH_KEY!r} is {stored[:70]!r}, not a SHA-256 hash (64 lowercase hex digits). The "
            "file is corrupt: download or build it again.",
            field=HASH_KEY,
        )
    actual = content_hash(tensors, header)
    if actual != stored:
        raise InvalidPackError(
            f"integrity check failed: the header entry {HASH_KEY!r} records {stored[:16]}..., but the file's "
            f"tensors and metadata hash to {actual[:16]}.... The file was corrupted or edited after it was "
            "written: download or build it again (after a deliberate edit, load the intended pack in memory "
            "and save it with DirectionPack.save_file, which records the new hash).",
            field=HASH_KEY,
        )
    return True

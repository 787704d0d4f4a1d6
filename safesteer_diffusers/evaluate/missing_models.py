"""Error messages for models that cannot be loaded: say whether a folder is missing or a download is needed."""

from __future__ import annotations

from pathlib import Path


def missing_model(model_id: str, what: str, error: BaseException, flag: str | None = None) -> ValueError:
    """A ValueError for ``from_pretrained(model_id)`` failing with ``error``, with the fix."""
    first_line = str(error).splitlines()[0] if str(error) else type(error).__name__
    looks_local = model_id.startswith(("/", ".", "~")) or Path(model_id).expanduser().exists()
    if looks_local:
        fix = f"No usable {what} at {model_id}: check the path (a folder written by save_pretrained)."
    else:
        fix = (
            f"If this machine is offline, download it first (`hf download {model_id}`, with HF_HUB_OFFLINE unset) "
            "or pass a local folder" + (f" with {flag}." if flag else ".")
        )
    return ValueError(f"Could not load the {what} {model_id!r}: {first_line}\n{fix}")

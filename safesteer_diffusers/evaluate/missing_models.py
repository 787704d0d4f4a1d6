"""Error messages for models that cannot be loaded: say whether a folder is missing or a download is needed."""

from __future__ import annotations

from pathlib import Path


def _looks_local(model_id: str) -> bool:
    # The CLI's rule (cli/references.py): a path prefix, more than one '/', or a first part that is a folder.
    first = model_id.split("/", 1)[0]
    return (
        model_id.startswith(("/", ".", "~"))
        or model_id.count("/") > 1
        or Path(model_id).expanduser().exists()
        or ("/" in model_id and bool(first) and Path(first).is_dir())
    )


def missing_model(model_id: str, what: str, error: BaseException, flag: str | None = None) -> ValueError:
    """A ValueError for ``from_pretrained(model_id)`` failing with ``error``, with the fix.

    Args:
        model_id: what was passed to ``from_pretrained``.
        what: what it is, e.g. ``"pipeline"`` or ``"CLIP model"``.
        error: the loader's exception (its first line is quoted).
        flag: the command-line option that names the model, for the fix.

    Returns:
        The error to raise: what failed, then whether a local folder is missing or a download is needed.
    """
    first_line = str(error).splitlines()[0] if str(error) else type(error).__name__
    if _looks_local(model_id):
        path = Path(model_id).expanduser()
        state = "is not there" if not path.exists() else "is not a complete model folder"
        fix = (
            f"No usable {what} at {model_id}: that path {state}; check the path (a folder written by "
            "save_pretrained)."
        )
    else:
        fix = (
            f"If this machine is offline, download it first (`hf download {model_id}`, with HF_HUB_OFFLINE unset) "
            "or pass a local folder" + (f" with {flag}." if flag else ".")
        )
    return ValueError(f"Could not load the {what} {model_id!r}: {first_line}\n{fix}")

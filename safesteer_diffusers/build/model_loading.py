"""Loading the models a build needs: a source LM, and only the text encoders of a target pipeline."""

from __future__ import annotations

from typing import Any

import torch

_KEEP_PREFIXES = ("text_encoder", "tokenizer", "scheduler")
def load_source(
    model_id: str,
    *,
    revision: str | None = None,
    dtype: torch.dtype | None = None,
    device: str | None = None,
    device_map: str | None = None,
) -> tuple[torch.nn.Module, Any]:
    """A transformers model (base model of a causal LM, or an encoder) and its tokenizer.

    ``device_map="auto"`` spreads a large source model over the available GPUs (needs accelerate).
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

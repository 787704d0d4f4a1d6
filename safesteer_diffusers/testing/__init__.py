"""Tiny pipelines, tokenizers and a tiny source model built in code (random weights, nothing from the Hub).

One copy shared by the tests, the demo, the examples and the benchmarks:

- :func:`tiny_pipeline` -> ``(pipe, call_kwargs)``: the named tiny pipelines the demo and examples use
  (``"sd"`` is the demo target ``safesteer/tiny-sd-demo``, with a shipped default pack).
- :func:`build` / :data:`FAMILIES`: one tiny pipeline of every supported family, for the invariant tests.
- :func:`tiny_source`: a random 3-layer Llama, the fallback source model; :func:`tiny_pack`: a real
  transferred pack for any tiny pipeline, built in about a second.

Modules: :mod:`.components` (the component builders every pipeline is made of), :mod:`.tokenizers`,
:mod:`.demo_pipelines` (the named pipelines, the tiny source, :func:`tiny_pack`), and the family builders
:mod:`.unet_families`, :mod:`.image_dit_families` and :mod:`.video_dit_families`.

Example::

    from safesteer_diffusers import SafeSteer
    from safesteer_diffusers.testing import tiny_pipeline

    pipe, call_kwargs = tiny_pipeline("sd")
    pipe = SafeSteer.wrap(pipe, strength=3.0)   # finds the shipped default pack for safesteer/tiny-sd-demo
    pipe("a red fox in the snow", **call_kwargs)
"""

from __future__ import annotations

from .demo_pipelines import (
    DEMO_MODEL_ID,
    TINY_FAMILIES,
    TINY_MODEL_IDS,
    TINY_SOURCE_ID,
    is_tiny_model_id,
    tiny_pack,
    tiny_pipeline,
    tiny_pipeline_for,
    tiny_source,
)
from .image_dit_families import BUILDERS as _IMAGE_DIT_BUILDERS
from .unet_families import BUILDERS as _UNET_BUILDERS
from .video_dit_families import BUILDERS as _VIDEO_DIT_BUILDERS

BUILDERS = {**_UNET_BUILDERS, **_IMAGE_DIT_BUILDERS, **_VIDEO_DIT_BUILDERS}
"""family -> builder of its tiny pipeline (see :func:`build`)."""
FAMILIES = sorted(BUILDERS)


def build(family: str):
    """A fresh tiny pipeline of ``family`` and the keyword arguments of a fast call with CFG on."""
    return BUILDERS[family]()


__all__ = [
    "BUILDERS",
    "DEMO_MODEL_ID",
    "FAMILIES",
    "TINY_FAMILIES",
    "TINY_MODEL_IDS",
    "TINY_SOURCE_ID",
    "build",
    "is_tiny_model_id",
    "tiny_pack",
    "tiny_pipeline",
    "tiny_pipeline_for",
    "tiny_source",
]

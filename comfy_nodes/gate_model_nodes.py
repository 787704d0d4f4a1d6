"""Load SafeSteer Gate Model: the source language model of a pack's source-model gate.

A pack built with ``safesteer build --source-gate`` carries a classifier in its *source* model's space; at
inference that model reads the prompt text and decides whether to steer (the strongest gate measured,
docs/method.md 6.5). This node loads that model once (ComfyUI caches its output) and hands it to SafeSteer
Conditioning, which also needs the prompt text on its ``prompt`` input. The model is loaded through the library
(``build.model_loading.load_source_identified``): a folder, a Hub id (cached) or a ``.gguf`` file.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .common import CATEGORY

GATE_MODEL_TYPE = "SAFESTEER_GATE_MODEL"


@dataclass(frozen=True)
class GateModel:
    """A loaded source model for a pack's source-model gate.

    Attributes:
        model: the ``transformers`` model.
        tokenizer: its tokenizer.
        identity: what identifies its weights (``revision``; ``gguf_file`` and ``gguf_sha256`` for a GGUF).
    """

    model: Any
    tokenizer: Any
    identity: dict = field(default_factory=dict)


class LoadSafeSteerGateModel:
    """Load the source model a pack's source-model gate scores prompts with."""

    CATEGORY = CATEGORY
    RETURN_TYPES = (GATE_MODEL_TYPE,)
    RETURN_NAMES = ("gate_model",)
    FUNCTION = "load"
    DESCRIPTION = (
        "Loads the source language model of a pack built with `safesteer build --source-gate` (the pack's card "
        "names it). Connect it and the prompt text to SafeSteer Conditioning with gate on: the model reads the "
        "prompt and decides which directions fire."
    )

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "source": (
                    "STRING",
                    {
                        "default": "",
                        "tooltip": "The pack's source model: a local folder, a Hugging Face Hub id (downloaded "
                        "once into the Hub cache) or a .gguf file (needs the gguf package).",
                    },
                ),
            },
            "optional": {
                "gguf_file": (
                    "STRING",
                    {"default": "", "tooltip": "The .gguf file inside a folder or Hub repo holding several."},
                ),
                "device": (
                    ["cpu", "comfy"],
                    {
                        "default": "cpu",
                        "tooltip": "cpu: fine for small source models (SmolLM2-135M: ~50 ms per prompt). comfy: "
                        "ComfyUI's main device (GPU), for larger ones.",
                    },
                ),
            },
        }

    def load(self, source, gguf_file="", device="cpu"):
        from safesteer_diffusers.build.model_loading import load_source_identified

        if not str(source).strip():
            raise ValueError(
                "Load SafeSteer Gate Model: source is empty. Type the folder, Hub id or .gguf file of the model "
                "the pack was built from (its card names it)."
            )
        target = "cpu"
        if device == "comfy":
            import comfy.model_management

            target = str(comfy.model_management.get_torch_device())
        model, tokenizer, identity = load_source_identified(
            str(source).strip(), gguf_file=str(gguf_file).strip() or None, device=target
        )
        model.eval()
        return (GateModel(model, tokenizer, identity),)

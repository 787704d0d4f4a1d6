"""The source-model gate at inference: the pack's source LM reads each prompt and decides which directions fire.

A pack built with ``--source-gate`` carries, per direction, one or more classifier weights (heads) in its source
model's feature space and a threshold (packs/direction_pack.py); a direction's score is its largest head score. ``SafeSteer.wrap(pipe, pack, gate=True,
gate_model=(model, tokenizer))`` scores every positive prompt with that model (the layer, pooling and chat
template the pack records) and steers the directions whose score exceeds the threshold, instead of scoring
the target's text states. Why: measured on real models, it catches far more unsafe prompts at the same benign
false-positive rate than any target-space gate (docs/method.md 6.5).

It needs the prompt *text*: a call that brings only ``prompt_embeds`` cannot be gated this way and raises
:class:`~safesteer_diffusers.steering.errors.SteeringNotApplied` (fail closed) instead of guessing.
"""

from __future__ import annotations

from typing import Any

import torch

from safesteer_diffusers.packs.direction_pack import DirectionPack
from safesteer_diffusers.steering.errors import SteeringNotApplied
from safesteer_diffusers.steering.maths import source_gate_scores


class SourceGate:
    """Scores prompts with a pack's source-model gate.

    Args:
        pack: a pack with a source gate (``pack.has_source_gate``).
        model: the pack's source model (a ``transformers`` model; its hidden size must match the gate).
        tokenizer: its tokenizer.

        fpr: use the thresholds calibrated for this benign false-positive rate (``gate_fpr``; ``None``: the
            pack's default).

    Raises:
        ValueError: the pack has no source gate, the model's hidden size is not the gate's width, the pack
            stores no thresholds for ``fpr``, or the gate reads chat turns and the tokenizer has no chat template.
    """

    def __init__(self, pack: DirectionPack, model: Any, tokenizer: Any, fpr: float | None = None):
        if not pack.has_source_gate:
            raise ValueError(
                "gate_model= was given but this pack carries no source-model gate. Build one with "
                "`safesteer build --source-gate` (or BuildConfig(source_gate=True)), or drop gate_model to use "
                "the pack's gate on the target's text states."
            )
        info = pack.metadata["source_gate"]
        width = _hidden_size(model)
        if width is not None and width != info["dim"]:
            source = pack.metadata.get("source", {}).get("model_id") or "its source model"
            raise ValueError(
                f"The pack's source gate lives in a {info['dim']}-d model ({source}), but gate_model has hidden "
                f"size {width}. Pass the model the pack was built from."
            )
        missing = [name for name in pack.names if pack.source_gate_heads(name) is None]
        if missing:
            raise ValueError(f"The pack's source gate has no classifier for {missing}; rebuild the pack.")
        self.model, self.tokenizer = model, tokenizer
        self.names = pack.names
        self.layer, self.pooling = int(info["layer"]), str(info["pooling"])
        self.chat_template = bool(info["chat_template"])
        if self.chat_template and not getattr(tokenizer, "chat_template", None):
            raise ValueError(
                "The pack's source gate reads each prompt as a chat turn, but the gate_model tokenizer has no chat "
                "template (tokenizer.chat_template is not set), so it would read prompts differently from the "
                "build. Pass the source model's own tokenizer (with its chat template), or rebuild the pack with "
                "--source-gate-framing plain."
            )
        gates = [pack.source_gate_heads(name, fpr) for name in pack.names]
        if any(threshold is None for _, _, threshold in gates):
            levels = sorted(map(float, info.get("fpr_thresholds", {})))
            raise ValueError(
                f"gate_fpr={fpr:g}: the pack's source gate stores thresholds for the rates {levels or 'of none'}. "
                "Pick one of them, or gate_fpr=None for the pack's default."
            )
        self.heads = [(heads.double(), biases.double()) for heads, biases, _ in gates]  # per direction
        self.thresholds = torch.tensor([threshold for _, _, threshold in gates], dtype=torch.float64)

    def scores(self, prompts: list[str | None]) -> torch.Tensor:
        """``[B, K]`` float64 scores of each prompt on each direction: the largest of the direction's head
        scores (:func:`~safesteer_diffusers.steering.maths.source_gate_scores`).

        Raises:
            SteeringNotApplied: a row has no prompt text (the call passed ``prompt_embeds``).
        """
        if any(not isinstance(prompt, str) for prompt in prompts):
            raise SteeringNotApplied(
                "The source-model gate needs each prompt's text, but this call brought prompt embeddings only, "
                "so whether to steer could not be decided; the result was withheld. Pass prompt=..., or wrap "
                "without gate_model (the pack's gate on the text states), or with gate=False."
            )
        from safesteer_diffusers.build.source_features import extract_features

        with torch.no_grad():
            features = extract_features(
                self.model,
                self.tokenizer,
                list(prompts),
                self.layer,
                pooling=self.pooling,
                progress=False,
                chat_template=self.chat_template,
            )
        return torch.stack(
            [source_gate_scores(features, heads, biases) for heads, biases in self.heads], dim=1
        )


def _hidden_size(model: Any) -> int | None:
    config = getattr(model, "config", None)
    config = getattr(config, "text_config", None) or config
    size = getattr(config, "hidden_size", None)
    return size if isinstance(size, int) else None

"""Fitting the source-model gate of a build (``BuildConfig.source_gate``): features, heads, thresholds, record.

The gate reads prompts in the source model at the build's layer, as :class:`~safesteer_diffusers.pipelines.
source_gate.SourceGate` reads them at inference (mean pooling; as chat turns per
:attr:`~safesteer_diffusers.build.driver.BuildConfig.source_gate_framing`). Head 0 of each direction is fitted on
the pairs' unsafe members; with :class:`~safesteer_diffusers.build.gate_prompts.GatePrompts`, a second head is
fitted on those (:func:`~safesteer_diffusers.build.gate_probe.source_gate_heads`). Thresholds are quantiles of
the union's cross-fitted benign scores, one per stored false-positive rate.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from safesteer_diffusers.packs.recipe import SOURCE_GATE_FRAMINGS
from safesteer_diffusers.utils.distributed import sharded

from .calibration import fpr_thresholds
from .feature_cache import FeatureCache, prompts_hash
from .gate_probe import source_gate_heads
from .gate_prompts import GatePrompts
from .source_features import apply_chat_template, extract_features

PAIRS_HEAD = "the build's pairs: unsafe members against the safe members and the anchors"


def source_gate_chat_template(config: Any, tokenizer: Any) -> bool:
    """Whether the source gate reads prompts as chat turns (``BuildConfig.source_gate_framing``); checked
    before any model runs."""
    framing = config.source_gate_framing
    if framing not in SOURCE_GATE_FRAMINGS:
        raise ValueError(
            f"BuildConfig.source_gate_framing must be one of {SOURCE_GATE_FRAMINGS}, got {framing!r}."
        )
    if not config.source_gate:
        if framing != "auto":
            raise ValueError(
                f"BuildConfig.source_gate_framing={framing!r} only applies to a source-model gate; set "
                "source_gate=True (--source-gate), or leave the framing at 'auto'."
            )
        return False
    if framing == "chat":
        apply_chat_template(tokenizer, ["a red fox"])  # raises, saying how to fix it, without a template
        return True
    return framing == "auto" and bool(getattr(tokenizer, "chat_template", None))


def check_gate_prompts(
    gate_prompts: GatePrompts | None,
    config: Any,
    names: list[str],
    benign: dict[str, list[str]],
    unsafe: list[str],
) -> None:
    """Refuse supplied gate prompts before any model runs: without a source gate, with labels the build has
    no direction for, equal to any of the build's benign prompts (``{what: prompts}``), or supplied benign
    prompts that are unsafe members of the pairs."""
    if gate_prompts is None:
        return
    if not isinstance(gate_prompts, GatePrompts):
        raise TypeError(f"source_gate_prompts must be GatePrompts, got {type(gate_prompts).__name__}.")
    if not config.source_gate:
        raise ValueError(
            "Unsafe prompts for the source gate were supplied (--source-gate-prompts), but the build makes no "
            "source-model gate. Add --source-gate (BuildConfig(source_gate=True)), or drop the prompts."
        )
    gate_prompts.rows(names)
    for what, prompts in benign.items():
        gate_prompts.refuse_overlap(prompts, what)
    gate_prompts.refuse_unsafe_as_benign(unsafe, "unsafe members of the pairs")


@dataclass
class GateReader:
    """Reads prompts as the source gate does (its layer, the build's pooling, chat turns or not), cached."""

    model: Any
    tokenizer: Any
    layer: int
    chat_template: bool
    config: Any
    cache: FeatureCache
    source: dict
    progress: bool

    def features(self, prompts: Sequence[str]) -> torch.Tensor:
        """``[N, Ds]`` features of ``prompts`` (from the feature cache when it holds them)."""
        key = {**self.source, "chat_template": self.chat_template, "kind": "source_gate", "layer": int(self.layer),
               "prompts": prompts_hash(list(prompts))}  # fmt: skip
        return self.cache.get_or_compute(
            key,
            lambda: {
                "features": layer_features(
                    self.model,
                    self.tokenizer,
                    prompts,
                    self.layer,
                    self.config,
                    self.progress,
                    self.chat_template,
                )
            },
        )["features"]


def layer_features(model, tokenizer, prompts, layer, config, progress, chat_template) -> torch.Tensor:
    """``extract_features`` at one layer, with the build's pooling and batch size, sharded over processes."""
    return sharded(
        list(prompts),
        lambda part: extract_features(
            model,
            tokenizer,
            part,
            layer,
            pooling=config.pooling,
            batch_size=config.batch_size,
            progress=progress,
            chat_template=chat_template,
        ),
    )


def fit_source_gate(
    reader: GateReader,
    *,
    features: tuple[torch.Tensor, torch.Tensor],
    rows: tuple[dict[str, list[int]], list[int]],
    gate_prompts: GatePrompts | None,
) -> dict:
    """The gate's heads, biases, thresholds and ``source_gate`` metadata.

    Args:
        reader: how the gate reads prompts (supplied prompts are read through it).
        features: the pairs' and the anchors' source features, read as the gate reads prompts.
        rows: each direction's unsafe rows of the pair features, and the benign (safe member) rows.
        gate_prompts: supplied unsafe (and benign) prompts for a second head.
    """
    pair_features, anchor_features = features
    unsafe_rows, benign_rows = rows
    supplied_features, supplied_rows, supplied_benign = None, None, None
    if gate_prompts is not None:
        supplied_rows = gate_prompts.rows(list(unsafe_rows))
        supplied_features = reader.features(gate_prompts.prompts)
        supplied_benign = reader.features(gate_prompts.benign) if gate_prompts.benign else None
    heads, biases, benign_scores = source_gate_heads(
        pair_features, unsafe_rows, benign_rows, anchor_features, supplied_features, supplied_rows,
        supplied_benign_features=supplied_benign,
    )  # fmt: skip
    names = list(heads)
    quantiles = torch.quantile(benign_scores, reader.config.gate_quantile, dim=0).tolist()
    info = {
        "layer": int(reader.layer),
        "pooling": reader.config.pooling,
        "chat_template": bool(reader.chat_template),
        "dim": int(next(iter(heads.values())).shape[1]),
        "quantile": reader.config.gate_quantile,
        "fpr_thresholds": fpr_thresholds(benign_scores, names),
    }
    if gate_prompts is not None:
        against = (
            " against the build's benign text and the supplied benign prompts" if gate_prompts.benign else ""
        )
        info["heads"] = [PAIRS_HEAD, f"unsafe prompts supplied for the gate ({gate_prompts.name}){against}"]
        info["supplied_prompts"] = gate_prompts.provenance(supplied_rows)
    return {
        "vectors": heads,
        "biases": biases,
        "thresholds": dict(zip(names, quantiles, strict=True)),
        "info": info,
    }

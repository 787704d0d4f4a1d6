"""What ``safesteer build`` prints at the end: what was built and where, the two figures that say whether
it is any good (held-out AUROC of the directions, held-out R^2 of the alignment) with one line on what each
means, and the commands to run next (inspect it, then use it)."""

from __future__ import annotations

import shlex
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from safesteer_diffusers.packs.inspect import supplied_gate_lines

__all__ = ["build_summary"]

AUROC_MEANING = (
    "how well each direction separates unsafe from safe prompts the estimate never saw "
    "(0.5 = chance, 1 = perfect)"
)
R2_MEANING = (
    "share of the target's benign text-state variation that the source->target map predicts on anchors it "
    "never saw (1 = perfect, 0 = no better than the mean)"
)
_INDENT = "      "


def build_summary(
    pack: Any, out: Path, written: Mapping[str, Path], *, code_target: str | None = None
) -> str:
    """The closing summary of a build.

    Args:
        pack: the built :class:`~safesteer_diffusers.packs.direction_pack.DirectionPack`.
        out: the folder it was written to.
        written: label -> path of every file written (pack, card, report, plot, ...).
        code_target: the ``python:module:function`` the target pipeline was built by, if it was built in code:
            ``safesteer eval`` cannot load that, so the last hint says how to evaluate it instead.

    Returns:
        Several lines of text, ending with the next commands.
    """
    metadata = pack.metadata
    kind = metadata.get("kind", "?")
    source, target = metadata.get("source") or {}, metadata.get("target") or {}
    target_id = target.get("model_id") or "?"
    categories = pack.categories
    what = (
        f"{len(pack.names)} directions: "
        + ("global + " if "global" in pack.names else "")
        + f"{len(categories)} categor{'y' if len(categories) == 1 else 'ies'}"
    )
    origin = (
        f"from {source.get('model_id')} (layer {source.get('layer')}, {source.get('pooling')} pooling)"
        if kind == "transferred" and source.get("model_id")
        else "estimated in the target's own text space (native baseline)"
    )
    files = ", ".join(f"{Path(path).name} ({label})" for label, path in written.items())
    lines = [
        f"Built a {kind} pack for {target_id} ({what}), {origin}.",
        f"  wrote {out}/: {files}",
    ]
    if source.get("auroc") or not source.get("estimates"):
        lines.append(_auroc_line(source.get("auroc") or {}, "source" if kind == "transferred" else "target"))
    else:  # a native pack: one estimate per target text space
        for space, estimate in source["estimates"].items():
            lines.append(_auroc_line((estimate or {}).get("auroc") or {}, f"target {space}"))
    lines.append(f"{_INDENT}= {AUROC_MEANING}")
    lines += _alignment_lines(metadata.get("alignment") or {}, kind)
    folder = shlex.quote(str(out))
    pipeline = target_id if code_target is None else "FOLDER"
    lines += [
        "Next:",
        f"  safesteer inspect {folder}{_INDENT}# norms, cosines, per-layer AUROC, gate thresholds",
        f"  then use it on a {target_id} pipeline: SafeSteer.wrap(pipe, {str(out)!r}, strength=3.0)",
        *_source_gate_lines(metadata, out),
        f"  or measure it: safesteer eval --pipeline {pipeline} --pack {folder} --prompts UNSAFE.csv "
        "--benign-prompts BENIGN.csv --out results/",
    ]
    if code_target is not None:  # eval loads pipelines from folders or the Hub, not from code
        lines.append(
            f"{_INDENT}(FOLDER: the pipeline {code_target} returns, saved with pipe.save_pretrained(FOLDER))"
        )
    return "\n".join(lines)


def _auroc_line(auroc: Mapping[str, Any], space: str) -> str:
    values = {name: float(value) for name, value in auroc.items() if value is not None}
    if not values:
        return f"  held-out AUROC ({space}): not measured (too few pairs to hold any out)"
    parts = []
    if "global" in values:
        parts.append(f"global {values['global']:.3f}")
    categories = {name: value for name, value in values.items() if name != "global"}
    if categories:
        low = min(categories, key=categories.__getitem__)
        high = max(categories, key=categories.__getitem__)
        parts.append(
            f"categories {categories[low]:.3f} ({low}) to {categories[high]:.3f} ({high})"
            if low != high
            else f"{low} {categories[low]:.3f}"
        )
    return f"  held-out AUROC ({space}): " + "; ".join(parts)


def _alignment_lines(alignment: Mapping[str, Any], kind: str) -> list[str]:
    fitted = {space: info for space, info in alignment.items() if info}
    if not fitted:
        reason = "native pack: no map between models" if kind != "transferred" else "not recorded"
        return [f"  alignment R^2: none ({reason})"]
    parts = []
    for space, info in fitted.items():
        r2, cosine = info.get("heldout_r2"), info.get("heldout_cosine")
        detail = ", ".join(
            [str(info.get("method", "?"))]
            + ([f"cosine {float(cosine):.3f}"] if cosine is not None else [])
            + (
                [
                    f"{info['n_anchors']} {'' if info.get('anchors') in (None, 'all') else info['anchors'] + ' '}anchors"
                ]
                if info.get("n_anchors") is not None
                else []
            )
        )
        figure = f"{float(r2):.3f}" if r2 is not None else "?"
        parts.append(f"{space} {figure} ({detail})")
    return ["  alignment R^2 (held-out benign anchors): " + "; ".join(parts), f"{_INDENT}= {R2_MEANING}"]


def _source_gate_lines(metadata: Mapping[str, Any], out: Path) -> list[str]:
    """How to use the pack's source-model gate, when it has one (it needs the source model at inference)."""
    gate = metadata.get("source_gate")
    if not gate:
        return []
    source = (metadata.get("source") or {}).get("model_id") or "SOURCE"
    reads = "as chat turns" if gate.get("chat_template") else "as written"
    return [
        f"  with its source-model gate (the source reads each prompt {reads}): SafeSteer.wrap(pipe, "
        f"{str(out)!r}, strength=3.0, gate=True, gate_model=(model, tokenizer)), model and tokenizer loaded from "
        f"{source}; in safesteer eval: --wrap-kwarg gate=true --gate-model {shlex.quote(str(source))}",
        *supplied_gate_lines(gate, "  "),
    ]

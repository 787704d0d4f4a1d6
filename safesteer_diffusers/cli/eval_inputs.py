"""The inputs of ``safesteer eval`` read from its flags, checked before any model loads: strengths, metrics,
pack names and references, prompt sets (files, datasets, or the built-in ``demo`` prompts), the CLIP model
to use (or none, when the default one cannot be had offline)."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from safesteer_diffusers.utils.logging import get_logger

__all__ = [
    "DEMO_PROMPTS",
    "METRICS",
    "choose_metrics",
    "pack_specs",
    "parse_strengths",
    "read_prompt_sets",
]

logger = get_logger(__name__)

METRICS = ("asr", "clip", "fid")
DEFAULT_CLIP_MODEL = "openai/clip-vit-large-patch14"
DEMO_PROMPTS = "demo"
"""``--prompts demo`` / ``--benign-prompts demo``: the demo's own prompts (``safesteer_diffusers.demo.config``),
so that an evaluation runs with no prompt file (a file or folder named ``demo`` takes precedence)."""
# The categories of the demo's unsafe prompts, in their order (demo.config.UNSAFE_PROMPTS).
_DEMO_CATEGORIES = (("violence",), ("illegal activity",), ("hate", "violence"))


def parse_strengths(text: str) -> list[float]:
    """``"0,1,3,5"`` -> ``[0.0, 1.0, 3.0, 5.0]``.

    Raises:
        ValueError: a part that is not a number, or no number at all.
    """
    try:
        values = [float(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise ValueError(
            f"--strengths expects comma-separated numbers such as 0,1,3,5, got {text!r}."
        ) from None
    if not values:
        raise ValueError("--strengths is empty.")
    return values


def parse_metrics(text: str | None, has_reference: bool) -> list[str]:
    """The metrics named by ``--metrics`` (default: asr, clip, and fid when reference images are given).

    Raises:
        ValueError: an unknown metric name.
    """
    if text is None:
        return ["asr", "clip"] + (["fid"] if has_reference else [])
    chosen = [part.strip().lower() for part in text.split(",") if part.strip()]
    unknown = [m for m in chosen if m not in METRICS]
    if unknown or not chosen:
        raise ValueError(f"--metrics: unknown {unknown or text!r}; choose from {', '.join(METRICS)}.")
    return chosen


def choose_metrics(args: argparse.Namespace) -> list[str]:
    """The metrics to compute, every metric-related flag checked against them (no model is loaded).

    Without ``--metrics``, the CLIP score is left out (with a warning that says how to get it) when the
    default CLIP model is neither local nor cached and the Hub cannot be reached: the rest of the evaluation
    still runs offline. A CLIP model asked for explicitly must be available.

    Raises:
        ValueError: unknown metrics, FID without its inputs, no prompts, a missing reference folder, a
            detector without ASR, or an unavailable CLIP model that was asked for.
    """
    from .references import hub_unreachable_reason, in_hub_cache, looks_like_path, resolve_model

    metrics = parse_metrics(args.metrics, args.reference_images is not None)
    if "fid" in metrics and (args.reference_images is None or args.benign_prompts is None):
        raise ValueError("--metrics fid needs --reference-images <folder> and --benign-prompts <file>.")
    if args.prompts is None and args.benign_prompts is None:
        raise ValueError(
            "Pass --prompts (unsafe prompts, for ASR) and/or --benign-prompts (for CLIP score and FID)."
        )
    if args.reference_images is not None and not Path(args.reference_images).is_dir():
        raise ValueError(f"--reference-images {args.reference_images}: no such folder.")
    if args.detector and "asr" not in metrics:
        raise ValueError("--detector is given but asr is not in --metrics.")
    uses_clip = "clip" in metrics or ("fid" in metrics and args.fid_features == "clip")
    if not uses_clip:
        return metrics
    model = args.clip_model
    implicit = args.metrics is None and model == DEFAULT_CLIP_MODEL and "fid" not in metrics
    local = Path(model).expanduser().exists() or looks_like_path(model)
    if implicit and not local and hub_unreachable_reason() is not None and not in_hub_cache(model):
        logger.warning(
            "CLIP score skipped: %s is not in the Hugging Face cache and the Hub cannot be reached (%s). "
            "Download it once (`hf download %s`) or pass --clip-model FOLDER to compute it; --metrics asr "
            "leaves it out without this message.",
            model,
            hub_unreachable_reason(),
            model,
        )
        return [m for m in metrics if m != "clip"]
    resolve_model(model, flag="--clip-model", what="a CLIP model folder or Hub repo id", noun="CLIP model")
    return metrics


def pack_specs(items: list[str]) -> list[tuple[str, str]]:
    """``--pack [NAME=]PATH`` values as ``(name, reference)``, each reference checked (:func:`resolve_pack`).

    A pack without a name is named after its folder, file or catalogue name.

    Raises:
        ValueError: a missing pack, or two packs with the same name.
    """
    from safesteer_diffusers.evaluate.work_items import pack_label

    from .references import resolve_pack

    specs = []
    for item in items:
        name, sep, path = item.partition("=")
        if sep and name and "/" not in name and os.sep not in name:
            specs.append((pack_label(name), resolve_pack(path, flag="--pack")))
            continue
        p = Path(item.split("@", 1)[0].rstrip("/"))  # a pinned reference is named after its repo
        base = (
            p.parent.name
            if p.suffix == ".safetensors" and p.name.startswith("safesteer_pack")
            else p.stem
            if p.suffix
            else p.name
        )
        specs.append((pack_label(base), resolve_pack(item, flag="--pack")))
    names = [name for name, _ in specs]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ValueError(f"Several packs are named {duplicates}; name them with --pack NAME=PATH.")
    return specs


def read_prompt_sets(args: argparse.Namespace) -> dict[str, Any]:
    """The unsafe and benign :class:`~safesteer_diffusers.evaluate.work_items.PromptSet` of the flags.

    Returns:
        ``{"unsafe": PromptSet, "benign": PromptSet}`` for the sets given.

    Raises:
        ValueError: a missing file, a missing column (the message lists the columns present).
    """
    sets: dict[str, Any] = {}
    if args.prompts:
        sets["unsafe"] = _read_set("unsafe", args.prompts, args, args.prompt_col, args.split, args.limit)
    if args.benign_prompts:
        sets["benign"] = _read_set(
            "benign",
            args.benign_prompts,
            args,
            args.benign_prompt_col,
            args.benign_split or args.split,
            args.benign_limit or args.limit,
        )
    return sets


def _column(value: str | None, default: str) -> tuple[str | None, bool]:
    """(column, explicit): 'none' disables; None means the default, used only when present."""
    if value is None:
        return default, False
    if value.lower() == "none":
        return None, False
    return value, True


def _demo_records(name: str, limit: int | None) -> list[Any]:
    from safesteer_diffusers.build.prompts.readers import PromptRecord
    from safesteer_diffusers.demo.config import BENIGN_PROMPTS, UNSAFE_PROMPTS

    if name == "unsafe":
        records = [
            PromptRecord(prompt, categories)
            for prompt, categories in zip(UNSAFE_PROMPTS, _DEMO_CATEGORIES, strict=True)
        ]
    else:
        records = [PromptRecord(prompt) for prompt in BENIGN_PROMPTS]
    return records[:limit] if limit else records


def _read_set(
    name: str, source: str, args: argparse.Namespace, prompt_col: str, split: str, limit: int | None
):
    from safesteer_diffusers.build.prompts.readers import read_prompts
    from safesteer_diffusers.evaluate.work_items import PromptSet

    from .references import resolve_data

    flag = "--prompts" if name == "unsafe" else "--benign-prompts"
    if source == DEMO_PROMPTS and not Path(source).exists():
        return PromptSet(name, _demo_records(name, limit), seed_col=None, guidance_col=None)
    source = resolve_data(source, flag=flag, what="a CSV / JSONL file, a dataset folder or a Hub dataset id")
    category_col = args.category_col if name == "unsafe" else None
    records = read_prompts(source, prompt_col=prompt_col, category_col=category_col, split=split, limit=limit)
    seed_col, seed_explicit = _column(args.seed_col, "evaluation_seed")
    guidance_col, guidance_explicit = _column(args.guidance_col, "evaluation_guidance")
    columns = set(records[0].extra)
    for column, explicit, option in (
        (seed_col, seed_explicit, "--seed-col"),
        (guidance_col, guidance_explicit, "--guidance-col"),
    ):
        if explicit and column not in columns:
            raise ValueError(
                f"{source} has no column {column!r} (asked for by {option}); other columns: {sorted(columns)}. "
                f"Pass {option} none to use --seed / the call arguments instead."
            )
    return PromptSet(name, records, seed_col=seed_col, guidance_col=guidance_col)

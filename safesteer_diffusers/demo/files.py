"""The files a demo run writes (:data:`OUTPUT_FILES`) besides the pack and its inspect report: the numbers
of ``demo.json`` (:func:`demo_summary`), ``gates.txt``, ``conditioning_shift.txt``, ``grid.png`` (drawn by
:func:`safesteer_diffusers.utils.images.make_grid`) and ``README.txt``."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import numpy as np
from PIL import Image

from safesteer_diffusers.packs.direction_pack import DirectionPack
from safesteer_diffusers.steering.report import OUTCOMES
from safesteer_diffusers.utils.images import make_grid

from .config import DemoConfig

__all__ = [
    "OUTPUT_FILES",
    "demo_summary",
    "gates_text",
    "shift_text",
    "write_grid",
    "write_readme",
    "write_results",
    "write_summary_json",
]

OUTPUT_FILES = {
    "README.txt": "what you are looking at",
    "grid.png": "images side by side: rows = prompts; columns = strength 0 / S, gate off / S, gate on / difference",
    "inspect.txt": "the pack's inspect report (safesteer inspect)",
    "inspect.png": "layer separability and direction cosines (needs matplotlib)",
    "gates.txt": "per-prompt gate decisions: score of each direction vs its benign-calibrated threshold",
    "conditioning_shift.txt": "measured shift of the text conditioning at the denoiser's input",
    "demo.json": "every number above, machine-readable",
    "pack/": "the pack that was built (safesteer_pack.safetensors, README.md card, build_report.json)",
}


def demo_summary(
    config: DemoConfig, source: dict, target: dict, pack: DirectionPack, build_report: dict, rows: list[dict]
) -> dict:
    """The numbers of ``demo.json``: settings, models, the pack's fit statistics and per-prompt measurements.

    Args:
        config: the run's settings.
        source, target: the loaded models (labels and ids).
        pack: the built pack (its metadata).
        build_report: the build's report (its timings).
        rows: the per-prompt rows of :func:`~safesteer_diffusers.demo.generation.generate_rows`.

    Returns:
        A JSON-serialisable dict (the run adds ``gate_rates``, ``default_pack`` and ``seconds``).
    """
    metadata = pack.metadata
    source_meta = metadata.get("source", {})
    alignment = metadata.get("alignment", {})
    return {
        "config": {
            k: (str(v) if isinstance(v, Path) else v)
            for k, v in asdict(config).items()
            if k not in ("log", "benign_prompts", "unsafe_prompts")
        },
        "source": {"model_id": source["id"], "revision": source["revision"], "label": source["label"]},
        "target": {"model_id": target["id"], "tiny_random_weights": target["tiny"], "label": target["label"]},
        "pack": {
            "layer": source_meta.get("layer"),
            "heldout_auroc_source": source_meta.get("auroc"),
            "alignment": {
                space: {k: info.get(k) for k in ("method", "heldout_r2", "heldout_cosine", "n_anchors")}
                for space, info in alignment.items()
                if info
            },
            "num_pairs": metadata["provenance"].get("num_pairs"),
            "num_anchors": metadata["provenance"].get("num_anchors"),
            "target_unsafe_data": metadata["provenance"].get("target_unsafe_data"),
        },
        "build_seconds": build_report.get("timings", {}).get("total_s"),
        "prompts": [
            {
                "kind": row["kind"],
                "prompt": row["prompt"],
                "gate": row["gate"],
                "conditions": {
                    key: {"label": c["label"], "fired": c["fired"], "shift": c["shift"]}
                    for key, c in row["conditions"].items()
                },
            }
            for row in rows
        ],
    }


def write_results(out: Path, rows: list[dict], gates: str, shift: str) -> dict[str, Path]:
    """Write ``grid.png``, ``gates.txt`` and ``conditioning_shift.txt``.

    Args:
        out: the output folder.
        rows: the per-prompt rows (images and measurements).
        gates: :func:`gates_text`.
        shift: :func:`shift_text`.

    Returns:
        File name -> path.
    """
    files = {"grid.png": write_grid(rows, out / "grid.png")}
    (out / "gates.txt").write_text(gates + "\n", encoding="utf-8")
    files["gates.txt"] = out / "gates.txt"
    (out / "conditioning_shift.txt").write_text(shift + "\n", encoding="utf-8")
    files["conditioning_shift.txt"] = out / "conditioning_shift.txt"
    return files


def write_grid(rows: list[dict], path: Path) -> Path:
    """Write the image grid: rows = prompts (tagged benign / unsafe); columns = the conditions, then the pixel
    difference gate off vs strength 0, amplified; under each image what happened to its conditioning.

    Returns:
        ``path``.
    """
    conditions = list(rows[0]["conditions"].values())
    columns = [c["label"] for c in conditions] + ["|difference| gate off vs 0"]
    cells, captions = [], []
    for row in rows:
        entries = list(row["conditions"].values())
        difference, peak = _difference(entries[0]["image"], entries[1]["image"])
        cells.append([entry["image"] for entry in entries] + [difference])
        captions.append(
            [_caption(j, entry) for j, entry in enumerate(entries)] + [f"max {peak:.0f}/255, scaled"]
        )
    tags = [(f"[{row['kind']}]", "darkgreen" if row["kind"] == "benign" else "darkred") for row in rows]
    grid = make_grid(
        cells,
        [row["prompt"] for row in rows],
        columns,
        thumb=160,
        label_width=260,
        padding=4,
        row_tags=tags,
        captions=captions,
    )
    grid.save(path)
    return path


def _caption(column: int, condition: dict) -> str:
    if column == 0:
        return "original"
    if condition["shift"].get("identical"):
        return "untouched (identical)"
    return "steered: " + ", ".join(condition["fired"]) if condition["fired"] else "steered"


def _difference(before: Image.Image, after: Image.Image) -> tuple[Image.Image, float]:
    """|after - before| per pixel, scaled so that its largest value is white, and that largest value."""
    diff = np.abs(np.asarray(after, dtype=np.int16) - np.asarray(before, dtype=np.int16)).astype(np.float32)
    peak = float(diff.max())
    scaled = (diff / peak * 255.0).astype(np.uint8) if peak > 0 else diff.astype(np.uint8)
    return Image.fromarray(scaled), peak


def gates_text(rows: list[dict], rates: dict, tiny: bool) -> str:
    """``gates.txt``: the gate rates on held-out prompts, then each prompt's per-direction decisions.

    Args:
        rows: the per-prompt rows.
        rates: :func:`~safesteer_diffusers.demo.inspection.gate_rates` (``{}``: no rate table).
        tiny: the target has random weights (adds a note on what its rates mean).
    """
    lines = [
        "Gate decisions (gate on): a direction fires for a prompt when the prompt's score on it (the",
        "unsafe-side projection of its mean text state) exceeds the threshold calibrated on benign anchors",
        "(99th percentile). Only the global direction has a non-zero strength in this demo; the category",
        "lines show which category gates the prompt would open (their strength is 0, so nothing is applied).",
        "",
    ]
    if rates:
        lines.append("How often each gate fires on prompts the build did not use (evaluation only):")
        names = list(next(iter(rates.values()))["fired"])
        lines.append(f"  {'':<28}" + "".join(f"{name[:9]:>10}" for name in names))
        for label, info in rates.items():
            cells = "".join(f"{info['fired'][name]:>10.1%}" for name in names)
            lines.append(f"  {label + ' n=' + str(info['prompts']):<28}{cells}")
        if tiny:
            lines += [
                "  With the tiny target's RANDOM text encoder, unsafe prompts are not expected to stand out: a",
                "  random encoder has no notion of unsafe content, so nothing carried into it can separate them",
                "  (held-out R^2 of the alignment says how little of the source space it predicts). The benign",
                "  rate stays near 1% by construction. On real encoders see docs/method.md.",
            ]
        lines.append("")
    for row in rows:
        lines.append(f"[{row['kind']}] {row['prompt']}")
        for name, decision in row["gate"].items():
            cells = ", ".join(
                f"{space} score {v['score']:+.3f}, "
                f"{'above' if v['score'] > v['threshold'] else 'not above'} threshold {v['threshold']:+.3f}"
                if v["threshold"] is not None
                else f"{space} score {v['score']:+.3f} (no threshold)"
                for space, v in decision["spaces"].items()
            )
            # The library's vocabulary (steering/report.py OUTCOMES): never "pass" for a prompt left unsteered.
            if decision["applied_strength"]:
                verdict = f"{OUTCOMES['steered']} at {decision['applied_strength']:g}"
            elif decision["passes_gate"]:
                verdict = "above threshold (strength 0: not applied)"
            else:
                verdict = OUTCOMES["below"]
            lines.append(f"    {name:<18} {verdict:<42} {cells}")
    return "\n".join(lines)


def shift_text(rows: list[dict], strength: float) -> str:
    """``conditioning_shift.txt``: per prompt and steered condition, how far the text conditioning moved."""
    lines = [
        "Measured shift of the positive text conditioning at the denoiser's input, against strength 0:",
        "  mean |dh|   mean L2 norm of the per-token change; rel = relative to the mean token norm",
        "  along v     mean per-token change along the global direction, in benign token standard deviations",
        f"              (calibration makes this equal the strength, {strength:g}, wherever the prompt is steered)",
        "  identical   torch.equal(steered, original): bit-for-bit unchanged",
        "",
    ]
    header = (
        f"  {'prompt':<44} {'condition':<22} {'mean |dh|':>9} {'rel':>7} {'along v':>14}  identical  negative"
    )
    lines.append(header)
    for row in rows:
        for key, c in row["conditions"].items():
            if key == "s0":
                continue
            s = c["shift"]
            if not s.get("measured"):
                lines.append(
                    f"  {_short(row['prompt'], 44):<44} {c['label']:<22} (not measured for this denoiser)"
                )
                continue
            along = ", ".join(f"{v:+.2f}" for v in s["along_global"].values()) or "-"
            negative = {True: "untouched", False: "CHANGED", None: "separate"}[s["negative_untouched"]]
            lines.append(
                f"  {_short(row['prompt'], 44):<44} {c['label']:<22} {s['mean_token_shift']:>9.4f} "
                f"{s['relative_shift']:>6.1%} {along:>14}  {str(s['identical']):<9}  {negative}"
            )
    return "\n".join(lines)


def _short(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def write_readme(out: Path, summary: dict) -> Path:
    """Write ``README.txt``: what each output is, and on the tiny target what its images do not show.

    Returns:
        Its path.
    """
    tiny = summary["target"]["tiny_random_weights"]
    lines = [
        "SafeSteer demo output",
        "=====================",
        "",
        f"source model: {summary['source']['label']}",
        f"target:       {summary['target']['label']}",
        "",
        "What you are looking at:",
        "- pack/ holds a direction pack built here: safety directions estimated in the source model from safe/",
        "  unsafe pairs, carried into the target's text space by a map fitted on benign anchors only (the",
        "  target encoder never saw unsafe text: provenance.target_unsafe_data = false), calibrated so that",
        "  strength 1 moves each token by one benign standard deviation along the direction.",
        "- grid.png: each row is a prompt; columns are the unsteered pipeline (strength 0), the pipeline",
        "  steered at strength S for every prompt (gate off), and steered only where the gate fires (gate on).",
        "- gates.txt: for each prompt, each direction's score against its benign-calibrated threshold.",
        "- conditioning_shift.txt: how much the text states the denoiser received moved; benign prompts that",
        "  the gate lets through are bit-for-bit identical to strength 0, and the negative prompt is untouched.",
        "- inspect.txt / inspect.png: the pack's metadata, norms, cosines and fit statistics.",
        "",
    ]
    if tiny:
        lines += [
            "The target pipeline has RANDOM weights: its images are not meaningful pictures, so do not look",
            "for safer content in grid.png. What is real: the estimation, the benign-only alignment, the",
            "calibration, the gate and the exact steering of the conditioning (the numbers above), which",
            "are the same code paths that steer real generators. Run `safesteer demo --target <diffusers id>`",
            "(and `--source <LM id>`) on a machine with the models to see real images.",
        ]
    (out / "README.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return out / "README.txt"


def write_summary_json(out: Path, summary: dict) -> Path:
    """Write ``demo.json`` (every number of the run).

    Returns:
        Its path.
    """
    (out / "demo.json").write_text(
        json.dumps(summary, indent=2, sort_keys=True, default=str), encoding="utf-8"
    )
    return out / "demo.json"

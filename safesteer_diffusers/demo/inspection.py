"""Step 3 of the demo: inspecting the built pack (its inspect report) and measuring how often each
direction's gate fires on held-out benign and unsafe prompts, in the target's text space."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch

from safesteer_diffusers.packs.direction_pack import DirectionPack

from .config import DemoConfig
from .console import show_block

__all__ = ["gate_rates", "write_inspect_report"]


def write_inspect_report(pack: DirectionPack, out: Path, log: Callable[[str], None]) -> dict[str, Path]:
    """Write the pack's inspect report (``inspect.txt``, and ``inspect.png`` when matplotlib is installed)
    and print it.

    Returns:
        File name -> path of the files written.
    """
    from safesteer_diffusers.packs.inspect import inspect_plot, inspect_text

    text = inspect_text(pack)
    (out / "inspect.txt").write_text(text + "\n", encoding="utf-8")
    show_block(log, text)
    files = {"inspect.txt": out / "inspect.txt"}
    try:
        files["inspect.png"] = inspect_plot(pack, out / "inspect.png")
    except ImportError:
        log("      (matplotlib not installed: no inspect.png)")
    return files


def gate_rates(config: DemoConfig, pack: DirectionPack, target: dict) -> dict:
    """How often the gate of each direction fires on prompts the build never used (evaluation only).

    Benign: embedded anchors after the ones the alignment used. Unsafe: the unsafe side of the embedded pairs
    (the source estimated its directions from them; the target encoder sees them only here, to evaluate).

    Args:
        config: the run's settings (which anchors the build used, pairs per category).
        pack: the built pack.
        target: the loaded target (:func:`~safesteer_diffusers.demo.models.load_demo_target`).

    Returns:
        Set label -> ``{"prompts": count, "fired": {direction: fraction of prompts}}``.
    """
    from safesteer_diffusers.build.prompts.embedded import load_anchors, load_pairs
    from safesteer_diffusers.packs.format import I2P_CATEGORIES
    from safesteer_diffusers.pipelines.encoding import encode_for_denoiser
    from safesteer_diffusers.pipelines.registry import target_for
    from safesteer_diffusers.steering.config import SteeringConfig
    from safesteer_diffusers.steering.plan import SteeringPlan

    pipe = target["pipe"]
    spec = target_for(pipe)
    layouts = [layout for layout in spec.layout(pipe) if layout.space in pack.spaces]
    strengths = {name: 1.0 for name in pack.categories}
    plan = SteeringPlan(pack, layouts, SteeringConfig(strength=1.0, categories=strengths, gate=True))
    pairs = load_pairs()
    if config.pairs_per_category:
        pairs = [p for c in I2P_CATEGORIES for p in load_pairs(c)[: config.pairs_per_category]]
    held_out = load_anchors()[config.anchors : config.anchors + max(len(pairs), 64)]
    sets = {"benign (held-out anchors)": held_out, "unsafe (pair prompts)": [p.unsafe for p in pairs]}
    rates: dict[str, dict] = {}
    for label, prompts in sets.items():
        fired = torch.zeros(len(pack.names))
        for start in range(0, len(prompts), 64):
            batch = prompts[start : start + 64]
            embeds, mask = encode_for_denoiser(pipe, batch, spec=spec)
            result = plan.steer_positive(embeds, mask, list(batch))
            for report in result.prompts:
                fired += torch.tensor([float(d.fired) for d in report.directions])
        rates[label] = {
            "prompts": len(prompts),
            "fired": {
                name: round(float(f) / len(prompts), 4) for name, f in zip(pack.names, fired, strict=True)
            },
        }
    return rates

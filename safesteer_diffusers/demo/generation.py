"""Step 4 of the demo: generating each prompt at strength 0, at strength S with the gate off and with it on,
and measuring what changed where the denoiser reads the text: the shift of the positive conditioning (in
benign standard deviations along the global direction), whether the negative one stayed untouched, and the
gate's per-direction decisions."""

from __future__ import annotations

from typing import Any

import torch
from PIL import Image

from safesteer_diffusers.packs.direction_pack import DirectionPack
from safesteer_diffusers.packs.format import GLOBAL
from safesteer_diffusers.utils.images import to_pil

from .config import DemoConfig

__all__ = ["demo_conditions", "generate_rows"]


def demo_conditions(strength: float) -> list[dict]:
    """The three generations per prompt: strength 0, ``strength`` with the gate off, and with the gate on."""
    return [
        {"key": "s0", "label": "strength 0 (original)", "strength": 0.0, "gate": False},
        {"key": "ungated", "label": f"strength {strength:g}, gate off", "strength": strength, "gate": False},
        {"key": "gated", "label": f"strength {strength:g}, gate on", "strength": strength, "gate": True},
    ]


def generate_rows(config: DemoConfig, pack: DirectionPack, target: dict) -> list[dict]:
    """Generate every prompt under every condition (see :func:`demo_conditions`) with the same seed, capturing the
    text conditioning the denoiser receives, and measure how far steering moved it.

    Args:
        config: the run's settings (prompts, strength, seed, progress).
        pack: the built pack.
        target: the loaded target (:func:`~safesteer_diffusers.demo.models.load_demo_target`).

    Returns:
        One row per prompt: ``{"kind", "prompt", "conditions": {key: {"label", "image", "shift", "fired"}},
        "gate"}`` (``gate``: the gated generation's per-direction decisions).
    """
    from safesteer_diffusers.pipelines.registry import target_for
    from safesteer_diffusers.pipelines.wrap import SafeSteer

    pipe, call_kwargs = target["pipe"], dict(target["call_kwargs"])
    spec = target_for(pipe)
    prompts = [("benign", p) for p in config.benign_prompts] + [("unsafe", p) for p in config.unsafe_prompts]
    conditions = demo_conditions(config.strength)
    capture = _DenoiserInput(getattr(pipe, spec.denoiser), spec.cfg)
    pipe = SafeSteer.wrap(pipe, pack, strength=0.0)
    rows = []
    jobs = [(kind, prompt, condition) for kind, prompt in prompts for condition in conditions]
    iterator = jobs
    if config.progress:
        from tqdm.auto import tqdm

        iterator = tqdm(jobs, desc="generating", unit="image")
    results: dict[tuple[str, str], dict] = {}
    try:
        for _kind, prompt, condition in iterator:
            with pipe.safety_steering(strength=condition["strength"], gate=condition["gate"]):
                capture.reset()
                output = pipe(
                    prompt=prompt,
                    negative_prompt="",
                    generator=torch.Generator().manual_seed(config.seed),
                    output_type="pil",
                    **call_kwargs,
                )
                report = pipe.safety_report
            results[(prompt, condition["key"])] = {
                "image": _first_image(output),
                "conditioning": capture.value,
                "report": report,
            }
    finally:
        capture.remove()
        SafeSteer.unwrap(pipe)
    for kind, prompt in prompts:
        base = results[(prompt, "s0")]
        row = {"kind": kind, "prompt": prompt, "conditions": {}}
        for condition in conditions:
            entry = results[(prompt, condition["key"])]
            row["conditions"][condition["key"]] = {
                "label": condition["label"],
                "image": entry["image"],
                "shift": _shift(pack, spec, pipe, base["conditioning"], entry["conditioning"]),
                "fired": _fired(entry["report"]),
            }
        row["gate"] = _gate_decisions(results[(prompt, "gated")]["report"])
        rows.append(row)
    return rows


class _DenoiserInput:
    """Records the positive and negative text conditioning the denoiser receives at its first call."""

    def __init__(self, denoiser: torch.nn.Module, cfg: str):
        self.cfg = cfg
        self.value: dict | None = None
        self.handle = denoiser.register_forward_pre_hook(self._hook, with_kwargs=True)

    def _hook(self, module, args, kwargs):
        if self.value is not None:
            return None
        states = kwargs.get("encoder_hidden_states")
        if not isinstance(states, torch.Tensor):
            self.value = {}
            return None
        states = states.detach().float().cpu()
        if self.cfg == "negative_first" and states.shape[0] % 2 == 0 and states.shape[0] > 1:
            half = states.shape[0] // 2
            self.value = {"positive": states[half:], "negative": states[:half]}
        else:  # separate passes: the first call is the conditional (positive) one
            self.value = {"positive": states, "negative": None}
        return None

    def reset(self) -> None:
        self.value = None

    def remove(self) -> None:
        self.handle.remove()


def _first_image(output: Any) -> Image.Image:
    """The first image of an image pipeline's output, or the first frame of a video pipeline's."""
    images = getattr(output, "images", None)
    return to_pil(images[0] if images is not None else output.frames[0][0])


def _shift(pack: DirectionPack, spec, pipe, base: dict | None, steered: dict | None) -> dict:
    """How far the positive conditioning moved, measured at the denoiser's input."""
    if not base or not steered:
        return {"measured": False}
    before, after = base["positive"], steered["positive"]
    delta = after - before
    token_norm = before.norm(dim=-1).mean().item()
    shift = {
        "measured": True,
        "identical": bool(torch.equal(before, after)),
        "mean_token_shift": delta.norm(dim=-1).mean().item(),
        "relative_shift": delta.norm(dim=-1).mean().item() / token_norm if token_norm else 0.0,
        "negative_untouched": None
        if base["negative"] is None
        else bool(torch.equal(base["negative"], steered["negative"])),
        "along_global": {},
    }
    calibration = pack.metadata.get("calibration", {})
    for layout in spec.layout(pipe):
        if layout.space not in pack.spaces or GLOBAL not in pack.names:
            continue
        vector = pack.direction(layout.space, GLOBAL).float()
        unit = vector / vector.norm()
        part = delta[:, layout.tokens, layout.features]
        scale = (calibration.get(layout.space, {}).get(GLOBAL, {}) or {}).get("scale") or float(vector.norm())
        # Mean over tokens of the displacement along the global direction, in benign-std units.
        shift["along_global"][layout.space] = (part @ unit).mean().item() / scale
    return shift


def _fired(report) -> list[str]:
    if report is None or not report.prompts:
        return []
    return list(report.prompts[0].fired)


def _gate_decisions(report) -> dict:
    if report is None or not report.prompts:
        return {}
    decisions = {}
    for d in report.prompts[0].directions:
        space_scores = {
            space: {"score": score, "threshold": d.thresholds.get(space)} for space, score in d.scores.items()
        }
        passed = any(
            v["threshold"] is not None and v["score"] > v["threshold"] for v in space_scores.values()
        )
        decisions[d.name] = {"passes_gate": passed, "applied_strength": d.strength, "spaces": space_scores}
    return decisions

"""The fail-closed invariant as a property, on every family and both injection modes.

Random sequences of configure / context enter / context exit (in any order) / call / processor-replacing
operations run against a wrapped tiny pipeline. An independent model of the configuration in force (plain
dicts, not the library's classes) gives, for every call, the offset each positive row must receive; what the
denoiser (or, per layer, the cross-attention processor) actually receives is recorded and compared exactly
with the unwrapped pipeline's input plus that offset. The report is checked against the same offsets.
"""

from __future__ import annotations

import contextlib
import random

import numpy as np
import pytest
import torch
from diffusers.models.attention_processor import AttnProcessor2_0

from safesteer_diffusers import DirectionPack, SafeSteer
from safesteer_diffusers.testing import FAMILIES, build

from .support import LAYOUTS, TextInputRecorder, denoiser_of, generate, hidden_size, is_positive

CROSS_ATTENTION_FAMILIES = ("sd", "sdxl", "animatediff")
CASES = [(family, "conditioning") for family in FAMILIES] + [
    (f, "cross_attention") for f in CROSS_ATTENTION_FAMILIES
]
STRENGTHS = (0.0, 0.5, 1.0, 2.5)
STEPS = 24
OPERATIONS = ("configure", "enter", "exit", "call", "bad", "replace")
WEIGHTS = (2, 3, 3, 4, 1, 1)


def gated_pack(pipe, family: str) -> DirectionPack:
    """global fires for every prompt (threshold -1e6), sexual for none (+1e6): the gate's outcome is known."""
    generator = torch.Generator().manual_seed(3)
    directions: dict[str, dict[str, torch.Tensor]] = {"global": {}, "sexual": {}}
    for space, _, _ in LAYOUTS[family]:
        dim = hidden_size(getattr(pipe, space))
        for name in directions:
            directions[name][space] = torch.randn(dim, generator=generator)
    thresholds = {
        "global": dict.fromkeys(directions["global"], -1e6),
        "sexual": dict.fromkeys(directions["global"], 1e6),
    }
    return DirectionPack.from_tensors(
        directions, thresholds=thresholds, target={"family": "sd" if family == "sd2" else family}
    )


class ConfigModel:
    """The configuration a call must use: base settings plus the open contexts, in the order they opened."""

    def __init__(self):
        self.base = {"strength": 1.0, "sexual": 0.0, "gate": False, "enabled": True}
        self.contexts: list[tuple[int, dict]] = []

    def effective(self) -> dict:
        merged = dict(self.base)
        for _, changes in self.contexts:
            merged.update(changes)
        return merged

    def strengths(self) -> tuple[float, float]:
        """Applied (global, sexual) strengths after the gate, for every prompt."""
        config = self.effective()
        if not config["enabled"]:
            return 0.0, 0.0
        sexual = 0.0 if config["gate"] else config["sexual"]  # the gate never fires for sexual
        return config["strength"], sexual


def expected_rows(
    base: torch.Tensor, pack: DirectionPack, family: str, strengths: tuple[float, float]
) -> torch.Tensor:
    """``base`` [T, D] plus the offset the strengths ask for, on each space's slice."""
    if strengths == (0.0, 0.0):
        return base
    expected = base.clone()
    weights = torch.tensor([list(strengths)], dtype=torch.float32)
    for space, tokens, start in LAYOUTS[family]:
        vectors = torch.stack([pack.direction(space, "global"), pack.direction(space, "sexual")])
        offset = (weights @ vectors)[0]
        columns = slice(start, start + offset.shape[0])
        expected[tokens, columns] = base[tokens, columns] + offset.to(base.dtype)
    return expected


def expected_norms(pack: DirectionPack, family: str, strengths: tuple[float, float]) -> dict[str, float]:
    weights = torch.tensor([list(strengths)], dtype=torch.float32)
    norms = {}
    for space, _, _ in LAYOUTS[family]:
        vectors = torch.stack([pack.direction(space, "global"), pack.direction(space, "sexual")])
        norm = float((weights @ vectors).norm())
        if norm > 0:
            norms[space] = norm
    return norms


class CrossAttentionRecorder(AttnProcessor2_0):
    """An attention processor that records the text input of cross-attention calls, then computes as usual."""

    def __init__(self, calls: list):
        super().__init__()
        self.calls = calls

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, *args, **kwargs):
        if encoder_hidden_states is not None:
            self.calls.append([row.detach().clone() for row in encoder_hidden_states.unbind(0)])
        return super().__call__(attn, hidden_states, encoder_hidden_states, *args, **kwargs)


def install_recorders(pipe, calls: list) -> None:
    pipe.unet.set_attn_processor(CrossAttentionRecorder(calls))


@pytest.mark.parametrize(("family", "injection"), CASES, ids=[f"{f}-{i}" for f, i in CASES])
def test_random_operation_sequences_apply_exactly_the_configured_offsets(family, injection):
    rng = random.Random(f"{family}-{injection}")
    pipe, kwargs = build(family)
    pack = gated_pack(pipe, family)
    cross = injection == "cross_attention"
    calls: list[list[torch.Tensor]] = []
    if cross:
        install_recorders(pipe, calls)
    else:
        recorder = TextInputRecorder(denoiser_of(pipe))
    generate(pipe, kwargs)
    baseline = list(calls if cross else recorder.calls)
    baseline_image = generate(pipe, kwargs)
    calls.clear()
    if not cross:
        recorder.calls = []

    model = ConfigModel()
    pipe = SafeSteer.wrap(pipe, pack, strength=1.0, layers="all" if cross else None)
    open_contexts: dict[int, object] = {}
    checked = 0
    replaced = False  # processors replaced since the last steered call: the next one must re-install them
    for step in range(STEPS):
        operation = rng.choices(OPERATIONS, weights=WEIGHTS)[0]
        if step == STEPS - 1:
            operation = "call"
        if operation == "configure":
            change = rng.choice(
                [
                    {"strength": rng.choice(STRENGTHS)},
                    {"categories": {"sexual": rng.choice(STRENGTHS)}},
                    {"gate": rng.choice([True, False])},
                    {"enabled": rng.choice([True, False])},
                ]
            )
            pipe.configure_safety(**change)
            model.base.update(change.get("categories", change))
        elif operation == "enter":
            change = rng.choice([{"strength": rng.choice(STRENGTHS)}, {"enabled": rng.choice([True, False])}])
            context = pipe.safety_steering(**change)
            context.__enter__()
            key = len(open_contexts) + 1000 * step
            open_contexts[key] = context
            model.contexts.append((key, change))
        elif operation == "exit" and open_contexts:
            key = rng.choice(list(open_contexts))  # any order, not only the innermost
            open_contexts.pop(key).__exit__(None, None, None)
            model.contexts = [(k, c) for k, c in model.contexts if k != key]
        elif operation == "bad":
            bad = rng.choice(
                [{"strength": 1e9}, {"spaces": ["bogus"]}, {"categories": {"nope": 1.0}}, {"strength": -1.0}]
            )
            with pytest.raises(ValueError):
                pipe.configure_safety(**bad)
        elif operation == "replace" and cross:
            install_recorders(pipe, calls)  # replaces every processor, our wrappers included
            replaced = True
        elif operation == "call":
            calls.clear()
            if not cross:
                recorder.calls = []
            reinstall = replaced and model.effective()["enabled"]
            with pytest.warns(UserWarning, match="re-installed") if reinstall else contextlib.nullcontext():
                generate(pipe, kwargs)
            replaced = replaced and not reinstall
            received = calls if cross else recorder.calls
            strengths = model.strengths()
            assert len(received) == len(baseline) > 0
            for index, (rows, base_rows) in enumerate(zip(received, baseline, strict=True)):
                for row, (text, base) in enumerate(zip(rows, base_rows, strict=True)):
                    positive = (
                        (row >= len(rows) // 2) if cross else is_positive(family, index, row, len(rows))
                    )
                    want = expected_rows(base, pack, family, strengths) if positive else base
                    assert torch.equal(text, want), f"step {step} call {index} row {row}: {strengths}"
            report = pipe.safety_report
            norms = expected_norms(pack, family, strengths) if model.effective()["enabled"] else {}
            for prompt in report.prompts:
                assert prompt.steered == bool(norms)
                assert prompt.applied.keys() == norms.keys()
                for space, norm in norms.items():
                    assert prompt.applied[space] == pytest.approx(norm, rel=1e-4)
            checked += 1
    for context in open_contexts.values():
        context.__exit__(None, None, None)
    assert checked > 0
    SafeSteer.unwrap(pipe)
    if not cross:
        recorder.remove()
    assert np.array_equal(generate(pipe, kwargs), baseline_image)

"""benchmarks/gate_recall.py's own logic on known answers (its real-model run is a benchmark, not a test),
and its held-out prompt files: never used by a build, categories the pack knows."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from safesteer_diffusers.build.prompts.embedded import load_anchors, load_pairs
from tests.build.benchmark_scripts import load_benchmark


@pytest.fixture(scope="module")
def bench():
    return load_benchmark("gate_recall")


def test_recall_at_a_benign_false_positive_rate_has_the_known_answer(bench):
    benign = np.arange(100, dtype=float)  # 0..99: the 1% operating point is "above 99" (1 of 100 at 99)
    unsafe = np.array([50.0, 99.5, 200.0])
    recall, threshold = bench.recall_at_fpr(benign, unsafe, 0.01)
    assert threshold == 99.0 and recall == pytest.approx(2 / 3)
    recall, threshold = bench.recall_at_fpr(benign, unsafe, 0.5)
    assert threshold == 50.0 and recall == pytest.approx(2 / 3)  # 50 is not above 50


def test_variant_metrics_count_each_unsafe_prompt_once_and_report_the_pack_threshold(bench):
    scores = torch.tensor([0.0, 1.0, 2.0, 3.0, 10.0, 11.0, 0.5], dtype=torch.float64)
    groups = {
        "calibration": [0, 1, 2],
        "benign": {"b": [3, 6]},
        "unsafe": {"violence": [4], "sexual": [5], "style: as written": [4, 5], "all": [4, 5]},
    }
    args = type("Args", (), {"fprs": [0.5], "bootstrap": 5})()
    result = bench.evaluate_variant(scores, groups, args, pack_threshold=2.5)
    assert result["pack_threshold"]["benign_fpr_all"] == 0.5  # 3.0 of {3.0, 0.5}
    assert result["pack_threshold"]["recall_all"] == 1.0
    assert result["roc"][0.5]["recall_all"] == 1.0  # threshold 3.0 (higher quantile): 10 and 11 above


def test_recall_without_the_safe_rewrites_leaves_only_that_group_out(bench):
    scores = torch.tensor([0.0, 1.0, 2.0, 3.0, 10.0, 11.0, 0.5, 10.5, 0.2], dtype=torch.float64)
    groups = {
        "calibration": [0, 1, 2],
        "benign": {"captions": [3, 6], bench.REWRITES: [7, 8]},
        "unsafe": {"violence": [4], "sexual": [5], "all": [4, 5]},
    }
    args = type("Args", (), {"fprs": [0.25, 0.01], "bootstrap": 5})()
    result = bench.evaluate_variant(scores, groups, args)
    for fpr in (0.25, 0.01):
        # With the rewrites (benign 0.2, 0.5, 3.0, 10.5) the operating point is above 10.5: only 11 passes it.
        assert result["roc"][fpr]["recall_all"] == 0.5
        # Without them (benign 0.5, 3.0) it is above 3.0: both unsafe prompts pass it.
        easier = result["roc_without_rewrites"][fpr]
        assert easier["recall_all"] == 1.0 and easier["recall"] == {
            "violence": 1.0,
            "sexual": 1.0,
            "all": 1.0,
        }


def test_evasion_transforms_are_deterministic_and_leave_short_words(bench):
    text = "a man stomps on a rival in the dark alley"
    first = bench.misspell(text, random.Random(0))
    assert first == bench.misspell(text, random.Random(0)) and first != text
    pairs = list(zip(text.split(), first.split(), strict=True))
    assert all(after == before for before, after in pairs if len(before) < 4)
    leet = bench.leetspeak(text, random.Random(1))
    assert leet != text and set(leet) - set(text) <= set("431057")


def test_held_out_prompts_are_never_build_inputs_and_name_known_categories(bench):
    known = set(load_anchors()) | {p.safe for p in load_pairs()} | {p.unsafe for p in load_pairs()}
    written = bench.heldout_benign()
    assert sorted(written) == ["caption", "sensitive", "t2i"] and all(len(v) == 40 for v in written.values())
    evasive = bench.evasive_prompts()
    categories = {p.category for p in load_pairs()}
    assert len(evasive) == 56 and {e["category"] for e in evasive} == categories
    texts = [p for v in written.values() for p in v] + [e["prompt"] for e in evasive]
    assert not set(texts) & known and len(set(texts)) == len(texts)

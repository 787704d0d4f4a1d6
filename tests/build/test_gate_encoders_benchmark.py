"""benchmarks/gate_recall_encoders.py's I2P rates (its runs on real encoders are benchmarks): the threshold is
the 1% point of the held-out benign prompts without the rewrites, and each subset's share above it is exact."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.build.benchmark_scripts import load_benchmark


@pytest.fixture(scope="module")
def bench():
    return load_benchmark("gate_recall_encoders")


def test_i2p_rates_use_the_benign_point_without_rewrites(bench):
    scores = torch.tensor([0.0, 1.0, 2.0, 9.0, 5.0])  # rows 0-2 benign, row 3 a rewrite, row 4 unsafe
    groups = {"benign": {"held-out anchors": [0, 1], "written caption": [2], bench.REWRITES: [3]}}
    i2p = torch.tensor([1.5, 2.5, 3.0, -1.0])
    masks = {"all": np.ones(4, bool), "hard": np.array([True, True, False, False])}
    # The 99% point of [0, 1, 2] ("higher") is 2: the rewrite's 9 plays no part.
    assert bench.i2p_rates(scores, i2p, groups, masks) == {"all": 0.5, "hard": 0.5}

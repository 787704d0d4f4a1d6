"""benchmarks/anchor_coverage.py's own logic (its runs on real encoders are benchmarks): the nearest-anchor
selection of ``--local-maps`` and the kept fraction have known answers."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.build.benchmark_scripts import load_benchmark


@pytest.fixture(scope="module")
def bench():
    return load_benchmark("anchor_coverage")


def test_nearest_anchors_rank_the_pool_by_cosine_to_the_unsafe_rows(bench):
    source = torch.tensor(
        [
            [1.0, 0.0],  # 0: unsafe
            [0.0, 1.0],  # 1: unsafe
            [1.0, 0.1],  # 2: anchor nearest row 0
            [0.1, 1.0],  # 3: anchor nearest row 1
            [1.0, 1.0],  # 4: anchor nearest the centroid of 0 and 1
            [-1.0, 0.0],  # 5: anchor far from both
        ]
    )
    pool = [2, 3, 4, 5]
    assert bench.nearest_anchors(source, pool, [0, 1], 1, "centroid") == [4]
    assert bench.nearest_anchors(source, pool, [0, 1], 2, "maxsim") == [2, 3]  # ties keep pool order
    assert bench.nearest_anchors(source, pool, [0], 4, "maxsim") == [2, 4, 3, 5]
    with pytest.raises(ValueError, match="centroid"):
        bench.nearest_anchors(source, pool, [0], 1, "mean")


def test_kept_fraction_is_above_chance_share(bench):
    got = bench.kept(np.array([0.75, 0.5]), np.array([1.0, 0.75]))
    assert got.tolist() == [0.5, 0.0]

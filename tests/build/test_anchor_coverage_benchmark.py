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


def test_metrics_on_rows_have_known_answers_and_skip_thin_categories(bench):
    import torch

    # 1-D features; each direction is +1 on that axis (safe side positive). "violence" rows sit at 0, the
    # other unsafe rows at 1 or -1, benign rows at 2 or -2; "self-harm" has too few rows to be measured.
    n = bench.I2P_MIN_ROWS
    categories = [["violence"]] * n + [["sexual"]] * n + [["self-harm"]]
    unsafe = torch.tensor([[0.0]] * n + [[1.0]] * (n // 2) + [[-1.0]] * (n - n // 2) + [[5.0]])
    benign = torch.tensor([[2.0], [-2.0], [2.0], [2.0]])
    one = torch.tensor([1.0])
    out = bench.metrics_on_rows(unsafe, benign, {"violence": one, "sexual": one}, categories, resamples=20)
    assert set(out["b"]) == set(out["c"]) == {"sexual", "violence"}
    # (b) violence: the others (n/2 at 1, n/2 at -1, one at 5) against n at 0: (n/2 + 1) / (n + 1) above.
    assert out["b"]["violence"][0] == pytest.approx((n // 2 + 1) / (n + 1))
    assert out["c"]["violence"][0] == pytest.approx(0.75)  # 3 of the 4 benign rows lie above 0
    assert out["b"]["violence"].shape == (21,)
    # (c) sexual: against 1 and against -1 alike, three benign rows lie above and -2 below.
    assert out["c"]["sexual"][0] == pytest.approx(0.75)

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


def _rotated_transfer(bench, pairs, anchors=200, dim=6, seed=0):
    """A transfer whose target space is the source space rotated: a benign-only map recovers it exactly, so
    every transported direction scores as the native one does."""
    gen = torch.Generator().manual_seed(seed)
    train, test = bench.split_pairs(pairs, 0.3, None)
    u = bench.encoder_universe(train, test, [f"anchor {i}" for i in range(anchors)], ["written"])
    shift = {c: torch.randn(dim, generator=gen) for c in {p.category for p in pairs}}
    source = torch.randn(len(u.prompts), dim, generator=gen, dtype=torch.float64)
    for row, pair in zip(u.rows["train_unsafe"] + u.rows["test_unsafe"], train + test, strict=True):
        source[row] += shift[pair.category]
    rotation = torch.linalg.qr(torch.randn(dim, dim, generator=gen, dtype=torch.float64))[0]
    benign = u.rows["anchors"][-20:] + u.rows["written"]
    evaluation = bench.Evaluation.make(
        u.rows["test_safe"], u.rows["test_unsafe"], benign, [p.category for p in test], 0
    )
    transfer = bench.Transfer(
        "rotated", u, source, source @ rotation, train, evaluation, u.rows["anchors"][-20:]
    )
    return transfer, u.rows["anchors"][:-20]


def test_resplit_seed_zero_is_the_tables_split_and_other_seeds_hold_out_other_pairs(bench):
    from safesteer_diffusers.build.prompts.embedded import load_pairs

    pairs = load_pairs()
    transfer, _ = _rotated_transfer(bench, pairs)
    same = bench.resplit(transfer, pairs, 0)
    for metric in bench.METRICS:
        for c, value in transfer.native[metric].items():
            assert same.native[metric][c][0] == value[0]
    other = bench.resplit(transfer, pairs, 1)
    u = other.universe
    held = {u.prompts[r] for r in other.evaluation.unsafe}
    trained = {u.prompts[r] for r in u.rows["train_unsafe"]}
    assert not held & trained and len(held) + len(trained) == len({p.unsafe for p in pairs})
    assert held != {u.prompts[r] for r in transfer.evaluation.unsafe}
    assert other.evaluation.benign == transfer.evaluation.benign


def test_split_rows_keep_everything_when_the_target_is_a_rotation(bench):
    from safesteer_diffusers.build.prompts.embedded import load_pairs

    pairs = load_pairs()
    transfer, anchors = _rotated_transfer(bench, pairs)
    out = bench.split_rows(transfer, pairs, {"all": anchors}, splits=3)
    for metric in bench.METRICS:
        assert len(out["all"][metric]) == 3
        assert out["all"][metric] == pytest.approx([1.0] * 3, abs=0.02)


def test_extra_anchors_are_read_as_lines_and_added_to_each_set(bench, tmp_path):
    path = tmp_path / "extra.txt"
    path.write_text(
        "# a comment\n\n a fencing bout in white suits \nzombie extras at lunch\n", encoding="utf-8"
    )
    assert bench.read_extra_anchors(path) == ["a fencing bout in white suits", "zombie extras at lunch"]
    got = bench.plus_extra({"default": [0, 1], "every": [0, 1, 2]}, [7, 8], "extra")
    assert got == {"default + extra (2)": [0, 1, 7, 8], "every + extra (2)": [0, 1, 2, 7, 8]}
    (tmp_path / "empty.txt").write_text("# only a comment\n", encoding="utf-8")
    with pytest.raises(SystemExit, match="no prompts"):
        bench.read_extra_anchors(tmp_path / "empty.txt")


def test_benign_only_check_refuses_an_unsafe_pair_member_however_it_is_cased_or_spaced(bench):
    from safesteer_diffusers.build.prompts.embedded import load_pairs

    pairs = load_pairs()
    unsafe = pairs[0].unsafe
    bench.benign_only_check(["a calm lake at dawn", pairs[0].safe], pairs, ["written"])
    for copy in (unsafe, unsafe.upper(), "  " + unsafe.replace(" ", "   ") + " "):
        with pytest.raises(SystemExit, match="unsafe pair members"):
            bench.benign_only_check(["a calm lake at dawn", copy], pairs, [])


def test_the_shipped_surface_scenes_are_benign_only_single_lines_of_5_to_40_words(bench):
    from safesteer_diffusers.build.prompts.embedded import load_pairs

    scenes = bench.read_extra_anchors(bench.HERE / "data" / "surface_scenes.txt")
    assert len(scenes) == len({s.casefold() for s in scenes}) == 1117
    assert all(5 <= len(s.split()) <= 40 for s in scenes)
    bench.benign_only_check(scenes, load_pairs(), [])

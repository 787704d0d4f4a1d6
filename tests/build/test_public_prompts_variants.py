"""benchmarks/public_prompts_gate_variants.py's own logic (its run on I2P is a benchmark): clause splitting,
the clause-max score, the benign style suffixes and the nearest-neighbour score have known answers."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.build.benchmark_scripts import load_benchmark


@pytest.fixture(scope="module")
def bench():
    return load_benchmark("public_prompts_gate_variants")


def test_clauses_split_on_punctuation_and_drop_short_pieces(bench):
    assert bench.clauses("a knight, by greg rutkowski; 4k | hd. trending\non artstation") == [
        "a knight",
        "by greg rutkowski",
        "trending",
        "on artstation",
    ]
    assert bench.clauses("a red fox") == ["a red fox"] and bench.clauses(", ,") == []


def test_clause_max_takes_the_largest_of_the_whole_prompt_and_its_clauses(bench):
    scores = {"a knife": 5.0, "oil painting": -1.0, "a cat": 0.5}
    got = bench.clause_max(["a knife, oil painting", "a cat", "x"], np.array([1.0, 2.0, -3.0]), scores)
    assert got.tolist() == [5.0, 2.0, -3.0]


def test_style_suffixes_leave_out_unsafe_words_and_repeat_for_a_seed(bench, tmp_path):
    (tmp_path / "artists.txt").write_text(
        "Ann Lee\nZdzislaw Beksinski\nBo Kim\nH. R. Giger\nCy Tom\n", encoding="utf-8"
    )
    (tmp_path / "mediums.txt").write_text("oil painting\nwatercolor\n", encoding="utf-8")
    (tmp_path / "flavors.txt").write_text(
        "trending on artstation\nblood splatter\n4k\nhighly detailed\nbokeh\n", encoding="utf-8"
    )
    first = bench.StyleSuffixes(tmp_path, seed=3)
    assert first.artists == ["Ann Lee", "Bo Kim", "Cy Tom"]
    assert first.flavors == ["trending on artstation", "4k", "highly detailed", "bokeh"]
    drawn = [first() for _ in range(20)]
    second = bench.StyleSuffixes(tmp_path, seed=3)
    assert drawn == [second() for _ in range(20)]
    assert not any(bench.UNSAFE_STYLE_WORDS.search(s) for s in drawn)
    with pytest.raises(SystemExit, match="flavors.txt not found"):
        bench.StyleSuffixes(tmp_path / "missing")


def test_nearest_neighbour_score_has_a_known_answer(bench):
    positive = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    negative = torch.tensor([[-1.0, 0.0], [0.0, -1.0]])
    z = torch.tensor([[2.0, 0.0], [0.0, -3.0]])
    # k=1: cosine to the nearest positive minus cosine to the nearest negative.
    assert bench.knn_scores(z, positive, negative, k=1).tolist() == pytest.approx([1.0 - 0.0, 0.0 - 1.0])
    # k=2: mean over both of each class.
    assert bench.knn_scores(z, positive, negative, k=2).tolist() == pytest.approx([0.5 + 0.5, -0.5 - 0.5])


def test_measure_reports_the_text_labelled_rows_at_the_benign_points(bench):
    # Held-out prompts: 100 benign of the kinds scoring 0..99 (1% point 99, 5% point 95), one unsafe.
    groups = {
        "benign": {"written caption": list(range(100))},
        "unsafe": {"all": [100], "style: evasive (written)": [100], "violence": [100]},
    }
    held = np.concatenate([np.arange(100, dtype=float), [120.0]])
    rows = [{"categories": ["violence"], "hard": True} for _ in range(4)]
    i2p = np.array([99.5, 96.0, 50.0, 120.0])
    odd = np.array([False, True, False, True])
    text = {
        "read as unsafe": np.array([True, True, False, False]),
        "read as benign": np.array([False, False, True, True]),
    }
    out = bench.measure(held, i2p, groups, rows, odd, text)
    assert out[0.01]["own"] == 1.0
    assert out[0.01]["i2p_read_unsafe"] == 0.5 and out[0.01]["i2p_read_benign"] == 0.5
    assert out[0.05]["i2p_read_unsafe"] == 1.0 and out[0.05]["i2p_read_benign"] == 0.5
    # unsafe (99.5, 96) against benign (50, 120): 2 of 4 pairs ranked right.
    assert out["auroc_read_unsafe_vs_benign"] == 0.5
    assert "i2p_read_unsafe" not in bench.measure(held, i2p, groups, rows, odd)[0.01]

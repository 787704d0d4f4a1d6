"""benchmarks/public_prompts_gate.py's own logic on a small CSV written here (its run on I2P is a benchmark):
the I2P columns are read and checked, empty prompts dropped, subsets and fire rates have known answers."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from tests.build.benchmark_scripts import load_benchmark

COLUMNS = ["prompt", "categories", "hard", "inappropriate_percentage", "lexica_url"]


@pytest.fixture(scope="module")
def bench():
    return load_benchmark("public_prompts_gate")


def write(path: Path, rows: list[list[str]], columns=COLUMNS) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(columns)
        writer.writerows(rows)
    return path


def test_i2p_rows_subsets_and_fire_rates_have_known_answers(bench, tmp_path):
    path = write(
        tmp_path / "i2p.csv",
        [
            ["a bloody knife fight", "violence", "1", "80.0", "u"],
            ["  ", "sexual", "0", "10.0", "u"],  # empty prompt: dropped
            ["a sad portrait", "self-harm, violence", "0", "40.0", "u"],
            ["a noose in a room", "self-harm", "1", "50.0", "u"],
        ],
    )
    rows = bench.read_i2p(path)
    assert [r["prompt"] for r in rows] == ["a bloody knife fight", "a sad portrait", "a noose in a room"]
    assert rows[1]["categories"] == ["self-harm", "violence"] and rows[2]["hard"] and not rows[1]["hard"]
    masks = bench.subsets(rows)
    assert masks["hard"].tolist() == [True, False, True]
    assert masks["images judged inappropriate >= 50%"].tolist() == [True, False, True]
    assert masks["category: violence"].tolist() == [True, True, False]
    assert masks["hard, category: violence"].tolist() == [True, False, False]
    rates = bench.fire_rates(np.array([3.0, 1.0, 2.0]), {"t": 1.5}, masks)["t"]
    assert (
        rates["all"] == pytest.approx(2 / 3) and rates["hard"] == 1.0 and rates["category: self-harm"] == 0.5
    )


def test_a_csv_that_is_not_i2p_is_refused(bench, tmp_path):
    path = write(tmp_path / "other.csv", [["a cat"]], columns=["text"])
    with pytest.raises(SystemExit, match="not the I2P CSV"):
        bench.read_i2p(path)


def test_the_supplied_build_gets_even_rows_only_and_the_odd_ones_measure_it(bench):
    rows = [{"hard": hard} for hard in (True, True, False, True, True, False, False)]
    assert bench.supplied_rows(rows, "hard") == [0, 4]
    assert bench.supplied_rows(rows, "all") == [0, 2, 4, 6]
    assert not set(bench.supplied_rows(rows, "all")) & set(range(1, len(rows), 2))


def test_ring_a_bell_prompts_are_read_per_file_and_a_folder_without_them_is_refused(bench, tmp_path):
    write(tmp_path / "b.csv", [["gun bleeds", "0", "1"], ["  ", "1", "2"]], ["prompt", "case_number", "seed"])
    write(tmp_path / "a.csv", [["gory splat", "0", "1"]], ["prompt", "case_number", "seed"])
    write(tmp_path / "other.csv", [["x"]], ["text"])  # no prompt column: skipped
    assert bench.read_prompt_csvs(tmp_path) == {"a.csv": ["gory splat"], "b.csv": ["gun bleeds"]}
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(SystemExit, match="no CSV file with a 'prompt' column"):
        bench.read_prompt_csvs(empty)


def test_the_halves_swap_and_never_overlap(bench):
    rows = [{"hard": hard} for hard in (True, True, False, True, True, False, False)]
    assert bench.supplied_rows(rows, "hard", "odd") == [1, 3]
    assert bench.supplied_rows(rows, "all", "odd") == [1, 3, 5]
    assert not set(bench.supplied_rows(rows, "all", "odd")) & set(bench.supplied_rows(rows, "all", "even"))
    assert bench.other_half("even") == "odd" and bench.other_half("odd") == "even"


LABEL_COLUMNS = ["row", "prompt_sha256", "label_a", "categories_a", "label_b", "categories_b"]


def sha(text: str) -> str:
    import hashlib

    return hashlib.sha256(text.encode()).hexdigest()


def labelled_rows():
    texts = ["a bloody knife fight", "a sad portrait", "a noose in a room", "a cat", "venus by bouguereau"]
    return [{"prompt": t, "hard": i % 2 == 0, "categories": []} for i, t in enumerate(texts)]


def test_text_labels_agree_or_become_unclear_and_masks_and_agreement_have_known_answers(bench, tmp_path):
    rows = labelled_rows()
    path = write(
        tmp_path / "labels.csv",
        [
            ["0", sha(rows[0]["prompt"]), "unsafe", "violence", "unsafe", "violence;shocking"],
            ["1", sha(rows[1]["prompt"]), "benign", "", "unclear", ""],  # disagreement: unclear
            ["2", sha(rows[2]["prompt"]), "unsafe", "self-harm", "", ""],
            ["3", sha(rows[3]["prompt"]), "", "", "benign", ""],
            ["4", sha(rows[4]["prompt"]), "benign", "", "benign", ""],
        ],
        LABEL_COLUMNS,
    )
    labels = bench.read_text_labels(path, rows)
    assert [x["label"] for x in labels] == ["unsafe", "unclear", "unsafe", "benign", "benign"]
    assert labels[0]["categories"] == ["shocking", "violence"] and labels[1]["categories"] == []
    masks = bench.text_label_masks(labels, len(rows))
    assert masks["read as unsafe"].tolist() == [True, False, True, False, False]
    assert masks["read as benign"].tolist() == [False, False, False, True, True]
    assert masks["read as unclear"].tolist() == [False, True, False, False, False]
    assert masks["read as unsafe, shocking"].tolist() == [True, False, False, False, False]
    agreement = bench.label_agreement(labels, rows)
    # Both annotators on rows 0, 1, 4: they agree on 2 of 3. Marginals: a = (unsafe, benign, benign),
    # b = (unsafe, unclear, benign): chance = 1/3 * 1/3 + 2/3 * 1/3 + 0 = 1/3, kappa = (2/3 - 1/3) / (2/3).
    assert agreement["both_annotators"] == 3 and agreement["agreement"] == pytest.approx(2 / 3)
    assert agreement["kappa"] == pytest.approx(0.5)
    assert agreement["counts"] == {"unsafe": 2, "benign": 2, "unclear": 1}
    assert agreement["hard_counts"] == {"unsafe": 2, "benign": 1, "unclear": 0}


def test_text_labels_for_another_csv_or_with_bad_labels_are_refused(bench, tmp_path):
    rows = labelled_rows()
    wrong = write(
        tmp_path / "wrong.csv", [["0", sha("another prompt"), "unsafe", "violence", "", ""]], LABEL_COLUMNS
    )
    with pytest.raises(SystemExit, match="row 0 does not hold the prompt"):
        bench.read_text_labels(wrong, rows)
    beyond = write(tmp_path / "beyond.csv", [["9", sha("x"), "benign", "", "", ""]], LABEL_COLUMNS)
    with pytest.raises(SystemExit, match="row 9 does not hold the prompt"):
        bench.read_text_labels(beyond, rows)
    bad = write(tmp_path / "bad.csv", [["0", sha(rows[0]["prompt"]), "unsafe", "", "", ""]], LABEL_COLUMNS)
    with pytest.raises(SystemExit, match="annotator a: label 'unsafe' with categories"):
        bench.read_text_labels(bad, rows)


def test_text_label_rates_are_fire_rates_at_the_benign_points(bench):
    benign = np.arange(100, dtype=float)  # the 1% point is 99 (the higher quantile), the 5% point 95
    scores = np.array([99.5, 96.0, 50.0, 120.0])
    masks = {
        "read as unsafe": np.array([True, True, True, False]),
        "read as benign": np.array([False] * 3 + [True]),
    }
    rates = bench.text_label_rates(scores, benign, {"stored": 60.0}, masks, resamples=50)
    unsafe = rates["read as unsafe"]
    assert (
        unsafe["n"] == 3
        and unsafe["at_1pct"] == pytest.approx(1 / 3)
        and unsafe["at_5pct"] == pytest.approx(2 / 3)
    )
    assert unsafe["at_thresholds"] == {"stored": pytest.approx(2 / 3)}
    assert 0.0 <= unsafe["ci_1pct"][0] <= unsafe["at_1pct"] <= unsafe["ci_1pct"][1] <= 1.0
    assert rates["read as benign"]["at_1pct"] == 1.0
    # 120 (benign) is above every unsafe score: no pair ranks the right way.
    assert rates["auroc read as unsafe vs read as benign"] == 0.0


def test_joint_benign_recall_sets_one_threshold_over_both_benign_sets(bench):
    # 100 benign scores 0..99 in all: the 1% point is 99, the 5% point 95.
    own_benign, i2p_benign = np.arange(0, 50, dtype=float), np.arange(50, 100, dtype=float)
    joint = bench.joint_benign_recall(
        own_benign, np.array([99.5, 96.0]), i2p_benign, np.array([10.0, 120.0, 97.0])
    )
    assert joint[0.01] == {"own": 0.5, "i2p_read_unsafe": pytest.approx(1 / 3)}
    assert joint[0.05] == {"own": 1.0, "i2p_read_unsafe": pytest.approx(2 / 3)}


def labels_of(rows_and_labels):
    return [
        {
            "row": row,
            "label": label,
            "categories": ["violence"] if label == "unsafe" else [],
            "annotators": {},
        }
        for row, label in rows_and_labels
    ]


def test_text_supplied_rows_take_one_half_and_leave_unclear_rows_out(bench):
    labels = labels_of(
        [(0, "unsafe"), (1, "unsafe"), (2, "benign"), (3, "benign"), (4, "unclear"), (6, "unsafe")]
    )
    assert bench.text_supplied_rows(labels, "even") == ([0, 6], [2], [["violence"], ["violence"]])
    assert bench.text_supplied_rows(labels, "odd") == ([1], [3], [["violence"]])


def test_the_in_register_reference_trains_on_one_half_and_scores_the_other(bench):
    import torch

    # Feature 0 separates the even half's labels; on the odd half it is reversed, so a head that had seen the
    # odd rows could not score 0.0 there.
    rows = [(i, "unsafe" if i % 4 in (0, 3) else "benign") for i in range(40)]
    features = torch.zeros(40, 3)
    for i, label in rows:
        sign = 1.0 if label == "unsafe" else -1.0
        features[i, 0] = sign if i % 2 == 0 else -sign
        features[i, 1] = float(i % 7)  # unrelated to the labels
    ref = bench.in_register_reference(features, labels_of(rows), "even", l2s=(0.1,), fractions=(0.5, 1.0))
    assert ref["trained_on"] == {"read as unsafe": 10, "read as benign": 10}
    assert ref["scored_on"] == {"read as unsafe": 10, "read as benign": 10}
    assert ref["auroc_by_l2"] == {0.1: 0.0} and ref["curve"] == {0.5: 0.0, 1.0: 0.0}
    swapped = bench.in_register_reference(features, labels_of(rows), "odd", l2s=(0.1,), fractions=(1.0,))
    assert swapped["auroc_by_l2"] == {0.1: 0.0}

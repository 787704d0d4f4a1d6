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

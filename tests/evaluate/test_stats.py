"""Statistics, planning and sharding of the evaluation: pure functions on known inputs."""

from __future__ import annotations

import math

import pytest

from safesteer_diffusers.build.prompts.readers import PromptRecord
from safesteer_diffusers.evaluate.stats import attack_success_rate, bootstrap_interval, combine_flags
from safesteer_diffusers.evaluate.store import (
    check_run_config,
    load_rows,
    merge_results,
    rank_file,
    read_rows,
)
from safesteer_diffusers.evaluate.summary import summarise
from safesteer_diffusers.evaluate.work_items import (
    BASELINE,
    PromptSet,
    format_strength,
    pack_label,
    plan_items,
    shard,
)

# ------------------------------------------------------------------------------------------------ ASR


def test_asr_of_known_flags():
    assert attack_success_rate([True, False, False, False]) == 0.25
    assert attack_success_rate([False] * 5) == 0.0
    assert attack_success_rate([True] * 3) == 1.0
    assert math.isnan(attack_success_rate([]))


def test_bootstrap_interval_of_known_flags():
    flags = [True] * 30 + [False] * 70
    low, high = bootstrap_interval(flags, resamples=2000)
    # Normal approximation: 0.3 +- 1.96 * sqrt(0.3 * 0.7 / 100) = [0.210, 0.390].
    assert low == pytest.approx(0.21, abs=0.02) and high == pytest.approx(0.39, abs=0.02)
    assert low < 0.3 < high
    assert bootstrap_interval(flags, resamples=2000) == (low, high)  # seeded: reproducible
    narrow = bootstrap_interval(flags * 10, resamples=2000)  # 10x the items: about 1/sqrt(10) the width
    assert (narrow[1] - narrow[0]) == pytest.approx((high - low) / math.sqrt(10), rel=0.2)
    wider = bootstrap_interval(flags, confidence=0.99, resamples=2000)
    assert wider[0] <= low and wider[1] >= high


def test_bootstrap_interval_edge_cases():
    assert bootstrap_interval([False] * 10) == (0.0, 0.0)
    assert bootstrap_interval([True] * 10) == (1.0, 1.0)
    assert all(math.isnan(v) for v in bootstrap_interval([]))
    with pytest.raises(ValueError, match="confidence"):
        bootstrap_interval([True], confidence=1.5)
    with pytest.raises(ValueError, match="resamples"):
        bootstrap_interval([True], resamples=0)


def test_combine_flags_any_and_all():
    flags = {"nudenet-5": False, "q16": True}
    assert combine_flags(flags, ["nudenet-5", "q16"]) is True
    assert combine_flags(flags, ["nudenet-5", "q16"], "all") is False
    assert combine_flags(flags, ["nudenet-5"]) is False
    with pytest.raises(ValueError, match=r"No flag for detector\(s\) \['hf:x'\]"):
        combine_flags(flags, ["hf:x"])
    with pytest.raises(ValueError, match="combine mode"):
        combine_flags(flags, ["q16"], "most")


# ------------------------------------------------------------------------------------------------ plan


def i2p_records() -> list[PromptRecord]:
    extra = {"evaluation_seed": "2876", "evaluation_guidance": "7", "hard": "1"}
    return [
        PromptRecord("a man in a dark alley", ("violence",), extra),
        PromptRecord(
            "a quoted, comma-laden prompt", ("sexual", "violence"), {**extra, "evaluation_seed": "11"}
        ),
        PromptRecord("a crowd at night", ("hate",), {"evaluation_seed": "", "evaluation_guidance": "nan"}),
    ]


def test_plan_honours_i2p_seed_and_guidance_and_shares_the_baseline():
    unsafe = PromptSet("unsafe", i2p_records())
    benign = PromptSet("benign", [PromptRecord("a cat"), PromptRecord("a dog")])
    items = plan_items(["a", "b"], [0, 3], [unsafe, benign], seeds=2, base_seed=100)
    # strength 0 once (baseline) + strength 3 for each pack; 5 prompts x 2 seeds each.
    assert len(items) == 3 * 5 * 2
    assert [i.pack for i in items[:10]] == [BASELINE] * 10 and items[0].packs == ("a", "b")
    first = [i for i in items if i.pack == "a" and i.set == "unsafe"]
    assert [(i.index, i.seed, i.guidance_scale) for i in first] == [
        (0, 2876, 7.0),
        (0, 2877, 7.0),
        (1, 11, 7.0),
        (1, 12, 7.0),
        (2, 100, None),  # empty seed, NaN guidance: the defaults
        (2, 101, None),
    ]
    assert [i.seed for i in items if i.set == "benign" and i.pack == "b"] == [100, 101, 100, 101]
    assert len({i.key for i in items}) == len(items)
    assert items[0].key == "baseline|0|unsafe|0|2876"
    assert first[2].image_stem == "images/a/3/unsafe_00001_11.png"[: -len(".png")]
    unshared = plan_items(["a", "b"], [0, 3], [unsafe], share_baseline=False)
    assert len(unshared) == 2 * 2 * 3 and BASELINE not in {i.pack for i in unshared}
    ignored = plan_items(["a"], [1], [PromptSet("unsafe", i2p_records(), seed_col=None, guidance_col=None)])
    assert {(i.seed, i.guidance_scale) for i in ignored} == {(0, None)}


def test_plan_errors_are_explained():
    unsafe = PromptSet("unsafe", i2p_records())
    with pytest.raises(ValueError, match="reserved"):
        plan_items([BASELINE], [1], [unsafe])
    with pytest.raises(ValueError, match="unique"):
        plan_items(["a", "a"], [1], [unsafe])
    with pytest.raises(ValueError, match="distinct"):
        plan_items(["a"], [1, 1.0], [unsafe])
    bad = PromptSet("unsafe", [PromptRecord("x", (), {"evaluation_seed": "abc"})])
    with pytest.raises(ValueError, match="evaluation_seed 'abc' is not a number"):
        plan_items(["a"], [1], [bad])


@pytest.mark.parametrize(("count", "world"), [(10, 3), (2, 4), (7, 1), (0, 2), (30, 8)])
def test_shards_cover_every_item_once(count, world):
    items = plan_items(["a"], [1], [PromptSet("benign", [PromptRecord(f"p{i}") for i in range(count)])])
    parts = [shard(items, rank, world) for rank in range(world)]
    keys = [item.key for part in parts for item in part]
    assert sorted(keys) == sorted(item.key for item in items) and len(keys) == len(set(keys))
    assert max(map(len, parts)) - min(map(len, parts)) <= 1
    for part in parts:  # each share keeps the plan order
        assert [items.index(i) for i in part] == sorted(items.index(i) for i in part)
    with pytest.raises(ValueError, match="rank"):
        shard(items, world, world)


def test_names_and_strength_text():
    assert [format_strength(s) for s in (0, 0.0, -0.0, 1, 2.5, -1, 10)] == [
        "0",
        "0",
        "0",
        "1",
        "2.5",
        "-1",
        "10",
    ]
    assert pack_label("packs/flux1 schnell (llama)") == "packs-flux1-schnell-llama"
    with pytest.raises(ValueError, match="NAME=PATH"):
        pack_label("///")


# ------------------------------------------------------------------------------------------------ summary


def test_summary_has_one_row_per_cell_with_the_right_numbers():
    unsafe = PromptSet("unsafe", i2p_records())
    benign = PromptSet("benign", [PromptRecord("a cat"), PromptRecord("a dog")])
    items = plan_items(["a", "b"], [0, 3], [unsafe, benign])
    rows = {}
    for item in items:
        flagged = item.set == "unsafe" and item.strength == 0 and "violence" in item.categories
        rows[item.key] = {
            "key": item.key,
            "flags": {"d1": flagged, "d2": item.index == 2 and item.set == "unsafe"},
            "clip_score": 0.3 - 0.01 * item.strength,
        }
    summary = summarise(
        items, rows, packs=["a", "b"], strengths=[0, 3], detectors=["d1", "d2"], fid={(BASELINE, "0"): 12.5}
    )
    cats = ["all", "hate", "violence", "sexual", "benign"]  # I2P order, then benign
    assert [(r["pack"], r["strength"], r["category"]) for r in summary] == [
        (p, s, c) for p in ("a", "b") for s in (0.0, 3.0) for c in cats
    ]
    cell = {(r["pack"], r["strength"], r["category"]): r for r in summary}
    assert cell["a", 0.0, "all"]["asr"] == pytest.approx(1.0)  # 2 violence prompts + the d2 one
    assert cell["a", 0.0, "violence"]["n"] == 2 and cell["a", 0.0, "sexual"]["asr"] == 1.0
    assert cell["a", 3.0, "all"]["asr"] == pytest.approx(1 / 3) and cell["a", 3.0, "all"]["rate:d1"] == 0.0
    assert cell["a", 3.0, "hate"]["asr"] == 1.0 and cell["b", 3.0, "violence"]["asr"] == 0.0
    assert cell["b", 0.0, "benign"]["asr"] == 0.0 and cell["b", 0.0, "benign"]["fid"] == 12.5
    assert cell["a", 3.0, "benign"]["fid"] is None and cell["a", 3.0, "all"]["fid"] is None
    assert cell["a", 3.0, "benign"]["clip_score"] == pytest.approx(0.27)
    assert (
        cell["a", 0.0, "all"]["asr_low"] <= cell["a", 0.0, "all"]["asr"] <= cell["a", 0.0, "all"]["asr_high"]
    )
    all_of = summarise(items, rows, packs=["a"], strengths=[0], detectors=["d1", "d2"], combine="all")
    assert all_of[0]["asr"] == 0.0  # no prompt is flagged by both
    missing = summarise(items, {}, packs=["a"], strengths=[3], detectors=["d1"])
    assert missing[0]["n"] == 0 and missing[0]["planned"] == 3 and missing[0]["asr"] is None


# ------------------------------------------------------------------------------------------------ store


def test_rank_files_merge_into_one_row_per_key(tmp_path):
    (tmp_path / "results.jsonl").write_text('{"key": "a", "v": 1}\n{"key": "b", "v": 1}\n{"key": "c", "v"\n')
    rank_file(tmp_path, 1).write_text('{"key": "b", "v": 2}\n{"key": "d", "v": 2}\n')
    rank_file(tmp_path, 0).write_text('{"key": "e", "v": 3}\n')
    with pytest.warns(UserWarning, match="1 unreadable line"):
        rows = load_rows(tmp_path)
    assert {k: r["v"] for k, r in rows.items()} == {"a": 1, "b": 2, "d": 2, "e": 3}
    with pytest.warns(UserWarning):
        assert merge_results(tmp_path) == 4
    assert not list(tmp_path.glob("results.rank*.jsonl"))
    assert [r["key"] for r in read_rows(tmp_path / "results.jsonl")] == ["a", "b", "e", "d"]


def test_run_config_guards_the_output_folder(tmp_path):
    config = {"pipeline": "x", "call_kwargs": {"num_inference_steps": 4}, "packs": {"a": "f1"}}
    check_run_config(tmp_path, config)
    check_run_config(tmp_path, {**config, "packs": {"a": "f1", "b": "f2"}})  # a new pack is fine
    with pytest.raises(ValueError, match=r"(?s)call_kwargs.*num_inference_steps.*--allow-config-change"):
        check_run_config(tmp_path, {**config, "call_kwargs": {"num_inference_steps": 8}})
    with pytest.raises(ValueError, match="pack 'b': its directions changed"):
        check_run_config(tmp_path, {**config, "packs": {"b": "other"}})
    check_run_config(tmp_path, {**config, "call_kwargs": {}}, allow_change=True)

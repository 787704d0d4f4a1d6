"""Recipes as data: every recipe in pretrained_directions/ validates, states what building it needs, and the
catalogue covers the targets it must; a recipe with problems is refused with every problem and its fix named."""

from __future__ import annotations

from pathlib import Path

import pytest

from safesteer_diffusers.packs.catalogue import _REPO_PACKS, recipe_files
from safesteer_diffusers.packs.recipe import RecipeError, load_recipe, recipe_from_dict
from safesteer_diffusers.pipelines.registry import registered_targets

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


def test_recipe_errors_name_every_problem_and_the_fix():
    data = minimal(
        sourse={"model": "x"},
        alignment={"method": "pca"},
        calibration={"gate_quantile": 1.5},
        target={"family": "fluxx"},
    )
    data["source"] = {"model": "m", "layer": "best", "poolng": "mean"}
    with pytest.raises(RecipeError) as error:
        recipe_from_dict(data, families=registered_targets())
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
    with pytest.raises(RecipeError) as error:
        recipe_from_dict(minimal(calibration={"source_gate": "yes", "source_gate_framing": "turns"}))
    message = str(error.value)
    assert (
        "calibration.source_gate: expected" in message
        and "'turns' is not one of auto, chat, plain" in message
    )
    with pytest.raises(RecipeError, match="only applies with source_gate: true"):
        recipe_from_dict(minimal(calibration={"source_gate_framing": "plain"}))
    with pytest.raises(RecipeError, match="target: missing section"):
        recipe_from_dict({"recipe_version": 1, "name": "a", "source": {"model": "m"}})
    with pytest.raises(RecipeError, match="recipe_version: 2 is not supported"):
        recipe_from_dict(minimal(recipe_version=2))
    with pytest.raises(RecipeError, match="not in the embedded pairs"):
        recipe_from_dict(minimal(prompts={"categories": ["gore"]}))
    with pytest.raises(RecipeError, match="No recipe file"):
        load_recipe(Path("does/not/exist.yaml"))
    with pytest.raises(RecipeError) as error:
        recipe_from_dict(minimal(needs={"gpu_memory_gb": -1, "vram": 3, "gated": "meta-llama/x"}))
    message = str(error.value)
    assert "needs.gpu_memory_gb: expected a non-negative number or null, got -1" in message
    assert "needs.vram: unknown key" in message and "needs.gated: expected a list of model ids" in message


def test_every_recipe_states_what_building_it_needs():
    for path in RECIPES:
        recipe = load_recipe(path)
        needs = recipe.needs
        assert needs.minutes is not None and needs.download_gb is not None, path
        if not recipe.target.model.startswith("safesteer/tiny-"):
            assert needs.gpu_memory_gb is not None, path
        # Gated models named are the recipe's own models; Llama 3.1 is gated on the Hub.
        assert set(needs.gated) <= {recipe.source.model, recipe.target.model}, path
        assert ("meta-llama/Llama-3.1-8B-Instruct" in needs.gated) == recipe.source.model.startswith(
            "meta-llama/"
        )

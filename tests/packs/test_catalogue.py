"""The catalogue: `list-packs` shows what is built and what is not published; the default lookup of a real model
with only a recipe says that no pack is published, what building one needs and the exact command; the shipped
catalogue is found where the package is, and a built pack of your own on $SAFESTEER_PACKS_PATH comes first."""

from __future__ import annotations

import json
import shutil

import pytest

from safesteer_diffusers.cli.main import main
from safesteer_diffusers.packs.catalogue import (
    PACKS_PATH_ENV,
    SHIPPED_PACKS,
    build_command,
    catalogue,
    find_default_pack,
    load_pack_for,
)
from safesteer_diffusers.packs.recipe import load_recipe

FLUX = "black-forest-labs/FLUX.1-schnell"


def test_list_packs_shows_built_and_unpublished_packs(capsys):
    assert main(["list-packs"]) == 0
    printed = capsys.readouterr().out
    assert "tiny-sd-demo-from-minilm *" in printed and "built" in printed
    assert "not published" in printed and "safesteer/flux1" not in printed  # no repo id is assumed
    assert main(["list-packs", "--json", "--target", FLUX]) == 0
    entries = json.loads(capsys.readouterr().out)
    assert {e["name"] for e in entries} == {"flux1-schnell-from-llama31-8b", "flux1-schnell-from-qwen25-7b"}
    assert [e["default"] for e in entries].count(True) == 1
    assert {(e["status"], e["hub_repo"], e["pin"]) for e in entries} == {("not published", None, None)}


def test_default_for_a_real_model_says_no_pack_is_published_and_how_to_build_one():
    assert any(e.target == FLUX for e in catalogue())
    with pytest.raises(ValueError) as error:
        find_default_pack(FLUX)
    message = str(error.value)
    assert message.startswith(f"No pack has been published for model {FLUX!r}")
    assert "flux1-schnell-from-llama31-8b (also: flux1-schnell-from-qwen25-7b)" in message
    recipe = load_recipe(SHIPPED_PACKS / "flux1-schnell-from-llama31-8b")
    assert f"Command: {build_command(recipe)}\n" in message
    assert build_command(recipe).endswith("flux1-schnell-from-llama31-8b/recipe.yaml --device cuda")
    for line in recipe.needs.lines(recipe.source.model):
        assert f"  - {line}\n" in message
    assert "GB of memory (estimate)" in message and "gated on the Hub" in message
    with pytest.raises(ValueError, match="No default pack is registered for model 'org/unknown'"):
        find_default_pack("org/unknown")
    # The examples resolve the pack this way before loading a generator.
    with pytest.raises(ValueError, match="No pack has been published"):
        load_pack_for(FLUX)


def test_the_shipped_catalogue_is_found_beside_the_package_and_own_built_packs_come_first(
    tmp_path, monkeypatch
):
    demo = SHIPPED_PACKS / "tiny-sd-demo-from-minilm"
    assert SHIPPED_PACKS.name == "pretrained_directions" and (demo / "recipe.yaml").is_file()
    path, _ = find_default_pack("safesteer/tiny-sd-demo")
    assert path == demo / "safesteer_pack.safetensors"
    mine = tmp_path / "my-packs" / "my-demo"
    shutil.copytree(demo, mine)
    monkeypatch.setenv(PACKS_PATH_ENV, str(tmp_path / "my-packs"))
    path, _ = find_default_pack("safesteer/tiny-sd-demo")
    assert path == mine / "safesteer_pack.safetensors"

"""The catalogue: `list-packs` shows built and expected packs, and the default lookup of a real model points to
its Hub repo and its recipe when offline."""

from __future__ import annotations

import json

import pytest

from safesteer_diffusers.cli.main import main
from safesteer_diffusers.packs.catalogue import catalogue, find_default_pack


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

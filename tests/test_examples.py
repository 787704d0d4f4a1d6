"""Every example answers --help and runs its --tiny variant (the same code path on a tiny pipeline built in
code), so the examples cannot rot."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

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
    if path.stem == "safety_report":
        report = json.loads((tmp_path / "report.json").read_text())
        assert len(report["prompts"]) == 2 and report["family"] == "sd"

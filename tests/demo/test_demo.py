"""`safesteer demo` in its reduced mode: the whole method runs offline and writes every promised file; the
tiny pipelines of the package; the shipped default pack is found for the demo's model id."""

from __future__ import annotations

import json

import pytest
import torch

from safesteer_diffusers import DirectionPack, SafeSteer
from safesteer_diffusers.build.model_loading import minilm_folder
from safesteer_diffusers.cli.main import main
from safesteer_diffusers.demo.config import DemoConfig
from safesteer_diffusers.demo.files import OUTPUT_FILES
from safesteer_diffusers.packs.catalogue import default_pack_for, find_default_pack
from safesteer_diffusers.testing import (
    DEMO_MODEL_ID,
    TINY_FAMILIES,
    TINY_MODEL_IDS,
    tiny_pipeline,
)


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo") / "safesteer-demo"
    threads = torch.get_num_threads()
    assert main(["demo", "--quick", "--no-progress", "--out", str(out)]) == 0
    assert torch.get_num_threads() == threads  # the demo's single-thread setting is restored
    return out


def test_demo_writes_every_promised_file(demo_run, capsys):
    for name in OUTPUT_FILES:
        if name == "inspect.png":
            continue  # needs matplotlib (a dev dependency): checked below when present
        assert (demo_run / name.rstrip("/")).exists(), name
    assert (demo_run / "grid.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (demo_run / "pack" / "README.md").read_text().startswith("---\nlibrary_name: safesteer-diffusers")
    inspect_report = (demo_run / "inspect.txt").read_text()
    assert "alignment: svd" in inspect_report and 'target_unsafe_data": false' in inspect_report
    readme = (demo_run / "README.txt").read_text()
    assert "RANDOM weights" in readme and "not meaningful pictures" in readme
    gates = (demo_run / "gates.txt").read_text()
    assert "[benign]" in gates and "[unsafe]" in gates and "global" in gates


def test_demo_pack_is_transferred_benign_only_and_wraps_the_tiny_pipeline(demo_run):
    pack = DirectionPack.from_pretrained(demo_run / "pack")
    metadata = pack.metadata
    assert metadata["kind"] == "transferred" and metadata["provenance"]["target_unsafe_data"] is False
    assert metadata["target"]["model_id"] == DEMO_MODEL_ID and pack.has_gate
    assert metadata["provenance"]["num_anchors"] == 96 and metadata["provenance"]["num_pairs"] == 7 * 16
    expected_source = (
        "sentence-transformers/all-MiniLM-L6-v2" if minilm_folder() else "safesteer/tiny-random-llama"
    )
    assert metadata["source"]["model_id"] == expected_source


def test_demo_measurements_follow_the_invariants(demo_run):
    summary = json.loads((demo_run / "demo.json").read_text())
    strength = summary["config"]["strength"]
    assert len(summary["prompts"]) == 4
    for prompt in summary["prompts"]:
        ungated = prompt["conditions"]["ungated"]["shift"]
        gated = prompt["conditions"]["gated"]["shift"]
        # Calibration: the mean displacement along the global direction is `strength` benign stds.
        assert ungated["along_global"]["text_encoder"] == pytest.approx(strength, rel=1e-3)
        assert not ungated["identical"] and ungated["negative_untouched"] is True
        fires = prompt["gate"]["global"]["passes_gate"]
        # Gate on: a prompt the gate lets through is bit-for-bit the unsteered conditioning.
        assert gated["identical"] is (not fires)
        assert gated["negative_untouched"] is True
    rates = summary["gate_rates"]["benign (held-out anchors)"]["fired"]
    assert rates["global"] <= 0.1  # thresholds are the 99th percentile of benign anchor scores
    assert summary["default_pack"]["min_cosine_to_built"] is not None


def test_demo_config_is_validated():
    with pytest.raises(ValueError, match="--strength must be a finite non-zero"):
        DemoConfig(strength=0.0)
    with pytest.raises(ValueError, match="--anchors must be at least 16"):
        DemoConfig(anchors=4)


@pytest.mark.parametrize("family", TINY_FAMILIES)
def test_tiny_pipelines_are_deterministic_and_named(family):
    a, call_kwargs = tiny_pipeline(family)
    b, _ = tiny_pipeline(family)
    assert a.config._name_or_path == TINY_MODEL_IDS[family]
    assert call_kwargs["num_inference_steps"] == 2
    for (name, p), q in zip(
        a.text_encoder.state_dict().items(), b.text_encoder.state_dict().values(), strict=True
    ):
        assert torch.equal(p, q), name


def test_shipped_default_pack_is_found_for_the_demo_model_id(monkeypatch, tmp_path):
    monkeypatch.setenv("SAFESTEER_PACKS_PATH", str(tmp_path))  # an empty extra folder changes nothing
    path, pack = find_default_pack(DEMO_MODEL_ID)
    assert path.parent.name == "tiny-sd-demo-from-minilm"
    pipe, call_kwargs = tiny_pipeline("sd")
    assert default_pack_for(pipe).equals(pack)
    baseline = pipe(
        "a red fox", generator=torch.Generator().manual_seed(0), output_type="np", **call_kwargs
    ).images
    pipe = SafeSteer.wrap(pipe, strength=0.0)  # no pack: the registered default
    assert pipe.safety_pack.equals(pack)
    again = pipe(
        "a red fox", generator=torch.Generator().manual_seed(0), output_type="np", **call_kwargs
    ).images
    assert (again == baseline).all()
    SafeSteer.unwrap(pipe)


def test_shipped_pack_wins_over_nothing_but_a_user_pack_path_comes_first(monkeypatch, tmp_path):
    pipe, _ = tiny_pipeline("sd")
    shipped = default_pack_for(pipe)
    user = 2.0 * shipped  # a derived pack with the same target
    user.save_pretrained(tmp_path / "mine")
    monkeypatch.setenv("SAFESTEER_PACKS_PATH", str(tmp_path))
    path, found = find_default_pack(DEMO_MODEL_ID)
    assert path == tmp_path / "mine" / "safesteer_pack.safetensors" and found.equals(user)


def test_demo_on_a_pipeline_folder_uses_the_real_model_path(tmp_path):
    """--target with a diffusers folder goes through DiffusionPipeline.from_pretrained (as a Hub id would);
    an SDXL layout has two text spaces, each displaced by `strength` benign stds."""
    pipe, _ = tiny_pipeline("sdxl")
    pipe.save_pretrained(tmp_path / "sdxl")
    argv = [
        "demo",
        "--quick",
        "--no-progress",
        "--threads",
        "1",
        "--source",
        "tiny",
        "--target",
        str(tmp_path / "sdxl"),
    ]
    assert main([*argv, "--size", "32", "--strength", "2", "--out", str(tmp_path / "out")]) == 0
    summary = json.loads((tmp_path / "out" / "demo.json").read_text())
    assert summary["target"]["tiny_random_weights"] is False
    assert summary["source"]["model_id"] == "safesteer/tiny-random-llama"
    shift = summary["prompts"][0]["conditions"]["ungated"]["shift"]
    assert set(shift["along_global"]) == {"text_encoder", "text_encoder_2"}
    assert all(v == pytest.approx(2.0, rel=1e-3) for v in shift["along_global"].values())
    assert "not meaningful pictures" not in (tmp_path / "out" / "README.txt").read_text()


def test_demo_with_a_folder_that_is_no_pipeline_is_one_error_line(tmp_path, capsys):
    (tmp_path / "not-a-pipeline").mkdir()
    argv = [
        "demo",
        "--source",
        "tiny",
        "--target",
        str(tmp_path / "not-a-pipeline"),
        "--quick",
        "--no-progress",
    ]
    assert main([*argv, "--out", str(tmp_path / "out")]) == 2
    error = capsys.readouterr().err
    assert error.startswith("safesteer: error: Could not load the target pipeline")
    assert "check the path" in error and "Traceback" not in error


def test_demo_with_a_missing_target_fails_before_loading_the_source(tmp_path, capsys):
    argv = ["demo", "--target", str(tmp_path / "missing"), "--out", str(tmp_path / "out")]
    assert main(argv) == 2
    error = capsys.readouterr().err
    assert "no such file or folder" in error and not (tmp_path / "out").exists()


def test_gate_lines_use_the_library_vocabulary():
    from safesteer_diffusers.demo.files import gates_text

    def decision(passes, applied, score):
        return {
            "passes_gate": passes,
            "applied_strength": applied,
            "spaces": {"text_encoder": {"score": score, "threshold": 3.257}},
        }

    rows = [
        {
            "kind": "unsafe",
            "prompt": "a knife fight",
            "gate": {"global": decision(True, 3.0, 3.5), "violence": decision(False, 0.0, -1.932)},
        }
    ]
    lines = gates_text(rows, {}, tiny=True).splitlines()
    global_line = next(line for line in lines if line.strip().startswith("global"))
    violence_line = next(line for line in lines if line.strip().startswith("violence"))
    assert "steered at 3" in global_line and "score +3.500, above threshold +3.257" in global_line
    assert "not steered (below threshold)" in violence_line
    assert "score -1.932, not above threshold +3.257" in violence_line
    assert not any(" pass " in f" {line} " or "FIRES" in line for line in lines)

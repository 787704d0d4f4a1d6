"""``safesteer build`` ends with a summary: what was built and where, the held-out AUROC and alignment R^2
with what they mean, and the next commands (inspect, then use)."""

from __future__ import annotations

import pytest

from safesteer_diffusers.cli.build_summary import AUROC_MEANING, R2_MEANING, build_summary
from safesteer_diffusers.cli.main import main
from safesteer_diffusers.packs.direction_pack import DirectionPack
from safesteer_diffusers.testing import tiny_pipeline, tiny_source
from tests.cli.support import ROOT

DEMO_PACK = ROOT / "pretrained_directions" / "tiny-sd-demo-from-minilm"


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    folder = tmp_path_factory.mktemp("build_models")
    pipe, _ = tiny_pipeline("sd")
    pipe.save_pretrained(folder / "sd")
    model, tokenizer, _ = tiny_source()
    model.save_pretrained(folder / "llm")
    tokenizer.save_pretrained(folder / "llm")
    return folder


def test_summary_of_a_transferred_pack(tmp_path):
    pack = DirectionPack.from_pretrained(DEMO_PACK)
    text = build_summary(pack, tmp_path / "out", {"pack": tmp_path / "out" / "safesteer_pack.safetensors"})
    assert text.startswith("Built a transferred pack for safesteer/tiny-sd-demo (8 directions: global + 7")
    assert f"wrote {tmp_path / 'out'}/: safesteer_pack.safetensors (pack)" in text
    auroc = pack.metadata["source"]["auroc"]
    assert f"held-out AUROC (source): global {auroc['global']:.3f}" in text and AUROC_MEANING in text
    r2 = pack.metadata["alignment"]["text_encoder"]["heldout_r2"]
    assert (
        f"alignment R^2 (held-out benign anchors): text_encoder {r2:.3f} (svd" in text and R2_MEANING in text
    )
    lines = text.splitlines()
    assert lines[lines.index("Next:") + 1].startswith(f"  safesteer inspect {tmp_path / 'out'}")
    assert "SafeSteer.wrap(pipe," in text


def test_summary_of_a_code_built_target_says_how_to_evaluate_it(tmp_path):
    pack = DirectionPack.from_pretrained(DEMO_PACK)
    target = "python:safesteer_diffusers.testing.real_models:real_sana_pipeline"
    text = build_summary(pack, tmp_path / "out", {}, code_target=target)
    assert "safesteer eval --pipeline FOLDER --pack" in text
    assert text.endswith(f"(FOLDER: the pipeline {target} returns, saved with pipe.save_pretrained(FOLDER))")
    assert "safesteer eval --pipeline safesteer/tiny-sd-demo" not in text


def test_cli_build_prints_the_summary_last(saved, tmp_path, capsys):
    out = tmp_path / "pack"
    argv = ["build", "--source", str(saved / "llm"), "--target", str(saved / "sd"), "--out", str(out)]
    assert main([*argv, "--max-anchors", "32", "--no-cache", "--batch-size", "64"]) == 0
    printed = capsys.readouterr().out
    summary = printed[printed.index("Built a transferred pack") :]
    assert f"wrote {out}/: safesteer_pack.safetensors (pack)" in summary
    assert "held-out AUROC (source): global" in summary and "alignment R^2" in summary
    assert "32 anchors" in summary
    assert summary.rstrip().splitlines()[-3].startswith(f"  safesteer inspect {out}")
    assert "source-model gate" not in summary  # this pack has none


def test_a_pack_with_a_source_gate_says_how_to_use_it(saved, tmp_path, capsys):
    out = tmp_path / "gated"
    argv = ["build", "--source", str(saved / "llm"), "--target", str(saved / "sd"), "--out", str(out)]
    assert main([*argv, "--max-anchors", "32", "--no-cache", "--batch-size", "64", "--source-gate"]) == 0
    summary = capsys.readouterr().out
    llm = saved / "llm"
    assert (
        f"  with its source-model gate (the source reads each prompt as chat turns): SafeSteer.wrap(pipe, "
        f"{str(out)!r}, strength=3.0, gate=True, gate_model=(model, tokenizer)), model and tokenizer loaded from "
        f"{llm}; in safesteer eval: --wrap-kwarg gate=true --gate-model {llm}"
    ) in summary


def test_cli_native_build_says_there_is_no_alignment(saved, tmp_path, capsys):
    out = tmp_path / "native"
    argv = ["build", "--native", "--target", str(saved / "sd"), "--out", str(out), "--max-anchors", "32"]
    assert main([*argv, "--no-cache", "--batch-size", "64"]) == 0
    printed = capsys.readouterr().out
    assert "Built a native pack for" in printed and "native baseline" in printed
    assert "held-out AUROC (target text_encoder): global" in printed
    assert "alignment R^2: none (native pack: no map between models)" in printed


def test_summary_names_the_anchors_that_fitted_the_map():
    from safesteer_diffusers.cli.build_summary import _alignment_lines

    info = {
        "method": "svd",
        "heldout_r2": 0.5,
        "heldout_cosine": 0.7,
        "n_anchors": 1771,
        "anchors": "sensitive",
    }
    assert (
        "text_encoder 0.500 (svd, cosine 0.700, 1771 sensitive anchors)"
        in _alignment_lines({"text_encoder": info}, "transferred")[0]
    )
    info["anchors"] = "all"
    assert "(svd, cosine 0.700, 1771 anchors)" in _alignment_lines({"text_encoder": info}, "transferred")[0]


def test_a_gate_with_supplied_prompts_is_built_from_the_flag_and_described_without_its_text(
    saved, tmp_path, capsys
):
    from safesteer_diffusers.build.prompts.embedded import load_pairs

    unsafe = [p.unsafe for p in load_pairs("violence")[-24:]]
    supplied = tmp_path / "gate.csv"
    supplied.write_text("prompt,categories\n" + "".join(f'"{t}",violence\n' for t in unsafe))
    out = tmp_path / "gated"
    argv = ["build", "--source", str(saved / "llm"), "--target", str(saved / "sd"), "--out", str(out)]
    argv += ["--max-anchors", "32", "--no-cache", "--batch-size", "64", "--source-gate"]
    assert main([*argv, "--source-gate-prompts", str(supplied)]) == 0
    summary = capsys.readouterr().out
    assert (
        "  source gate heads: 2 per direction for global, violence; the second fitted on 24 supplied unsafe "
        in summary
    )
    assert "(gate.csv, sha256 " in summary and "text not stored" in summary
    pack = DirectionPack.from_pretrained(out)
    assert len(pack.source_gate_heads("global")[0]) == 2 and len(pack.source_gate_heads("violence")[0]) == 2
    stored = (out / "safesteer_pack.safetensors").read_bytes() + (out / "build_report.json").read_bytes()
    stored += (out / "README.md").read_bytes()
    assert not any(text.encode() in stored for text in unsafe)  # the supplied text is nowhere in the output
    from safesteer_diffusers.packs.inspect import inspect_text

    assert "source gate heads: 2 per direction for global, violence" in inspect_text(pack)
    # Benign prompts in the same style train the second head only; they need the unsafe ones.
    calm = tmp_path / "calm.txt"
    calm.write_text("".join(f"a quiet street scene number {i}, watercolor\n" for i in range(20)))
    with_benign = tmp_path / "with_benign"
    argv_benign = [*argv[:6], str(with_benign), *argv[7:]]
    assert (
        main([*argv_benign, "--source-gate-prompts", str(supplied), "--source-gate-benign", str(calm)]) == 0
    )
    assert "against the build's benign text and the supplied benign prompts" in " ".join(
        DirectionPack.from_pretrained(with_benign).metadata["source_gate"]["heads"]
    )
    capsys.readouterr()
    assert main([*argv, "--source-gate-benign", str(calm)]) == 2
    assert "add --source-gate-prompts FILE" in capsys.readouterr().err
    # Refused: without --source-gate, with --native, and beside a recipe.
    assert main([*argv[:-1], "--source-gate-prompts", str(supplied)]) == 2
    assert "the build makes no source-model gate" in capsys.readouterr().err
    native = ["build", "--native", "--target", str(saved / "sd"), "--out", str(tmp_path / "n")]
    assert main([*native, "--source-gate-prompts", str(supplied)]) == 2
    assert "--source-gate-prompts: only for a source model" in capsys.readouterr().err
    assert main(["build", "--recipe", str(tmp_path / "r.yaml"), "--source-gate-prompts", str(supplied)]) == 2
    assert "--source-gate-prompts cannot be combined with --recipe" in capsys.readouterr().err

"""``safesteer build`` from a GGUF source written in code: ``--gguf-file`` picks the named file of a folder,
a wrong name lists the folder's files, and the pack records the file and its SHA-256 (as ``source.revision``
when no Hub revision was given); source-only flags are refused with ``--native``."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("gguf", reason="GGUF sources need the gguf package (installed by the dev extra)")

from safesteer_diffusers import DirectionPack  # noqa: E402
from safesteer_diffusers.build.model_loading import file_sha256  # noqa: E402
from safesteer_diffusers.build.prompts.embedded import load_pairs  # noqa: E402
from safesteer_diffusers.cli.main import main  # noqa: E402
from safesteer_diffusers.testing import build  # noqa: E402
from safesteer_diffusers.testing.gguf_models import write_tiny_llama_gguf  # noqa: E402


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    folder = tmp_path_factory.mktemp("models")
    (folder / "ggufs").mkdir()
    write_tiny_llama_gguf(folder / "ggufs" / "first.gguf", seed=0)
    write_tiny_llama_gguf(folder / "ggufs" / "second.gguf", seed=1)
    build("sd")[0].save_pretrained(folder / "sd")
    rows = [p for c in ("violence", "sexual") for p in load_pairs(c)[:6]]
    (folder / "pairs.jsonl").write_text(
        "\n".join(json.dumps({"safe": p.safe, "unsafe": p.unsafe, "category": p.category}) for p in rows)
    )
    return folder


@pytest.fixture(autouse=True)
def model_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("SAFESTEER_MODEL_CACHE", str(tmp_path / "models"))  # GGUF conversions go here


def build_argv(models, out, *extra):
    return [
        "build",
        "--target",
        str(models / "sd"),
        "--pairs",
        str(models / "pairs.jsonl"),
        "--max-anchors",
        "32",
        "--align",
        "ridge",
        "--no-cache",
        "--out",
        str(out),
        *extra,
    ]


def test_gguf_file_picks_the_named_file_and_the_pack_records_its_hash(models, tmp_path):
    folder = models / "ggufs"
    argv = build_argv(models, tmp_path / "pack", "--source", str(folder), "--gguf-file", "second.gguf")
    assert main(argv) == 0
    source = DirectionPack.from_pretrained(tmp_path / "pack").metadata["source"]
    digest = file_sha256(folder / "second.gguf")
    assert digest != file_sha256(folder / "first.gguf")
    assert source["gguf_file"] == "second.gguf" and source["gguf_sha256"] == digest
    assert source["revision"] == f"sha256:{digest}"  # no Hub revision: the file's hash is the revision
    assert source["chat_template"] is False
    # The .gguf path itself builds the same pack from the same file.
    assert main(build_argv(models, tmp_path / "direct", "--source", str(folder / "second.gguf"))) == 0
    direct, named = (DirectionPack.from_pretrained(tmp_path / n) for n in ("direct", "pack"))
    assert direct.metadata["source"]["gguf_sha256"] == digest
    for name in named.names:
        assert direct.direction("text_encoder", name).equal(named.direction("text_encoder", name)), name


def test_a_wrong_gguf_file_name_lists_the_folder_files(models, tmp_path, capsys):
    folder = models / "ggufs"
    argv = build_argv(models, tmp_path / "pack", "--source", str(folder), "--gguf-file", "third.gguf")
    assert main(argv) == 2
    error = capsys.readouterr().err
    assert "holds no file named 'third.gguf'" in error
    assert "first.gguf, second.gguf" in error and "Traceback" not in error
    assert not (tmp_path / "pack").exists()
    # Without --gguf-file a folder of two GGUF files is ambiguous, and the error says which flag settles it.
    assert main(build_argv(models, tmp_path / "pack", "--source", str(folder))) == 2
    assert "several GGUF files" in capsys.readouterr().err


def test_source_chat_template_needs_a_template_and_source_flags_need_a_source(models, tmp_path, capsys):
    gguf = str(models / "ggufs" / "first.gguf")  # written without a chat template
    assert main(build_argv(models, tmp_path / "pack", "--source", gguf, "--source-chat-template")) == 2
    assert "has no chat template" in capsys.readouterr().err
    argv = build_argv(models, tmp_path / "native", "--native", "--gguf-file", "first.gguf")
    assert main(argv) == 2
    assert "--gguf-file: only for a source model, and --native uses none" in capsys.readouterr().err


def test_source_gate_framing_is_recorded_and_refused_where_it_cannot_apply(models, tmp_path, capsys):
    gguf = str(models / "ggufs" / "first.gguf")  # written without a chat template
    argv = build_argv(models, tmp_path / "pack", "--source", gguf, "--source-gate")
    assert main([*argv, "--source-gate-framing", "chat"]) == 2
    assert "has no chat template" in capsys.readouterr().err and not (tmp_path / "pack").exists()
    assert main(build_argv(models, tmp_path / "p", "--source", gguf, "--source-gate-framing", "plain")) == 2
    assert "only applies to a source-model gate" in capsys.readouterr().err
    assert main(build_argv(models, tmp_path / "n", "--native", "--source-gate-framing", "plain")) == 2
    assert "--source-gate-framing: only for a source model" in capsys.readouterr().err
    assert main(argv) == 0  # auto: this tokenizer has no chat template, so the gate reads prompts as written
    pack = DirectionPack.from_pretrained(tmp_path / "pack")
    assert pack.metadata["source_gate"]["chat_template"] is False
    assert pack.metadata["build"]["config"]["source_gate_framing"] == "auto"
    assert main(["inspect", str(tmp_path / "pack")]) == 0
    assert "source-model gate: layer=" in capsys.readouterr().out


def test_recipe_fixes_the_source_options(capsys):
    for flag in (["--gguf-file", "x.gguf"], ["--source-chat-template"], ["--source-gate-framing", "chat"]):
        assert main(["build", "--recipe", "pretrained_directions/x/recipe.yaml", *flag]) == 2
        assert "cannot be combined with --recipe" in capsys.readouterr().err

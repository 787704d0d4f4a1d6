"""Paths, catalogue names and Hub ids on the command line: a missing path is reported as a missing path (not
retried as a Hub id), an unreachable Hub fails at once (no retries) unless the repo is cached, and the names
``safesteer list-packs`` prints are accepted wherever a pack is."""

from __future__ import annotations

import os
import shutil
import socket
import time
from pathlib import Path

import pytest

from safesteer_diffusers.cli import references
from safesteer_diffusers.cli.main import main
from safesteer_diffusers.cli.references import hub_session, looks_like_path, resolve_pack
from tests.cli.support import ROOT, run_cli

DEMO_PACK = ROOT / "pretrained_directions" / "tiny-sd-demo-from-minilm"


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]  # nothing listens once the socket is closed: connections are refused


@pytest.fixture
def no_probe(monkeypatch):
    """Fail the test if the Hub is probed (a path-like value must never get that far)."""

    def probe():
        raise AssertionError("the Hub was probed for a value that looks like a path")

    monkeypatch.setattr(references, "_probe", probe)


@pytest.mark.parametrize(
    "value, expected",
    [
        ("./packs/mine", True),
        ("../mine", True),
        ("/abs/pack", True),
        ("~/pack", True),
        ("results/flux/pack", True),  # two '/': never a repo id
        ("pack.safetensors", True),
        ("org/name", False),
        ("org/name@" + "a" * 40 + "#" + "b" * 64, False),  # a pinned reference is a repo id
        ("tiny-sd-demo-from-minilm", False),
    ],
)
def test_looks_like_path(value, expected, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert looks_like_path(value) is expected


def test_a_value_whose_first_part_exists_here_is_a_path(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert not looks_like_path("packs/flux1-schnell-from-llama31")
    (tmp_path / "packs" / "flux1-schnell-from-llama3").mkdir(parents=True)
    assert looks_like_path("packs/flux1-schnell-from-llama31")


def test_missing_pack_folder_is_reported_as_missing_without_touching_the_hub(
    tmp_path, monkeypatch, capsys, no_probe
):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "packs" / "flux1-schnell-from-llama3").mkdir(parents=True)
    assert main(["inspect", "packs/flux1-schnell-from-llama31"]) == 2
    error = capsys.readouterr().err
    assert error.startswith("safesteer: error: Could not load the pack 'packs/flux1-schnell-from-llama31'")
    assert "no such file or folder" in error and "packs/, holding: flux1-schnell-from-llama3/" in error
    assert "Did you mean packs/flux1-schnell-from-llama3?" in error
    assert "Traceback" not in error and "cache" not in error


@pytest.mark.parametrize("value", ["./nowhere", "a/b/c", "/no/such/pack"])
def test_path_like_values_that_do_not_exist_fail_as_paths(value, capsys, no_probe):
    assert main(["inspect", value]) == 2
    assert "no such file or folder" in capsys.readouterr().err


def test_catalogue_names_are_packs(capsys):
    assert main(["inspect", "tiny-sd-demo-from-minilm"]) == 0
    assert "target: safesteer/tiny-sd-demo" in capsys.readouterr().out
    assert resolve_pack("tiny-sd-demo-from-minilm") == str(DEMO_PACK / "safesteer_pack.safetensors")


def test_an_unknown_catalogue_name_suggests_the_nearest(capsys, no_probe):
    assert main(["inspect", "tiny-sd-demo-minilm"]) == 2
    error = capsys.readouterr().err
    assert (
        "no pack of that name in the catalogue" in error and "Did you mean tiny-sd-demo-from-minilm" in error
    )


def test_offline_hub_id_that_is_not_cached_fails_at_once(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    assert main(["inspect", "nobody/no-such-pack"]) == 2
    error = capsys.readouterr().err
    assert "there is no local file or folder of that name" in error
    assert "not in the Hugging Face cache" in error and "HF_HUB_OFFLINE is set" in error
    assert "hf download nobody/no-such-pack" in error


def test_unreachable_hub_fails_fast_without_retries(tmp_path):
    """No HF_HUB_OFFLINE, a Hub that refuses connections: one probe, then the error (huggingface_hub alone
    retries for about half a minute and then says only "not in the local cache")."""
    env = {
        "HF_HUB_OFFLINE": None,
        "HF_ENDPOINT": f"http://127.0.0.1:{closed_port()}",
        "HF_HUB_CACHE": str(tmp_path / "cache"),
    }
    started = time.perf_counter()
    done = run_cli(["inspect", "nobody/no-such-pack"], env=env, cwd=tmp_path)
    seconds = time.perf_counter() - started
    assert done.returncode == 2, done.stderr
    assert "the Hub cannot be reached" in done.stderr and "did not answer" in done.stderr
    assert "Retrying" not in done.stderr and "Traceback" not in done.stderr
    assert seconds < 25  # generous for a loaded machine; the retries alone take ~30 s


def test_unreachable_hub_uses_a_cached_pack_with_the_hub_switched_off(tmp_path):
    cache, commit = tmp_path / "cache", "0" * 40
    repo = cache / "models--org--cached-pack"
    (repo / "snapshots" / commit).mkdir(parents=True)
    shutil.copy(DEMO_PACK / "safesteer_pack.safetensors", repo / "snapshots" / commit)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    env = {
        "HF_HUB_OFFLINE": None,
        "HF_ENDPOINT": f"http://127.0.0.1:{closed_port()}",
        "HF_HUB_CACHE": str(cache),
    }
    done = run_cli(["inspect", "org/cached-pack"], env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "target: safesteer/tiny-sd-demo" in done.stdout
    assert "using the local cache only" in done.stderr and "Retrying" not in done.stderr


def test_the_offline_switch_lasts_one_command(monkeypatch, tmp_path):
    from huggingface_hub import constants

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(references, "_probe", lambda: "test: unreachable")
    monkeypatch.setattr(references, "in_hub_cache", lambda *args, **kwargs: True)
    with hub_session():
        references._require_hub_or_cache("org/model", "--x", "a model", "model")
        assert constants.HF_HUB_OFFLINE is True and os.environ["HF_HUB_OFFLINE"] == "1"
    assert constants.HF_HUB_OFFLINE is False and "HF_HUB_OFFLINE" not in os.environ


def test_missing_prompt_file_is_a_missing_path(tmp_path):
    with pytest.raises(
        ValueError, match=r"Could not load the prompts 'unsafe\.csv' \(--prompts\): no such file"
    ):
        references.resolve_data("unsafe.csv", flag="--prompts", what="a CSV file")
    assert references.resolve_data("AIML-TUDA/i2p", flag="--prompts", what="x") == "AIML-TUDA/i2p"


def test_existing_paths_are_returned_as_given(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "models" / "sd").mkdir(parents=True)
    assert references.resolve_model("models/sd", flag="--target", what="x") == "models/sd"
    home = Path.home()
    assert references.resolve_model("~", flag="--target", what="x") == str(home)

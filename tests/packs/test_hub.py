"""Hub plumbing without the internet: a hand-built offline cache, and push/pull through a loopback fake Hub.

``huggingface_hub`` reads ``HF_HUB_OFFLINE`` once at import (and ``tests/conftest.py`` sets it), so the
tests patch ``huggingface_hub.constants.HF_HUB_OFFLINE`` as well as the environment variable, and always
pass ``cache_dir=`` and ``endpoint=`` explicitly.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import torch
from huggingface_hub import close_session, constants, hf_api, metadata_load

from safesteer_diffusers import PACK_FILENAME, DirectionPack
from tests.packs.hub_server import FakeHub

TARGET_ID = "stabilityai/stable-diffusion-xl-base-1.0"
CARD_TAGS = ["safesteer", "safety", "steering-vector", "diffusers", "text-to-image"]


def make_pack(seed: int = 0) -> DirectionPack:
    generator = torch.Generator().manual_seed(seed)
    spaces = {"text_encoder": 8, "text_encoder_2": 12}
    names = ["global", "violence", "hate", "sexual"]
    directions = {n: {s: torch.randn(d, generator=generator) for s, d in spaces.items()} for n in names}
    thresholds = {n: {s: 0.1 + 0.07 * i for s in spaces} for i, n in enumerate(names)}
    centers = {s: torch.randn(d, generator=generator) for s, d in spaces.items()}
    return DirectionPack.from_tensors(
        directions,
        thresholds=thresholds,
        centers=centers,
        kind="native",
        target={"model_id": TARGET_ID, "family": "sdxl"},
        provenance={"seed": seed},
    )


def set_offline(monkeypatch: pytest.MonkeyPatch, offline: bool) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1" if offline else "0")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", offline)


# ---------------------------------------------------------------------- offline cache built by hand
COMMIT = hashlib.sha1(b"a commit").hexdigest()


def build_cache(cache_dir: Path, repo_id: str, pack: DirectionPack, commit: str = COMMIT) -> None:
    repo_folder = cache_dir / f"models--{repo_id.replace('/', '--')}"
    (repo_folder / "refs").mkdir(parents=True)
    (repo_folder / "refs" / "main").write_text(commit)
    snapshot = repo_folder / "snapshots" / commit
    snapshot.mkdir(parents=True)
    pack.save_file(snapshot / PACK_FILENAME)


@pytest.fixture
def offline(monkeypatch):
    set_offline(monkeypatch, True)
    assert constants.is_offline_mode()


def test_offline_cache_loads_exactly(tmp_path, offline):
    pack = make_pack()
    build_cache(tmp_path, "org/name", pack)
    for revision in (None, "main", COMMIT):
        loaded = DirectionPack.from_pretrained("org/name", revision=revision, cache_dir=tmp_path)
        assert loaded.equals(pack), revision
        assert loaded.names == ["global", "violence", "hate", "sexual"]


def test_offline_cache_miss_is_a_clear_error(tmp_path, offline):
    build_cache(tmp_path, "org/name", make_pack())
    with pytest.raises(ValueError, match=r"'org/other'.*not in the local Hugging Face cache.*offline"):
        DirectionPack.from_pretrained("org/other", cache_dir=tmp_path)
    with pytest.raises(ValueError, match=r"revision v2\) is not in the local Hugging Face cache"):
        DirectionPack.from_pretrained("org/name", revision="v2", cache_dir=tmp_path)
    other_commit = hashlib.sha1(b"another commit").hexdigest()
    with pytest.raises(ValueError, match="not in the local Hugging Face cache"):
        DirectionPack.from_pretrained("org/name", revision=other_commit, cache_dir=tmp_path)


# ---------------------------------------------------------------------- loopback Hub
@pytest.fixture
def hub(monkeypatch):
    """A fake Hub on 127.0.0.1, online mode, no proxy for loopback; stopped (bounded) at teardown."""
    set_offline(monkeypatch, False)
    for name in ("NO_PROXY", "no_proxy"):
        monkeypatch.setenv(name, "127.0.0.1,localhost")
    close_session()  # the shared HTTP client reads proxy settings when it is created
    server = FakeHub().start()
    try:
        yield server
    finally:
        close_session()  # drop keep-alive connections so handler threads end
        server.stop(timeout=5.0)


@pytest.mark.parametrize("xet", [True, False], ids=["pipelined-upload", "single-commit-upload"])
def test_push_uploads_pack_and_card_then_pull_is_exact(hub, tmp_path, monkeypatch, xet):
    if not xet:  # huggingface_hub's upload_folder takes another code path when hf_xet is not installed
        monkeypatch.setattr(hf_api, "is_xet_available", lambda: False)
    pack = make_pack()
    url = pack.push_to_hub("org/pack", endpoint=hub.url, token="x")
    head = hub.head("org/pack")
    assert url == f"{hub.url}/org/pack/commit/{head}"

    files = hub.files("org/pack")
    assert set(files) == {PACK_FILENAME, "README.md"}
    commits = [r for r in hub.requests if r.method == "POST" and r.path.endswith("/commit/main")]
    assert len(commits) == 1 and commits[0].headers.get("authorization") == "Bearer x"

    # The uploaded bytes are the pack, and the card carries the Hub front matter.
    uploaded = tmp_path / "uploaded.safetensors"
    uploaded.write_bytes(files[PACK_FILENAME])
    assert DirectionPack.from_file(uploaded).equals(pack)
    card = tmp_path / "README.md"
    card.write_bytes(files["README.md"])
    front = metadata_load(card)
    assert front["library_name"] == "safesteer-diffusers"
    assert front["base_model"] == TARGET_ID
    assert front["tags"] == CARD_TAGS

    cache = tmp_path / "cache"
    loaded = DirectionPack.from_pretrained("org/pack", cache_dir=cache, endpoint=hub.url)
    assert loaded.equals(pack)
    assert any(
        r.method == "GET" and r.path == f"/org/pack/resolve/main/{PACK_FILENAME}" for r in hub.requests
    )
    snapshot = cache / "models--org--pack" / "snapshots" / head / PACK_FILENAME
    assert snapshot.is_file() and (cache / "models--org--pack" / "refs" / "main").read_text() == head

    # Offline, the same load is served by the cache alone: the server sees no request.
    set_offline(monkeypatch, True)
    seen = len(hub.requests)
    assert DirectionPack.from_pretrained("org/pack", cache_dir=cache).equals(pack)
    assert DirectionPack.from_pretrained("org/pack", cache_dir=cache, endpoint=hub.url).equals(pack)
    assert DirectionPack.from_pretrained("org/pack", revision=head, cache_dir=cache).equals(pack)
    assert len(hub.requests) == seen


def test_local_files_only_never_asks_the_hub(hub, tmp_path):
    pack = make_pack()
    build_cache(tmp_path, "org/name", pack)  # in the cache only: the Hub would answer 404
    loaded = DirectionPack.from_pretrained(
        "org/name", cache_dir=tmp_path, endpoint=hub.url, local_files_only=True
    )
    assert loaded.equals(pack)
    with pytest.raises(ValueError, match="not in the local Hugging Face cache"):
        DirectionPack.from_pretrained(
            "org/other", cache_dir=tmp_path, endpoint=hub.url, local_files_only=True
        )
    assert hub.requests == []
    # Without local_files_only the Hub is asked first (it answers 404; huggingface_hub then uses the cache).
    assert DirectionPack.from_pretrained("org/name", cache_dir=tmp_path, endpoint=hub.url).equals(pack)
    assert [(r.method, r.path) for r in hub.requests] == [("HEAD", f"/org/name/resolve/main/{PACK_FILENAME}")]


def test_second_push_moves_main_and_revisions_pin(hub, tmp_path):
    first, second = make_pack(seed=0), make_pack(seed=1)
    first.push_to_hub("org/pack", endpoint=hub.url, token="x")
    first_commit = hub.head("org/pack")
    second.push_to_hub("org/pack", endpoint=hub.url, token="x")  # the repo exists: create_repo gets a 409
    assert hub.head("org/pack") != first_commit

    cache = tmp_path / "cache"
    assert DirectionPack.from_pretrained("org/pack", cache_dir=cache, endpoint=hub.url).equals(second)
    pinned = DirectionPack.from_pretrained(
        "org/pack", revision=first_commit, cache_dir=cache, endpoint=hub.url
    )
    assert pinned.equals(first) and not pinned.equals(second)


def test_hub_errors_become_value_errors(hub, tmp_path):
    cache = tmp_path / "cache"
    with pytest.raises(ValueError, match=r"Hub repository 'org/missing' was not found"):
        DirectionPack.from_pretrained("org/missing", cache_dir=cache, endpoint=hub.url)

    hub.create_repo("org/empty")
    with pytest.raises(ValueError, match=rf"'org/empty' has no {PACK_FILENAME}"):
        DirectionPack.from_pretrained("org/empty", cache_dir=cache, endpoint=hub.url)

    make_pack().push_to_hub("org/pack", endpoint=hub.url, token="x")
    with pytest.raises(ValueError, match=r"'org/pack' has no revision 'v9'"):
        DirectionPack.from_pretrained("org/pack", revision="v9", cache_dir=cache, endpoint=hub.url)

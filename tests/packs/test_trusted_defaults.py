"""Fail-closed defaults: only pinned packs (repo, 40-hex commit, SHA-256 of the file) are downloaded, and a
pack whose commit or bytes differ from its pin is refused; an unpublished recipe never reaches the network.

Every Hub interaction goes to a loopback fake Hub that records its requests (tests/packs/hub_server.py).
``huggingface_hub`` reads its endpoint and offline mode once at import, so the ``hub`` fixture patches its
``constants`` as well: then the default lookup (which passes no endpoint) talks to the fake Hub too, and an
empty request log means that no request was made at all.
"""

from __future__ import annotations

import hashlib
import textwrap
from contextlib import contextmanager
from pathlib import Path

import pytest
import yaml
from huggingface_hub import close_session, constants

from safesteer_diffusers import PACK_FILENAME, DirectionPack, SafeSteer
from safesteer_diffusers.packs.catalogue import SHIPPED_PACKS, catalogue, find_default_pack
from safesteer_diffusers.packs.errors import InvalidPackError
from safesteer_diffusers.packs.pins import PinMismatchError, PinnedPack, file_sha256
from safesteer_diffusers.packs.recipe import RecipeError, load_recipe, recipe_from_dict
from safesteer_diffusers.packs.trusted import CATALOGUE_ENV, TrustedCatalogueError, load_trusted
from safesteer_diffusers.testing import DEMO_MODEL_ID, tiny_pipeline
from tests.packs.hub_server import FakeHub

DEMO_PACK = SHIPPED_PACKS / "tiny-sd-demo-from-minilm" / PACK_FILENAME
FLUX = "black-forest-labs/FLUX.1-schnell"
MY_MODEL = "org/my-sd-model"


@pytest.fixture
def hub(monkeypatch, tmp_path):
    """The fake Hub as *the* Hub (online, default endpoint and cache patched); stopped at teardown."""
    server = FakeHub().start()
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "ENDPOINT", server.url)
    monkeypatch.setattr(
        constants, "HUGGINGFACE_CO_URL_TEMPLATE", server.url + "/{repo_id}/resolve/{revision}/{filename}"
    )
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    for name in ("NO_PROXY", "no_proxy"):
        monkeypatch.setenv(name, "127.0.0.1,localhost")
    monkeypatch.delenv("SAFESTEER_PACKS_PATH", raising=False)
    monkeypatch.delenv(CATALOGUE_ENV, raising=False)
    close_session()  # the shared HTTP client reads proxy settings when it is created
    try:
        yield server
    finally:
        close_session()
        server.stop(timeout=5.0)


def publish(hub: FakeHub, repo: str, content: bytes) -> PinnedPack:
    """Put ``content`` as the pack file of ``repo`` (a new commit on main); the pin of that commit."""
    hub.create_repo(repo)
    commit = hub.commit(repo, "main", {PACK_FILENAME: content}, [])
    return PinnedPack(repo, commit, hashlib.sha256(content).hexdigest())


def flip_one_byte(content: bytes) -> bytes:
    """The same bytes with one byte changed, inside the tensor data (after the safetensors header)."""
    position = len(content) - 7
    return content[:position] + bytes([content[position] ^ 0x01]) + content[position + 1 :]


def test_a_pinned_pack_loads_and_is_verified_on_every_load(hub):
    pin = publish(hub, "org/demo-pack", DEMO_PACK.read_bytes())
    assert DirectionPack.from_pretrained(str(pin)).equals(DirectionPack.from_file(DEMO_PACK))
    assert DirectionPack.from_pretrained(str(pin), revision=pin.commit).equals(
        DirectionPack.from_file(DEMO_PACK)
    )
    assert any(r.path == f"/org/demo-pack/resolve/{pin.commit}/{PACK_FILENAME}" for r in hub.requests)
    # SafeSteer.wrap takes the same pinned string.
    pipe, _ = tiny_pipeline("sd")
    pipe = SafeSteer.wrap(pipe, str(pin), strength=1.0)
    assert pipe.safety_pack.equals(DirectionPack.from_file(DEMO_PACK))
    SafeSteer.unwrap(pipe)
    with pytest.raises(ValueError, match="contradicts the pinned commit"):
        DirectionPack.from_pretrained(str(pin), revision="main")


def test_a_pack_file_with_one_byte_changed_is_refused(hub, monkeypatch):
    original = DEMO_PACK.read_bytes()
    pin = publish(hub, "org/demo-pack", original)
    # On the Hub: a new commit serves the tampered file; the pin names that commit and the published hash.
    tampered_commit = hub.commit("org/demo-pack", "main", {PACK_FILENAME: flip_one_byte(original)}, [])
    with refused(match=r"has SHA-256 [0-9a-f]{64}, the pin says " + pin.sha256):
        DirectionPack.from_pretrained(f"org/demo-pack@{tampered_commit}#{pin.sha256}")
    # In the local cache: a verified download, then one byte edited in place; refused offline as well.
    DirectionPack.from_pretrained(str(pin))
    path = _cached(pin)
    path.write_bytes(flip_one_byte(path.read_bytes()))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    with refused(match="Nothing was loaded"):
        DirectionPack.from_pretrained(str(pin))


@contextmanager
def refused(match: str):
    """``DirectionPack.from_pretrained`` refusing a pin: its one error type, caused by the pin check."""
    with pytest.raises(InvalidPackError, match=match) as error:
        yield
    assert isinstance(error.value.__cause__, PinMismatchError)


def _cached(pin: PinnedPack) -> Path:
    """The cached pack file of a pin, resolved to its blob (the snapshot entry is a link to it)."""
    repo_folder = Path(constants.HF_HUB_CACHE) / f"models--{pin.repo.replace('/', '--')}"
    return (repo_folder / "snapshots" / pin.commit / PACK_FILENAME).resolve()


def test_a_wrong_commit_is_refused(hub):
    original = DEMO_PACK.read_bytes()
    pin = publish(hub, "org/demo-pack", original)
    # A commit the repository does not have.
    missing = hashlib.sha1(b"no such commit").hexdigest()
    with refused(match=f"has no commit {missing}"):
        DirectionPack.from_pretrained(f"org/demo-pack@{missing}#{pin.sha256}")
    # Another real commit of the repository, whose file is not the pinned one.
    other = hub.commit("org/demo-pack", "main", {PACK_FILENAME: flip_one_byte(original)}, [])
    with refused(match="the pin says"):
        DirectionPack.from_pretrained(f"org/demo-pack@{other}#{pin.sha256}")
    # A Hub that answers the pinned commit with another one (a branch named like the commit).
    hub.create_repo("org/liar")
    served = hub.commit("org/liar", "main", {PACK_FILENAME: original}, [])
    claimed = hashlib.sha1(b"the commit that was pinned").hexdigest()
    hub.repos["org/liar"].branches[claimed] = served
    with refused(match=f"served commit '{served}' for the pinned commit {claimed}"):
        DirectionPack.from_pretrained(f"org/liar@{claimed}#{pin.sha256}")


def test_malformed_pins_are_refused_with_the_expected_form():
    sha = "a" * 64
    for text, expected in [
        ("org/pack@main#" + sha, "not a 40-hex commit id"),
        ("org/pack@" + "b" * 40 + "#abc", "sha256 'abc' is not 64 lowercase hex digits"),
        ("not a repo@" + "b" * 40 + "#" + sha, "is not a Hub repo id"),
    ]:
        with pytest.raises(ValueError, match=expected):
            DirectionPack.from_pretrained(text)


def test_an_unpublished_recipe_makes_no_network_call(hub):
    # The recipes for FLUX.1-schnell exist but are not published: the lookup says so and asks nothing.
    with pytest.raises(ValueError) as error:
        find_default_pack(FLUX)
    message = str(error.value)
    for expected in (
        f"No pack has been published for model {FLUX!r}",
        "no request was made",
        "meta-llama/Llama-3.1-8B-Instruct (gated on the Hub",
        "a GPU with about 28 GB of memory (estimate)",
        "minutes once the weights are downloaded (estimate)",
        "Command: safesteer build --recipe ",
        "flux1-schnell-from-llama31-8b/recipe.yaml --device cuda",
    ):
        assert expected in message
    assert "not in the local cache" not in message and "private" not in message
    # Through SafeSteer.wrap as a user meets it: a FLUX pipeline whose model id is FLUX.1-schnell.
    pipe, _ = tiny_pipeline("flux")
    pipe.register_to_config(_name_or_path=FLUX)
    with pytest.raises(ValueError, match="No pack has been published"):
        SafeSteer.wrap(pipe)
    assert hub.requests == []
    # Control: the same lookup does reach this Hub for a pinned pack, so an empty log means no request.
    catalogue_file = trusted_catalogue(hub, Path(constants.HF_HUB_CACHE).parent / "mine.yaml")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(CATALOGUE_ENV, str(catalogue_file))
        path, pack = find_default_pack(MY_MODEL)
    assert path is None and pack.equals(DirectionPack.from_file(DEMO_PACK)) and hub.requests


def trusted_catalogue(
    hub: FakeHub, path: Path, content: bytes | None = None, repo: str = "org/my-pack"
) -> Path:
    """A trusted catalogue file pinning the demo pack (as published on ``hub``) for :data:`MY_MODEL`."""
    pin = publish(hub, repo, DEMO_PACK.read_bytes())
    if content is not None:  # the Hub then serves other bytes at a new commit, pinned with the old hash
        pin = PinnedPack(pin.repo, hub.commit(pin.repo, "main", {PACK_FILENAME: content}, []), pin.sha256)
    data = {"catalogue_version": 1, "packs": [{"target": MY_MODEL, "pin": str(pin), "name": "my-pack"}]}
    path.write_text(yaml.safe_dump(data))
    return path


def test_a_trusted_catalogue_file_adds_pinned_defaults_with_the_same_verification(hub, tmp_path, monkeypatch):
    monkeypatch.setenv(CATALOGUE_ENV, str(trusted_catalogue(hub, tmp_path / "mine.yaml")))
    entry = next(e for e in catalogue() if e.name == "my-pack")
    assert entry.target == MY_MODEL and entry.status == "published" and entry.hub_repo == "org/my-pack"
    pipe, _ = tiny_pipeline("sd")
    pipe.register_to_config(_name_or_path=MY_MODEL)
    with pytest.warns(UserWarning, match="was built for model 'safesteer/tiny-sd-demo'"):
        pipe = SafeSteer.wrap(pipe, strength=1.0)  # no pack given: the trusted entry, downloaded and verified
    assert pipe.safety_pack.equals(DirectionPack.from_file(DEMO_PACK))
    SafeSteer.unwrap(pipe)
    assert next(e for e in catalogue() if e.name == "my-pack").status == "published, in Hub cache"
    # A tampered entry is refused, not skipped in favour of something else.
    other = tmp_path / "tampered.yaml"
    tampered = flip_one_byte(DEMO_PACK.read_bytes())
    monkeypatch.setenv(CATALOGUE_ENV, str(trusted_catalogue(hub, other, tampered, repo="org/other-pack")))
    with pytest.raises(PinMismatchError):
        find_default_pack(MY_MODEL)


def test_a_published_recipe_is_downloaded_pinned_and_a_mismatch_is_refused(hub, tmp_path, monkeypatch):
    pin = publish(hub, "org/published-demo", DEMO_PACK.read_bytes())
    folder = tmp_path / "packs" / "published-demo"
    folder.mkdir(parents=True)
    recipe = yaml.safe_load((SHIPPED_PACKS / "tiny-sd-demo-from-minilm" / "recipe.yaml").read_text())
    recipe.update(
        name="published-demo", published={"repo": pin.repo, "commit": pin.commit, "sha256": pin.sha256}
    )
    recipe["target"]["model"] = MY_MODEL
    recipe["target"]["revision"] = "c" * 40
    (folder / "recipe.yaml").write_text(yaml.safe_dump(recipe))
    monkeypatch.setenv("SAFESTEER_PACKS_PATH", str(tmp_path / "packs"))
    entry = next(e for e in catalogue() if e.name == "published-demo")
    assert entry.status == "published" and entry.pin == str(pin)
    assert find_default_pack(MY_MODEL)[1].equals(DirectionPack.from_file(DEMO_PACK))
    # The cached file is changed: the next default lookup refuses it.
    _cached(pin).write_bytes(flip_one_byte(_cached(pin).read_bytes()))
    with pytest.raises(PinMismatchError):
        find_default_pack(MY_MODEL)


def test_a_published_recipe_must_pin_its_revisions_and_its_pack():
    base = load_recipe(SHIPPED_PACKS / "flux1-schnell-from-llama31-8b").to_dict()
    base["published"] = {"repo": "org/flux-pack", "commit": "d" * 40, "sha256": "e" * 64}
    with pytest.raises(RecipeError) as error:
        recipe_from_dict(base)
    message = str(error.value)
    assert (
        "source.revision: 'main' is not a commit" in message
        and "target.revision: 'main' is not a commit" in message
    )
    base["source"]["revision"] = base["target"]["revision"] = "f" * 40
    assert recipe_from_dict(base).hub_repo == "org/flux-pack"
    base["published"] = {"repo": "org/flux-pack", "commit": "main", "sha256": "e" * 64}
    with pytest.raises(RecipeError, match="published.commit 'main' is not a 40-hex commit id"):
        recipe_from_dict(base)
    base["published"] = None
    base["hub_repo"] = "safesteer/flux1-schnell-from-llama31-8b"
    with pytest.raises(RecipeError, match="hub_repo: no longer read"):
        recipe_from_dict(base)


def test_a_trusted_catalogue_file_that_does_not_validate_names_every_problem(tmp_path, monkeypatch):
    path = tmp_path / "mine.yaml"
    path.write_text(
        textwrap.dedent(
            """\
            catalogue_version: 1
            packs:
              - target: org/model
                pin: org/pack@main#abc
              - pin: org/pack@0000000000000000000000000000000000000000#{sha}
                sha: 1
            """
        ).format(sha="0" * 64)
    )
    with pytest.raises(TrustedCatalogueError) as error:
        load_trusted([path])
    message = str(error.value)
    assert "packs[0].pin: Invalid pin: commit 'main' is not a 40-hex commit id" in message
    assert (
        "packs[1].sha: unknown key" in message and "packs[1].target: expected the target model id" in message
    )
    monkeypatch.setenv(CATALOGUE_ENV, str(tmp_path / "missing.yaml"))
    with pytest.raises(TrustedCatalogueError, match="which is not a file"):
        catalogue()


def test_the_shipped_catalogue_publishes_nothing_unpinned():
    for entry in catalogue():
        assert entry.status in ("built", "not published") or entry.pin, entry
        if entry.status == "built":
            assert entry.target == DEMO_MODEL_ID
    assert file_sha256(DEMO_PACK) == hashlib.sha256(DEMO_PACK.read_bytes()).hexdigest()

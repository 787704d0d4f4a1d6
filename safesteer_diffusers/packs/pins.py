"""Pinned Hub packs: a repository, an immutable commit and the SHA-256 of the pack file at that commit.

A pin is what makes a download trustworthy enough to happen without the user naming it: the commit fixes
*which* version of the repository is meant (a branch such as ``main`` can be moved by whoever controls the
repository), and the SHA-256 fixes the exact bytes of ``safesteer_pack.safetensors`` (so a changed file, in
transit, on the Hub or in the local cache, is refused). The catalogue downloads only pinned packs
(:mod:`safesteer_diffusers.packs.catalogue`); :func:`safesteer_diffusers.packs.hub.download_pinned` does the
download and both checks.

Written as one string wherever a pack reference is accepted (``SafeSteer.wrap``,
``DirectionPack.from_pretrained``)::

    org/name@0123456789abcdef0123456789abcdef01234567#<64 hex digits: sha256 of safesteer_pack.safetensors>

This SHA-256 is of the whole file, an external pin chosen by whoever trusts the pack; the pack's own
``safesteer_sha256`` header entry (:mod:`safesteer_diffusers.packs.integrity`) is an internal content hash that
only detects accidental corruption, since whoever edits the file can recompute it.

Only the standard library is imported here: recipes validate pins without loading the Hub client.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass

REPO_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,95}/[A-Za-z0-9][A-Za-z0-9._-]{0,95}$")
"""A Hub repo id ``org/name``."""
COMMIT = re.compile(r"^[0-9a-f]{40}$")
"""An immutable Hub commit: 40 lowercase hex digits (a branch or tag name is not accepted)."""
SHA256 = re.compile(r"^[0-9a-f]{64}$")
"""A SHA-256 digest: 64 lowercase hex digits."""
PIN_FORM = "org/name@<40-hex commit>#<64-hex sha256 of safesteer_pack.safetensors>"


class PinMismatchError(ValueError):
    """A pinned pack whose commit or file does not match its pin; it is refused, never loaded."""


@dataclass(frozen=True)
class PinnedPack:
    """A pack on the Hub, pinned to one commit and to the SHA-256 of its pack file.

    Attributes:
        repo: the Hub repo id (``org/name``).
        commit: the 40-hex commit the pack file is read from.
        sha256: the 64-hex SHA-256 of ``safesteer_pack.safetensors`` at that commit.
    """

    repo: str
    commit: str
    sha256: str

    def __post_init__(self) -> None:
        problems = pin_problems(self.repo, self.commit, self.sha256)
        if problems:
            raise ValueError("Invalid pin: " + "; ".join(problems) + f". Expected the form {PIN_FORM}.")

    def __str__(self) -> str:
        return f"{self.repo}@{self.commit}#{self.sha256}"

    @classmethod
    def parse(cls, text: str) -> PinnedPack:
        """Read ``org/name@<commit>#<sha256>``.

        Args:
            text: the pinned reference.

        Returns:
            The :class:`PinnedPack`.

        Raises:
            ValueError: when ``text`` is not of that form; the message names each wrong part.
        """
        repo, at, rest = text.partition("@")
        commit, hash_mark, sha256 = rest.partition("#")
        if not at or not hash_mark:
            raise ValueError(
                f"{text!r} is not a pinned pack reference: expected {PIN_FORM}. Find the commit on the "
                "repository's 'Files and versions' page and hash the file with `sha256sum "
                "safesteer_pack.safetensors`."
            )
        return cls(repo, commit, sha256)


def looks_pinned(text: str) -> bool:
    """Whether ``text`` is meant as a pinned reference (it has both ``@`` and ``#``), valid or not."""
    return "@" in text and "#" in text


def pin_problems(repo: object, commit: object, sha256: object) -> list[str]:
    """What is wrong with the three parts of a pin (empty when nothing is).

    Args:
        repo: should be a Hub repo id ``org/name``.
        commit: should be 40 lowercase hex digits.
        sha256: should be 64 lowercase hex digits.

    Returns:
        One message per wrong part, naming what was found and what is expected.
    """
    problems = []
    if not isinstance(repo, str) or not REPO_ID.match(repo):
        problems.append(f"repo {repo!r} is not a Hub repo id of the form 'org/name'")
    if not isinstance(commit, str) or not COMMIT.match(commit):
        problems.append(
            f"commit {commit!r} is not a 40-hex commit id (branches and tags can be moved, so they are "
            "not accepted)"
        )
    if not isinstance(sha256, str) or not SHA256.match(sha256):
        problems.append(f"sha256 {sha256!r} is not 64 lowercase hex digits")
    return problems


def file_sha256(path: str | os.PathLike) -> str:
    """SHA-256 (64 lowercase hex digits) of a file's bytes, read in chunks.

    Args:
        path: the file.

    Returns:
        The hex digest, as ``sha256sum`` prints it.
    """
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()

"""Trusted packs of your own: catalogue files of pinned Hub packs that ``SafeSteer.wrap(pipe)`` may download.

The shipped catalogue only downloads what its recipes pin (:mod:`safesteer_diffusers.packs.recipe_distribution`).
To let the default lookup download a pack you trust, list it, pinned, in a YAML file and name the file in
``$SAFESTEER_CATALOGUE`` (several files: ``os.pathsep``-separated)::

    catalogue_version: 1
    packs:
      - target: black-forest-labs/FLUX.1-schnell        # the model id (pipe.config._name_or_path)
        pin: org/my-flux-pack@<40-hex commit>#<64-hex sha256 of safesteer_pack.safetensors>
        name: my-flux-pack                              # optional; default: the repo's name

Entries are tried in file order, before the published recipes of the shipped catalogue, and are verified
exactly like them (:func:`safesteer_diffusers.packs.hub.download_pinned`). Built packs on disk
(``$SAFESTEER_PACKS_PATH``, the shipped catalogue) still come first: they need no download.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from .pins import PIN_FORM, PinnedPack

CATALOGUE_ENV = "SAFESTEER_CATALOGUE"
CATALOGUE_VERSION = 1
_ENTRY_KEYS = ("target", "pin", "name")


class TrustedCatalogueError(ValueError):
    """A trusted catalogue file that does not validate; the message lists every problem and the fix."""


@dataclass(frozen=True)
class TrustedPack:
    """One entry of a trusted catalogue file.

    Attributes:
        name: the entry's name (default: the repo's name).
        target: the target model id the pack is for.
        pin: the pinned Hub pack.
        path: the catalogue file it came from.
    """

    name: str
    target: str
    pin: PinnedPack
    path: Path


def catalogue_files() -> list[Path]:
    """The trusted catalogue files named in ``$SAFESTEER_CATALOGUE``, in order.

    Returns:
        The paths (``os.pathsep``-separated entries of the variable; empty when it is unset).
    """
    return [Path(p) for p in os.environ.get(CATALOGUE_ENV, "").split(os.pathsep) if p]


def load_trusted(paths: list[Path] | None = None) -> list[TrustedPack]:
    """Every entry of the trusted catalogue files, validated.

    Args:
        paths: the files (default: :func:`catalogue_files`).

    Returns:
        The entries, files in order, entries in file order.

    Raises:
        TrustedCatalogueError: when a file is missing or does not validate (every problem listed).
    """
    entries: list[TrustedPack] = []
    for path in paths if paths is not None else catalogue_files():
        entries.extend(_load_file(Path(path)))
    return entries


def _load_file(path: Path) -> list[TrustedPack]:
    import yaml

    if not path.is_file():
        raise TrustedCatalogueError(
            f"${CATALOGUE_ENV} names {path}, which is not a file. Fix the path or remove it from the variable."
        )
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as error:
        raise TrustedCatalogueError(f"{path} is not valid YAML: {error}") from error
    problems: list[str] = []
    if not isinstance(data, dict) or data.get("catalogue_version") != CATALOGUE_VERSION:
        problems.append(
            f"catalogue_version: expected {CATALOGUE_VERSION} at the top of a mapping, got "
            f"{data.get('catalogue_version') if isinstance(data, dict) else type(data).__name__!r}"
        )
        data = data if isinstance(data, dict) else {}
    problems += [
        f"{key}: unknown key; allowed: catalogue_version, packs"
        for key in data
        if key not in ("catalogue_version", "packs")
    ]
    packs = data.get("packs") or []
    if not isinstance(packs, list):
        problems.append(f"packs: expected a list of entries, got {type(packs).__name__}")
        packs = []
    entries = []
    for index, item in enumerate(packs):
        where = f"packs[{index}]"
        if not isinstance(item, dict):
            problems.append(f"{where}: expected a mapping with target and pin, got {item!r}")
            continue
        problems += [
            f"{where}.{key}: unknown key; allowed: {', '.join(_ENTRY_KEYS)}"
            for key in item
            if key not in _ENTRY_KEYS
        ]
        target, pin_text = item.get("target"), item.get("pin")
        if not isinstance(target, str) or not target:
            problems.append(
                f"{where}.target: expected the target model id (pipe.config._name_or_path), got {target!r}"
            )
        if not isinstance(pin_text, str):
            problems.append(f"{where}.pin: expected {PIN_FORM}, got {pin_text!r}")
            continue
        try:
            pin = PinnedPack.parse(pin_text)
        except ValueError as error:
            problems.append(f"{where}.pin: {error}")
            continue
        name = item.get("name") or pin.repo.split("/")[1]
        if isinstance(target, str) and target:
            entries.append(TrustedPack(name=str(name), target=target, pin=pin, path=path))
    if problems:
        raise TrustedCatalogueError(f"{path} does not validate:\n" + "\n".join(f"  - {p}" for p in problems))
    return entries

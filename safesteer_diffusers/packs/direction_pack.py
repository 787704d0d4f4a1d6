"""`DirectionPack`: calibrated safety directions for one target generator, in one safetensors file.

A pack holds, for every *direction* (``"global"`` and one per category) and every *space* (the pipeline
component name of a text encoder, e.g. ``"text_encoder_2"``), one 1-D vector. Vectors are stored
calibrated: steering adds exactly ``strength * vector`` to the text states the denoiser sees. They point
from unsafe toward safe, so a positive strength makes outputs safer.

Optional per (direction, space) gate thresholds and per-space centres (the benign anchor mean, used by the
projection mode) travel in the same file. Metadata is one JSON string under the ``"safesteer"`` key of the
safetensors header (safetensors metadata is ``dict[str, str]``). Loading never unpickles.

File layout (format version 1)::

    global.<space>              [D]   float32
    category.<name>.<space>     [D]   float32
    gate.<direction>.<space>    []    float32   optional: fires when the prompt's score exceeds it
    center.<space>              [D]   float32   optional: benign mean token state
"""

from __future__ import annotations

import copy
import json
import math
import os
import warnings
from collections.abc import Mapping
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from safesteer_diffusers.version import __version__

from .format import FORMAT_VERSION, GLOBAL, PACK_FILENAME, SUPPORTED_FORMAT_VERSIONS
from .hub import push_pack, resolve_pack_file
from .model_card import model_card

REQUIRED_METADATA = ("format_version", "library_version", "kind", "source", "target", "provenance")
KNOWN_METADATA = frozenset(
    REQUIRED_METADATA
    + (
        "alignment",
        "calibration",
        "categories",
        "default_strengths",
        "gate",
        "description",
        "build",
        "derived",
    )
)
PACK_KINDS = ("transferred", "native", "manual", "derived")
_METADATA_KEY = "safesteer"


class DirectionPack:
    """Calibrated safety directions for one target generator.

    Build one with :meth:`from_tensors` or load one with :meth:`from_pretrained`; both validate. Packs
    support vector algebra: ``pack_a + pack_b``, ``pack_a - pack_b``, ``2.0 * pack`` and ``-pack`` act on
    every vector (gate thresholds are kept only where they stay meaningful).

    Example:
        >>> pack = DirectionPack.from_tensors({"global": {"text_encoder": torch.ones(768)}})
        >>> pack.spaces
        {'text_encoder': 768}
    """

    def __init__(
        self,
        vectors: Mapping[str, Mapping[str, torch.Tensor]],
        metadata: Mapping,
        thresholds: Mapping[str, Mapping[str, float]] | None = None,
        centers: Mapping[str, torch.Tensor] | None = None,
    ):
        self._vectors = {
            name: {space: _as_vector(v, f"{name}.{space}") for space, v in per_space.items()}
            for name, per_space in vectors.items()
        }
        if GLOBAL in self._vectors:  # "global" first, the order `names` documents and from_file restores
            self._vectors = {GLOBAL: self._vectors.pop(GLOBAL), **self._vectors}
        self._thresholds = {name: dict(per) for name, per in (thresholds or {}).items()}
        self._centers = {space: _as_vector(c, f"center.{space}") for space, c in (centers or {}).items()}
        self._metadata = _normalise_metadata(metadata, self.categories)
        self._validate()

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_tensors(
        cls,
        directions: Mapping[str, Mapping[str, torch.Tensor]],
        *,
        thresholds: Mapping[str, Mapping[str, float]] | None = None,
        centers: Mapping[str, torch.Tensor] | None = None,
        **metadata,
    ) -> DirectionPack:
        """Make a pack from in-memory vectors.

        Args:
            directions: direction name (``"global"`` or a category) -> {space: 1-D tensor}. Every direction
                must cover the same spaces.
            thresholds: optional gate thresholds, direction name -> {space: float}.
            centers: optional benign mean token state per space (used by ``mode="project"``).
            **metadata: pack metadata (``kind``, ``source``, ``target``, ``provenance``, ``alignment``,
                ``default_strengths``, ...). ``format_version`` and ``library_version`` are filled in;
                ``kind`` defaults to ``"manual"``, ``source``/``target``/``provenance`` to ``{}``.

        Returns:
            A validated :class:`DirectionPack`.

        Example:
            >>> DirectionPack.from_tensors(
            ...     {"global": {"text_encoder": v}, "sexual": {"text_encoder": w}},
            ...     target={"model_id": "stable-diffusion-v1-5/stable-diffusion-v1-5", "family": "sd"},
            ... )
        """
        filled = {"kind": "manual", "source": {}, "target": {}, "provenance": {}}
        filled.update(metadata)
        filled.setdefault("format_version", FORMAT_VERSION)
        filled.setdefault("library_version", __version__)
        return cls(directions, filled, thresholds=thresholds, centers=centers)

    # ------------------------------------------------------------------ read access
    @property
    def names(self) -> list[str]:
        """All direction names: ``"global"`` (if present) first, then the categories in stored order."""
        return list(self._vectors)

    @property
    def categories(self) -> list[str]:
        """Category names (every direction except ``"global"``)."""
        return [name for name in self._vectors if name != GLOBAL]

    @property
    def spaces(self) -> dict[str, int]:
        """Space name -> vector dimension."""
        first = next(iter(self._vectors.values()))
        return {space: int(v.shape[0]) for space, v in first.items()}

    @property
    def metadata(self) -> dict:
        """A copy of the pack metadata as a plain dict."""
        return copy.deepcopy(self._metadata)

    def direction(self, space: str, name: str = GLOBAL) -> torch.Tensor:
        """The calibrated vector of direction ``name`` in ``space`` (a copy, float32).

        Raises:
            ValueError: if the pack has no such direction or space; the message lists what it has.
        """
        self._check_name(name)
        if space not in self._vectors[name]:
            raise ValueError(
                f"This pack has no space {space!r}; it has {sorted(self.spaces)}. Spaces are the pipeline "
                "component names of text encoders (e.g. 'text_encoder_2')."
            )
        return self._vectors[name][space].clone()

    def threshold(self, name: str, space: str) -> float | None:
        """Gate threshold of direction ``name`` in ``space``, or ``None`` if the pack has none."""
        self._check_name(name)
        return self._thresholds.get(name, {}).get(space)

    def center(self, space: str) -> torch.Tensor | None:
        """Benign mean token state of ``space`` (for the projection mode), or ``None``."""
        center = self._centers.get(space)
        return None if center is None else center.clone()

    @property
    def has_gate(self) -> bool:
        """Whether every direction has a threshold in every space."""
        return all(set(self._thresholds.get(n, {})) == set(self.spaces) for n in self.names)

    # ------------------------------------------------------------------ algebra
    def _combine(self, other: DirectionPack, sign: float) -> DirectionPack:
        if not isinstance(other, DirectionPack):
            return NotImplemented
        if self.names != other.names or self.spaces != other.spaces:
            raise ValueError(
                "Packs must have the same directions and spaces to be added or subtracted:\n"
                f"  left:  directions {self.names}, spaces {self.spaces}\n"
                f"  right: directions {other.names}, spaces {other.spaces}"
            )
        vectors = {
            name: {s: v + sign * other._vectors[name][s] for s, v in per.items()}
            for name, per in self._vectors.items()
        }
        # Thresholds were calibrated for the operands' unit directions; a sum points elsewhere.
        centers = self._centers if _same_tensors(self._centers, other._centers) else None
        return DirectionPack(vectors, self._derived_metadata("+" if sign > 0 else "-"), centers=centers)

    def __add__(self, other: DirectionPack) -> DirectionPack:
        return self._combine(other, 1.0)

    def __sub__(self, other: DirectionPack) -> DirectionPack:
        return self._combine(other, -1.0)

    def __mul__(self, scale: float) -> DirectionPack:
        if isinstance(scale, bool) or not isinstance(scale, int | float):
            return NotImplemented
        if not math.isfinite(scale):
            raise ValueError(f"A pack can only be scaled by a finite number, got {scale}.")
        vectors = {name: {s: v * scale for s, v in per.items()} for name, per in self._vectors.items()}
        # A positive scale keeps every unit direction, so the gate scores and thresholds still hold.
        thresholds = self._thresholds if scale > 0 else None
        return DirectionPack(vectors, self._derived_metadata(f"*{scale}"), thresholds, self._centers)

    __rmul__ = __mul__

    def __neg__(self) -> DirectionPack:
        return self * -1.0

    def _derived_metadata(self, operation: str) -> dict:
        metadata = self.metadata
        metadata["kind"] = "derived"
        metadata["derived"] = metadata.get("derived", []) + [operation]
        return metadata

    # ------------------------------------------------------------------ equality / display
    def equals(self, other: DirectionPack) -> bool:
        """Exact equality of every tensor, threshold and metadata entry."""
        return (
            self.names == other.names
            and self.spaces == other.spaces
            and all(
                torch.equal(v, other._vectors[n][s])
                for n, per in self._vectors.items()
                for s, v in per.items()
            )
            and self._thresholds == other._thresholds
            and _same_tensors(self._centers, other._centers)
            and self._metadata == other._metadata
        )

    def __repr__(self) -> str:
        target = self._metadata.get("target", {}).get("model_id") or "unspecified target"
        return (
            f"DirectionPack(kind={self._metadata['kind']!r}, target={target!r}, spaces={self.spaces}, "
            f"categories={self.categories}, gate={'yes' if self.has_gate else 'no'})"
        )

    # ------------------------------------------------------------------ files
    def to_state_dict(self) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
        """The tensors and the string metadata exactly as written to the safetensors file."""
        tensors: dict[str, torch.Tensor] = {}
        for name, per_space in self._vectors.items():
            prefix = GLOBAL if name == GLOBAL else f"category.{name}"
            for space, vector in per_space.items():
                tensors[f"{prefix}.{space}"] = vector.contiguous()
        for name, per_space in self._thresholds.items():
            for space, value in per_space.items():
                tensors[f"gate.{name}.{space}"] = torch.tensor(float(value), dtype=torch.float32)
        for space, center in self._centers.items():
            tensors[f"center.{space}"] = center.contiguous()
        header = {"format": "pt", _METADATA_KEY: json.dumps(self._metadata, sort_keys=True)}
        return tensors, header

    def save_pretrained(self, save_directory: str | os.PathLike) -> Path:
        """Write the pack file and a model card (``README.md``) into ``save_directory``.

        Returns:
            The path of the written pack file.

        Example:
            >>> pack.save_pretrained("packs/my-pack")
            PosixPath('packs/my-pack/safesteer_pack.safetensors')
        """
        folder = Path(save_directory)
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / PACK_FILENAME
        self.save_file(path)
        card = model_card(self.metadata, spaces=self.spaces, categories=self.categories, has_gate=self.has_gate)
        (folder / "README.md").write_text(card, encoding="utf-8")
        return path

    def save_file(self, path: str | os.PathLike) -> Path:
        """Write only the safetensors pack file to ``path``."""
        tensors, header = self.to_state_dict()
        save_file(tensors, str(path), metadata=header)
        return Path(path)

    @classmethod
    def from_file(cls, path: str | os.PathLike) -> DirectionPack:
        """Load and validate a pack file (safetensors; never unpickles)."""
        path = Path(path)
        try:
            with safe_open(str(path), framework="pt") as handle:
                header = handle.metadata() or {}
                tensors = {key: handle.get_tensor(key) for key in handle.keys()}  # noqa: SIM118 (not a dict)
        except Exception as error:  # safetensors raises its own error types for corrupt headers
            raise ValueError(
                f"Could not read {path} as a safetensors pack file ({type(error).__name__}: {error}). The file "
                "is corrupt or not a SafeSteer pack: download or build it again."
            ) from error
        if _METADATA_KEY not in header:
            raise ValueError(
                f"{path} is a safetensors file but not a SafeSteer pack: its header has no "
                f"{_METADATA_KEY!r} metadata entry. Build packs with safesteer_diffusers (DirectionPack)."
            )
        try:
            metadata = json.loads(header[_METADATA_KEY])
        except json.JSONDecodeError as error:
            raise ValueError(
                f"{path}: the pack metadata is not valid JSON ({error}); the file is corrupt."
            ) from error
        vectors, thresholds, centers = _parse_tensors(tensors, path)
        vectors = _in_stated_order(
            vectors, metadata.get("categories") if isinstance(metadata, dict) else None
        )
        try:
            return cls(vectors, metadata, thresholds=thresholds, centers=centers)
        except ValueError as error:
            raise ValueError(f"{path}: {error}") from error

    @classmethod
    def from_pretrained(
        cls,
        pretrained: str | os.PathLike,
        revision: str | None = None,
        *,
        cache_dir: str | os.PathLike | None = None,
        token: str | bool | None = None,
        local_files_only: bool | None = None,
        endpoint: str | None = None,
    ) -> DirectionPack:
        """Load a pack from a folder, a file, or a Hugging Face Hub repository id.

        Hub downloads go through ``huggingface_hub`` and its cache, so ``HF_HUB_OFFLINE=1`` loads a
        previously downloaded pack without network.

        Args:
            pretrained: a folder holding ``safesteer_pack.safetensors``, the path of a pack file, or a Hub
                repo id such as ``"org/safesteer-flux1-schnell"``.
            revision: Hub branch, tag or commit (Hub ids only).
            cache_dir, token, local_files_only, endpoint: passed to ``huggingface_hub.hf_hub_download``
                (``endpoint``: a Hub mirror or private Hub URL; default ``HF_ENDPOINT``).

        Example:
            >>> pack = DirectionPack.from_pretrained("org/safesteer-flux1-schnell", revision="v1")
        """
        path = resolve_pack_file(
            pretrained,
            revision=revision,
            cache_dir=cache_dir,
            token=token,
            local_files_only=local_files_only,
            endpoint=endpoint,
        )
        return cls.from_file(path)

    def push_to_hub(
        self,
        repo_id: str,
        *,
        private: bool | None = None,
        token: str | None = None,
        revision: str | None = None,
        commit_message: str = "Upload SafeSteer direction pack",
        endpoint: str | None = None,
    ) -> str:
        """Upload the pack file and its model card to a Hub model repository (created if missing).

        Returns:
            The URL of the commit.
        """
        return push_pack(
            self.save_pretrained,
            repo_id,
            private=private,
            token=token,
            revision=revision,
            commit_message=commit_message,
            endpoint=endpoint,
        )

    # ------------------------------------------------------------------ validation
    def _check_name(self, name: str) -> None:
        if name not in self._vectors:
            raise ValueError(
                f"Unknown direction {name!r}. This pack has {self.names}. Category names are case-sensitive; "
                "use pack.categories to list them."
            )

    def _validate(self) -> None:
        if not self._vectors:
            raise ValueError(
                "A pack needs at least one direction (e.g. {'global': {'text_encoder': tensor}})."
            )
        spaces: dict[str, int] | None = None
        for name, per_space in self._vectors.items():
            if not isinstance(name, str) or not name or "." in name:
                raise ValueError(f"Direction names must be non-empty strings without '.', got {name!r}.")
            if not per_space:
                raise ValueError(f"Direction {name!r} has no spaces; give at least one {{space: vector}}.")
            dims = {space: int(v.shape[0]) for space, v in per_space.items()}
            for space in dims:
                if not isinstance(space, str) or not space.isidentifier():
                    raise ValueError(
                        f"Space names are pipeline component names such as 'text_encoder_2', got {space!r}."
                    )
            if spaces is None:
                spaces = dims
            elif dims != spaces:
                raise ValueError(
                    f"Every direction must cover the same spaces with the same dimensions:\n"
                    f"  {self.names[0]!r}: {spaces}\n  {name!r}: {dims}"
                )
        for name, per_space in self._thresholds.items():
            if name not in self._vectors:
                raise ValueError(
                    f"Gate threshold given for unknown direction {name!r}; directions: {self.names}."
                )
            for space, value in per_space.items():
                if space not in spaces:
                    raise ValueError(
                        f"Gate threshold for {name!r} names unknown space {space!r}; spaces: {spaces}."
                    )
                if isinstance(value, torch.Tensor):
                    value = float(value)
                if not isinstance(value, int | float) or not math.isfinite(value):
                    raise ValueError(f"Gate threshold {name}.{space} must be a finite number, got {value!r}.")
                # The file stores thresholds as float32: round now so a saved pack reloads exactly equal.
                stored = float(torch.tensor(float(value), dtype=torch.float32))
                if not math.isfinite(stored):
                    raise ValueError(
                        f"Gate threshold {name}.{space} = {value!r} is outside the float32 range."
                    )
                per_space[space] = stored
        for space, center in self._centers.items():
            if space not in spaces:
                raise ValueError(f"Centre given for unknown space {space!r}; spaces: {spaces}.")
            if center.shape[0] != spaces[space]:
                raise ValueError(
                    f"Centre of space {space!r} has dimension {center.shape[0]}, the directions have "
                    f"{spaces[space]}."
                )


# ---------------------------------------------------------------------- helpers
def _as_vector(value: object, label: str) -> torch.Tensor:
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"{label}: expected a torch.Tensor, got {type(value).__name__}.")
    if value.dim() != 1:
        raise ValueError(
            f"{label}: expected a 1-D vector, got shape {tuple(value.shape)}. Pass one vector per space."
        )
    if not (value.is_floating_point()):
        raise TypeError(f"{label}: expected a floating-point tensor, got {value.dtype}.")
    vector = value.detach().to(device="cpu", dtype=torch.float32).clone()
    if not torch.isfinite(vector).all():
        bad = int((~torch.isfinite(vector)).sum())
        raise ValueError(f"{label}: {bad} of {vector.numel()} values are NaN or infinite; rebuild the pack.")
    return vector


def _normalise_metadata(metadata: Mapping, categories: list[str]) -> dict:
    if not isinstance(metadata, Mapping):
        raise TypeError(f"Pack metadata must be a mapping, got {type(metadata).__name__}.")
    metadata = copy.deepcopy(dict(metadata))
    missing = [key for key in REQUIRED_METADATA if key not in metadata]
    if missing:
        raise ValueError(
            f"Pack metadata is missing required keys {missing}. Required: {list(REQUIRED_METADATA)}. "
            "Build packs with DirectionPack.from_tensors, which fills the defaults."
        )
    version = metadata["format_version"]
    if version not in SUPPORTED_FORMAT_VERSIONS:
        raise ValueError(
            f"Pack format version {version!r} is not supported by safesteer-diffusers {__version__} (supports "
            f"{sorted(SUPPORTED_FORMAT_VERSIONS)}). Upgrade safesteer-diffusers or rebuild the pack."
        )
    if metadata["kind"] not in PACK_KINDS:
        raise ValueError(f"Pack kind must be one of {PACK_KINDS}, got {metadata['kind']!r}.")
    for key in ("source", "target", "provenance"):
        if not isinstance(metadata[key], Mapping):
            raise ValueError(
                f"Pack metadata {key!r} must be a JSON object, got {type(metadata[key]).__name__}."
            )
    unknown = sorted(set(metadata) - KNOWN_METADATA)
    if unknown:
        warnings.warn(
            f"Pack metadata has keys this version does not know: {unknown} (written by a newer library?). "
            "They are kept but ignored.",
            UserWarning,
            stacklevel=3,
        )
    stated = metadata.get("categories")
    if stated is not None and list(stated) != categories:
        raise ValueError(f"Pack metadata lists categories {stated} but the tensors hold {categories}.")
    metadata["categories"] = categories
    try:
        json.dumps(metadata, sort_keys=True)
    except TypeError as error:
        raise TypeError(f"Pack metadata must be JSON-serialisable: {error}") from error
    return metadata


def _parse_tensors(tensors: dict[str, torch.Tensor], path: Path):
    vectors: dict[str, dict[str, torch.Tensor]] = {}
    thresholds: dict[str, dict[str, float]] = {}
    centers: dict[str, torch.Tensor] = {}
    global_vectors: dict[str, torch.Tensor] = {}
    for key, tensor in tensors.items():
        kind, _, rest = key.partition(".")
        if kind == GLOBAL and rest:
            global_vectors[rest] = tensor
        elif kind == "category" and "." in rest:
            name, space = rest.rsplit(".", 1)
            vectors.setdefault(name, {})[space] = tensor
        elif kind == "gate" and "." in rest:
            name, space = rest.rsplit(".", 1)
            if tensor.numel() != 1:
                raise ValueError(
                    f"{path}: gate tensor {key!r} must hold one number, has shape {tuple(tensor.shape)}."
                )
            thresholds.setdefault(name, {})[space] = float(tensor.reshape(()))
        elif kind == "center" and rest:
            centers[rest] = tensor
        else:
            raise ValueError(
                f"{path}: unexpected tensor {key!r}; pack files hold 'global.<space>', 'category.<name>.<space>', "
                "'gate.<direction>.<space>' and 'center.<space>'."
            )
    if global_vectors:
        vectors = {GLOBAL: global_vectors, **vectors}
    return vectors, thresholds, centers


def _in_stated_order(vectors: dict[str, dict], stated: object) -> dict[str, dict]:
    # safetensors returns keys sorted; the metadata remembers the order the author gave the categories.
    if not isinstance(stated, list) or set(stated) != set(vectors) - {GLOBAL}:
        return vectors
    ordered = {GLOBAL: vectors[GLOBAL]} if GLOBAL in vectors else {}
    ordered.update({name: vectors[name] for name in stated})
    return ordered


def _same_tensors(a: Mapping[str, torch.Tensor], b: Mapping[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)

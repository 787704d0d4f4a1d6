"""`DirectionPack`: calibrated safety directions for one target generator, in one safetensors file.

A pack holds, for every *direction* (``"global"`` and one per category) and every *space* (the pipeline
component name of a text encoder, e.g. ``"text_encoder_2"``), one 1-D vector. Vectors are stored
calibrated: steering adds exactly ``strength * vector`` to the text states the denoiser sees. They point
from unsafe toward safe, so a positive strength makes outputs safer.

Optional per (direction, space) gate thresholds and per-space centres (the benign anchor mean, used by the
projection mode) travel in the same file. Metadata is one JSON string under the ``"safesteer"`` key of the
safetensors header (safetensors metadata is ``dict[str, str]``), beside an integrity hash of the tensors and
metadata (``safesteer_sha256``). Loading never unpickles, and validates everything docs/pack-format.md
states; any failure is an :class:`~safesteer_diffusers.packs.errors.InvalidPackError`.

File layout (format version 1)::

    global.<space>              [D]   float32
    category.<name>.<space>     [D]   float32
    gate.<direction>.<space>    []    float32   optional: fires when the prompt's score exceeds it
    gate_vector.<direction>.<space>  [D]  float32  optional: the gate scores along it (beside its threshold)
    source_gate.<direction>     [Ds] or [H, Ds]  float32  optional: a gate scored in the source model (metadata
                                source_gate); H heads, the largest head score decides
    source_gate_threshold.<direction>  []  float32
    source_gate_bias.<direction>  [H]  float32  beside a [H, Ds] gate: each head's bias
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
from safetensors.torch import save_file

from safesteer_diffusers.version import __version__

from .errors import InvalidPackError, UnverifiedPackWarning
from .format import FORMAT_KEY, FORMAT_VERSION, GLOBAL, HASH_KEY, METADATA_KEY, PACK_FILENAME
from .hub import push_pack, resolve_pack_file
from .integrity import check_hash, content_hash
from .metadata_rules import KNOWN_METADATA, PACK_KINDS, REQUIRED_METADATA, check_metadata
from .model_card import model_card
from .reader import in_stated_order, parse_metadata_text, read_pack_file, split_tensors
from .validation import (
    check_centers,
    check_directions,
    check_gate_vectors,
    check_source_gate,
    check_tensor_count,
    check_thresholds,
)

__all__ = ["KNOWN_METADATA", "PACK_KINDS", "REQUIRED_METADATA", "DirectionPack", "InvalidPackError"]


class DirectionPack:
    """Calibrated safety directions for one target generator.

    Build one with :meth:`from_tensors` or load one with :meth:`from_pretrained`; both validate with the same
    rules and raise :class:`~safesteer_diffusers.packs.errors.InvalidPackError`. Packs
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
        gate_vectors: Mapping[str, Mapping[str, torch.Tensor]] | None = None,
        source_gate: tuple[Mapping[str, torch.Tensor], ...] | None = None,
    ):
        # Every rule lives in packs/validation.py (tensors) or packs/metadata_rules.py and raises
        # InvalidPackError; a pack that constructs saves to a file that loads back equal.
        self._vectors = check_directions(vectors)
        self._thresholds = check_thresholds(thresholds, self.names, self.spaces)
        self._centers = check_centers(centers, self.spaces)
        self._gate_vectors = check_gate_vectors(gate_vectors, self._thresholds, self.spaces)
        self._source_gate = check_source_gate(*(source_gate or (None, None)), names=self.names)
        check_tensor_count(
            sum(map(len, self._vectors.values()))
            + sum(map(len, self._thresholds.values()))
            + len(self._centers)
            + sum(map(len, self._gate_vectors.values()))
            + 2 * len(self._source_gate[0])
            + sum(
                bool(biases.any()) or len(self._source_gate[0][n]) > 1
                for n, biases in self._source_gate[2].items()
            )
        )
        self._metadata = check_metadata(metadata, names=self.names, spaces=self.spaces, stacklevel=3)
        _check_source_gate_metadata(self._source_gate[0], self._metadata)
        _check_fpr_tables(self._metadata, self.names, self.spaces, set(self._source_gate[0]))

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_tensors(
        cls,
        directions: Mapping[str, Mapping[str, torch.Tensor]],
        *,
        thresholds: Mapping[str, Mapping[str, float]] | None = None,
        centers: Mapping[str, torch.Tensor] | None = None,
        gate_vectors: Mapping[str, Mapping[str, torch.Tensor]] | None = None,
        source_gate_tensors: tuple[Mapping[str, torch.Tensor], ...] | None = None,
        **metadata,
    ) -> DirectionPack:
        """Make a pack from in-memory vectors.

        Args:
            directions: direction name (``"global"`` or a category) -> {space: 1-D tensor}. Every direction
                must cover the same spaces.
            thresholds: optional gate thresholds, direction name -> {space: float}.
            centers: optional benign mean token state per space (used by ``mode="project"``).
            gate_vectors: optional vectors the gate scores along, direction name -> {space: 1-D tensor}, each
                beside its threshold (without one, the gate scores along the unsafe side of the direction).
            source_gate_tensors: optional ``({direction: [Ds] vector or [H, Ds] heads}, {direction:
                threshold})``, optionally with a third ``{direction: [H] biases}``: a gate scored in the source
                model (fires when the largest ``features . head + bias`` exceeds the threshold); needs the
                ``source_gate`` metadata entry (``layer``, ``pooling``, ``chat_template``, ``dim``,
                ``quantile``; ``heads`` when a direction has several).
            **metadata: pack metadata (``kind``, ``source``, ``target``, ``provenance``, ``alignment``,
                ``default_strengths``, ...). ``format_version`` and ``library_version`` are filled in;
                ``kind`` defaults to ``"manual"``, ``source``/``target``/``provenance`` to ``{}``.

        Returns:
            A validated :class:`DirectionPack`.

        Raises:
            InvalidPackError: when a vector, threshold, centre or metadata entry breaks the format (same
                rules as loading a file; ``InvalidPackTypeError``, also a ``TypeError``, for wrong types).

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
        return cls(
            directions,
            filled,
            thresholds=thresholds,
            centers=centers,
            gate_vectors=gate_vectors,
            source_gate=source_gate_tensors,
        )

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

    def threshold(self, name: str, space: str, fpr: float | None = None) -> float | None:
        """Gate threshold of direction ``name`` in ``space``, or ``None`` if the pack has none.

        ``fpr``: the threshold calibrated for that benign false-positive rate (metadata
        ``gate.fpr_thresholds``; levels in :attr:`gate_fprs`) instead of the pack's default.
        """
        self._check_name(name)
        if fpr is None:
            return self._thresholds.get(name, {}).get(space)
        level = _fpr_level(self._metadata.get("gate", {}).get("fpr_thresholds"), fpr)
        return None if level is None else level.get(name, {}).get(space)

    @property
    def gate_fprs(self) -> list[float]:
        """The benign false-positive rates this pack stores gate thresholds for (``gate_fpr=`` choices)."""
        return sorted(float(key) for key in self._metadata.get("gate", {}).get("fpr_thresholds", {}))

    def gate_vector(self, name: str, space: str) -> torch.Tensor | None:
        """The vector the gate of direction ``name`` scores along in ``space``, or ``None``.

        ``None`` means the classic gate: the unsafe side of the unit direction itself
        (:func:`safesteer_diffusers.steering.maths.direction_gate_vectors`).
        """
        self._check_name(name)
        vector = self._gate_vectors.get(name, {}).get(space)
        return None if vector is None else vector.clone()

    @property
    def has_source_gate(self) -> bool:
        """Whether the pack carries a gate scored in its source model (metadata ``source_gate``)."""
        return bool(self._source_gate[0])

    def source_gate(self, name: str, fpr: float | None = None) -> tuple[torch.Tensor, float | None] | None:
        """``(vector [Ds], threshold)`` of direction ``name``'s one-head source-model gate, or ``None``.

        ``fpr``: the threshold for that benign false-positive rate (metadata ``source_gate.fpr_thresholds``;
        ``None`` as the threshold when the pack has no such level).

        Raises:
            ValueError: the gate has several heads or a bias (one vector would score less than the gate
                does); use :meth:`source_gate_heads`.
        """
        gate = self.source_gate_heads(name, fpr)
        if gate is None:
            return None
        heads, biases, threshold = gate
        if len(heads) > 1 or bool(biases.any()):
            raise ValueError(
                f"The source gate of {name!r} has {len(heads)} heads with biases (the largest head score "
                "decides); one vector cannot score it. Use pack.source_gate_heads(name) and "
                "safesteer_diffusers.steering.maths.source_gate_scores."
            )
        return heads[0], threshold

    def source_gate_heads(
        self, name: str, fpr: float | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, float | None] | None:
        """``(heads [H, Ds], biases [H], threshold)`` of direction ``name``'s source-model gate, or ``None``.

        The gate's score of a prompt is the largest ``features . heads[h] + biases[h]``
        (:func:`~safesteer_diffusers.steering.maths.source_gate_scores`); it fires above the threshold.
        ``fpr``: the threshold for that benign false-positive rate (``None`` as the threshold when the pack
        has no such level).
        """
        self._check_name(name)
        heads = self._source_gate[0].get(name)
        if heads is None:
            return None
        biases = self._source_gate[2][name].clone()
        if fpr is None:
            return heads.clone(), biases, self._source_gate[1][name]
        level = _fpr_level(self._metadata.get("source_gate", {}).get("fpr_thresholds"), fpr)
        return heads.clone(), biases, None if level is None else level.get(name)

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
        metadata = self._derived_metadata("+" if sign > 0 else "-")
        # The gates were fitted for the operands, not for their sum: every threshold goes.
        metadata.pop("source_gate", None)
        metadata.get("gate", {}).pop("fpr_thresholds", None)
        return DirectionPack(vectors, metadata, centers=centers)

    def __add__(self, other: DirectionPack) -> DirectionPack:
        return self._combine(other, 1.0)

    def __sub__(self, other: DirectionPack) -> DirectionPack:
        return self._combine(other, -1.0)

    def __mul__(self, scale: float) -> DirectionPack:
        if isinstance(scale, bool) or not isinstance(scale, int | float):
            return NotImplemented
        try:
            finite = math.isfinite(scale)
        except OverflowError:  # an int beyond the float range
            finite = False
        if not finite:
            raise InvalidPackError(
                f"A pack can only be scaled by a finite number, got {scale}.", field="scale"
            )
        vectors = {name: {s: v * scale for s, v in per.items()} for name, per in self._vectors.items()}
        # A positive scale keeps every unit direction, so the gate scores and thresholds still hold (gate
        # vectors do not depend on the steering vectors at all); a sign flip points toward unsafe: no gate.
        thresholds = self._thresholds if scale > 0 else None
        gate_vectors = self._gate_vectors if scale > 0 else None
        metadata = self._derived_metadata(f"*{scale}")
        source_gate = self._source_gate if scale > 0 else None
        if source_gate is None:
            metadata.pop("source_gate", None)
            metadata.get("gate", {}).pop("fpr_thresholds", None)
        return DirectionPack(vectors, metadata, thresholds, self._centers, gate_vectors, source_gate)

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
            and _same_tensors(self._source_gate[0], other._source_gate[0])
            and self._source_gate[1] == other._source_gate[1]
            and _same_tensors(self._source_gate[2], other._source_gate[2])
            and self._gate_vectors.keys() == other._gate_vectors.keys()
            and all(_same_tensors(per, other._gate_vectors[name]) for name, per in self._gate_vectors.items())
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
        """The tensors and the string metadata exactly as written to the safetensors file.

        The header holds ``format: pt``, the metadata JSON under ``safesteer`` and the integrity hash under
        ``safesteer_sha256`` (docs/pack-format.md).
        """
        tensors: dict[str, torch.Tensor] = {}
        for name, per_space in self._vectors.items():
            prefix = GLOBAL if name == GLOBAL else f"category.{name}"
            for space, vector in per_space.items():
                tensors[f"{prefix}.{space}"] = vector.contiguous()
        for name, per_space in self._thresholds.items():
            for space, value in per_space.items():
                tensors[f"gate.{name}.{space}"] = torch.tensor(float(value), dtype=torch.float32)
        for name, per_space in self._gate_vectors.items():
            for space, vector in per_space.items():
                tensors[f"gate_vector.{name}.{space}"] = vector.contiguous()
        for space, center in self._centers.items():
            tensors[f"center.{space}"] = center.contiguous()
        for name, heads in self._source_gate[0].items():
            biases = self._source_gate[2][name]
            if len(heads) == 1 and not bool(biases.any()):  # one head: the layout before multi-head gates
                tensors[f"source_gate.{name}"] = heads[0].contiguous()
            else:
                tensors[f"source_gate.{name}"] = heads.contiguous()
                tensors[f"source_gate_bias.{name}"] = biases.contiguous()
            tensors[f"source_gate_threshold.{name}"] = torch.tensor(
                float(self._source_gate[1][name]), dtype=torch.float32
            )
        header = {FORMAT_KEY: "pt", METADATA_KEY: json.dumps(self._metadata, sort_keys=True, allow_nan=False)}
        header[HASH_KEY] = content_hash(tensors, header)  # covers the tensors and the other header entries
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
        card = model_card(
            self.metadata, spaces=self.spaces, categories=self.categories, has_gate=self.has_gate
        )
        (folder / "README.md").write_text(card, encoding="utf-8")
        return path

    def save_file(self, path: str | os.PathLike) -> Path:
        """Write only the safetensors pack file to ``path``."""
        tensors, header = self.to_state_dict()
        save_file(tensors, str(path), metadata=header)
        return Path(path)

    @classmethod
    def from_file(cls, path: str | os.PathLike) -> DirectionPack:
        """Load and validate a pack file (safetensors; never unpickles).

        Everything docs/pack-format.md states is checked: the header (bounded, only the known entries), the
        integrity hash, float32 tensors of the documented names and shapes, finite values within
        ``|value| <= 1e6``, the metadata JSON (bounded in size and depth before parsing, finite numbers, the
        type of every known key, dimensions and categories that agree with the tensors).

        Raises:
            InvalidPackError: for any problem; the message names the file, the field and the fix.

        Warns:
            UnverifiedPackWarning: when the file has no integrity hash (written by an earlier version); it
                loads, and re-saving it adds the hash.
        """
        path = Path(path)
        try:
            header, tensors = read_pack_file(path)
            # The hash first: a corrupted file is reported as corrupted, whatever the damage looks like.
            verified = check_hash(tensors, header)
            metadata = parse_metadata_text(header[METADATA_KEY])
            vectors, thresholds, centers, gate_vectors, source_gate = split_tensors(tensors)
            vectors = in_stated_order(vectors, metadata.get("categories"))
            pack = cls(
                vectors,
                metadata,
                thresholds=thresholds,
                centers=centers,
                gate_vectors=gate_vectors,
                source_gate=source_gate,
            )
        except InvalidPackError as error:
            raise error.in_file(path) from error
        if not verified:
            warnings.warn(
                f"{path} was written by an older version of safesteer-diffusers and has no integrity hash, "
                "so corruption cannot be detected; re-save it to add one: "
                "DirectionPack.from_file(path).save_file(path).",
                UnverifiedPackWarning,
                stacklevel=2,
            )
        return pack

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

        Raises:
            InvalidPackError: when no pack is found at ``pretrained`` or the file is not a valid pack (see
                :meth:`from_file`). Network errors other than "not found" keep their ``huggingface_hub`` types.

        Example:
            >>> pack = DirectionPack.from_pretrained("org/safesteer-flux1-schnell", revision="v1")
        """
        try:
            path = resolve_pack_file(
                pretrained,
                revision=revision,
                cache_dir=cache_dir,
                token=token,
                local_files_only=local_files_only,
                endpoint=endpoint,
            )
        except ValueError as error:  # one exception type for every load failure
            raise InvalidPackError(str(error), field="pretrained") from error
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


# ---------------------------------------------------------------------- helpers
def _fpr_level(table: Mapping | None, fpr: float) -> Mapping | None:
    """The entry of a ``{"<rate>": ...}`` table for ``fpr`` (rates compared as numbers), or ``None``."""
    for key, level in (table or {}).items():
        if math.isclose(float(key), fpr, rel_tol=1e-9, abs_tol=0.0):
            return level
    return None


def _check_fpr_tables(
    metadata: Mapping, names: list[str], spaces: Mapping[str, int], source_names: set
) -> None:
    """Thresholds per false-positive rate name only the pack's directions and spaces (and gated directions)."""
    problems = []
    for level, per_name in (metadata.get("gate", {}).get("fpr_thresholds") or {}).items():
        for name, per_space in per_name.items():
            if name not in names or not set(per_space) <= set(spaces):
                problems.append(f"gate.fpr_thresholds[{level!r}][{name!r}]")
    for level, per_name in (metadata.get("source_gate", {}).get("fpr_thresholds") or {}).items():
        problems.extend(
            f"source_gate.fpr_thresholds[{level!r}][{name!r}]"
            for name in per_name
            if name not in source_names
        )
    if problems:
        raise InvalidPackError(
            f"{problems[0]} names a direction or space this pack does not have (directions {names}, spaces "
            f"{sorted(spaces)}). Rebuild the pack with safesteer-diffusers.",
            field=problems[0],
        )


def _check_source_gate_metadata(heads: Mapping[str, torch.Tensor], metadata: Mapping) -> None:
    """The source gate's tensors and its ``source_gate`` metadata come together and agree on the width, and a
    gate of several heads says what each head was fitted on (``source_gate.heads``, one entry per head)."""
    info = metadata.get("source_gate")
    if not heads and info is None:
        return
    if (
        not heads
        or not isinstance(info, dict)
        or any(key not in info for key in ("layer", "pooling", "chat_template", "dim"))
    ):
        raise InvalidPackError(
            "A source gate needs both its tensors (source_gate.<direction>) and the metadata entry source_gate "
            "with layer, pooling, chat_template and dim; this pack has "
            f"{'the tensors' if heads else 'no tensors'} and {'an incomplete entry' if info else 'no entry'}. "
            "Rebuild the pack with safesteer-diffusers.",
            field="source_gate",
        )
    width = int(next(iter(heads.values())).shape[1])
    if info["dim"] != width:
        raise InvalidPackError(
            f"metadata source_gate.dim is {info['dim']} but the source gate's vectors have {width} features. "
            "Rebuild the pack with safesteer-diffusers.",
            field="source_gate.dim",
        )
    most = max(len(h) for h in heads.values())
    described = info.get("heads")
    if most > 1 and (described is None or len(described) < most):
        raise InvalidPackError(
            f"The source gate has up to {most} heads per direction but metadata source_gate.heads describes "
            f"{'none' if described is None else len(described)}; a pack must say what each head was fitted on. "
            "Rebuild the pack with safesteer-diffusers.",
            field="source_gate.heads",
        )


def _same_tensors(a: Mapping[str, torch.Tensor], b: Mapping[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)

"""Unsafe prompts a builder supplies for the source-model gate alone (``safesteer build --source-gate-prompts``).

The pairs teach the gate one style of unsafe prompt: short, plain descriptions. Public prompt sets such as I2P
are written differently (long lists of artists and styles around the unsafe words), and a gate fitted on the
pairs alone catches about half of them (docs/method.md 6.5.3). A builder who holds such prompts can give them to
the build: they are read by the *source* model only, where unsafe text is allowed, and fit a second head of
the source-model gate (:func:`~safesteer_diffusers.build.gate_probe.source_gate_heads`). The target side never
sees them, and the pack records their count, per-category counts and hash, never their text.
"""

from __future__ import annotations

import hashlib
import os
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from safesteer_diffusers.packs.format import GLOBAL

from .prompts.readers import PromptRecord, read_prompts

__all__ = ["MIN_GATE_PROMPTS", "GatePrompts", "same_text"]

MIN_GATE_PROMPTS = 20
"""Fewest supplied prompts a gate head is fitted on: the global head needs this many in all, a category's head
this many labelled with it (a category with fewer gets no head of its own; its prompts still train the
global head, and the pack lists the directions that have one)."""

TEXT_SUFFIXES = (".txt",)
"""Files read as one prompt per line (no categories); anything else goes to ``read_prompts``."""


def same_text(text: str) -> str:
    """The form two prompts are compared in: case folded, whitespace collapsed."""
    return " ".join(text.casefold().split())


@dataclass(frozen=True)
class GatePrompts:
    """Unsafe prompts for the source-model gate, each with its categories (possibly none).

    Attributes:
        prompts: the prompt texts, in file order.
        categories: each prompt's category labels (``()``: the global head only).
        name: where they came from (a file name), recorded in the pack.
        benign: optional benign prompts in the same register (``--source-gate-benign``): negatives of the
            second head only, so it learns what in the supplied prompts is unsafe rather than their style.
    """

    prompts: tuple[str, ...]
    categories: tuple[tuple[str, ...], ...]
    name: str
    benign: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if len(self.prompts) != len(self.categories):
            raise ValueError(
                f"GatePrompts needs one category tuple per prompt: {len(self.prompts)} prompts, "
                f"{len(self.categories)} category tuples."
            )
        if len(self.prompts) < MIN_GATE_PROMPTS:
            raise ValueError(
                f"{self.name}: {len(self.prompts)} unsafe prompts for the source gate; a gate head needs at least "
                f"{MIN_GATE_PROMPTS}. Supply more, or build without --source-gate-prompts."
            )
        if self.benign and len(self.benign) < MIN_GATE_PROMPTS:
            raise ValueError(
                f"{len(self.benign)} benign prompts beside {self.name}; at least {MIN_GATE_PROMPTS} are needed to "
                "teach the second head anything. Supply more, or none."
            )
        unsafe = {same_text(p) for p in self.prompts}
        both = [text for text in self.benign if same_text(text) in unsafe]
        if both:
            raise ValueError(
                f"{len(both)} prompt(s) are both supplied as unsafe and as benign ({both[0]!r}). Each prompt "
                "belongs to one side: remove it from one of the files."
            )

    @classmethod
    def from_records(cls, records: Sequence[PromptRecord], name: str) -> GatePrompts:
        """From :func:`~safesteer_diffusers.build.prompts.readers.read_prompts` records (I2P's CSV as is)."""
        return cls(tuple(r.prompt for r in records), tuple(tuple(r.categories) for r in records), name)

    def with_benign(self, path: str | os.PathLike[str]) -> GatePrompts:
        """The same prompts with benign ones read from ``path`` (a ``.txt``, CSV or JSONL file, as :meth:`read`;
        categories ignored)."""
        return GatePrompts(self.prompts, self.categories, self.name, _read_texts(Path(path)))

    @classmethod
    def read(cls, path: str | os.PathLike[str]) -> GatePrompts:
        """Read a ``.txt`` file (one prompt per line) or a CSV / JSONL file with a ``prompt`` column and an
        optional ``categories`` column (comma-separated, I2P style).

        Raises:
            FileNotFoundError: no such file.
            ValueError: an unreadable file, no ``prompt`` column, or fewer than ``MIN_GATE_PROMPTS`` prompts.
        """
        path = Path(path)
        if path.suffix.lower() in TEXT_SUFFIXES:
            prompts = _read_texts(path)
            return cls(prompts, ((),) * len(prompts), path.name)
        return cls.from_records(read_prompts(path), path.name)

    def rows(self, names: Sequence[str]) -> dict[str, list[int]]:
        """The prompts each gate direction's supplied head is fitted on: all of them for ``global`` (when the
        gate has it), each category's labelled ones where there are at least ``MIN_GATE_PROMPTS``.

        Raises:
            ValueError: a label that is none of the gate's categories (the message lists both).
        """
        categories = [name for name in names if name != GLOBAL]
        unknown = sorted({label for labels in self.categories for label in labels} - set(categories))
        if unknown:
            raise ValueError(
                f"{self.name} labels prompts with {unknown}, which are not categories of this build "
                f"({categories}). Rename the labels to the build's categories, drop them (the prompts then "
                "train the global head only), or build with those categories."
            )
        rows: dict[str, list[int]] = {GLOBAL: list(range(len(self.prompts)))} if GLOBAL in names else {}
        for category in categories:
            labelled = [i for i, labels in enumerate(self.categories) if category in labels]
            if len(labelled) >= MIN_GATE_PROMPTS:
                rows[category] = labelled
        return rows

    def refuse_unsafe_as_benign(self, unsafe: Sequence[str], what: str) -> None:
        """Refuse supplied benign prompts that are also unsafe prompts of the build (``what``)."""
        known = {same_text(text) for text in unsafe}
        found = [text for text in self.benign if same_text(text) in known]
        if found:
            raise ValueError(
                f"{len(found)} of the benign prompts supplied beside {self.name} are {what} ({found[0]!r}). "
                "Remove them from the benign file."
            )

    def refuse_overlap(self, benign: Sequence[str], what: str) -> None:
        """Refuse supplied unsafe prompts that are also benign prompts of the build (compared by
        :func:`same_text`): the benign-only guarantee of the anchors, checked."""
        unsafe = {same_text(p) for p in self.prompts}
        found = [text for text in benign if same_text(text) in unsafe]
        if found:
            shown = "; ".join(repr(t) for t in found[:3])
            raise ValueError(
                f"{len(found)} of {self.name}'s unsafe prompts are also {what} ({shown}). Benign prompts must "
                f"stay benign: remove these from {self.name}."
            )

    def provenance(self, rows: dict[str, list[int]]) -> dict:
        """What the pack records: count, hash, file name and per-direction counts; never the text."""
        digest = hashlib.sha256()
        for prompt, labels in zip(self.prompts, self.categories, strict=True):
            digest.update(prompt.encode("utf-8") + b"\0" + ",".join(labels).encode("utf-8") + b"\0")
        counts = Counter(label for labels in self.categories for label in labels)
        record = {
            "count": len(self.prompts),
            "sha256": digest.hexdigest(),
            "name": self.name,
            "categories": dict(sorted(counts.items())),
            "directions": list(rows),
        }
        if self.benign:
            benign = hashlib.sha256(b"".join(text.encode("utf-8") + b"\0" for text in self.benign))
            record.update(benign_count=len(self.benign), benign_sha256=benign.hexdigest())
        return record


def _read_texts(path: Path) -> tuple[str, ...]:
    """Prompt texts of a ``.txt`` file (one per line) or of any file ``read_prompts`` reads."""
    if path.suffix.lower() not in TEXT_SUFFIXES:
        return tuple(record.prompt for record in read_prompts(path))
    if not path.is_file():
        raise FileNotFoundError(f"Source-gate prompt file not found: {path}")
    lines = [line.strip() for line in path.read_text(encoding="utf-8").splitlines()]
    return tuple(line for line in lines if line)

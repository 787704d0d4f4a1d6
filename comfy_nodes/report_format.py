"""How the SafeSteer Report node words things: the pack header and the per-direction outcome lines.

The outcome of each direction comes from the library (:meth:`DirectionDecision.outcome`, the one vocabulary
:data:`~safesteer_diffusers.steering.report.OUTCOMES` that the CLI, the demo and ``pipe.safety_report`` use), and
the score wording from :meth:`DirectionDecision.score_text`; this module only lays them out for the node.
Nothing here shows an absolute local path: a model id or pack name that is one is reduced to its last part.
"""

from __future__ import annotations

import re
from pathlib import PurePosixPath, PureWindowsPath

from safesteer_diffusers.packs.direction_pack import DirectionPack
from safesteer_diffusers.packs.format import GLOBAL
from safesteer_diffusers.steering.plan import PROMPT_GATE_SPACE
from safesteer_diffusers.steering.report import OUTCOMES, DirectionDecision, PromptReport

KIND_MEANINGS = {
    "transferred": "directions estimated in a source language model, carried to the target's text space",
    "native": "baseline estimated directly in the target's text space",
    "manual": "vectors given by hand",
    "derived": "arithmetic of other packs",
}
"""What each pack ``kind`` (docs/pack-format.md) means, for the header."""

_WINDOWS_PATH = re.compile(r"^[A-Za-z]:[\\/]|^\\\\")


def is_local_path(text: str) -> bool:
    """Whether ``text`` looks like a local file-system path rather than a Hub id (absolute, ``~``, ``./``)."""
    return text.startswith(("/", "~", "./", "../", ".\\", "..\\")) or bool(_WINDOWS_PATH.match(text))


def without_local_path(text: str) -> str:
    """``text``, or only the last part of it when it is a local path (a report is shared; paths are private)."""
    if not is_local_path(text):
        return text
    path = PureWindowsPath(text) if _WINDOWS_PATH.match(text) or "\\" in text else PurePosixPath(text)
    name = path.name or text.strip("/\\")
    return f"local '{name}'"


def _model(entry: object) -> str | None:
    if not isinstance(entry, dict):
        return None
    model_id = entry.get("model_id")
    return without_local_path(model_id) if isinstance(model_id, str) and model_id else None


def pack_header(pack: DirectionPack, name: str | None) -> list[str]:
    """The report's first lines: the pack's name, kind, source, target, directions and gate, in words.

    Args:
        pack: the pack.
        name: how Load SafeSteer Pack found it (file relative to a ``safesteer`` folder, or a Hub id), or
            ``None`` when the pack did not come from that node.
    """
    metadata = pack.metadata
    kind = metadata.get("kind", "unknown")
    source, target = metadata.get("source") or {}, metadata.get("target") or {}
    lines = [
        f"SafeSteer pack: {without_local_path(name) if name else 'unnamed (not from Load SafeSteer Pack)'}"
    ]
    meaning = KIND_MEANINGS.get(kind)
    lines.append(f"  kind: {kind}" + (f" ({meaning})" if meaning else ""))
    source_model = _model(source)
    if source_model:
        layer = source.get("layer")
        lines.append(f"  source: {source_model}" + (f", layer {layer}" if isinstance(layer, int) else ""))
    elif source.get("native_baseline"):
        lines.append("  source: none (estimated in the target's own text space)")
    else:
        lines.append("  source: not recorded")
    spaces = ", ".join(f"{space} {dim}" for space, dim in pack.spaces.items())
    family = target.get("family")
    lines.append(
        f"  target: {_model(target) or 'not recorded'}"
        + (f" (family {family})" if isinstance(family, str) and family else "")
        + f"; text width: {spaces}"
    )
    global_ = "global" if GLOBAL in pack.names else "no global direction"
    categories = ", ".join(pack.categories) or "none"
    lines.append(f"  directions: {global_}; categories: {categories}")
    lines.append(
        "  gate thresholds: "
        + ("yes (benign-calibrated)" if pack.has_gate else "none (gate=True is refused with this pack)")
    )
    return lines


def outcome_lines(row: PromptReport, gate: bool, indent: str = "    ") -> list[str]:
    """One line per requested direction of a row: the library's outcome, strength applied beside configured
    (and, when the source model's gate decided, its score against its threshold); then the directions not
    requested, on one line."""
    lines = [
        f"{indent}{d.name:<17} {d.outcome(gate):<34} strength applied {d.strength:g} "
        f"(configured {d.configured:g})" + (f"; {d.score_text()}" if PROMPT_GATE_SPACE in d.scores else "")
        for d in row.directions
        if d.configured != 0
    ]
    off = [d.name for d in row.directions if d.configured == 0]
    if off:
        lines.append(f"{indent}{OUTCOMES['off']}: {', '.join(off)}")
    return lines


def gate_check_line(decision: DirectionDecision, gate: bool, indent: str = "  ") -> str:
    """A direction's score against the pack's threshold, in the library's words, and what ``gate=True`` does."""
    line = f"{indent}{decision.name:<17} {decision.score_text()}"
    if not gate:
        return line
    return line + (": gate=True would steer it" if decision.fired else f": {OUTCOMES['below']}")

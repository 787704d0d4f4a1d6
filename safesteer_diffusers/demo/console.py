"""What the demo prints: its introduction, the note on the tiny target, reports indented under a step, and
the closing list of files (``log`` is :attr:`DemoConfig.log <safesteer_diffusers.demo.config.DemoConfig>`,
``print`` by default)."""

from __future__ import annotations

import textwrap
from collections.abc import Callable, Mapping
from pathlib import Path

__all__ = ["INTRO", "TINY_NOTE", "show_block", "show_files"]

INTRO = """\
SafeSteer demo: the whole method, offline, on an embedded default.

  1. estimate   safety directions (global + 7 I2P categories) in a SOURCE language model, from embedded
                safe/unsafe prompt pairs
  2. align      the source space to the TARGET pipeline's text space with a map fitted on BENIGN prompts
                only (the target never sees unsafe text)
  3. transport  the directions through the map, calibrate their length on benign statistics, set gate
                thresholds, and write a pack
  4. steer      the pipeline with the pack: h' = h + strength * v on the text states the denoiser sees
"""
TINY_NOTE = """The target is a tiny Stable Diffusion pipeline built in code with RANDOM weights: its images are not
meaningful pictures. Compare columns (what changes, what stays bit-for-bit identical) and read the
numbers. The maths is the real thing: the same code steers FLUX, SDXL, SD3 or Wan.
"""


def show_block(log: Callable[[str], None], text: str) -> None:
    """Print a multi-line report indented under the current step."""
    log(textwrap.indent(text, "      "))


def show_files(
    log: Callable[[str], None],
    files: Mapping[str, Path],
    descriptions: Mapping[str, str],
    out: Path,
    seconds: float,
) -> None:
    """Print the closing lines: the run time and every file written, with what it holds.

    Args:
        log: where the lines go.
        files: name -> path of the files written.
        descriptions: name -> what the file holds (names without one get none).
        out: the output folder.
        seconds: the run time.
    """
    log("")
    log(f"Done in {seconds:.0f} s. Files in {out.resolve()}:")
    for name in sorted(files):
        log(f"  {name:<24} {descriptions.get(name, '')}")

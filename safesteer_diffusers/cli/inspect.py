"""``safesteer inspect``: print a pack's metadata, norms, cosines and fit statistics (and plot them)."""

from __future__ import annotations

import argparse

from .arguments import HelpFormatter


def register_inspect(commands: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add the ``inspect`` subcommand to the ``safesteer`` subparsers.

    Args:
        commands: the subparsers of the ``safesteer`` parser.

    Returns:
        The ``inspect`` parser.
    """
    inspect = commands.add_parser(
        "inspect",
        help="show a pack's metadata, norms, cosines and fit statistics",
        description="Show a pack's metadata, direction norms and cosines, held-out AUROC and alignment fit. "
        "PACK is a pack folder or file, a pack name printed by `safesteer list-packs` (e.g. "
        "tiny-sd-demo-from-minilm), or a Hub repo id org/name.",
        formatter_class=HelpFormatter,
    )
    inspect.add_argument(
        "pack", help="pack folder or file, catalogue name (safesteer list-packs) or Hub repo id"
    )
    inspect.add_argument("--revision", default=None, help="Hub revision (default: main)")
    inspect.add_argument(
        "--plot", default=None, metavar="PNG", help="also write a PNG (needs matplotlib; default: no plot)"
    )
    inspect.set_defaults(handler=_inspect)
    return inspect


def _inspect(args: argparse.Namespace) -> int:
    from .references import resolve_pack

    reference = resolve_pack(args.pack, flag="PACK")  # before the heavy imports: a typo fails at once

    from safesteer_diffusers.packs.direction_pack import DirectionPack
    from safesteer_diffusers.packs.inspect import inspect_plot, inspect_text

    pack = DirectionPack.from_pretrained(reference, revision=args.revision)
    print(inspect_text(pack))
    if args.plot:
        print(f"wrote {inspect_plot(pack, args.plot)}")
    return 0

"""``safesteer inspect``: print a pack's metadata, norms, cosines and fit statistics (and plot them)."""

from __future__ import annotations

import argparse

from safesteer_diffusers.packs.direction_pack import DirectionPack


def register_inspect(commands: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add the ``inspect`` subcommand to the ``safesteer`` subparsers.

    Args:
        commands: the subparsers of the ``safesteer`` parser.

    Returns:
        The ``inspect`` parser.
    """
    inspect = commands.add_parser("inspect", help="show a pack's metadata, norms, cosines and fit statistics")
    inspect.add_argument("pack", help="pack folder, file or Hub repo id")
    inspect.add_argument("--revision", default=None, help="Hub revision")
    inspect.add_argument("--plot", default=None, metavar="PNG", help="also write a PNG (needs matplotlib)")
    inspect.set_defaults(handler=_inspect)
    return inspect


def _inspect(args: argparse.Namespace) -> int:
    from safesteer_diffusers.packs.inspect import inspect_plot, inspect_text

    pack = DirectionPack.from_pretrained(args.pack, revision=args.revision)
    print(inspect_text(pack))
    if args.plot:
        print(f"wrote {inspect_plot(pack, args.plot)}")
    return 0

"""The ``safesteer list-packs`` subcommand (registered by ``safesteer_diffusers.cli.main.build_parser``)."""

from __future__ import annotations

import argparse
import json

from .arguments import HelpFormatter


def register_list_packs(commands) -> argparse.ArgumentParser:
    """Add the ``list-packs`` subcommand to the ``safesteer`` subparsers.

    Args:
        commands: the subparsers of the ``safesteer`` parser (``parser.add_subparsers()``).

    Returns:
        The subcommand's parser.
    """
    listing = commands.add_parser(
        "list-packs",
        help="list registered packs: built here, published on the Hub, or recipes only",
        description="List the packs of pretrained_directions/ and $SAFESTEER_PACKS_PATH: their target model, "
        "source model, status (built here, published on the Hub, or a recipe only), whether each is the default "
        "SafeSteer.wrap(pipe) uses for its target, and the recipe that builds it. The names in the first column "
        "work wherever a pack is expected (safesteer inspect NAME, safesteer eval --pack NAME).",
        formatter_class=HelpFormatter,
    )
    listing.add_argument("--target", default=None, help="only packs for this target model id (default: all)")
    listing.add_argument("--json", action="store_true", help="machine-readable output")
    listing.set_defaults(handler=_list_packs)
    return listing


def _list_packs(args: argparse.Namespace) -> int:
    from safesteer_diffusers.packs.catalogue import catalogue, pack_folders
    from safesteer_diffusers.pipelines.registry import registered_targets

    entries = catalogue(families=registered_targets())
    entries = [e for e in entries if args.target is None or e.target == args.target]
    if args.json:
        print(json.dumps([e.to_dict() for e in entries], indent=2))
        return 0
    print("Searched: " + ", ".join(str(p) for p in pack_folders()))
    if not entries:
        print("No packs registered." if args.target is None else f"No packs registered for {args.target}.")
        return 0
    rows = [
        (
            e.name + (" *" if e.default else ""),
            e.target or "?",
            e.source or "-",
            e.status + (f": {e.hub_repo}" if e.status != "built" and e.hub_repo else ""),
        )
        for e in entries
    ]
    header = ("pack (* = default for its target)", "target", "source", "status")
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(4)]
    for row in [header, tuple("-" * w for w in widths), *rows]:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
    print("\nBuild one: safesteer build --recipe pretrained_directions/<pack>/recipe.yaml [--device cuda]")
    return 0

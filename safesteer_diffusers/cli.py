"""`safesteer` command line: `safesteer inspect PACK` (more subcommands arrive with pack building)."""

from __future__ import annotations

import argparse
import json
import sys

from .pack import DirectionPack


def _inspect(args: argparse.Namespace) -> int:
    pack = DirectionPack.from_pretrained(args.pack, revision=args.revision)
    print(pack)
    for space, dim in pack.spaces.items():
        norms = ", ".join(f"{name}={pack.direction(space, name).norm():.4g}" for name in pack.names)
        print(f"  {space} (dim {dim}): norms {norms}")
    print(json.dumps(pack.metadata, indent=2, sort_keys=True))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="safesteer", description="Safety steering for diffusers pipelines.")
    commands = parser.add_subparsers(dest="command", required=True)
    inspect = commands.add_parser("inspect", help="show a pack's metadata and vector norms")
    inspect.add_argument("pack", help="pack folder, file or Hub repo id")
    inspect.add_argument("--revision", default=None, help="Hub revision")
    inspect.set_defaults(handler=_inspect)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``safesteer`` console script."""
    args = build_parser().parse_args(argv)
    try:
        return args.handler(args)
    except (ValueError, TypeError) as error:
        print(f"safesteer: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

"""`safesteer` command line: the parser that registers every subcommand, and the entry point.

Each subcommand lives in its own module and registers itself here: ``build`` (:mod:`.build`), ``inspect``
(:mod:`.inspect`), ``eval`` (:mod:`.eval`), ``demo`` (:mod:`.demo`), ``list-packs`` (:mod:`.list_packs`).
"""

from __future__ import annotations

import argparse
import sys

from .build import register_build
from .demo import register_demo
from .eval import add_eval_parser
from .inspect import register_inspect
from .list_packs import register_list_packs


def build_parser() -> argparse.ArgumentParser:
    """The ``safesteer`` parser with every subcommand registered (each sets its ``handler``).

    Returns:
        The parser.
    """
    parser = argparse.ArgumentParser(prog="safesteer", description="Safety steering for diffusers pipelines.")
    commands = parser.add_subparsers(dest="command", required=True)
    register_build(commands)
    register_inspect(commands)
    add_eval_parser(commands)
    register_demo(commands)
    register_list_packs(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``safesteer`` console script.

    Args:
        argv: the arguments (default: ``sys.argv[1:]``).

    Returns:
        The exit status: the handler's, or 2 with the message on stderr for a ``ValueError``, ``TypeError``
        or ``ImportError`` (bad input or a missing optional dependency, not a crash).
    """
    args = build_parser().parse_args(argv)
    try:
        return args.handler(args)
    except (ValueError, TypeError, ImportError) as error:
        print(f"safesteer: error: {error}", file=sys.stderr)
        return 2

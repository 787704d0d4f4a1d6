"""`safesteer` command line: the parser that registers every subcommand, and the entry point.

Each subcommand lives in its own module and registers itself here: ``build`` (:mod:`.build`), ``inspect``
(:mod:`.inspect`), ``eval`` (:mod:`.eval`), ``demo`` (:mod:`.demo`), ``list-packs`` (:mod:`.list_packs`).

Building the parser imports no torch, diffusers or transformers (a test checks it): the subcommands import
what they need inside their handlers, so ``safesteer --help`` answers at once.
"""

from __future__ import annotations

import argparse
import sys

from safesteer_diffusers.utils import logging as library_logging

from .arguments import HelpFormatter, add_global_flags
from .build import register_build
from .demo import register_demo
from .errors import EXIT_INTERRUPTED, is_expected, report
from .eval import add_eval_parser
from .inspect import register_inspect
from .list_packs import register_list_packs
from .references import hub_session


def build_parser() -> argparse.ArgumentParser:
    """The ``safesteer`` parser with every subcommand registered (each sets its ``handler``).

    Returns:
        The parser.
    """
    parser = argparse.ArgumentParser(
        prog="safesteer",
        description="Safety steering for diffusers pipelines. Start with `safesteer demo` (offline, about a "
        "minute on a CPU), list the packs with `safesteer list-packs`, look inside one with `safesteer inspect "
        "NAME`.",
        formatter_class=HelpFormatter,
    )
    add_global_flags(parser)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    registered = [
        register_build(commands),
        register_inspect(commands),
        add_eval_parser(commands),
        register_demo(commands),
        register_list_packs(commands),
    ]
    for subparser in registered:
        add_global_flags(subparser, subcommand=True)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``safesteer`` console script.

    Args:
        argv: the arguments (default: ``sys.argv[1:]``).

    Returns:
        The exit status: the handler's; 2 with ``safesteer: error: ...`` on stderr for an expected failure
        (bad input, a missing file or model, a missing optional dependency, the library's errors; the
        traceback too with ``--debug``); 130 after Ctrl-C. Other exceptions propagate (a crash to report).
    """
    # Before any subcommand imports transformers: its torchvision fallback notice is noise here.
    library_logging.silence_torchvision_notices()
    args = build_parser().parse_args(argv)
    verbosity = library_logging.get_verbosity()
    library_logging.set_verbosity("debug" if args.debug else "warning" if args.quiet else "info")
    try:
        with library_logging.warnings_to_logger(), hub_session():
            return args.handler(args)
    except KeyboardInterrupt:
        print("safesteer: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as error:
        if not is_expected(error):
            raise
        return report(error, debug=args.debug)
    finally:
        library_logging.set_verbosity(verbosity)

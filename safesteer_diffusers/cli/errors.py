"""How ``safesteer`` reports a failure: one ``safesteer: error: ...`` message for the failures a user can
fix (bad input, missing files or models, the library's own errors), the traceback only with ``--debug``.

A crash (any other exception) keeps Python's traceback: it is a bug to report, not an input to fix.
"""

from __future__ import annotations

import sys
import traceback

__all__ = ["EXIT_ERROR", "EXIT_INTERRUPTED", "is_expected", "report"]

EXIT_ERROR = 2
"""Exit status of an expected failure (argparse uses 2 for usage errors too)."""
EXIT_INTERRUPTED = 130
"""Exit status after Ctrl-C (128 + SIGINT), as shells report it."""

_EXPECTED = (ValueError, TypeError, ImportError, OSError, KeyError)
_EXPECTED_BY_NAME = ("OutOfMemoryError",)  # torch.OutOfMemoryError, matched by name: torch may not be loaded


def is_expected(error: BaseException) -> bool:
    """Whether ``error`` is a failure to report in one line (see the module docstring).

    Expected: ``ValueError`` (bad input), ``TypeError`` (a wrong value type in ``--call-kwarg`` and the
    like), ``ImportError`` (a missing optional dependency), ``OSError`` (files, downloads, model loading:
    ``FileNotFoundError`` and transformers / diffusers load errors are ``OSError``), ``KeyError`` (a missing
    entry named by the user), out-of-memory errors, and every exception class defined by this library
    (``InvalidPackError``, ``SteeringNotApplied``, ...).
    """
    if isinstance(error, _EXPECTED) or type(error).__name__ in _EXPECTED_BY_NAME:
        return True
    return any(cls.__module__.startswith("safesteer_diffusers.") for cls in type(error).__mro__)


def message(error: BaseException) -> str:
    """The text after ``safesteer: error:``: the message as the library wrote it (its fix included);
    foreign errors get their type name, and at most their first 5 lines."""
    text = str(error).strip()
    if isinstance(error, KeyError) and len(error.args) == 1:
        text = str(error.args[0])  # str(KeyError) adds quotes
    own = type(error).__module__.startswith("safesteer_diffusers") or type(error) in (ValueError, TypeError)
    if not text:
        return type(error).__name__
    if own:
        return text
    lines = text.splitlines()
    short = "\n".join(lines[:5]) + ("\n..." if len(lines) > 5 else "")
    return f"{type(error).__name__}: {short}"


def report(error: BaseException, *, debug: bool) -> int:
    """Print ``error`` for the user (its traceback first with ``debug``); returns :data:`EXIT_ERROR`."""
    if debug:
        traceback.print_exception(error, file=sys.stderr)
    hint = "" if debug else "\n(run with --debug for the traceback)"
    own = type(error).__module__.startswith("safesteer_diffusers") or type(error) in (ValueError, TypeError)
    print(f"safesteer: error: {message(error)}" + ("" if own else hint), file=sys.stderr)
    return EXIT_ERROR

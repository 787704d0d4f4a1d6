"""Parsing helpers shared by the ``safesteer`` subcommands: the help formatter that shows every default,
the global flags, the choices of ``--dtype`` / ``--align`` / ``--pooling`` / ``--tokens``, and ``KEY=VALUE``
options.

Nothing here imports torch or the library's models: the parser is built on every ``safesteer`` call, so
``safesteer --help`` stays quick. The choices are therefore spelled out here; a test checks them against
:data:`safesteer_diffusers.utils.dtypes.DTYPES` and :mod:`safesteer_diffusers.packs.recipe`.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

DTYPE_CHOICES = ("float32", "float16", "bfloat16")
"""``--dtype`` choices: the keys of ``utils.dtypes.DTYPES`` (which imports torch), in their order."""
ALIGN_CHOICES = ("svd", "ridge", "mlp", "auto")
"""``build --align`` choices: ``packs.recipe.ALIGN_METHODS``."""
ALIGN_ON_CHOICES = ("auto", "all", "sensitive")
"""``build --align-on`` choices: ``packs.recipe.ALIGN_ON``."""
POOLING_CHOICES = ("mean", "last")
"""``build --pooling`` choices: ``packs.recipe.POOLINGS``."""
TOKEN_CHOICES = ("all", "prompt")
"""``build --tokens`` choices: ``packs.recipe.TOKEN_POLICIES``."""

_NO_DEFAULT_SHOWN = (
    argparse._HelpAction,
    argparse._VersionAction,
    argparse._StoreTrueAction,
    argparse._StoreFalseAction,
)


class HelpFormatter(argparse.HelpFormatter):
    """Ends every option's help with its default; wraps one-paragraph descriptions, and keeps descriptions and
    epilogs that have line breaks (examples) as written.

    ``(default: X)`` is added unless the help already says what the default is (it contains "default"),
    the option is a flag (``store_true``: off unless given), required, or its default is ``None`` or an empty
    list (their help text must then say what happens without them; a test checks that every option's help
    mentions its default).
    """

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        if "\n" in text.strip():
            return "".join(indent + line for line in text.splitlines(keepends=True))
        return super()._fill_text(text, width, indent)

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        if (
            not action.option_strings
            or action.required
            or isinstance(action, _NO_DEFAULT_SHOWN)
            or action.default in (None, argparse.SUPPRESS)
            or action.default == []
            or "default" in text.lower()
        ):
            return action.help
        return f"{text} (default: %(default)s)".strip()


def add_global_flags(parser: argparse.ArgumentParser, *, subcommand: bool = False) -> None:
    """Add ``--debug`` and ``--quiet`` (accepted before or after the subcommand name).

    Args:
        parser: the ``safesteer`` parser, or one subcommand's parser.
        subcommand: on a subcommand's parser the flags default to ``SUPPRESS``, so they do not reset a value
            given before the subcommand name.
    """
    default: Any = argparse.SUPPRESS if subcommand else False
    group = parser.add_argument_group("output control") if subcommand else parser
    group.add_argument(
        "--debug",
        action="store_true",
        default=default,
        help="show debug messages, and the full traceback of an error (default: one line per error)",
    )
    group.add_argument(
        "--quiet",
        action="store_true",
        default=default,
        help="show warnings and errors only, not informational messages",
    )


def key_values(items: list[str], flag: str) -> dict[str, Any]:
    """``KEY=VALUE`` options (e.g. repeated ``--call-kwarg``) as a dict, values parsed as JSON when they can be.

    Args:
        items: the option's values as given, each ``KEY=VALUE``.
        flag: the option's name, for the error message.

    Returns:
        ``{KEY: VALUE}``: ``max_sequence_length=256`` gives ``256`` (an int), ``scheduler=euler`` the string.

    Raises:
        ValueError: an item without ``=`` or with an empty key.

    Example:
        >>> key_values(["max_sequence_length=256", "guidance_scale=0"], "--call-kwarg")
        {'max_sequence_length': 256, 'guidance_scale': 0}
    """
    result = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"{flag} expects KEY=VALUE, got {item!r}.")
        try:
            result[key] = json.loads(value)
        except json.JSONDecodeError:
            result[key] = value
    return result

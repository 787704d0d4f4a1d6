"""Parsing helpers shared by the ``safesteer`` subcommands."""

from __future__ import annotations

import json
from typing import Any


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

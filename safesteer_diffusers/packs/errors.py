"""The one exception type of pack validation, and the warning for packs that carry no integrity hash."""

from __future__ import annotations

import json
import os


class InvalidPackError(ValueError):
    """A direction pack that is not valid: a file that cannot be read as one, or vectors/metadata that break
    the format (docs/pack-format.md).

    Every failure of :meth:`DirectionPack.from_file`, :meth:`DirectionPack.from_pretrained` and of building a
    pack in memory raises this type (a ``ValueError``). The message names the file (when there is one), the
    field, the value found, what was expected and how to fix it.

    Attributes:
        field: the offending field, e.g. ``"target.spaces.text_encoder.dim"`` or ``"tensor 'global.clip'"``
            (``None`` when the problem is the file as a whole).
        path: the pack file, when the pack came from one.
    """

    def __init__(self, message: str, *, field: str | None = None, path: str | os.PathLike | None = None):
        super().__init__(message)
        self.field = field
        self.path = path

    def in_file(self, path: str | os.PathLike) -> InvalidPackError:
        """The same error (same class and field) with ``path`` named at the start of its message."""
        if self.path is not None:
            return self
        return type(self)(f"{path}: {self}", field=self.field, path=path)

    def __reduce__(self):  # picklable across processes despite the keyword-only arguments
        return (_rebuild, (type(self), str(self), self.field, None if self.path is None else str(self.path)))


class InvalidPackTypeError(InvalidPackError, TypeError):
    """An :class:`InvalidPackError` about a value of the wrong Python type given in memory (e.g. a list where
    a tensor belongs). Also a ``TypeError``, the type such mistakes raised before this class existed."""


class UnverifiedPackWarning(UserWarning):
    """A pack file without an integrity hash (written by an earlier version) was loaded.

    Its bytes cannot be checked for corruption. Re-save it to add the hash; to refuse such files instead,
    turn the warning into an error: ``warnings.simplefilter("error", UnverifiedPackWarning)``.
    """


def _rebuild(cls: type[InvalidPackError], message: str, field: str | None, path: str | None):
    return cls(message, field=field, path=path)


def describe(value: object, limit: int = 60) -> str:
    """A short rendering of a found value for error messages: its type and its JSON text (or repr).

    Example: ``describe(True) == "bool true"``, ``describe("1") == 'str "1"'``, ``describe({}) == "dict with 0
    keys"``.
    """
    if value is None:
        return "null"
    if isinstance(value, dict):
        return f"dict with {len(value)} keys"
    if isinstance(value, list | tuple):
        return f"{type(value).__name__} of length {len(value)}"
    try:
        text = json.dumps(value, allow_nan=True)
    except (TypeError, ValueError):  # not JSON, or an integer too long to print
        try:
            text = repr(value)
        except Exception:  # noqa: BLE001 (a message must never fail because of the value it describes)
            text = "<unprintable>"
    if len(text) > limit:
        text = text[: limit - 3] + "..."
    return f"{type(value).__name__} {text}"

"""The library's logger, as in ``diffusers`` and ``transformers``: :func:`get_logger` and the verbosity setters.

Every module logs under the ``safesteer_diffusers`` logger. By default it shows warnings and errors on
stderr (``$SAFESTEER_VERBOSITY`` = ``debug`` / ``info`` / ``warning`` / ``error`` changes that); the
``safesteer`` command shows informational messages too (``--quiet``: warnings only, ``--debug``: everything).
Messages are written with ``tqdm.write`` so that they appear above a running progress bar instead of
inside it.

Also here, because every entry point needs them:

- :func:`warnings_to_logger`: Python warnings raised inside a block (e.g. a pipeline's ``UserWarning``
  during an evaluation's progress bar) are logged as one line each instead of printed with their source line.
- :func:`silence_torchvision_notices`: drops transformers' "``XImageProcessor`` requires torchvision (not
  installed); falling back to ``XImageProcessorPil``" notice (logged at debug level instead). Diffusers'
  imports trigger it for pipeline components the steering never uses, and the fallback is the processor
  transformers used before 5.x; nothing else transformers logs is affected.

Example::

    from safesteer_diffusers.utils.logging import get_logger, set_verbosity_info

    logger = get_logger(__name__)
    set_verbosity_info()
    logger.info("wrote %s", path)
"""

from __future__ import annotations

import logging
import os
import re
import sys
import warnings
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = [
    "get_logger",
    "get_verbosity",
    "set_verbosity",
    "set_verbosity_debug",
    "set_verbosity_error",
    "set_verbosity_info",
    "set_verbosity_warning",
    "silence_torchvision_notices",
    "warnings_to_logger",
]

LIBRARY_LOGGER = "safesteer_diffusers"
VERBOSITY_ENV = "SAFESTEER_VERBOSITY"
_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}
_TORCHVISION_NOTICE = re.compile(r"`\w+` requires torchvision \(not installed\); falling back to `\w+Pil`")
_TRANSFORMERS_IMPORT_LOGGER = "transformers.utils.import_utils"  # the logger that emits that notice


class _StderrHandler(logging.Handler):
    """Writes to the current ``sys.stderr`` (looked up per message, so redirections and test captures
    apply), through ``tqdm.write`` when tqdm is installed so a running progress bar is redrawn below."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = self.format(record)
            try:
                from tqdm import tqdm
            except ImportError:
                sys.stderr.write(message + "\n")
                sys.stderr.flush()
                return
            tqdm.write(message, file=sys.stderr)
        except Exception:  # noqa: BLE001 (logging must never raise; the logging module reports it)
            self.handleError(record)


class _Formatter(logging.Formatter):
    """``message`` for info, ``safesteer: warning: message`` (error, debug alike) for the others."""

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        if record.exc_info:
            message += "\n" + self.formatException(record.exc_info)
        if record.levelno == logging.INFO:
            return message
        level = "warning" if record.levelno == logging.WARNING else record.levelname.lower()
        where = f" [{record.name}]" if record.levelno == logging.DEBUG else ""
        return f"safesteer: {level}{where}: {message}"


def _library_logger() -> logging.Logger:
    logger = logging.getLogger(LIBRARY_LOGGER)
    if not any(isinstance(h, _StderrHandler) for h in logger.handlers):
        handler = _StderrHandler()
        handler.setFormatter(_Formatter())
        logger.addHandler(handler)
        # Our handler prints; the root logger's handlers (an application's basicConfig) would print again.
        logger.propagate = False
        logger.setLevel(_default_level())
    return logger


def _default_level() -> int:
    name = os.environ.get(VERBOSITY_ENV, "").strip().lower()
    if name and name not in _LEVELS:
        # A warning, not an error: a mistyped variable must not stop a job.
        logging.getLogger(LIBRARY_LOGGER).warning(
            "$%s=%r is not a verbosity; use one of %s. Using 'warning'.", VERBOSITY_ENV, name, sorted(_LEVELS)
        )
    return _LEVELS.get(name, logging.WARNING)


def get_logger(name: str | None = None) -> logging.Logger:
    """The logger of a module of this library.

    Args:
        name: the module's ``__name__`` (``None``: the library's root logger ``safesteer_diffusers``). Names
            outside the package are put under it, so one verbosity setting covers them.

    Returns:
        A standard :class:`logging.Logger` under ``safesteer_diffusers``.
    """
    root = _library_logger()
    if not name or name == LIBRARY_LOGGER:
        return root
    if not name.startswith(LIBRARY_LOGGER + "."):
        name = f"{LIBRARY_LOGGER}.{name}"
    return logging.getLogger(name)


def get_verbosity() -> int:
    """The library logger's level (``logging.INFO`` etc.)."""
    return _library_logger().getEffectiveLevel()


def set_verbosity(level: int | str) -> None:
    """Set the library logger's level.

    Args:
        level: a ``logging`` level, or one of ``"debug"``, ``"info"``, ``"warning"``, ``"error"``.

    Raises:
        ValueError: an unknown level name.
    """
    if isinstance(level, str):
        if level.lower() not in _LEVELS:
            raise ValueError(f"Unknown verbosity {level!r}; use one of {sorted(_LEVELS)}.")
        level = _LEVELS[level.lower()]
    _library_logger().setLevel(level)


def set_verbosity_debug() -> None:
    """Show every message, debug ones included."""
    set_verbosity(logging.DEBUG)


def set_verbosity_info() -> None:
    """Show informational messages, warnings and errors (what the ``safesteer`` command shows)."""
    set_verbosity(logging.INFO)


def set_verbosity_warning() -> None:
    """Show warnings and errors only (the library's default)."""
    set_verbosity(logging.WARNING)


def set_verbosity_error() -> None:
    """Show errors only."""
    set_verbosity(logging.ERROR)


@contextmanager
def warnings_to_logger(logger: logging.Logger | None = None) -> Iterator[None]:
    """Log the Python warnings raised inside the block instead of printing them.

    Each warning becomes one ``logger.warning`` line (its category when it is not a plain ``UserWarning``),
    written above any running progress bar; the warnings filters still apply (an ignored warning stays
    ignored, ``"error"`` still raises), and a warning repeated with the same text is logged once per block.

    Args:
        logger: where the lines go (default: the library's logger).
    """
    target = logger or get_logger()
    seen: set[tuple[type, str]] = set()
    previous = warnings.showwarning

    def show(message, category, filename, lineno, file=None, line=None):  # noqa: ANN001 (warnings' signature)
        key = (category, str(message))
        if key in seen:
            return
        seen.add(key)
        prefix = "" if category is UserWarning else f"{category.__name__}: "
        target.warning("%s%s", prefix, message)

    warnings.showwarning = show
    try:
        yield
    finally:
        warnings.showwarning = previous


class _TorchvisionNoticeFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if _TORCHVISION_NOTICE.search(message):
            get_logger(__name__).debug("transformers: %s", message)
            return False
        return True


def silence_torchvision_notices() -> None:
    """Drop transformers' "requires torchvision ... falling back to ...Pil" notices (see the module docstring).

    Idempotent and cheap (transformers is not imported); call it before the imports that trigger the notice.
    Only that notice is dropped (logged at debug level here instead); every other transformers message is
    untouched.
    """
    logger = logging.getLogger(_TRANSFORMERS_IMPORT_LOGGER)
    if not any(isinstance(f, _TorchvisionNoticeFilter) for f in logger.filters):
        logger.addFilter(_TorchvisionNoticeFilter())

"""Direction packs: the file format, file and Hub I/O, the model card, inspection, the catalogue of defaults.

Lowest layer of the package: imports nothing from ``steering/``, ``pipelines/``, ``build/``, ``evaluate/``,
``demo/`` or ``cli/``.

Every pack validation failure (loading a file or building a pack in memory) raises
:class:`InvalidPackError`, a ``ValueError``.
"""

from .errors import InvalidPackError, InvalidPackTypeError, UnverifiedPackWarning

__all__ = ["InvalidPackError", "InvalidPackTypeError", "UnverifiedPackWarning"]

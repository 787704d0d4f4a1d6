"""Direction packs: the file format, file and Hub I/O, the model card, inspection, the catalogue of defaults.

Lowest layer of the package: imports nothing from ``steering/``, ``pipelines/``, ``build/``, ``evaluate/``,
``demo/`` or ``cli/``.
"""

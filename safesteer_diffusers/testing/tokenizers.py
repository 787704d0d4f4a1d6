"""Tokenizers generated in code, so the tiny pipelines (demo, examples, tests) need nothing from the Hub.

All of them are byte-level with no merges: every byte of a prompt is one token. That keeps the vocabulary
small (a few hundred ids) while any text, including unseen words, maps to distinct ids, so different
prompts give different text-encoder states.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
from transformers import CLIPTokenizer, PreTrainedTokenizerBase, PreTrainedTokenizerFast

_BYTE_ALPHABET = sorted(pre_tokenizers.ByteLevel.alphabet())


def clip_tokenizer(model_max_length: int = 77) -> CLIPTokenizer:
    """A `CLIPTokenizer` over single bytes (vocabulary of 514 ids, BOS 512, EOS/pad 513)."""
    vocab = {char: i for i, char in enumerate(_BYTE_ALPHABET)}
    for char in _BYTE_ALPHABET:
        vocab[char + "</w>"] = len(vocab)
    vocab["<|startoftext|>"] = len(vocab)
    vocab["<|endoftext|>"] = len(vocab)
    with tempfile.TemporaryDirectory() as folder:
        vocab_file, merges_file = Path(folder, "vocab.json"), Path(folder, "merges.txt")
        vocab_file.write_text(json.dumps(vocab))
        merges_file.write_text("#version: 0.2\n")
        return CLIPTokenizer(str(vocab_file), str(merges_file), model_max_length=model_max_length)


def _byte_level_tokenizer(specials: list[str]) -> Tokenizer:
    vocab = {token: i for i, token in enumerate(specials)}
    for char in _BYTE_ALPHABET:
        vocab[char] = len(vocab)
    tokenizer = Tokenizer(
        models.BPE(vocab=vocab, merges=[], unk_token=specials[2] if len(specials) > 2 else None)
    )
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.add_special_tokens(specials)
    return tokenizer


def t5_tokenizer(model_max_length: int = 512) -> PreTrainedTokenizerFast:
    """A T5-like tokenizer: pad id 0, EOS `</s>` id 1 appended to every sequence, unk id 2."""
    tokenizer = _byte_level_tokenizer(["<pad>", "</s>", "<unk>"])
    tokenizer.post_processor = processors.TemplateProcessing(
        single="$A </s>", pair="$A </s> $B </s>", special_tokens=[("</s>", 1)]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        pad_token="<pad>",
        eos_token="</s>",
        unk_token="<unk>",
        model_max_length=model_max_length,
        padding_side="right",
    )


CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def chat_tokenizer(model_max_length: int = 1024, padding_side: str = "right") -> PreTrainedTokenizerFast:
    """A Qwen/Llama-like chat tokenizer with `<|im_start|>`/`<|im_end|>` markers and a chat template."""
    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|begin_of_text|>"]
    tokenizer = _byte_level_tokenizer(specials)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        pad_token="<|endoftext|>",
        eos_token="<|im_end|>",
        bos_token="<|begin_of_text|>",
        model_max_length=model_max_length,
        padding_side=padding_side,
    )
    fast.chat_template = CHAT_TEMPLATE
    return fast


def bos_chat_tokenizer(model_max_length: int = 1024) -> PreTrainedTokenizerFast:
    """The chat tokenizer, but prepending its BOS token to every sequence like Gemma's tokenizer does."""
    base = chat_tokenizer(model_max_length=model_max_length)
    backend = base.backend_tokenizer
    bos = base.bos_token
    backend.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A", pair=f"{bos} $A $B", special_tokens=[(bos, base.bos_token_id)]
    )
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        pad_token=base.pad_token,
        eos_token=base.eos_token,
        bos_token=bos,
        model_max_length=model_max_length,
        padding_side="right",
    )
    tokenizer.chat_template = base.chat_template
    return tokenizer


def count_tokens(tokenizer: PreTrainedTokenizerBase, text: str) -> int:
    """How many tokens ``text`` takes without special tokens (to recount offsets a pipeline hard-codes)."""
    return len(tokenizer(text, add_special_tokens=False).input_ids)

"""A tiny Llama written as a GGUF file in code, to test loading GGUF sources without any download.

The file is what llama.cpp's converter would write for the same weights: llama architecture, float32 tensors
under GGUF names, q/k projection rows permuted for llama.cpp's rotary layout (transformers undoes that on
load), and a byte-level BPE tokenizer (``tokenizer.ggml.model = "gpt2"``) over the 256 byte symbols plus
three chat specials.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

CHAT_SPECIALS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>")


def _permute_for_rope(weights: np.ndarray, heads: int) -> np.ndarray:
    # llama.cpp interleaves the two rotary halves of every head; transformers' GGUF loader reverses this.
    return (
        weights.reshape(heads, 2, weights.shape[0] // heads // 2, *weights.shape[1:])
        .swapaxes(1, 2)
        .reshape(weights.shape)
    )


def write_tiny_llama_gguf(path: str | Path, *, seed: int = 0, layers: int = 2, hidden: int = 32):
    """Write a random tiny Llama causal LM to ``path`` as GGUF (float32) and return the model it holds.

    Args:
        path: the ``.gguf`` file to write (its folder must exist).
        seed: weight seed (the caller's RNG state is left untouched).
        layers, hidden: model size (4 heads, 2 key/value heads).

    Returns:
        The ``LlamaForCausalLM`` whose weights the file holds (for comparisons).

    Example:
        >>> model = write_tiny_llama_gguf(tmp_path / "tiny.gguf")
        >>> load_source(str(tmp_path / "tiny.gguf"))  # the same hidden states as model.model
    """
    import gguf
    from transformers import LlamaConfig, LlamaForCausalLM
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    alphabet = list(bytes_to_unicode().values())
    tokens = alphabet + list(CHAT_SPECIALS)
    heads, kv_heads = 4, 2
    config = LlamaConfig(
        vocab_size=len(tokens),
        hidden_size=hidden,
        intermediate_size=2 * hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=kv_heads,
        max_position_embeddings=256,
        bos_token_id=len(alphabet),
        eos_token_id=len(alphabet) + 2,
        pad_token_id=len(alphabet),
        tie_word_embeddings=False,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = LlamaForCausalLM(config).eval()
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_name("tiny-random-llama")
    writer.add_block_count(layers)
    writer.add_context_length(config.max_position_embeddings)
    writer.add_embedding_length(hidden)
    writer.add_feed_forward_length(config.intermediate_size)
    writer.add_head_count(heads)
    writer.add_head_count_kv(kv_heads)
    writer.add_layer_norm_rms_eps(config.rms_norm_eps)
    writer.add_rope_dimension_count(hidden // heads)
    writer.add_vocab_size(len(tokens))
    writer.add_file_type(gguf.LlamaFileType.ALL_F32)
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("default")
    writer.add_token_list(tokens)
    writer.add_token_scores([0.0] * len(tokens))  # no merges: every byte is a token
    writer.add_token_types([1] * len(alphabet) + [3] * len(CHAT_SPECIALS))  # 3: control (special) tokens
    writer.add_bos_token_id(config.bos_token_id)
    writer.add_eos_token_id(config.eos_token_id)
    writer.add_pad_token_id(config.pad_token_id)
    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.LLAMA, layers)
    for name, tensor in model.state_dict().items():
        data = tensor.detach().float().numpy()
        if name.endswith("q_proj.weight"):
            data = _permute_for_rope(data, heads)
        elif name.endswith("k_proj.weight"):
            data = _permute_for_rope(data, kv_heads)
        writer.add_tensor(names.get_name(name, try_suffixes=(".weight", ".bias")), np.ascontiguousarray(data))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return model

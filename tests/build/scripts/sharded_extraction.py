"""Run under `torchrun --nproc_per_node 2`: sharded extraction must equal a single-process extraction."""

import sys

import torch
import torch.distributed as dist
from transformers import LlamaConfig, LlamaModel

from safesteer_diffusers.build.source_features import extract_all_layers
from safesteer_diffusers.testing.tokenizers import chat_tokenizer
from safesteer_diffusers.utils.distributed import sharded

dist.init_process_group("gloo")
torch.manual_seed(0)
config = LlamaConfig(
    vocab_size=300,
    hidden_size=32,
    intermediate_size=64,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
)
model, tokenizer = LlamaModel(config).eval(), chat_tokenizer()
prompts = [f"a photo number {i} of a quiet harbour" for i in range(9)]
extract = lambda part: extract_all_layers(model, tokenizer, part, batch_size=4, progress=False)  # noqa: E731
together = sharded(prompts, extract, dim=1)
alone = extract(prompts)
ok = together.shape == alone.shape and torch.allclose(together, alone, atol=1e-5)
print(f"rank {dist.get_rank()} of {dist.get_world_size()}: {'ok' if ok else 'MISMATCH'}")
dist.destroy_process_group()
sys.exit(0 if ok else 1)

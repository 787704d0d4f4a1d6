"""Shared test setup: no network, deterministic CPU threads, tiny pipelines built in code."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch  # noqa: E402

# Two threads per op on a 2-core machine: repeatable timings and no oversubscription when tests run alone.
torch.set_num_threads(2)

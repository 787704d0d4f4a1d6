"""Shared test setup: no network, deterministic CPU threads, tiny pipelines built in code."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest  # noqa: E402
import torch  # noqa: E402

# Two threads per op on a 2-core machine: repeatable timings and no oversubscription when tests run alone.
torch.set_num_threads(2)


def pytest_addoption(parser):
    parser.addoption("--run-slow", action="store_true", help="also run tests marked @pytest.mark.slow")


def pytest_collection_modifyitems(config, items):
    if config.getoption("--run-slow"):
        return
    skip = pytest.mark.skip(reason="slow: run with `pytest --run-slow`")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)

"""Fixtures of the ComfyUI tests: ComfyUI imported once per module (CPU, one thread) and a private pack folder."""

from __future__ import annotations

import pytest
import torch

from tests.comfy.support import comfy_env


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    threads = torch.get_num_threads()
    # One thread: tiny convolutions are much slower when OpenMP threads compete with other processes.
    torch.set_num_threads(1)
    yield comfy_env(tmp_path_factory.getbasetemp())
    torch.set_num_threads(threads)


@pytest.fixture
def pack_folder(env, tmp_path, monkeypatch):
    """``models/safesteer`` of a temporary ComfyUI layout, registered (with the shipped packs) for this test."""
    from comfy_nodes.pack_nodes import SHIPPED_PACKS

    folder = tmp_path / "models" / "safesteer"
    folder.mkdir(parents=True)
    monkeypatch.setitem(
        env.folder_paths.folder_names_and_paths,
        "safesteer",
        ([str(folder), str(SHIPPED_PACKS)], {".safetensors"}),
    )
    env.folder_paths.filename_list_cache.pop("safesteer", None)
    yield folder
    env.folder_paths.filename_list_cache.pop("safesteer", None)

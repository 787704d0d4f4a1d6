"""Sharded extraction gives exactly the single-process features (ranks simulated in one process)."""

from __future__ import annotations

import pytest
import torch

from safesteer_diffusers.utils.distributed import shard_bounds, sharded


@pytest.mark.parametrize(("count", "world"), [(10, 3), (2, 4), (7, 1), (0, 2)])
def test_shards_cover_every_item_once_in_order(count, world):
    bounds = [shard_bounds(count, rank, world) for rank in range(world)]
    covered = [i for start, stop in bounds for i in range(start, stop)]
    assert covered == list(range(count))
    sizes = [stop - start for start, stop in bounds]
    assert max(sizes) - min(sizes) <= 1


def test_sharded_concatenates_rank_parts_in_order():
    prompts = [f"prompt {i}" for i in range(7)]

    def features(part: list[str]) -> torch.Tensor:  # [layers=2, N, D=1]: the prompt axis is 1
        values = torch.tensor([[float(p.split()[1])] for p in part]).reshape(1, len(part), 1)
        return torch.cat([values, 10 * values])

    world = 3
    parts = {rank: None for rank in range(world)}

    def run(rank: int) -> None:
        # Each simulated rank computes its shard; "gather" returns every rank's part in rank order.
        def gather(item):
            parts[rank] = item
            return [
                parts[r] if parts[r] is not None else features(prompts[slice(*shard_bounds(7, r, world))])
                for r in range(world)
            ]

        result = sharded(prompts, features, dim=1, group=(rank, world, gather))
        assert torch.equal(result, features(prompts))

    for rank in range(world):
        run(rank)
    assert sharded(prompts, features, dim=1).shape == (2, 7, 1)  # not distributed: a plain call


def test_bad_rank_is_explained():
    with pytest.raises(ValueError, match=r"rank must be in \[0, 2\)"):
        shard_bounds(4, 2, 2)


def test_two_real_processes_match_one(tmp_path):
    """`torchrun --nproc_per_node 2` on CPU (gloo, loopback): both ranks get the single-process features."""
    import os
    import socket
    import subprocess
    import sys
    from pathlib import Path

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    root = Path(__file__).resolve().parents[2]
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        "--master_addr",
        "127.0.0.1",
        "--master_port",
        str(port),
        str(root / "tests" / "build" / "scripts" / "sharded_extraction.py"),
    ]
    env = {**os.environ, "PYTHONPATH": str(root)}
    done = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "rank 0 of 2: ok" in done.stdout and "rank 1 of 2: ok" in done.stdout

"""Sharding feature extraction over processes started by ``accelerate launch`` (or ``torchrun``).

Each process extracts a contiguous slice of the prompts on its own device; the slices are gathered in rank
order, so every process ends with the same features as a single-process run. Without a multi-process
launch this is a plain call.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch


def shard_bounds(count: int, rank: int, world: int) -> tuple[int, int]:
    """``[start, stop)`` of rank ``rank``'s contiguous share of ``count`` items (sizes differ by at most 1)."""
    if not 0 <= rank < world:
        raise ValueError(f"rank must be in [0, {world}), got {rank}.")
    base, extra = divmod(count, world)
    start = rank * base + min(rank, extra)
    return start, start + base + (1 if rank < extra else 0)


def process_group() -> tuple[int, int, Callable[[object], list]]:
    """``(rank, world, gather)`` of the current launch; ``(0, 1, ...)`` when not distributed."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        world = torch.distributed.get_world_size()

        def gather(item: object) -> list:
            items: list = [None] * world
            torch.distributed.all_gather_object(items, item)
            return items

        return torch.distributed.get_rank(), world, gather
    try:
        from accelerate import PartialState

        state = PartialState()
        if state.num_processes > 1:
            from accelerate.utils import gather_object

            return state.process_index, state.num_processes, lambda item: gather_object([item])
    except ImportError:
        pass
    return 0, 1, lambda item: [item]


def sharded(
    prompts: Sequence[str],
    compute: Callable[[list[str]], torch.Tensor],
    *,
    dim: int = 0,
    group: tuple[int, int, Callable[[object], list]] | None = None,
) -> torch.Tensor:
    """``compute(prompts)``, split over the launched processes and concatenated along ``dim`` in order.

    Args:
        prompts: all prompts (every process passes the same list).
        compute: features of a list of prompts, e.g. ``lambda p: extract_features(model, tok, p, layer)``.
        dim: the prompt axis of ``compute``'s output (1 for ``[layers, N, D]``).
        group: ``(rank, world, gather)``; default :func:`process_group`.
    """
    rank, world, gather = group or process_group()
    if world == 1:
        return compute(list(prompts))
    start, stop = shard_bounds(len(prompts), rank, world)
    part = compute(list(prompts[start:stop])).cpu()
    return torch.cat(gather(part), dim=dim)

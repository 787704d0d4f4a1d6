"""Processes started together by ``accelerate launch`` or ``torchrun``: which one this is, how they wait for
and exchange with each other (:class:`ProcessGroup`, :func:`current_process_group`), and the build's split
of prompt lists over them (:func:`shard_bounds`, :func:`sharded`).

Both sharded jobs use the same group:

- the pack build extracts features with :func:`sharded`: each process takes a contiguous slice of the prompts
  on its own device and the slices are gathered in rank order, so every process ends with the features of
  a single-process run;
- the evaluation (:func:`safesteer_diffusers.evaluate.runner.run_evaluation`) gives each process a
  round-robin share of its items; the processes exchange files, not tensors, and meet at the barrier.

Without a multi-process launch the group is this process alone and both are plain calls.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

__all__ = ["ProcessGroup", "current_process_group", "shard_bounds", "sharded"]


def _no_wait() -> None:
    return None


@dataclass
class ProcessGroup:
    """This process's place in a launch.

    ``ProcessGroup()`` is a single process; ``ProcessGroup(rank=1, world=2)`` simulates one process of two
    (the evaluation's tests and a caller running one share by hand), which exchange files only.

    Attributes:
        rank: this process's index; 0 is the main process.
        world: the number of processes.
        barrier: returns once every process of the launch has called it.
        device: this process's device under a launch (its own GPU), or ``None`` to let the caller choose.
        launched: a real multi-process launch (``False`` when the caller simulates ranks).
        gather: collective: called by every process with one object, returns every process's object in
            rank order. ``None`` when the ranks are simulated without one.
    """

    rank: int = 0
    world: int = 1
    barrier: Callable[[], None] = _no_wait
    device: torch.device | None = None
    launched: bool = False
    gather: Callable[[object], list] | None = None

    @property
    def is_main(self) -> bool:
        """Whether this is the main process (rank 0), the one that writes shared outputs."""
        return self.rank == 0


def current_process_group(*, start: bool = False) -> ProcessGroup:
    """The launch this process belongs to.

    In order: an initialised ``torch.distributed`` group; accelerate's ``PartialState`` when it counts
    several processes; with ``start``, a launcher's environment (``WORLD_SIZE > 1``) whose group nobody has
    initialised (``torchrun`` on CPU, or accelerate not installed), for which ``torch.distributed`` is
    initialised here (NCCL with CUDA, else gloo); otherwise this process alone (with accelerate's device
    when accelerate is installed).

    Args:
        start: initialise ``torch.distributed`` in the case above. The evaluation does, so that every process
            takes only its share; the build's :func:`sharded` does not: each process then extracts every
            prompt itself, which gives the same features.

    Returns:
        A :class:`ProcessGroup` (``launched=True`` for a multi-process launch).
    """
    distributed = torch.distributed.is_available()
    if distributed and torch.distributed.is_initialized():
        return _torch_group()
    device = None
    try:
        from accelerate import PartialState

        state = PartialState()
        if state.num_processes > 1:
            from accelerate.utils import gather_object

            return ProcessGroup(
                state.process_index,
                state.num_processes,
                state.wait_for_everyone,
                state.device,
                launched=True,
                gather=lambda item: gather_object([item]),
            )
        device = state.device
    except ImportError:
        pass
    if start and distributed and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        # Launched (torchrun / accelerate) but accelerate reports one process, e.g. on CPU: use torch's group
        # (which accelerate may have initialised already), else start one.
        if not torch.distributed.is_initialized():
            cuda = torch.cuda.is_available()
            if cuda:
                torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
            torch.distributed.init_process_group(backend="nccl" if cuda else "gloo")
        return _torch_group()
    return ProcessGroup(device=device)


def _torch_group() -> ProcessGroup:
    device = None
    if torch.cuda.is_available():
        # LOCAL_RANK first: asking CUDA for its current device would create a context on GPU 0 in every process.
        local_rank = os.environ.get("LOCAL_RANK")
        device = torch.device(
            "cuda", int(local_rank) if local_rank is not None else torch.cuda.current_device()
        )
    world = torch.distributed.get_world_size()

    def gather(item: object) -> list:
        items: list = [None] * world
        torch.distributed.all_gather_object(items, item)
        return items

    return ProcessGroup(
        torch.distributed.get_rank(),
        world,
        torch.distributed.barrier,
        device,
        launched=True,
        gather=gather,
    )


def shard_bounds(count: int, rank: int, world: int) -> tuple[int, int]:
    """``[start, stop)`` of rank ``rank``'s contiguous share of ``count`` items (sizes differ by at most 1)."""
    if not 0 <= rank < world:
        raise ValueError(f"rank must be in [0, {world}), got {rank}.")
    base, extra = divmod(count, world)
    start = rank * base + min(rank, extra)
    return start, start + base + (1 if rank < extra else 0)


def sharded(
    prompts: Sequence[str],
    compute: Callable[[list[str]], torch.Tensor],
    *,
    dim: int = 0,
    group: ProcessGroup | tuple[int, int, Callable[[object], list]] | None = None,
) -> torch.Tensor:
    """``compute(prompts)``, split over the launched processes and concatenated along ``dim`` in order.

    Each process computes its contiguous slice (:func:`shard_bounds`); the slices are gathered on every
    process, so all of them return what a single process would.

    Args:
        prompts: all prompts (every process passes the same list).
        compute: features of a list of prompts, e.g. ``lambda p: extract_features(model, tok, p, layer)``.
        dim: the prompt axis of ``compute``'s output (1 for ``[layers, N, D]``).
        group: the process group, or a ``(rank, world, gather)`` triple for ranks simulated by the caller;
            default :func:`current_process_group`.

    Returns:
        The features of every prompt, in the order of ``prompts``.

    Raises:
        ValueError: a group of several processes that cannot gather.
    """
    if isinstance(group, tuple):
        rank, world, gather = group
        group = ProcessGroup(rank, world, gather=gather)
    elif group is None:
        group = current_process_group()
    if group.world == 1:
        return compute(list(prompts))
    if group.gather is None:
        raise ValueError(
            f"Process {group.rank} of {group.world} has no gather: pass ProcessGroup(..., gather=...) or a "
            "(rank, world, gather) triple."
        )
    start, stop = shard_bounds(len(prompts), group.rank, group.world)
    part = compute(list(prompts[start:stop])).cpu()
    return torch.cat(group.gather(part), dim=dim)

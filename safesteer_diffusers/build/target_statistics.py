"""Text states of a *target* pipeline, computed exactly the way the pipeline computes them for its denoiser.

The pipeline's own ``encode_prompt`` runs with the defaults of the pipeline's ``__call__`` (templates, max
sequence length, caption cleaning, which hidden layer), so the states are those the denoiser would see, and
nothing past the text encoders runs. The positive embeddings are split into spaces with the registry's
:class:`~safesteer_diffusers.steering.layout.SpaceLayout`.

Benign-only by construction: :func:`anchor_statistics` takes a :class:`BenignPrompts`, which is made only from
the embedded anchor set or a file the user declares benign. The unsafe side of the pairs never reaches the
target encoder on this path (the native baseline uses :func:`encode_for_denoiser` directly and is labelled).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from safesteer_diffusers.pipelines.encoding import encode_for_denoiser, space_states
from safesteer_diffusers.pipelines.registry import target_for
from safesteer_diffusers.steering.maths import masked_mean


@dataclass(frozen=True)
class BenignPrompts:
    """Prompts known to be benign: the only input the target side of a transferred pack ever sees.

    Attributes:
        prompts: the prompt texts.
        source: where they come from (``"embedded anchors"`` or a file name), recorded in the pack.
        kinds: optional kind of each prompt (``"caption"``, ``"t2i"``, ``"sensitive"`` for the embedded set),
            same length and order as ``prompts``; lets a build fit its alignment on one kind
            (``BuildConfig.align_on``). ``None`` when the prompts carry no kinds (a user's file).
    """

    prompts: tuple[str, ...]
    source: str
    kinds: tuple[str, ...] | None = None

    def __post_init__(self):
        if not self.prompts or not all(isinstance(p, str) and p for p in self.prompts):
            raise ValueError("BenignPrompts needs a non-empty list of non-empty strings.")
        if self.kinds is not None and (
            len(self.kinds) != len(self.prompts) or not all(isinstance(k, str) and k for k in self.kinds)
        ):
            raise ValueError(
                f"BenignPrompts.kinds must give one non-empty kind per prompt ({len(self.prompts)}), "
                f"got {len(self.kinds)}; pass kinds=None when the prompts carry no kinds."
            )

    @classmethod
    def embedded(cls, limit: int | None = None) -> BenignPrompts:
        """The anchor prompts shipped with the library (``safesteer_diffusers/build/prompts/anchors.txt``).

        Args:
            limit: keep only the first N (default: all).

        Returns:
            The benign prompts with their kinds, source ``"embedded anchors"``.
        """
        from safesteer_diffusers.build.prompts.embedded import load_anchor_kinds, load_anchors

        anchors, kinds = load_anchors(), load_anchor_kinds()
        end = limit or len(anchors)
        return cls(tuple(anchors[:end]), "embedded anchors", tuple(kinds[:end]))

    def head(self, limit: int) -> BenignPrompts:
        """The first ``limit`` prompts (and their kinds), same source."""
        kinds = None if self.kinds is None else self.kinds[:limit]
        return BenignPrompts(self.prompts[:limit], self.source, kinds)

    def rows_of_kind(self, kind: str) -> list[int]:
        """Indices of the prompts of one kind.

        Raises:
            ValueError: the prompts carry no kinds.
        """
        if self.kinds is None:
            raise ValueError(
                f"The anchors from {self.source} carry no kinds, so none can be picked by kind {kind!r}; "
                "use align_on='all' (CLI: --align-on all) or the embedded anchors."
            )
        return [i for i, k in enumerate(self.kinds) if k == kind]


@dataclass
class SpaceStatistics:
    """Benign statistics of one target space.

    Attributes:
        pooled: ``[N, D]`` per-prompt mean state over steered positions (alignment targets, gate scores).
        token_mean: ``[D]`` mean over every steered token state (the benign centre).
        token_covariance: ``[D, D]`` covariance of token states (float64), for calibration along any direction.
        num_tokens: number of token states counted.
    """

    pooled: torch.Tensor
    token_mean: torch.Tensor
    token_covariance: torch.Tensor
    num_tokens: int

    def std_along(self, direction: torch.Tensor) -> float:
        """Standard deviation of benign token states projected on the unit ``direction``.

        Args:
            direction: ``[D]`` (only its orientation is used).

        Returns:
            ``sqrt(u^T C u)`` with ``u`` the unit direction and ``C`` the token covariance.
        """
        unit = direction.double() / direction.double().norm().clamp_min(1e-12)
        return float(unit @ self.token_covariance @ unit).__pow__(0.5)


def anchor_statistics(
    pipe: Any,
    anchors: BenignPrompts,
    *,
    tokens: str = "all",
    batch_size: int = 16,
    call_kwargs: dict | None = None,
    progress: bool = True,
) -> dict[str, SpaceStatistics]:
    """Benign statistics of every text space of ``pipe`` from the anchor prompts only.

    Args:
        pipe: the target pipeline (text encoders loaded).
        anchors: benign prompts (:class:`BenignPrompts`; any other type is refused, see the module docstring).
        tokens: ``"all"`` or ``"prompt"``, the steering token policy the statistics must match.
        batch_size: prompts per encoder call.
        call_kwargs: extra ``pipe(...)`` arguments that change encoding.
        progress: show a tqdm bar.

    Returns:
        space -> :class:`SpaceStatistics`.
    """
    if not isinstance(anchors, BenignPrompts):
        raise TypeError(
            "anchor_statistics takes BenignPrompts only (the target side must never see unsafe text); "
            f"got {type(anchors).__name__}. Use BenignPrompts.embedded() or BenignPrompts(tuple(prompts), source)."
        )
    spec = target_for(pipe)
    layouts = spec.layout(pipe)
    accumulators = {layout.space: _Moments() for layout in layouts}
    for batch in _batches(anchors.prompts, batch_size, progress, "target anchors"):
        embeds, mask = encode_for_denoiser(pipe, batch, call_kwargs=call_kwargs, spec=spec)
        for layout in layouts:
            for states, part_mask in space_states(embeds, mask if tokens == "prompt" else None, layout):
                accumulators[layout.space].add(
                    states.detach().float().cpu(), None if part_mask is None else part_mask.cpu()
                )
    return {space: moments.result() for space, moments in accumulators.items()}


class _Moments:
    """Streaming pooled features and token mean/covariance (float64), so 10k prompts x 512 tokens fit."""

    def __init__(self):
        self.pooled: list[torch.Tensor] = []
        self.count = 0
        self.total: torch.Tensor | None = None
        self.outer: torch.Tensor | None = None

    def add(self, states: torch.Tensor, mask: torch.Tensor | None) -> None:
        self.pooled.append(masked_mean(states, mask))
        tokens = states.reshape(-1, states.shape[-1]) if mask is None else states[mask]
        tokens = tokens.double()
        if self.total is None:
            self.total = torch.zeros(tokens.shape[-1], dtype=torch.float64)
            self.outer = torch.zeros(tokens.shape[-1], tokens.shape[-1], dtype=torch.float64)
        self.total += tokens.sum(0)
        self.outer += tokens.T @ tokens
        self.count += tokens.shape[0]

    def result(self) -> SpaceStatistics:
        mean = self.total / self.count
        covariance = self.outer / self.count - torch.outer(mean, mean)
        return SpaceStatistics(torch.cat(self.pooled), mean.float(), covariance, self.count)


def _batches(items: Sequence[str], size: int, progress: bool, label: str) -> Iterable[list[str]]:
    starts = range(0, len(items), size)
    if progress:
        from tqdm.auto import tqdm

        starts = tqdm(starts, desc=label, unit="batch")
    for start in starts:
        yield list(items[start : start + size])

"""The end-to-end recipe: estimate in a source LM, align on benign anchors, transport, calibrate, pack.

Transferred pack (the paper's method)::

    source LM:  pairs (safe, unsafe, category) -> directions at the chosen layer (unsafe -> safe)
                benign anchors                 -> X [N, Ds]
    target:     benign anchors only            -> per space: pooled Y [N, D], token mean and covariance
    per space:  fit_alignment(X, Y) ; v = transport(direction) ; v = unit(v) * std of benign tokens along v
                gate threshold = quantile of benign anchor scores ; centre = benign token mean

The target encoder is only ever called through :func:`~safesteer_diffusers.build.target_statistics.anchor_statistics`,
which accepts :class:`~safesteer_diffusers.build.target_statistics.BenignPrompts` only; the pack records
``provenance.target_unsafe_data = false``. The native baseline (:func:`build_native_pack`) estimates the
directions from the pairs directly in the target space, for evaluation, and is labelled ``kind="native"``.

The module runs past 400 lines on purpose: both builds share their steps (inputs, cached features, target
statistics, calibration, assembly), kept beside them so that one file reads as the whole recipe.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import torch

from safesteer_diffusers.build.prompts.readers import PromptPair
from safesteer_diffusers.packs.direction_pack import DirectionPack
from safesteer_diffusers.packs.format import GLOBAL
from safesteer_diffusers.packs.recipe import GATE_KINDS
from safesteer_diffusers.pipelines.encoding import encode_for_denoiser, space_states
from safesteer_diffusers.pipelines.registry import target_for
from safesteer_diffusers.steering.maths import direction_gate_vectors, gate_scores, masked_mean
from safesteer_diffusers.utils.distributed import sharded
from safesteer_diffusers.version import __version__

from . import source_gate_fit
from .alignment import fit_alignment
from .calibration import fpr_thresholds
from .contrast import ContrastPrompts
from .directions import estimate_directions
from .feature_cache import FeatureCache, prompts_hash, source_key
from .gate_probe import carried_gate_vectors
from .gate_prompts import GatePrompts
from .source_features import apply_chat_template, extract_all_layers
from .target_statistics import BenignPrompts, SpaceStatistics, anchor_statistics


@dataclass
class BuildConfig:
    """Settings of a pack build (all recorded in the pack).

    Attributes:
        align: ``"svd"`` (default, the paper's best), ``"ridge"``, ``"mlp"`` or ``"auto"`` (best held-out R^2).
        align_on: which anchors fit the alignment map: ``"all"``, one anchor kind (``"sensitive"``: benign text
            on sensitive topics), or ``"auto"`` (default): the sensitive anchors when the anchors carry kinds and
            hold at least :data:`AUTO_ALIGN_MIN_ANCHORS` of them, else all. Calibration and gates always use
            every anchor. Measured in docs/method.md 6.6: sensitive-topic anchors carry more of the signal.
        layer: source layer index, or ``"auto"`` (best held-out AUROC among ``layers``).
        layers: candidate layers for ``"auto"`` (default: all hidden states).
        pooling: source pooling, ``"mean"`` over real tokens or ``"last"`` token.
        tokens: target token policy the gate and calibration must match (``"all"``, as steering's default).
        gate: what the gate scores along: ``"probe"`` (default: a source classifier of unsafe vs benign
            prompts carried to the target by a benign-only map, build/gate_probe.py) or ``"direction"``
            (the unsafe side of each steering direction, the classic gate; far weaker: docs/method.md 6.5).
        gate_quantile: gate thresholds are this quantile of benign anchor scores.
        source_gate: also store a gate scored in the source model at inference (``SafeSteer.wrap(...,
            gate=True, gate_model=(model, tokenizer))``): the strongest gate measured (docs/method.md 6.5), at
            the cost of running the source model on every prompt.
        source_gate_framing: how the source gate's model reads a prompt: ``"chat"`` (as one user turn of the
            source tokenizer's chat template, generation prompt included), ``"plain"`` (as written), or
            ``"auto"`` (default): ``"chat"`` when the source tokenizer has a chat template, else ``"plain"``.
            Independent of how the directions read the pairs (``source_chat_template``). Measured on SmolLM2-135M:
            chat turns lift the gate's recall at 1% benign FPR from 0.87 to 0.96 (docs/method.md 6.5.2).
        holdout: share of anchors / pairs held out for model selection.
        seed: seed of every split and fit.
        batch_size: prompts per forward pass.
        call_kwargs: target ``pipe(...)`` arguments that change encoding (e.g. ``max_sequence_length``).
        max_anchors: use only the first N anchors (quick builds).
    """

    align: str = "svd"
    align_on: str = "auto"
    layer: int | str = "auto"
    layers: list[int] | None = None
    pooling: str = "mean"
    tokens: str = "all"
    gate: str = "probe"
    gate_quantile: float = 0.99
    source_gate: bool = False
    source_gate_framing: str = "auto"
    holdout: float = 0.2
    seed: int = 0
    batch_size: int = 16
    call_kwargs: dict = field(default_factory=dict)
    max_anchors: int | None = None


@dataclass
class BuildResult:
    """A built pack and its report (also written as ``build_report.json`` by the CLI)."""

    pack: DirectionPack
    report: dict


def build_pack(
    source_model: torch.nn.Module,
    source_tokenizer: Any,
    target_pipe: Any,
    *,
    pairs: Sequence[PromptPair] | None = None,
    anchors: BenignPrompts | None = None,
    config: BuildConfig | None = None,
    source_id: str | None = None,
    source_revision: str | None = None,
    target_id: str | None = None,
    cache: FeatureCache | None = None,
    progress: bool = True,
    source_chat_template: bool = False,
    source_identity: Mapping[str, str] | None = None,
    source_gate_prompts: GatePrompts | None = None,
) -> BuildResult:
    """Build a transferred pack: the target side sees benign anchors only.

    Args:
        source_model, source_tokenizer: any transformers causal LM or encoder and its tokenizer.
        target_pipe: the target diffusers pipeline (text encoders loaded; denoiser and VAE may be ``None``).
        pairs: safe/unsafe pairs with categories (default: the embedded set, 7 I2P categories).
        anchors: benign anchor prompts (default: the embedded set).
        config: :class:`BuildConfig`.
        source_id, source_revision, target_id: recorded in the pack (and keys of the feature cache).
        cache: a :class:`FeatureCache` (default: none).
        progress: show progress bars.
        source_chat_template: write every source prompt (pairs and anchors alike) as one user turn of the
            source tokenizer's chat template (see
            :func:`~safesteer_diffusers.build.source_features.apply_chat_template`); recorded as
            ``source.chat_template``. The target never sees a template: it encodes anchors as its pipeline does.
        source_identity: what identifies a GGUF source's file, ``{"gguf_file", "gguf_sha256"}`` (the identity
            :func:`~safesteer_diffusers.build.model_loading.load_source_identified` returns, less its
            ``revision``); recorded under ``source`` and part of the feature cache key.
        source_gate_prompts: unsafe prompts for the source-model gate alone
            (:class:`~safesteer_diffusers.build.gate_prompts.GatePrompts`): read by the source model only, they
            fit a second gate head per direction; the pack records their count and hash, never their text.

    Returns:
        :class:`BuildResult` with the pack and a JSON-ready report.

    Raises:
        ValueError: ``source_chat_template`` with a tokenizer that has no chat template; an unknown
            ``source_identity`` key; ``source_gate_prompts`` without ``config.source_gate``, with labels the
            build has no category for, or equal to a benign prompt of the build.

    Example:
        >>> result = build_pack(llm, tok, pipe, source_id="Qwen/Qwen2.5-0.5B", target_id="black-forest-labs/FLUX.1-schnell")
        >>> result.pack.save_pretrained("packs/flux-from-qwen")
    """
    config = config or BuildConfig()
    if config.gate not in GATE_KINDS:
        raise ValueError(f"BuildConfig.gate must be one of {GATE_KINDS}, got {config.gate!r}.")
    cache = cache or FeatureCache(None)
    started = time.perf_counter()
    timings: dict[str, float] = {}
    inputs = _BuildInputs.resolve(pairs, anchors, config)
    anchors, contrast = inputs.anchors, inputs.contrast
    alignment_rows(anchors, config.align_on)  # fail before any model runs
    identity = _source_identity(source_identity)
    if source_chat_template:  # fail before any model runs, and also when every feature is cached
        apply_chat_template(source_tokenizer, contrast.prompts[:1])
    gate_chat_template = source_gate_fit.source_gate_chat_template(config, source_tokenizer)
    source_gate_fit.check_gate_prompts(
        source_gate_prompts,
        config,
        [GLOBAL, *dict.fromkeys(contrast.unsafe_categories)],
        {"anchors": list(anchors.prompts), "safe members of the pairs": list(contrast.safe)},
        list(contrast.unsafe),
    )
    source = source_key(
        source_id or type(source_model).__name__,
        source_revision,
        config.pooling,
        chat_template=source_chat_template,
        identity=identity,
    )

    # 1. Directions in the source model (all candidate layers in one pass, cached).
    tick = time.perf_counter()
    layer_features = _source_layer_features(
        source_model, source_tokenizer, contrast, config, cache, source, progress, source_chat_template
    )
    estimate = estimate_directions(contrast, layer_features, layer="auto", holdout=0.3, seed=config.seed)
    estimate.pooling = config.pooling
    timings["estimate_s"] = time.perf_counter() - tick

    # 2. Benign anchors through the source model at the chosen layer.
    tick = time.perf_counter()
    source_anchor_features = cache.get_or_compute(
        {**source, "kind": "anchors", "layer": estimate.layer, "prompts": prompts_hash(anchors.prompts)},
        lambda: {
            "features": source_gate_fit.layer_features(
                source_model,
                source_tokenizer,
                anchors.prompts,
                estimate.layer,
                config,
                progress,
                source_chat_template,
            )
        },
    )["features"]
    timings["source_anchors_s"] = time.perf_counter() - tick

    # 3. Benign anchors through the target's text encoders -- the only target-side input.
    tick = time.perf_counter()
    statistics = _target_statistics(target_pipe, anchors, config, cache, target_id, progress)
    timings["target_anchors_s"] = time.perf_counter() - tick

    # 4. Per space: align, transport, calibrate, gate.
    tick = time.perf_counter()
    vectors, per_space = {}, {}
    gate_rows = _gate_rows(contrast, estimate.directions)
    rows, aligned_on = alignment_rows(anchors, config.align_on)
    for space, stats in statistics.items():
        alignment = fit_alignment(
            source_anchor_features if rows is None else source_anchor_features[rows],
            stats.pooled if rows is None else stats.pooled[rows],
            method=config.align,
            seed=config.seed,
            holdout=config.holdout,
        )
        transported = {
            name: alignment.transport(direction) for name, direction in estimate.directions.items()
        }
        gate = None
        if config.gate == "probe":
            gate = carried_gate_vectors(
                layer_features[estimate.layer], *gate_rows, source_anchor_features, stats.pooled
            )
        vectors[space], per_space[space] = _calibrated(transported, stats, gate)
        per_space[space]["alignment"] = {**alignment.to_dict(), "anchors": aligned_on}
    timings["align_s"] = time.perf_counter() - tick
    source_gate = None
    if config.source_gate:
        tick = time.perf_counter()
        reader = source_gate_fit.GateReader(
            source_model,
            source_tokenizer,
            estimate.layer,
            gate_chat_template,
            config,
            cache,
            source,
            progress,
        )
        features = layer_features[estimate.layer], source_anchor_features
        if gate_chat_template != source_chat_template:  # the gate reads prompts its own way
            features = reader.features(contrast.prompts), reader.features(anchors.prompts)
        source_gate = source_gate_fit.fit_source_gate(
            reader, features=features, rows=gate_rows, gate_prompts=source_gate_prompts
        )
        timings["source_gate_s"] = time.perf_counter() - tick
    timings["total_s"] = time.perf_counter() - started

    source_meta = {
        "model_id": source_id,
        "revision": source_revision,
        **identity,
        "chat_template": source_chat_template,
        **estimate.to_dict(),
    }
    provenance = inputs.provenance(target_unsafe_data=False)
    return _assemble(
        "transferred",
        vectors,
        per_space,
        statistics,
        target_pipe,
        target_id,
        config,
        source_meta,
        provenance,
        {"timings": timings, "cache": {"hits": cache.hits, "misses": cache.misses}},
        source_gate=source_gate,
    )


def build_native_pack(
    target_pipe: Any,
    *,
    pairs: Sequence[PromptPair] | None = None,
    anchors: BenignPrompts | None = None,
    config: BuildConfig | None = None,
    target_id: str | None = None,
    cache: FeatureCache | None = None,
    progress: bool = True,
) -> BuildResult:
    """The native baseline: directions estimated from the pairs directly in the target's text space.

    The target encoder sees unsafe text here, so the pack says ``kind="native"`` and
    ``provenance.target_unsafe_data = true``. It exists to evaluate transferred packs against.

    Args:
        target_pipe: the target diffusers pipeline (text encoders loaded).
        pairs: safe/unsafe pairs with categories (default: the embedded set).
        anchors: benign anchors for calibration and gates (default: the embedded set).
        config: :class:`BuildConfig` (``align``, ``layer``, ``pooling`` and ``gate`` do not apply: the
            baseline keeps the classic gate along its directions).
        target_id: recorded in the pack (and a key of the feature cache).
        cache: a :class:`FeatureCache` (default: none).
        progress: show progress bars.

    Returns:
        :class:`BuildResult` with the native pack and its report.
    """
    config = config or BuildConfig()
    cache = cache or FeatureCache(None)
    started = time.perf_counter()
    inputs = _BuildInputs.resolve(pairs, anchors, config)
    anchors, contrast = inputs.anchors, inputs.contrast
    spec = target_for(target_pipe)
    pooled: dict[str, list[torch.Tensor]] = {layout.space: [] for layout in spec.layout(target_pipe)}
    for start in range(0, len(contrast.prompts), config.batch_size):
        batch = contrast.prompts[start : start + config.batch_size]
        embeds, mask = encode_for_denoiser(target_pipe, batch, call_kwargs=config.call_kwargs, spec=spec)
        for layout in spec.layout(target_pipe):
            for states, part_mask in space_states(
                embeds, mask if config.tokens == "prompt" else None, layout
            ):
                pooled[layout.space].append(masked_mean(states.float().cpu(), part_mask))
    statistics = _target_statistics(target_pipe, anchors, config, cache, target_id, progress)
    vectors, per_space, estimates = {}, {}, {}
    for space, rows in pooled.items():
        estimate = estimate_directions(contrast, torch.cat(rows), layer=None, holdout=0.3, seed=config.seed)
        estimates[space] = estimate.to_dict()
        vectors[space], per_space[space] = _calibrated(estimate.directions, statistics[space])
    provenance = inputs.provenance(target_unsafe_data=True)
    source_meta = {"model_id": None, "native_baseline": True, "estimates": estimates}
    return _assemble(
        "native",
        vectors,
        per_space,
        statistics,
        target_pipe,
        target_id,
        config,
        source_meta,
        provenance,
        {"timings": {"total_s": time.perf_counter() - started}},
    )


# ---------------------------------------------------------------------- steps
@dataclass
class _BuildInputs:
    """Pairs and anchors of one build, defaults resolved, with where they came from."""

    pairs: list[PromptPair]
    pairs_source: str
    anchors: BenignPrompts
    contrast: ContrastPrompts

    @classmethod
    def resolve(cls, pairs, anchors, config: BuildConfig) -> _BuildInputs:
        source = "safesteer embedded pairs" if pairs is None else "user pairs"
        pairs = list(pairs) if pairs is not None else _embedded_pairs()
        anchors = _limit(anchors or BenignPrompts.embedded(), config.max_anchors)
        _refuse_unsafe_anchors(anchors, pairs)
        contrast = ContrastPrompts.from_pairs([(p.safe, p.unsafe, p.category) for p in pairs])
        return cls(pairs, source, anchors, contrast)

    def provenance(self, *, target_unsafe_data: bool) -> dict:
        return {
            "pairs_dataset": self.pairs_source,
            "num_pairs": len(self.pairs),
            "anchors": self.anchors.source,
            "num_anchors": len(self.anchors.prompts),
            "target_unsafe_data": target_unsafe_data,
        }


def _refuse_unsafe_anchors(anchors: BenignPrompts, pairs: Sequence[PromptPair]) -> None:
    """The benign-only guarantee, checked: no anchor may be the unsafe member of a pair.

    Compared after case folding and collapsing whitespace, so a re-cased or re-spaced copy counts as the same.
    """

    def key(text: str) -> str:
        return " ".join(text.casefold().split())

    unsafe = {key(p.unsafe) for p in pairs}
    found = [a for a in anchors.prompts if key(a) in unsafe]
    if found:
        shown = "; ".join(repr(a) for a in found[:3])
        raise ValueError(
            f"{len(found)} anchor(s) from {anchors.source} are unsafe members of the pairs ({shown}). Anchors "
            "must be benign (the target side only ever sees them): remove these prompts from the anchors."
        )


_SOURCE_IDENTITY_KEYS = ("gguf_file", "gguf_sha256")
"""What ``source_identity`` may say (each recorded as ``source.<key>``, validated by the pack format)."""


def _source_identity(identity: Mapping[str, str] | None) -> dict[str, str]:
    identity = dict(identity or {})
    unknown = sorted(set(identity) - set(_SOURCE_IDENTITY_KEYS))
    if unknown:
        raise ValueError(
            f"source_identity has unknown keys {unknown}; it takes {list(_SOURCE_IDENTITY_KEYS)} (what "
            "load_source_identified returns, less 'revision', which is source_revision)."
        )
    return identity


def _source_layer_features(
    model, tokenizer, contrast, config, cache, source, progress, chat_template
) -> dict[int, torch.Tensor]:
    layers = None if config.layer == "auto" else [int(config.layer)]
    layers = layers or config.layers
    tensors = cache.get_or_compute(
        {**source, "kind": "pairs", "layers": layers, "prompts": prompts_hash(contrast.prompts)},
        lambda: _all_layers(model, tokenizer, contrast.prompts, layers, config, progress, chat_template),
    )
    return {int(key.removeprefix("layer_")): value for key, value in tensors.items()}


def _all_layers(
    model, tokenizer, prompts, layers, config, progress, chat_template
) -> dict[str, torch.Tensor]:
    # Sharded over `accelerate launch` processes when there are several (prompt axis = 1).
    features = sharded(
        prompts,
        lambda part: extract_all_layers(
            model,
            tokenizer,
            part,
            pooling=config.pooling,
            batch_size=config.batch_size,
            progress=progress,
            layers=layers,
            chat_template=chat_template,
        ),
        dim=1,
    )
    indices = layers if layers is not None else range(features.shape[0])
    count = features.shape[0]
    return {f"layer_{index % count if index < 0 else index}": features[i] for i, index in enumerate(indices)}


def _target_statistics(pipe, anchors, config, cache, target_id, progress) -> dict[str, SpaceStatistics]:
    key = {
        "model": target_id or type(pipe).__name__,
        "kind": "target_anchors",
        "tokens": config.tokens,
        "call_kwargs": config.call_kwargs,
        "prompts": prompts_hash(anchors.prompts),
    }

    def compute() -> dict[str, torch.Tensor]:
        stats = anchor_statistics(
            pipe,
            anchors,
            tokens=config.tokens,
            batch_size=config.batch_size,
            call_kwargs=config.call_kwargs,
            progress=progress,
        )
        tensors = {}
        for space, s in stats.items():
            tensors[f"{space}.pooled"] = s.pooled
            tensors[f"{space}.token_mean"] = s.token_mean
            tensors[f"{space}.token_covariance"] = s.token_covariance
            tensors[f"{space}.num_tokens"] = torch.tensor(s.num_tokens)
        return tensors

    tensors = cache.get_or_compute(key, compute)
    spaces = sorted({name.rsplit(".", 1)[0] for name in tensors}, key=_space_order)
    return {
        space: SpaceStatistics(
            tensors[f"{space}.pooled"],
            tensors[f"{space}.token_mean"],
            tensors[f"{space}.token_covariance"],
            int(tensors[f"{space}.num_tokens"]),
        )
        for space in spaces
    }


MIN_ALIGN_ANCHORS = 16
"""The fewest anchors ``align_on`` may select (a recipe's ``prompts.max_anchors`` has the same floor)."""
AUTO_ALIGN_MIN_ANCHORS = 512
"""``align_on="auto"`` fits on the sensitive anchors only when there are at least this many (docs/method.md 6.6:
fewer sensitive anchors than the spaces' dimensions transported less than all anchors did)."""


def alignment_rows(anchors: BenignPrompts, align_on: str) -> tuple[list[int] | None, str]:
    """Which anchors fit the alignment map: ``(rows or None for all, the kind recorded in the pack)``.

    Args:
        anchors: the build's anchors.
        align_on: ``BuildConfig.align_on``.

    Raises:
        ValueError: a kind the anchors do not carry, or too few anchors of it to fit a map.
    """
    if align_on == "all":
        return None, "all"
    if align_on == "auto":
        if anchors.kinds is None or anchors.kinds.count("sensitive") < AUTO_ALIGN_MIN_ANCHORS:
            return None, "all"
        align_on = "sensitive"
    rows = anchors.rows_of_kind(align_on)
    if len(rows) < MIN_ALIGN_ANCHORS:
        kinds = sorted(set(anchors.kinds or ()))
        raise ValueError(
            f"align_on={align_on!r} selects {len(rows)} of the {len(anchors.prompts)} anchors (kinds present: "
            f"{kinds}); an alignment map needs at least {MIN_ALIGN_ANCHORS}. Use align_on='all' or more anchors of that kind."
        )
    return (None, "all") if len(rows) == len(anchors.prompts) else (rows, align_on)


def _gate_rows(contrast: ContrastPrompts, names) -> tuple[dict[str, list[int]], list[int]]:
    """Rows of the contrast features: each direction's unsafe prompts (all for ``global``), the benign ones."""
    first_unsafe = len(contrast.safe)
    unsafe = {
        name: [
            first_unsafe + i
            for i, category in enumerate(contrast.unsafe_categories)
            if name == GLOBAL or category == name
        ]
        for name in names
    }
    return unsafe, list(range(first_unsafe))


def _calibrated(
    directions: dict[str, torch.Tensor],
    stats: SpaceStatistics,
    gate: tuple[dict[str, torch.Tensor], torch.Tensor] | None = None,
) -> tuple[dict, dict]:
    """Scale each direction to one benign token std along it; gate thresholds from benign anchor scores.

    ``gate``: the probe gate's vectors and the anchors' cross-fitted scores along them
    (:func:`~safesteer_diffusers.build.gate_probe.carried_gate_vectors`, directions in ``directions`` order).
    Without it, the anchors are scored along each direction's unsafe side (the classic gate) by the inference
    definition, ``gate_scores``.
    """
    vectors, calibration = {}, {}
    for name, direction in directions.items():
        direction = direction.float()
        scale = stats.std_along(direction)
        if not scale > 0:
            raise ValueError(
                f"Calibration failed for {name!r}: benign target states do not vary along it (std {scale}). "
                "Check the target encoder and the anchors."
            )
        vectors[name] = direction / direction.norm() * scale
        calibration[name] = {
            "statistic": "token_std",
            "scale": scale,
            "transported_norm": float(direction.norm()),
        }
    if gate is not None:
        return vectors, {"calibration": calibration, "anchor_scores": gate[1], "gate_vectors": gate[0]}
    # Pooled anchors are already means over the steered positions: a one-token block scores identically.
    scoring = direction_gate_vectors(torch.stack(list(vectors.values())))
    return vectors, {
        "calibration": calibration,
        "anchor_scores": gate_scores(stats.pooled[:, None, :], scoring),
    }


def _assemble(
    kind,
    vectors,
    per_space,
    statistics,
    pipe,
    target_id,
    config,
    source_meta,
    provenance,
    extra,
    source_gate=None,
) -> BuildResult:
    names = list(next(iter(vectors.values())))
    directions = {name: {space: vectors[space][name] for space in vectors} for name in names}
    thresholds: dict[str, dict[str, float]] = {name: {} for name in names}
    by_fpr: dict[str, dict[str, dict[str, float]]] = {}
    gate_vectors: dict[str, dict[str, torch.Tensor]] = {}
    for space, info in per_space.items():
        for name, vector in info.pop("gate_vectors", {}).items():
            gate_vectors.setdefault(name, {})[space] = vector
        anchor_scores = info.pop("anchor_scores").double()
        quantiles = torch.quantile(anchor_scores, config.gate_quantile, dim=0)
        for name, value in zip(names, quantiles.tolist(), strict=True):
            thresholds[name][space] = value
        for level, values in fpr_thresholds(anchor_scores, names).items():
            for name, value in values.items():
                by_fpr.setdefault(level, {}).setdefault(name, {})[space] = value
    spec = target_for(pipe)
    target = {
        "model_id": target_id,
        "family": spec.family,
        "pipeline_class": type(pipe).__name__,
        "spaces": {
            space: {
                "encoder": type(getattr(pipe, space)).__name__,
                "dim": int(statistics[space].token_mean.shape[0]),
                "calibration": "token_std",
            }
            for space in vectors
        },
    }
    pack = DirectionPack.from_tensors(
        directions,
        thresholds=thresholds,
        gate_vectors=gate_vectors or None,
        source_gate_tensors=None
        if source_gate is None
        else (source_gate["vectors"], source_gate["thresholds"], source_gate["biases"]),
        centers={space: stats.token_mean for space, stats in statistics.items()},
        kind=kind,
        source=source_meta,
        target=target,
        provenance=provenance,
        alignment={space: info.get("alignment") for space, info in per_space.items()},
        calibration={space: info["calibration"] for space, info in per_space.items()},
        gate={
            "score": (
                "mean steered state . gate vector (source probe carried by a benign-only map)"
                if gate_vectors
                else "unsafe-side projection of the mean steered state"
            ),
            "tokens": config.tokens,
            "quantile": config.gate_quantile,
            "fpr_thresholds": by_fpr,
        },
        default_strengths={GLOBAL: 1.0},
        build={"library_version": __version__, "config": asdict(config)},
        **({} if source_gate is None else {"source_gate": source_gate["info"]}),
    )
    report = {
        "kind": kind,
        "source": source_meta,
        "target": target,
        "provenance": provenance,
        "alignment": pack.metadata["alignment"],
        "calibration": pack.metadata["calibration"],
        "thresholds": thresholds,
        **extra,
    }
    return BuildResult(pack, report)


def _embedded_pairs() -> list[PromptPair]:
    from safesteer_diffusers.build.prompts.embedded import load_pairs

    return load_pairs()


def _limit(anchors: BenignPrompts, limit: int | None) -> BenignPrompts:
    if not isinstance(anchors, BenignPrompts):
        raise TypeError(f"anchors must be BenignPrompts, got {type(anchors).__name__}.")
    return anchors if not limit else anchors.head(limit)


def _space_order(space: str) -> tuple[int, str]:
    suffix = space.removeprefix("text_encoder").lstrip("_")
    return (int(suffix) if suffix.isdigit() else 1, space)

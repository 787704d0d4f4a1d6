"""What training data and features do to the source-model gate (a follow-up of ``gate_recall.py``).

Question: the source-model gate (a logistic classifier, ``build/gate_probe.py: fit_logistic``, of unsafe vs
benign prompts on SmolLM2-135M mean-pooled token states) catches about half the held-out unsafe prompts at a
1% held-out benign false-positive rate, and few in leetspeak. How much of that is the training data (no
obfuscated positives, few benign negatives) and how much the feature (one layer)?

Data (every fit is ``fit_logistic``; the features are the mean-pooled source states of ``gate_recall.py``):

- baseline: positives = the training pairs' unsafe members; negatives = their safe members + the first
  ``--anchors`` (1,024) embedded anchors. This is the library-like source gate (library L2 0.1; 0.01 too).
- ``+aug``: misspelled and leetspeak copies (``gate_recall.misspell`` / ``leetspeak``, ``random.Random(1)``;
  the held-out copies use seed 0) of the *training* unsafe prompts as positives and of the *training* safe
  prompts as negatives (so that typos alone do not read as unsafe).
- ``+benign``: anchors 1,024..2,023 as negatives (never 2,024..2,247: held out), plus any anchors appended
  past the first 2,248 (a later set of benign sensitive-topic text; their kinds are printed when known).
  When there are appended anchors, ``+more`` / ``+aug+more`` (rows 3a, 4a) leave them out, to separate the two.
- features: the concatenation of several layers' mean-pooled states, standardised per feature on the fit's
  training rows (``fit_logistic`` standardises by the negatives again, so this changes nothing but is explicit).
- CV choice: L2, layer set and an up-weighting of the hard negatives (the safe rewrites, by duplication) are
  chosen by 5-fold cross-validation on the training rows only (folds by pair, so a pair and its augmented
  copies share a fold; anchors by index), criterion = mean out-of-fold recall at 1% and 5% out-of-fold benign
  FPR. The held-out prompts play no part in that choice.

Held out (exactly ``gate_recall.prepare``'s split and groups): benign = anchors 2,024..2,247, the held-out pairs'
safe members and the hand-written benign prompts; unsafe = the held-out pairs' unsafe members as written,
misspelled and in leetspeak (seed 0), and the hand-written evasive prompts. Reported per variant: recall at
1% / 5% held-out benign FPR with a percentile bootstrap 95% interval, per style and per category.

The 1% point is set by the ~5 highest-scoring of 482 held-out benign prompts (mostly held-out safe rewrites;
printed per variant), hence the wide intervals: differences of 0.1 at 1% are within noise.

Caveat (printed too): the held-out misspelled / leetspeak prompts come from the same perturbation functions
as the augmentation, so gains on those styles are optimistic; the hand-written evasive prompts are the
unbiased check.

Usage::

    python benchmarks/source_gate_training.py --json /tmp/source_gate_training.json
    # ~2 min from the feature cache (gate_recall.py fills it; ~15 min cold). The extra prompts' source states
    # (~3,500 prompts, cached) take ~3-5 min more the first time on 2 free cores (17 min measured on shared ones).
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

from gate_recall import (  # noqa: E402
    SOURCE_LAYERS,
    evaluate_variant,
    leetspeak,
    mean_pool,
    misspell,
    parse_args,
    prepare,
    recall_at_fpr,
    source_token_states,
)
from real_llm_transfer import FIRST_ANCHOR_SET, split_pairs  # noqa: E402

from safesteer_diffusers.build.feature_cache import FeatureCache, default_cache_dir  # noqa: E402
from safesteer_diffusers.build.gate_probe import PROBE_L2, fit_logistic  # noqa: E402
from safesteer_diffusers.build.prompts.embedded import load_anchors, load_pairs  # noqa: E402
from safesteer_diffusers.testing.real_models import load_real_model  # noqa: E402

CAVEAT = (
    "Caveat: the held-out misspelled / leetspeak prompts are made by the same perturbation functions as the\n"
    "augmentation, so gains on those styles are optimistic; the hand-written evasive prompts are the unbiased check."
)
LAYER_SETS = {
    "L11": (11,),
    "L16": (16,),
    "L6+11+16": (6, 11, 16),
    "L11+16+21": (11, 16, 21),
    "all5": SOURCE_LAYERS,
}


def own_args(argv=None) -> tuple[argparse.Namespace, argparse.Namespace]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", default=None, help="write every result here")
    parser.add_argument("--folds", type=int, default=5, help="cross-validation folds for the CV choice")
    parser.add_argument("--l2-grid", type=float, nargs="+", default=[0.003, 0.01, 0.03, 0.1, 0.3, 1.0])
    parser.add_argument("--hard-weights", type=int, nargs="+", default=[1, 2, 4], help="safe-rewrite copies")
    mine, rest = parser.parse_known_args(argv)
    return mine, parse_args(rest)  # the rest are gate_recall's options (--anchors, --bootstrap, ...)


def anchor_kinds(count: int) -> list[str]:
    try:
        from safesteer_diffusers.build.prompts.embedded import load_anchor_kinds

        kinds = load_anchor_kinds()
        return kinds if len(kinds) == count else ["unknown"] * count
    except (ImportError, OSError):
        return ["unknown"] * count


def extra_prompts(args) -> tuple[list[str], dict[str, list[int]], list[str]]:
    """The prompts the fits need beyond ``prepare``'s list, and their index groups (into this list)."""
    train, _ = split_pairs(load_pairs(), args.test_fraction, None)
    embedded = load_anchors()
    rng = random.Random(1)  # not 0: that one makes the held-out misspelled / leetspeak prompts
    prompts: list[str] = []
    groups: dict[str, list[int]] = {}

    def add(name, texts):
        groups[name] = list(range(len(prompts), len(prompts) + len(texts)))
        prompts.extend(texts)

    add("aug_unsafe_misspelled", [misspell(p.unsafe, rng) for p in train])
    add("aug_unsafe_leetspeak", [leetspeak(p.unsafe, rng) for p in train])
    add("aug_safe_misspelled", [misspell(p.safe, rng) for p in train])
    add("aug_safe_leetspeak", [leetspeak(p.safe, rng) for p in train])
    end = FIRST_ANCHOR_SET - args.benign
    if end <= args.anchors:
        raise SystemExit(f"no unused anchors between {args.anchors} and the held-out ones ({end})")
    add("more_anchors", embedded[args.anchors : end])
    add("appended_anchors", embedded[FIRST_ANCHOR_SET:])
    kinds = anchor_kinds(len(embedded))[FIRST_ANCHOR_SET:]
    return prompts, groups, kinds


# ---------------------------------------------------------------------- fitting
class Rows:
    """Training rows of one data setting: positive and negative row indices into the feature matrix, each
    with its fold (by pair for pair-derived rows, by index for anchors), and which negatives are hard."""

    def __init__(self, pos, pos_fold, neg, neg_fold, hard):
        self.pos, self.neg = torch.tensor(pos), torch.tensor(neg)
        self.pos_fold, self.neg_fold = torch.tensor(pos_fold), torch.tensor(neg_fold)
        self.hard = torch.tensor(hard, dtype=torch.bool)  # per negative row


def fit(x: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor, hard: torch.Tensor, l2: float, copies: int):
    """``fit_logistic`` on features standardised over the fit's rows; returns a scoring function."""
    rows = torch.cat([pos, neg])
    mean, std = x[rows].mean(0), x[rows].std(0, correction=0).clamp_min(1e-6)
    z = (x - mean) / std
    negatives = torch.cat([neg] + [neg[hard]] * (copies - 1))
    weight, bias = fit_logistic(z[pos], z[negatives], l2)
    return lambda idx=None: (z if idx is None else z[idx]) @ weight + bias


def cv_score(x: torch.Tensor, rows: Rows, l2: float, copies: int, folds: int) -> float:
    """Mean out-of-fold recall at 1% and 5% out-of-fold benign FPR (scores pooled over folds)."""
    pos_scores = torch.empty(len(rows.pos), dtype=torch.float64)
    neg_scores = torch.empty(len(rows.neg), dtype=torch.float64)
    for k in range(folds):
        p_in, n_in = rows.pos_fold != k, rows.neg_fold != k
        score = fit(x, rows.pos[p_in], rows.neg[n_in], rows.hard[n_in], l2, copies)
        pos_scores[~p_in] = score(rows.pos[~p_in])
        neg_scores[~n_in] = score(rows.neg[~n_in])
    benign, unsafe = neg_scores.numpy(), pos_scores.numpy()
    return float(np.mean([recall_at_fpr(benign, unsafe, f)[0] for f in (0.01, 0.05)]))


def summary(result: dict) -> dict:
    """The compact row: recall @1% [CI], @5%, per style @1%, worst category @1%."""
    at1, at5 = result["roc"][0.01], result["roc"][0.05]
    styles = {k.removeprefix("style: "): v for k, v in at1["recall"].items() if k.startswith("style: ")}
    categories = {k: v for k, v in at1["recall"].items() if not k.startswith("style: ") and k != "all"}
    worst = min(categories, key=categories.get)
    return {
        "recall_1": at1["recall_all"], "ci_1": at1["ci"], "recall_5": at5["recall_all"], "ci_5": at5["ci"],
        "styles_1": styles, "worst_category_1": (worst, categories[worst]),
    }  # fmt: skip


def benign_above(s: np.ndarray, groups: dict, fpr: float) -> dict[str, int]:
    """How many held-out benign prompts of each group score above the ``fpr`` held-out benign threshold."""
    benign = np.concatenate([s[idx] for idx in groups["benign"].values()])
    _, threshold = recall_at_fpr(benign, benign, fpr)
    return {k: int(np.sum(s[idx] > threshold)) for k, idx in groups["benign"].items()}


def print_table(rows: dict[str, dict]) -> None:
    short = {
        "as written": "written",
        "misspelled": "missp",
        "leetspeak": "leet",
        "evasive (written)": "evasive",
    }
    head = f"{'variant':<50} {'@1% [95% CI]':<19} {'@5%':>5} " + " ".join(f"{v:>7}" for v in short.values())
    print("\n" + head + "  worst category @1%")
    for name, row in rows.items():
        lo, hi = row["ci_1"]
        styles = " ".join(f"{row['styles_1'].get(k, float('nan')):>7.2f}" for k in short)
        cat, value = row["worst_category_1"]
        print(
            f"{name:<50} {row['recall_1']:.2f} [{lo:.2f}, {hi:.2f}]  {row['recall_5']:>5.2f} {styles}  "
            f"{value:.2f} ({cat})"
        )


# ---------------------------------------------------------------------- main
def main(argv=None) -> dict:
    mine, args = own_args(argv)
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    prompts, groups, src, _tgt, _packs, _lib = prepare(args)
    del _tgt, _packs, _lib

    extra, extra_groups, appended_kinds = extra_prompts(args)
    heldout = set(prompts) - {
        prompts[i] for i in groups["train_unsafe"] + groups["train_safe"] + groups["calibration"]
    }
    clash = [p for p in extra if p in heldout]
    if clash:
        raise SystemExit(f"{len(clash)} training prompts are also held out, e.g. {clash[:2]}")
    model, tokenizer, source = load_real_model("smollm2")
    source_key = {"model": source["model_id"], "revision": f"sha256:{source['sha256']}"}
    tick = time.perf_counter()
    cache = FeatureCache(default_cache_dir())
    extra_src = source_token_states(
        model, tokenizer, extra, SOURCE_LAYERS, cache, source_key, args.batch_size
    )
    del model
    print(
        f"source token states of {len(extra)} extra prompts: {time.perf_counter() - tick:.0f} s", flush=True
    )
    if extra_groups["appended_anchors"]:
        kinds = {k: appended_kinds.count(k) for k in sorted(set(appended_kinds))}
        print(f"anchors appended past {FIRST_ANCHOR_SET}: {len(extra_groups['appended_anchors'])} ({kinds})")
    else:
        print(f"no anchors appended past {FIRST_ANCHOR_SET} (load_anchors() has {FIRST_ANCHOR_SET} lines)")

    # One feature matrix per layer over prepare's prompts then the extra ones (extra row i -> n + i).
    n = len(prompts)
    pooled = {layer: mean_pool(src[layer] + extra_src[layer]) for layer in SOURCE_LAYERS}
    del src, extra_src

    def features(layers):
        return torch.cat([pooled[layer] for layer in layers], 1)

    def shift(name):
        return [n + i for i in extra_groups[name]]

    pairs = len(groups["train_unsafe"])
    pair_fold = [i % mine.folds for i in range(pairs)]

    def rows(aug: bool, benign: bool, appended: bool = True) -> Rows:
        pos, pos_fold = list(groups["train_unsafe"]), list(pair_fold)
        neg, neg_fold = list(groups["train_safe"]), list(pair_fold)
        hard = [True] * pairs
        if aug:
            for name in ("aug_unsafe_misspelled", "aug_unsafe_leetspeak"):
                pos, pos_fold = pos + shift(name), pos_fold + pair_fold
            for name in ("aug_safe_misspelled", "aug_safe_leetspeak"):
                neg, neg_fold, hard = neg + shift(name), neg_fold + pair_fold, hard + [True] * pairs
        anchor_rows = list(groups["calibration"])
        if benign:
            anchor_rows += shift("more_anchors") + (shift("appended_anchors") if appended else [])
        neg += anchor_rows
        neg_fold += [i % mine.folds for i in range(len(anchor_rows))]
        hard += [False] * len(anchor_rows)
        return Rows(pos, pos_fold, neg, neg_fold, hard)

    data = {
        "base": rows(False, False),
        "+aug": rows(True, False),
        "+benign": rows(False, True),
        "+aug+benign": rows(True, True),
        "+more": rows(False, True, appended=False),
        "+aug+more": rows(True, True, appended=False),
    }
    for name, r in data.items():
        print(
            f"data {name}: {len(r.pos)} positives, {len(r.neg)} negatives ({int(r.hard.sum())} safe rewrites)"
        )

    # --- the fixed variants (settings named in advance)
    fixed = [
        ("1 baseline L11, L2 0.1 (library)", "base", "L11", PROBE_L2, 1),
        ("1 baseline L11, L2 0.01", "base", "L11", 0.01, 1),
        ("2 +aug L11, L2 0.1", "+aug", "L11", PROBE_L2, 1),
        ("3 +benign L11, L2 0.1", "+benign", "L11", PROBE_L2, 1),
        ("4 +aug+benign L11, L2 0.1", "+aug+benign", "L11", PROBE_L2, 1),
        ("4 +aug+benign L11, L2 0.01", "+aug+benign", "L11", 0.01, 1),
        ("5 +aug+benign L6+11+16, L2 0.1", "+aug+benign", "L6+11+16", PROBE_L2, 1),
        ("5 +aug+benign all5, L2 0.1", "+aug+benign", "all5", PROBE_L2, 1),
    ]
    if extra_groups["appended_anchors"]:  # separate the two benign sets
        fixed[4:4] = [
            ("3a +more (anchors 1024..2023 only) L11, L2 0.1", "+more", "L11", PROBE_L2, 1),
            ("4a +aug+more (no appended) L11, L2 0.1", "+aug+more", "L11", PROBE_L2, 1),
        ]
    # --- 6: choose layer set x L2, then hard-negative copies, by CV on the training rows of +aug+benign
    tick = time.perf_counter()
    r = data["+aug+benign"]
    cv: dict[str, float] = {}
    for set_name, layers in LAYER_SETS.items():
        x = features(layers)
        for l2 in mine.l2_grid:
            cv[f"{set_name} | L2 {l2:g} | hard x1"] = cv_score(x, r, l2, 1, mine.folds)
        print(
            f"CV {set_name}: " + ", ".join(f"L2 {l2:g} {cv[f'{set_name} | L2 {l2:g} | hard x1']:.3f}" for l2 in mine.l2_grid),
            flush=True,
        )  # fmt: skip
    best = max(cv, key=cv.get)
    best_set, best_l2 = best.split(" | ")[0], float(best.split(" | ")[1].removeprefix("L2 "))
    for copies in mine.hard_weights:
        if copies > 1:
            cv[f"{best_set} | L2 {best_l2:g} | hard x{copies}"] = cv_score(
                features(LAYER_SETS[best_set]), r, best_l2, copies, mine.folds
            )
    best_copies = max(mine.hard_weights, key=lambda c: cv[f"{best_set} | L2 {best_l2:g} | hard x{c}"])
    print(
        "CV hard-negative copies at the best: "
        + ", ".join(f"x{c} {cv[f'{best_set} | L2 {best_l2:g} | hard x{c}']:.3f}" for c in mine.hard_weights)
    )
    cv_seconds = time.perf_counter() - tick
    print(
        f"CV choice: {best_set}, L2 {best_l2:g}, safe rewrites x{best_copies} ({cv_seconds:.0f} s)",
        flush=True,
    )
    fixed.append(
        (
            f"6 CV pick: +aug+benign {best_set}, L2 {best_l2:g}, hard x{best_copies}",
            "+aug+benign",
            best_set,
            best_l2,
            best_copies,
        )
    )
    l11_best = max((k for k in cv if k.startswith("L11 |")), key=cv.get)
    l11_l2 = float(l11_best.split(" | ")[1].removeprefix("L2 "))
    if (best_set, best_l2, best_copies) != ("L11", l11_l2, 1) and l11_l2 != PROBE_L2:
        fixed.append(
            (f"6 CV pick for L11 only: +aug+benign L11, L2 {l11_l2:g}", "+aug+benign", "L11", l11_l2, 1)
        )

    results, table = {}, {}
    for name, data_name, set_name, l2, copies in fixed:
        d = data[data_name]
        score = fit(features(LAYER_SETS[set_name]), d.pos, d.neg, d.hard, l2, copies)
        scores = score()[:n].detach()
        result = evaluate_variant(scores, groups, args)
        result.pop("curve"), result.pop("curve_without_rewrites")
        result["benign_above_1pct"] = benign_above(scores.numpy(), groups, 0.01)
        results[name] = {"data": data_name, "layers": set_name, "l2": l2, "hard_copies": copies, **result}
        table[name] = summary(result)
        print(f"evaluated {name}", flush=True)

    print_table(table)
    print("\nHeld-out benign prompts above the 1% threshold (they set it), by group:")
    for name, result in results.items():
        cells = ", ".join(f"{k} {v}" for k, v in result["benign_above_1pct"].items() if v)
        print(f"  {name}: {cells}")
    print("\n" + CAVEAT)
    seconds = time.perf_counter() - start
    print(f"\nruntime {seconds:.0f} s (CV {cv_seconds:.0f} s)")
    if mine.json:
        Path(mine.json).write_text(
            json.dumps(
                {
                    "variants": results, "table": table, "cv": cv,
                    "cv_choice": {"layers": best_set, "l2": best_l2, "hard_copies": best_copies},
                    "extra_prompts": {k: len(v) for k, v in extra_groups.items()},
                    "caveat": CAVEAT, "runtime_s": seconds,
                },
                indent=1,
            )
        )  # fmt: skip
    return results


if __name__ == "__main__":
    main()

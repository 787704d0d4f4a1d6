"""Gate recall at a fixed benign false-positive rate on the sentence-encoder pair (issue 14, encoder spaces).

Question: ``gate_recall.py`` measures the gates on SmolLM2 -> Gemma-3. Do the library's global gates behave
alike on the sentence-encoder text spaces, all-MiniLM-L6-v2 (384-d) and all-mpnet-base-v2 (768-d), both
ways? For each transfer (source -> target):

- **probe gate** (``gate="probe"``, the default): ``carried_gate_vectors`` -- a logistic classifier in the
  source space (training unsafe prompts vs their safe rewrites and the anchors), carried to the target by a
  benign-only ridge map fitted on the anchors; score = pooled target features . vector; the pack's threshold
  for benign FPR f is the (1 - f) quantile of the anchors' cross-fitted scores (``torch.quantile``, as
  ``build_pack`` stores it);
- **source gate** (``source_gate=True``): ``source_gate_vectors`` -- the same classifier kept in the source
  space; score = source features . weight; threshold from the cross-fitted scores of the safe rewrites and
  the anchors;
- **reference** (not allowed for a shipped gate: it sees unsafe *target* text): a logistic probe fitted
  natively in the target space (``gate_recall.fit_logistic``) on the same training prompts and anchors.

Features: mean-pooled last layer of each encoder (the sentence-transformers pooling), exactly
``anchor_coverage.encoder_features`` and its feature cache; only text not cached yet is encoded (the
misspelled / leetspeak / evasive held-out prompts form one extra universe, cached under the same key scheme).

Data and what is held out (the split of ``real_llm_transfer.py`` / ``gate_recall.py``):

- training: the 315 training pairs (30% of the 453 embedded pairs held out, stratified, seed 0), safe
  members first then unsafe, as ``ContrastPrompts.from_pairs`` orders them; build anchors = every embedded
  anchor but the held-out slice ``[2024:2248]`` (the library's default build uses every anchor);
- held-out benign: the 224 held-out anchors, the 138 held-out pairs' safe members (the "rewrites": minimal
  edits of unsafe prompts) and the hand-written prompts of ``data/gate_heldout_benign.txt``;
- held-out unsafe: the 138 held-out pairs' unsafe members as written, misspelled and in leetspeak (one
  ``random.Random(0)``, misspell then leetspeak, as ``gate_recall.prepare``), and the hand-written evasive
  prompts of ``data/gate_evasive.jsonl``.

Output, per transfer and gate (``gate_recall.evaluate_variant``): recall at 1% / 5% held-out benign FPR with
percentile-bootstrap 95% intervals, per category and per style, also against held-out benign without the
rewrites (``roc_without_rewrites``), and recall / held-out benign FPR at the pack threshold for FPR 0.01.

Usage::

    python benchmarks/gate_recall_encoders.py --json gate_encoders.json   # ~60 s cold (332 new prompts encoded), ~20 s cached, 2 cores
    python benchmarks/gate_recall_encoders.py --i2p i2p_benchmark.csv   # also I2P (~3 min once to encode it)
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from anchor_coverage import encoder_features, encoder_universe  # noqa: E402
from gate_recall import (  # noqa: E402
    REWRITES,
    evaluate_variant,
    evasive_prompts,
    fit_logistic,
    heldout_benign,
    leetspeak,
    misspell,
)
from public_prompts_gate import (  # noqa: E402
    TEXT_LABELS,
    in_register_reference,
    read_i2p,
    read_text_labels,
    reference_line,
    subsets,
    text_label_masks,
)
from real_encoder_alignment import minilm_folder, mpnet_folder  # noqa: E402
from real_llm_transfer import FIRST_ANCHOR_SET, heldout_anchors, split_pairs  # noqa: E402

from safesteer_diffusers.build.feature_cache import FeatureCache, default_cache_dir  # noqa: E402
from safesteer_diffusers.build.gate_probe import carried_gate_vectors, source_gate_vectors  # noqa: E402
from safesteer_diffusers.build.prompts.embedded import load_anchors, load_pairs  # noqa: E402

HELD_OUT_ANCHORS = 224
PACK_FPR = 0.01
IDS = {"MiniLM": "sentence-transformers/all-MiniLM-L6-v2", "MPNet": "sentence-transformers/all-mpnet-base-v2"}
STYLES = ("as written", "misspelled", "leetspeak", "evasive (written)")


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--fprs", type=float, nargs="+", default=[0.01, 0.05])
    parser.add_argument("--bootstrap", type=int, default=500)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--bench-cache",
        type=Path,
        default=Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "safesteer-bench",
        help="where real_encoder_alignment.py unpacks all-mpnet-base-v2",
    )
    parser.add_argument(
        "--i2p",
        type=Path,
        default=None,
        help="also score I2P's i2p_benchmark.csv (see public_prompts_gate.py)",
    )
    parser.add_argument("--json", default=None)
    return parser.parse_args(argv)


def prompts_and_groups():
    """The cached universe of anchor_coverage.py plus the new held-out unsafe variants; index groups."""
    pairs = load_pairs()
    train, test = split_pairs(pairs, 0.3, None)
    anchors = load_anchors()
    written = heldout_benign()
    evasive = evasive_prompts()
    flat_written = [p for texts in written.values() for p in texts]
    known = set(anchors) | {p.safe for p in pairs} | {p.unsafe for p in pairs}
    overlap = [p for p in flat_written + [e["prompt"] for e in evasive] if p in known]
    if overlap:
        raise SystemExit(f"held-out prompts also used by builds: {overlap[:3]}")
    if any(a in {p.unsafe for p in pairs} for a in anchors):
        raise SystemExit("an anchor is an unsafe pair member")

    base = encoder_universe(train, test, anchors, flat_written)  # anchor_coverage.py's (cached) universe
    rng = random.Random(0)  # as gate_recall.prepare: misspell every held-out prompt, then leetspeak
    extra = {
        "misspelled": [misspell(p.unsafe, rng) for p in test],
        "leetspeak": [leetspeak(p.unsafe, rng) for p in test],
        "evasive (written)": [e["prompt"] for e in evasive],
    }
    extra_prompts = [p for texts in extra.values() for p in texts]
    offset = len(base.prompts)

    heldout_ids = set(range(FIRST_ANCHOR_SET - HELD_OUT_ANCHORS, FIRST_ANCHOR_SET))
    anchor_rows = base.rows["anchors"]
    build = [row for i, row in enumerate(anchor_rows) if i not in heldout_ids]
    held = [anchor_rows[i] for i in sorted(heldout_ids)]
    assert [base.prompts[r] for r in held] == heldout_anchors(anchors, HELD_OUT_ANCHORS)

    groups: dict = {"calibration": build, "benign": {}, "unsafe": {}}
    groups["benign"]["held-out anchors"] = held
    groups["benign"][REWRITES] = base.rows["test_safe"]
    start = base.rows["written"][0]
    for kind, texts in written.items():
        groups["benign"][f"written {kind}"] = list(range(start, start + len(texts)))
        start += len(texts)

    # Unsafe rows with (category, style).
    meta: list[tuple[int, str, str]] = [
        (row, p.category, "as written") for row, p in zip(base.rows["test_unsafe"], test, strict=True)
    ]
    row = offset
    for style in extra:
        cats = (
            [p.category for p in test] if style != "evasive (written)" else [e["category"] for e in evasive]
        )
        for category in cats:
            meta.append((row, category, style))
            row += 1
    for category in sorted({p.category for p in test}):
        groups["unsafe"][category] = [r for r, c, _ in meta if c == category]
    for style in STYLES:
        groups["unsafe"][f"style: {style}"] = [r for r, _, s in meta if s == style]
    groups["unsafe"]["all"] = [r for r, _, _ in meta]
    training = {"safe": base.rows["train_safe"], "unsafe": base.rows["train_unsafe"]}
    return base.prompts, extra_prompts, groups, training


def gates(src: torch.Tensor, tgt: torch.Tensor, groups: dict, training: dict) -> dict:
    """Each gate of one transfer: ``score(source features, target features)`` and the pack threshold (FPR
    PACK_FPR)."""
    safe, unsafe, build = training["safe"], training["unsafe"], groups["calibration"]
    source_features = torch.cat([src[safe], src[unsafe]])  # ContrastPrompts.from_pairs: safe first
    n = len(safe)
    unsafe_rows = {"global": list(range(n, 2 * n))}
    benign_rows = list(range(n))
    out = {}
    tick = time.perf_counter()
    vectors, anchor_scores = carried_gate_vectors(
        source_features, unsafe_rows, benign_rows, src[build], tgt[build]
    )
    out["probe gate (library)"] = {
        "score": lambda s, t, v=vectors["global"]: (t.float() @ v.float()).double(),
        "pack_threshold": float(torch.quantile(anchor_scores[:, 0].double(), 1.0 - PACK_FPR)),
        "fit_s": time.perf_counter() - tick,
    }
    tick = time.perf_counter()
    weights, benign_scores = source_gate_vectors(source_features, unsafe_rows, benign_rows, src[build])
    out["source gate (library)"] = {
        "score": lambda s, t, w=weights["global"]: (s.float() @ w.float()).double(),
        "pack_threshold": float(torch.quantile(benign_scores[:, 0].double(), 1.0 - PACK_FPR)),
        "fit_s": time.perf_counter() - tick,
    }
    tick = time.perf_counter()
    w, b = fit_logistic(tgt[unsafe], tgt[safe + build])
    out["reference: native target probe"] = {
        "score": lambda s, t, w=w, b=b: t @ w + b,
        "pack_threshold": None,
        "fit_s": time.perf_counter() - tick,
    }
    return out


def i2p_rates(scores: torch.Tensor, i2p_scores: torch.Tensor, groups: dict, masks: dict) -> dict[str, float]:
    """Share of each I2P subset above the 1% point of the held-out benign prompts of the issue's kinds (no
    rewrites), as ``public_prompts_gate.py`` measures the LLM source gate."""
    benign = [i for kind, rows in groups["benign"].items() if kind != REWRITES for i in rows]
    threshold = float(np.quantile(scores.double().numpy()[benign], 0.99, method="higher"))
    i2p_scores = i2p_scores.double().numpy()
    return {name: float(np.mean(i2p_scores[mask] > threshold)) for name, mask in masks.items()}


def row_summary(result: dict) -> dict:
    roc, easy = result["roc"], result["roc_without_rewrites"]
    categories = {k: v for k, v in easy[0.01]["recall"].items() if not k.startswith("style:") and k != "all"}
    worst = min(categories, key=categories.get)
    summary = {
        "recall_1": roc[0.01]["recall_all"],
        "ci_1": roc[0.01]["ci"],
        "recall_5": roc[0.05]["recall_all"],
        "recall_1_without_rewrites": easy[0.01]["recall_all"],
        "ci_1_without_rewrites": easy[0.01]["ci"],
        "worst_category_1_without_rewrites": [worst, categories[worst]],
        "evasive_1_without_rewrites": easy[0.01]["recall"]["style: evasive (written)"],
    }
    if "pack_threshold" in result:
        summary["pack_recall"] = result["pack_threshold"]["recall_all"]
        summary["pack_benign_fpr"] = result["pack_threshold"]["benign_fpr_all"]
    return summary


def print_table(table: dict) -> None:
    print(
        f"\n{'transfer':<17}{'gate':<32}{'@1% [95% CI]':>20}{'@5%':>7}{'@1% w/o rw':>12}"
        f"{'pack@0.01 rec/FPR':>19}  {'worst cat @1% w/o rw':<26}{'evasive':>8}"
    )
    for (transfer, gate), s in table.items():
        pack = f"{s['pack_recall']:.2f}/{s['pack_benign_fpr']:.3f}" if "pack_recall" in s else "-"
        worst = f"{s['worst_category_1_without_rewrites'][0]} {s['worst_category_1_without_rewrites'][1]:.2f}"
        ci = f"{s['recall_1']:.2f} [{s['ci_1'][0]:.2f},{s['ci_1'][1]:.2f}]"
        print(
            f"{transfer:<17}{gate:<32}{ci:>20}{s['recall_5']:>7.2f}{s['recall_1_without_rewrites']:>12.2f}"
            f"{pack:>19}  {worst:<26}{s['evasive_1_without_rewrites']:>8.2f}"
        )


def print_details(transfer: str, gate: str, result: dict) -> None:
    print(f"\n== {transfer} | {gate}")
    for label, key in (
        ("held-out benign", "roc"),
        ("held-out benign without rewrites", "roc_without_rewrites"),
    ):
        for fpr, cell in result[key].items():
            per = ", ".join(
                f"{k.removeprefix('style: ')} {v:.2f}" for k, v in cell["recall"].items() if k != "all"
            )
            print(f"  @{fpr:.0%} {label}: {cell['recall_all']:.3f}; {per}")
    if "pack_threshold" in result:
        at = result["pack_threshold"]
        fprs = ", ".join(f"{k} {v:.3f}" for k, v in at["benign_fpr"].items())
        print(f"  pack threshold (FPR {PACK_FPR}): recall {at['recall_all']:.3f}; benign FPR {fprs}")


def main(argv=None) -> dict:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    started = time.perf_counter()
    folders = {"MiniLM": minilm_folder(), "MPNet": mpnet_folder(args.bench_cache)}
    if None in folders.values():
        raise SystemExit(f"encoders not installed: {folders}; see benchmarks/real_encoder_alignment.py")
    prompts, extra_prompts, groups, training = prompts_and_groups()
    n_benign = sum(len(v) for v in groups["benign"].values())
    print(
        f"{len(training['safe'])} training pairs, {len(groups['calibration'])} build anchors; held-out: "
        f"{len(groups['unsafe']['all'])} unsafe, {n_benign} benign",
        flush=True,
    )
    cache = FeatureCache(default_cache_dir())
    tick = time.perf_counter()
    feats = {
        k: torch.cat(
            [encoder_features(IDS[k], f, prompts, cache), encoder_features(IDS[k], f, extra_prompts, cache)]
        )
        for k, f in folders.items()
    }
    i2p, i2p_masks = {}, {}
    if args.i2p is not None:
        rows = read_i2p(args.i2p)
        i2p = {k: encoder_features(IDS[k], f, [r["prompt"] for r in rows], cache) for k, f in folders.items()}
        i2p_masks = subsets(rows)
        # The odd-numbered rows labelled by reading the prompt alone (public_prompts_gate.py --text-labels).
        labels = read_text_labels(TEXT_LABELS, rows)
        odd = np.arange(len(rows)) % 2 == 1
        i2p_masks.update(
            {k: m & odd for k, m in text_label_masks(labels, len(rows)).items() if (m & odd).any()}
        )
        references = {k: in_register_reference(i2p[k], labels) for k in i2p}
    times = {"features": time.perf_counter() - tick}
    results: dict = {}
    table: dict = {}
    for source, target in (("MiniLM", "MPNet"), ("MPNet", "MiniLM")):
        transfer = f"{source} -> {target}"
        tick = time.perf_counter()
        for gate, got in gates(feats[source], feats[target], groups, training).items():
            scores = got["score"](feats[source], feats[target])
            result = evaluate_variant(scores, groups, args, got["pack_threshold"])
            if i2p:
                result["i2p"] = i2p_rates(scores, got["score"](i2p[source], i2p[target]), groups, i2p_masks)
            result.pop("curve"), result.pop("curve_without_rewrites")
            result["fit_s"] = got["fit_s"]
            results.setdefault(transfer, {})[gate] = result
            table[(transfer, gate)] = row_summary(result)
            print_details(transfer, gate, result)
        times[transfer] = time.perf_counter() - tick
    print_table(table)
    if i2p:
        print("\nI2P prompts fired on at the 1% point of the held-out benign prompts of the issue's kinds:")
        for transfer, by_gate in results.items():
            for gate, result in by_gate.items():
                print(
                    f"  {transfer} | {gate}: " + ", ".join(f"{k} {v:.2f}" for k, v in result["i2p"].items())
                )
    if i2p:
        for name, ref in references.items():
            print(reference_line(name, ref))
        results["i2p_in_register_reference"] = references
    times["total"] = time.perf_counter() - started
    print("\ntimes (s): " + ", ".join(f"{k} {v:.0f}" for k, v in times.items()))
    out = {
        "summary": {f"{t} | {g}": s for (t, g), s in table.items()},
        "results": results,
        "times_s": times,
        "command": " ".join(["python", *sys.argv]) if argv is None else f"main({argv})",
        "args": {k: str(v) for k, v in vars(args).items()},
    }
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1))
    return out


if __name__ == "__main__":
    main()

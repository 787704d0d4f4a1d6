"""How often the source-model gate fires on a public unsafe-prompt benchmark: I2P (follows ``gate_recall.py``).

The issue that asked for a better gate measured the old gate on public prompt sets: it fired on 14% of I2P
prompts. This script measures the library's source-model gate of the default build (SmolLM2-135M-Instruct,
every embedded anchor but the held-out slice, ``gate_recall.py --pack-anchors all``) on I2P, reading the
prompts as the pack says (chat turns by default; the same build read as written for comparison).

I2P is not shipped with this project: pass its CSV (``i2p_benchmark.csv`` of the Hugging Face dataset
``AIML-TUDA/i2p``, 4,703 prompts, columns ``prompt``, ``categories``, ``hard``, ``inappropriate_percentage``).
Its prompts were collected from lexica.art and labelled by category; many are not unsafe on their own (the
``inappropriate_percentage`` column is the share of Stable Diffusion images judged inappropriate), so fire
rates are reported for every prompt, for the ``hard`` ones, and for the prompts whose images were judged
inappropriate at least half the time.

Thresholds: the pack's stored thresholds for ``gate_fpr`` 0.01 and 0.05 (what a user gets), and the 1% point of
``gate_recall.py``'s held-out benign prompts of the issue's kinds (captions, text-to-image and sensitive-topic
prompts; no safe rewrites).

**Supplied prompts** (``--supplied hard``, the default; ``all``; ``none`` skips it): the same build given the
even-numbered I2P prompts (the hard ones, or all) as ``source_gate_prompts`` (``safesteer build
--source-gate-prompts``), which fit a second head of the source gate on the source side; with
``--supplied-benign zero`` (the default) also the even-numbered prompts whose images were never judged
inappropriate as that head's benign negatives (``--source-gate-benign``). It is measured on the
odd-numbered I2P prompts, which it never saw, beside the default gate on the same rows, and on
``gate_recall.py``'s own held-out unsafe and benign prompts (recall at 1% of the issue's benign kinds, and at the
stored threshold). ``--build-half odd`` swaps the halves: the build gets the odd-numbered rows, the even ones
measure it.

**Other prompt sets and gates** (options): ``--ring-a-bell DIR`` also measures Ring-A-Bell's adversarial
violence prompts (every CSV of its ``data/InvPrompt/Violence``); ``--target-gates`` also scores I2P with the
gates on the target's text states (the default pack's probe gate, and a native target probe as a reference).

Usage::

    python benchmarks/public_prompts_gate.py --i2p path/to/i2p_benchmark.csv --json i2p.json
    # SmolLM2 reads the 4,703 prompts once per framing (~5-8 min each on 2 cores), cached afterwards; the
    # supplied-prompts build reads its prompts once more (~2 min for the even half's hard ones).
    python benchmarks/public_prompts_gate.py --i2p i2p_benchmark.csv --ring-a-bell Ring-A-Bell/data/InvPrompt/Violence \
        --target-gates   # ~3 min once for Ring-A-Bell's 750 prompts, ~4 min once for Gemma-3 on I2P
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from gate_recall import REWRITES, evaluate_variant, parse_args, prepare, source_gate_features  # noqa: E402

from safesteer_diffusers.build.feature_cache import FeatureCache, default_cache_dir, prompts_hash  # noqa: E402
from safesteer_diffusers.build.gate_prompts import GatePrompts  # noqa: E402
from safesteer_diffusers.build.source_features import extract_features  # noqa: E402
from safesteer_diffusers.steering.maths import source_gate_scores  # noqa: E402
from safesteer_diffusers.testing.real_models import load_real_model  # noqa: E402

PACKS = {
    "chat turns (default)": "transferred svd, source gate",
    "as written": "transferred svd, source gate read as written",
}
HALVES = ("even", "odd")
"""Which half of I2P's rows (by row number) a supplied build gets; the other half measures it."""


def supplied_label(half: str) -> str:
    return f"chat turns + heads on the {half} half's supplied I2P prompts"


def other_half(half: str) -> str:
    return HALVES[1 - HALVES.index(half)]


def read_i2p(path: Path) -> list[dict]:
    """The I2P rows with a non-empty prompt: ``prompt``, ``categories`` (list), ``hard`` (bool), ``inappropriate``."""
    with open(path, newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    missing = {"prompt", "categories", "hard", "inappropriate_percentage"} - set(rows[0] if rows else {})
    if missing:
        raise SystemExit(f"{path}: not the I2P CSV (missing columns {sorted(missing)})")
    return [
        {
            "prompt": row["prompt"].strip(),
            "categories": [c.strip() for c in row["categories"].split(",") if c.strip()],
            "hard": row["hard"].strip() == "1",
            "inappropriate": float(row["inappropriate_percentage"] or 0.0),
        }
        for row in rows
        if row["prompt"].strip()
    ]


def subsets(rows: list[dict]) -> dict[str, np.ndarray]:
    """Boolean masks of the reported I2P subsets."""
    out = {
        "all": np.ones(len(rows), bool),
        "hard": np.array([r["hard"] for r in rows]),
        "images judged inappropriate >= 50%": np.array([r["inappropriate"] >= 50 for r in rows]),
    }
    categories = sorted({c for r in rows for c in r["categories"]})
    for category in categories:
        out[f"category: {category}"] = np.array([category in r["categories"] for r in rows])
    for category in categories:
        out[f"hard, category: {category}"] = out["hard"] & out[f"category: {category}"]
    return out


def fire_rates(scores: np.ndarray, thresholds: dict[str, float], masks: dict[str, np.ndarray]) -> dict:
    """Share of each subset above each threshold."""
    return {
        name: {subset: float(np.mean(scores[mask] > t)) for subset, mask in masks.items()}
        for name, t in thresholds.items()
    }


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--i2p", type=Path, required=True, help="I2P's i2p_benchmark.csv (AIML-TUDA/i2p)")
    parser.add_argument(
        "--supplied",
        choices=["hard", "all", "none"],
        default="hard",
        help="which even-numbered I2P prompts a third build gets as source_gate_prompts (default: the hard ones)",
    )
    parser.add_argument(
        "--supplied-benign",
        choices=["zero", "none"],
        default="zero",
        help="benign prompts beside the supplied ones (--source-gate-benign): the even-numbered I2P prompts whose "
        "images were never judged inappropriate (zero, the default), or none",
    )
    parser.add_argument(
        "--ring-a-bell",
        type=Path,
        default=None,
        help="also measure Ring-A-Bell's adversarial violence prompts: its data/InvPrompt/Violence folder "
        "(github.com/chiayi-hsu/Ring-A-Bell, MIT; every CSV with a prompt column)",
    )
    parser.add_argument(
        "--target-gates",
        action="store_true",
        help="also score I2P with the target-space gates (Gemma-3 reads the 4,703 prompts once, ~10 min): the "
        "default pack's probe gate (what gate=True without gate_model scores) and a native target probe",
    )
    parser.add_argument(
        "--build-half",
        choices=HALVES,
        default="even",
        help="which half of I2P's rows the supplied build gets (default: the even-numbered ones); the other "
        "half measures every gate",
    )
    parser.add_argument("--json", default=None)
    mine, rest = parser.parse_known_args(argv)
    args = parse_args(["--pack-anchors", "all", *rest])
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    rows = read_i2p(mine.i2p)
    digest = hashlib.sha256(mine.i2p.read_bytes()).hexdigest()
    texts = [r["prompt"] for r in rows]
    masks = subsets(rows)
    ring = (
        read_prompt_csvs(mine.ring_a_bell) if mine.ring_a_bell is not None else {}
    )  # refused before any model
    ring_texts = [p for prompts_of_file in ring.values() for p in prompts_of_file]
    print(f"I2P: {len(rows)} prompts (sha256 {digest[:16]}...), {int(masks['hard'].sum())} hard")
    prompts, groups, src, _tgt, packs, _lib = prepare(args)
    issue_benign = [i for k, idx in groups["benign"].items() if k != REWRITES for i in idx]
    model, tokenizer, source = load_real_model("smollm2")
    cache = FeatureCache(default_cache_dir())
    results: dict = {"i2p_sha256": digest, "prompts": len(rows), "gates": {}}
    measured = np.arange(len(rows)) % 2 == HALVES.index(other_half(mine.build_half))
    half_masks = {
        f"{other_half(mine.build_half)} half, {name}": mask & measured for name, mask in masks.items()
    }
    gates = {label: packs[name] for label, name in PACKS.items()}
    supplied = supplied_label(mine.build_half)
    if mine.supplied != "none":
        tick = time.perf_counter()
        gates[supplied] = supplied_build(
            rows, mine.supplied, mine.supplied_benign, args, source, half=mine.build_half
        )
        print(f"{supplied}: built in {time.perf_counter() - tick:.0f} s", flush=True)
    for label, pack in gates.items():
        info = pack.metadata["source_gate"]
        heads, biases, stored = pack.source_gate_heads("global")
        tick = time.perf_counter()
        read = (model, tokenizer, source, int(info["layer"]), bool(info["chat_template"]))
        features = cached_source_features(cache, *read, texts, "bench_public_prompts")
        print(f"{label}: I2P features in {time.perf_counter() - tick:.0f} s", flush=True)
        scores = source_gate_scores(features, heads, biases).numpy()
        gate_features = source_gate_features(pack, src, prompts)
        held = source_gate_scores(gate_features, heads, biases)
        thresholds = {
            "stored gate_fpr 0.01": stored,
            "stored gate_fpr 0.05": pack.source_gate_heads("global", 0.05)[2],
            "1% of held-out benign, issue's kinds": float(
                np.quantile(held.numpy()[issue_benign], 0.99, method="higher")
            ),
        }
        own = evaluate_variant(held, groups, args, stored)
        per_category = category_gate_rates(
            pack, features, gate_features, issue_benign, groups, rows, measured
        )
        ring_rates = {}
        if ring:
            ring_features = cached_source_features(cache, *read, ring_texts, "bench_ring_a_bell")
            ring_scores = source_gate_scores(ring_features, heads, biases).numpy()
            files = np.repeat(np.array(list(ring)), [len(v) for v in ring.values()])
            ring_masks = {"all": np.ones(len(files), bool), **{name: files == name for name in ring}}
            ring_rates = fire_rates(ring_scores, thresholds, ring_masks)
        results["gates"][label] = {
            "ring_a_bell": ring_rates,
            "category_gates": per_category,
            "heads": len(heads),
            "thresholds": thresholds,
            "fire_rates": fire_rates(scores, thresholds, masks if label != supplied else {}),
            "fire_rates_measured_half": fire_rates(scores, thresholds, half_masks),
            "own_heldout": {
                "recall_at_1pct_issue_benign": own["roc_without_rewrites"][0.01]["recall_all"],
                "ci": own["roc_without_rewrites"][0.01]["ci"],
                "per_group_at_1pct": own["roc_without_rewrites"][0.01]["recall"],
                "recall_at_5pct_all_benign": own["roc"][0.05]["recall_all"],
                "at_stored_threshold": {
                    "recall": own["pack_threshold"]["recall_all"],
                    "benign_fpr": own["pack_threshold"]["benign_fpr_all"],
                    "benign_fpr_by_kind": own["pack_threshold"]["benign_fpr"],
                },
            },
        }
    if mine.target_gates:
        results["target_gates"] = target_gate_rates(
            packs[PACKS["chat turns (default)"]], prompts, texts, groups, issue_benign, masks, args
        )
    print_table(results, {**masks, **half_masks})
    results["runtime_s"] = time.perf_counter() - start
    print(f"\nruntime {results['runtime_s']:.0f} s")
    if mine.json:
        Path(mine.json).write_text(json.dumps(results, indent=1))
    return results


def target_gate_rates(pack, prompts, texts, groups, issue_benign, masks, args) -> dict:
    """I2P fire rates of the gates that score the *target's* text states (the Gemma-3 space of the Sana
    pipeline, pooled as the library's gate pools them): the pack's probe gate, at its stored threshold and at
    the 1% point of the held-out benign prompts of the issue's kinds, and, as a reference that sees unsafe
    target text, a logistic probe fitted natively on the target states of the training pairs."""
    from gate_recall import CPU_CALL_KWARGS, SPACE, fit_logistic, library_pooled

    from safesteer_diffusers.steering.maths import gate_scores
    from safesteer_diffusers.testing.real_models import real_sana_pipeline

    pipe, target = real_sana_pipeline("gemma3")
    cache = FeatureCache(default_cache_dir())
    call = dict(CPU_CALL_KWARGS)
    tick = time.perf_counter()
    held = library_pooled(pipe, prompts, call, cache, target["target_id"], args.batch_size).double()
    i2p = library_pooled(pipe, texts, call, cache, target["target_id"], args.batch_size).double()
    print(f"target states of the I2P prompts: {time.perf_counter() - tick:.0f} s", flush=True)
    vector = pack.gate_vector("global", SPACE)
    probe = lambda x: gate_scores(x[:, None, :].float(), vector[None])[:, 0].double().numpy()  # noqa: E731
    w, b = fit_logistic(held[groups["train_unsafe"]], held[groups["train_safe"] + groups["calibration"]])
    native = lambda x: (x @ w.double() + b).numpy()  # noqa: E731
    out = {}
    for label, score, stored in (
        (
            "probe gate of the default pack (gate=True without gate_model)",
            probe,
            pack.threshold("global", SPACE),
        ),
        ("reference: native target probe (sees unsafe target text)", native, None),
    ):
        own = score(held)
        thresholds = {
            "1% of held-out benign, issue's kinds": float(
                np.quantile(own[issue_benign], 0.99, method="higher")
            )
        }
        if stored is not None:
            thresholds["stored gate_fpr 0.01"] = float(stored)
        out[label] = {
            "fire_rates": fire_rates(score(i2p), thresholds, masks),
            "own_heldout": {
                name: float(np.mean(own[groups["unsafe"]["all"]] > t)) for name, t in thresholds.items()
            },
        }
    return out


def cached_source_features(
    cache,
    model,
    tokenizer,
    source: dict,
    layer: int,
    chat_template: bool,
    prompts: list[str],
    kind: str,
    batch_size: int = 16,
) -> torch.Tensor:
    """``[N, Ds]`` mean-pooled source features of ``prompts`` at ``layer`` (as chat turns or as written), from
    the feature cache under this benchmark's key scheme; ``kind`` names the prompt set."""
    key = {"model": source["model_id"], "revision": f"sha256:{source['sha256']}", "pooling": "mean",
           "chat_template": bool(chat_template), "kind": kind, "layer": int(layer),
           "prompts": prompts_hash(list(prompts))}  # fmt: skip
    return cache.get_or_compute(
        key,
        lambda: {
            "features": extract_features(
                model,
                tokenizer,
                list(prompts),
                int(layer),
                chat_template=bool(chat_template),
                batch_size=batch_size,
            )
        },
    )["features"]


def read_prompt_csvs(folder: Path) -> dict[str, list[str]]:
    """``{file name: prompts}`` of every CSV in ``folder`` with a ``prompt`` column (empty prompts dropped)."""
    out = {}
    for path in sorted(Path(folder).glob("*.csv")):
        with open(path, newline="", encoding="utf-8") as handle:
            rows = list(csv.DictReader(handle))
        if rows and "prompt" in rows[0]:
            out[path.name] = [row["prompt"].strip() for row in rows if row["prompt"].strip()]
    if not out:
        raise SystemExit(
            f"{folder}: no CSV file with a 'prompt' column (pass Ring-A-Bell's data/InvPrompt/Violence)"
        )
    return out


def category_gate_rates(pack, i2p_features, held_features, issue_benign, groups, rows, measured) -> dict:
    """Each category's own gate (what steers that category's direction when its strength is set), at its 1%
    point of the held-out benign prompts of the issue's kinds: the share of the measured half's I2P prompts labelled
    with the category it fires on, and its recall of our held-out unsafe prompts of that category."""
    out = {}
    for category in pack.categories:
        heads, biases, _ = pack.source_gate_heads(category)
        held = source_gate_scores(held_features, heads, biases).numpy()
        threshold = float(np.quantile(held[issue_benign], 0.99, method="higher"))
        labelled = measured & np.array([category in r["categories"] for r in rows])
        i2p = source_gate_scores(i2p_features[labelled], heads, biases).numpy()
        out[category] = {
            "heads": len(heads),
            "i2p_measured_labelled": float(np.mean(i2p > threshold)),
            "own_heldout": float(np.mean(held[groups["unsafe"][category]] > threshold)),
        }
    return out


def supplied_rows(rows: list[dict], which: str, half: str = "even") -> list[int]:
    """The I2P rows of one half (``"even"``: rows 0, 2, ...) a build may be given (all, or the hard ones); the
    other half measures it."""
    return [i for i in range(HALVES.index(half), len(rows), 2) if which == "all" or rows[i]["hard"]]


def supplied_build(
    rows: list[dict],
    which: str,
    benign: str,
    args,
    source: dict,
    extra_benign: tuple = (),
    half: str = "even",
):
    """The default source-gate build of ``gate_recall.prepare``, given one half's I2P prompts as
    ``source_gate_prompts`` (the library's path, ``safesteer build --source-gate-prompts``); ``extra_benign``
    joins the supplied benign prompts."""
    from gate_recall import CPU_CALL_KWARGS, build_anchors, split_pairs

    from safesteer_diffusers.build.driver import BuildConfig, build_pack
    from safesteer_diffusers.build.prompts.embedded import load_anchors, load_pairs
    from safesteer_diffusers.testing.real_models import real_sana_pipeline

    chosen = supplied_rows(rows, which, half)
    start = HALVES.index(half)
    calm = (
        [i for i in range(start, len(rows), 2) if rows[i]["inappropriate"] == 0] if benign == "zero" else []
    )
    unsafe_texts = {rows[i]["prompt"] for i in chosen}
    supplied = GatePrompts(
        tuple(rows[i]["prompt"] for i in chosen),
        tuple(tuple(rows[i]["categories"]) for i in chosen),
        f"I2P {half}-numbered rows ({which})",
        # By text, not row: I2P repeats some prompts, rated differently (three in the odd half).
        tuple(rows[i]["prompt"] for i in calm if rows[i]["prompt"] not in unsafe_texts) + tuple(extra_benign),
    )
    model, tokenizer, _ = load_real_model("smollm2")
    pipe, target = real_sana_pipeline("gemma3")
    train, _ = split_pairs(load_pairs(), args.test_fraction, None)
    anchors = build_anchors(load_anchors(), args.pack_anchors, args.benign)
    config = BuildConfig(
        align="svd", source_gate=True, call_kwargs=dict(CPU_CALL_KWARGS), batch_size=args.batch_size
    )
    return build_pack(
        model, tokenizer, pipe, pairs=train, anchors=anchors, config=config, source_id=source["model_id"],
        source_revision=f"sha256:{source['sha256']}", target_id=target["target_id"],
        cache=FeatureCache(default_cache_dir()), progress=False, source_gate_prompts=supplied,
    ).pack  # fmt: skip


def print_table(results: dict, masks: dict[str, np.ndarray]) -> None:
    print("\nShare of I2P prompts the global source-model gate fires on (n per subset in brackets):")
    for table in ("fire_rates", "fire_rates_measured_half"):
        for label, gate in results["gates"].items():
            for threshold, rates in gate[table].items():
                cells = ", ".join(
                    f"{subset} [{int(masks[subset].sum())}] {rate:.2f}" for subset, rate in rates.items()
                )
                if cells:
                    print(f"  {label} | {threshold}: {cells}")
    print(
        "\nEach category's own gate at its 1% point (issue's benign kinds): measured-half I2P prompts of the category /"
    )
    print("our held-out unsafe prompts of the category (heads):")
    for label, gate in results["gates"].items():
        cells = ", ".join(
            f"{c} {v['i2p_measured_labelled']:.2f} / {v['own_heldout']:.2f} ({v['heads']})"
            for c, v in gate["category_gates"].items()
        )
        print(f"  {label}: {cells}")
    for label, gate in results.get("target_gates", {}).items():
        for threshold, rates in gate["fire_rates"].items():
            cells = ", ".join(f"{subset} {rate:.2f}" for subset, rate in rates.items())
            print(
                f"  target space: {label} | {threshold}: {cells}; our held-out unsafe {gate['own_heldout'][threshold]:.2f}"
            )
    if any(gate["ring_a_bell"] for gate in results["gates"].values()):
        print("\nShare of Ring-A-Bell's adversarial violence prompts the global gate fires on:")
        for label, gate in results["gates"].items():
            for threshold, rates in gate["ring_a_bell"].items():
                print(f"  {label} | {threshold}: " + ", ".join(f"{k} {v:.2f}" for k, v in rates.items()))
    print("\nThe same gates on gate_recall.py's own held-out prompts:")
    for label, gate in results["gates"].items():
        own = gate["own_heldout"]
        lo, hi = own["ci"]
        per = ", ".join(f"{k} {v:.2f}" for k, v in own["per_group_at_1pct"].items() if k != "all")
        print(
            f"  {label} ({gate['heads']} head(s)): recall {own['recall_at_1pct_issue_benign']:.2f} [{lo:.2f}, "
            f"{hi:.2f}] at 1% of the issue's benign kinds ({per}); {own['recall_at_5pct_all_benign']:.2f} at 5% of "
            f"all held-out benign; at the stored threshold recall {own['at_stored_threshold']['recall']:.2f}, "
            f"benign FPR {own['at_stored_threshold']['benign_fpr']:.3f} ("
            + ", ".join(f"{k} {v:.3f}" for k, v in own["at_stored_threshold"]["benign_fpr_by_kind"].items())
            + ")"
        )


if __name__ == "__main__":
    main()

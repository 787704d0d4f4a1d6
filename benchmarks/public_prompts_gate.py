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

**Prompts unsafe as text** (``--text-labels``, by default ``data/i2p_text_labels.csv``): I2P's labels come from
the images Stable Diffusion made, not from the prompt's words. 3,831 rows were labelled by reading the prompt
alone (unsafe / benign / unclear, with categories; guide and provenance in ``data/i2p_text_labels.md``): 1,650
odd-numbered rows measure (100 of them read by two annotators), 2,181 even-numbered rows may train. The file
holds row numbers, the prompt's sha256 and the labels, never the text; a row whose prompt does not match is
refused. Every gate is also measured on the measured half's rows read as unsafe and read as benign (bootstrap
intervals at the 1% point, the AUROC between the two), and on one benign set that joins ours and I2P's rows
read as benign. ``--supplied text`` gives the build the other half's rows read as unsafe (with their
categories) and those read as benign. A reference head fitted on those rows alone shows what each space's
features hold for prompts in I2P's register.

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

from gate_recall import (  # noqa: E402
    REWRITES,
    bootstrap_recall,
    evaluate_variant,
    parse_args,
    prepare,
    recall_at_fpr,
    source_gate_features,
)

from safesteer_diffusers.build.directions import auroc  # noqa: E402
from safesteer_diffusers.build.feature_cache import FeatureCache, default_cache_dir, prompts_hash  # noqa: E402
from safesteer_diffusers.build.gate_probe import fit_logistic  # noqa: E402
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
TEXT_LABELS = Path(__file__).resolve().parent / "data" / "i2p_text_labels.csv"
TEXT_LABEL_VALUES = ("unsafe", "benign", "unclear")


def supplied_label(half: str, which: str = "hard") -> str:
    kind = "text-labelled " if which == "text" else ""
    return f"chat turns + heads on the {half} half's supplied {kind}I2P prompts"


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
        choices=["hard", "all", "text", "none"],
        default="hard",
        help="which even-numbered I2P prompts a third build gets as source_gate_prompts (default: the hard ones; "
        "text: the labelled rows that read as unsafe, with those that read as benign as --source-gate-benign)",
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
    mine, args = parse_with_gate_recall(parser, argv)
    start = time.perf_counter()
    rows = read_i2p(mine.i2p)
    digest = hashlib.sha256(mine.i2p.read_bytes()).hexdigest()
    texts = [r["prompt"] for r in rows]
    masks = subsets(rows)
    labels = text_labels_of(mine, rows)
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
    text_masks = {
        name: mask & measured
        for name, mask in text_label_masks(labels, len(rows)).items()
        if (mask & measured).any()
    }
    if labels:
        results["text_labels"] = label_agreement([x for x in labels if measured[x["row"]]], rows)
    gates = {label: packs[name] for label, name in PACKS.items()}
    supplied = supplied_label(mine.build_half, mine.supplied)
    if mine.supplied != "none":
        tick = time.perf_counter()
        gates[supplied] = supplied_build(
            rows, mine.supplied, mine.supplied_benign, args, source, half=mine.build_half, labels=labels
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
        as_text = text_label_rates(scores, held.numpy()[issue_benign], thresholds, text_masks, args.bootstrap)
        if "read as benign" in text_masks:
            as_text["joint benign set"] = joint_benign_recall(
                held.numpy()[issue_benign],
                held.numpy()[groups["unsafe"]["all"]],
                scores[text_masks["read as benign"]],
                scores[text_masks["read as unsafe"]],
            )
        if labels and label != supplied:  # one per way of reading the prompts
            results.setdefault("in_register_reference", {})[label] = in_register_reference(
                features, labels, mine.build_half
            )
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
            "read_as_text": as_text,
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
            packs[PACKS["chat turns (default)"]],
            prompts,
            texts,
            groups,
            issue_benign,
            {**masks, **text_masks},
            args,
            labels,
            mine.build_half,
        )
        reference = results["target_gates"].pop("in_register_reference", None)
        if reference is not None:
            results.setdefault("in_register_reference", {})["Gemma-3 target states (pooled)"] = reference
    print_table(results, {**masks, **half_masks, **text_masks})
    results["runtime_s"] = time.perf_counter() - start
    print(f"\nruntime {results['runtime_s']:.0f} s")
    if mine.json:
        Path(mine.json).write_text(json.dumps(results, indent=1))
    return results


def target_gate_rates(
    pack, prompts, texts, groups, issue_benign, masks, args, labels=(), half: str = "even"
) -> dict:
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
    if labels:
        out["in_register_reference"] = in_register_reference(i2p, labels, half)
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


def parse_with_gate_recall(
    parser: argparse.ArgumentParser, argv=None
) -> tuple[argparse.Namespace, argparse.Namespace]:
    """Add ``--text-labels`` (read by :func:`text_labels_of`) and ``--json`` to an I2P script's ``parser``,
    parse, and hand every other option to ``gate_recall``'s parser on the default build (every anchor);
    sets torch's threads. Returns (this script's options, gate_recall's)."""
    parser.add_argument(
        "--text-labels",
        default=str(TEXT_LABELS),
        help="text-only labels of sampled I2P rows (default: the shipped data/i2p_text_labels.csv; 'none' skips)",
    )
    parser.add_argument("--json", default=None)
    mine, rest = parser.parse_known_args(argv)
    args = parse_args(["--pack-anchors", "all", *rest])
    torch.set_num_threads(args.threads)
    return mine, args


def text_labels_of(options: argparse.Namespace, rows: list[dict]) -> list[dict]:
    """The labels ``--text-labels`` names, checked against ``rows``; none for ``--text-labels none``."""
    return read_text_labels(Path(options.text_labels), rows) if options.text_labels != "none" else []


def reference_line(name: str, reference: dict) -> str:
    """One printed line of :func:`in_register_reference`'s result."""
    return (
        f"  reference, {name} features: a head fitted on the other half's text labels alone "
        f"({reference['trained_on']}): AUROC "
        + ", ".join(f"{v:.3f} (L2 {k:g})" for k, v in reference["auroc_by_l2"].items())
        + "; with a fraction of those rows: "
        + ", ".join(f"{k:g}: {v:.3f}" for k, v in reference["curve"].items())
    )


def read_text_labels(path: Path, rows: list[dict]) -> list[dict]:
    """The text-only labels of sampled I2P rows: ``row``, ``label`` (the annotators' agreed label; ``unclear``
    where two disagree), ``categories`` (union of the annotators' for an unsafe row) and each annotator's own.

    Refuses a file whose rows do not match ``rows`` (a different I2P copy): every row's prompt must hash to the
    file's ``prompt_sha256``."""
    with open(path, newline="", encoding="utf-8") as handle:
        records = list(csv.DictReader(handle))
    out = []
    for record in records:
        row = int(record["row"])
        prompt = rows[row]["prompt"] if row < len(rows) else None
        if prompt is None or hashlib.sha256(prompt.encode()).hexdigest() != record["prompt_sha256"]:
            raise SystemExit(
                f"{path}: row {row} does not hold the prompt these labels were made for; pass the I2P CSV "
                "they were made on (sha256 597adf45...) or --text-labels none"
            )
        own = {
            who: (record[f"label_{who}"], [c for c in record[f"categories_{who}"].split(";") if c])
            for who in ("a", "b")
            if record[f"label_{who}"]
        }
        for who, (label, categories) in own.items():
            if label not in TEXT_LABEL_VALUES or bool(categories) != (label == "unsafe"):
                raise SystemExit(
                    f"{path}: row {row}, annotator {who}: label {label!r} with categories {categories}"
                )
        agreed = {label for label, _ in own.values()}
        label = agreed.pop() if len(agreed) == 1 else "unclear"
        categories = sorted({c for _, cs in own.values() for c in cs}) if label == "unsafe" else []
        out.append({"row": row, "label": label, "categories": categories, "annotators": own})
    return out


def text_label_masks(labels: list[dict], n: int) -> dict[str, np.ndarray]:
    """Boolean masks over the I2P rows: read as unsafe / benign / unclear, and unsafe per category."""
    out = {}
    for value in TEXT_LABEL_VALUES:
        out[f"read as {value}"] = np.zeros(n, bool)
    for label in labels:
        out[f"read as {label['label']}"][label["row"]] = True
        for category in label["categories"]:
            out.setdefault(f"read as unsafe, {category}", np.zeros(n, bool))[label["row"]] = True
    return out


def label_agreement(labels: list[dict], rows: list[dict]) -> dict:
    """How the text-only labels compare: between the two annotators on the rows both read (agreement and
    Cohen's kappa over the three labels), and with I2P's own ``hard`` flag."""
    both = [label["annotators"] for label in labels if len(label["annotators"]) == 2]
    pairs = [(a[0], b[0]) for a, b in ((x["a"], x["b"]) for x in both)]
    observed = float(np.mean([a == b for a, b in pairs])) if pairs else float("nan")
    chance = sum(
        np.mean([a == v for a, _ in pairs]) * np.mean([b == v for _, b in pairs]) for v in TEXT_LABEL_VALUES
    ) if pairs else float("nan")  # fmt: skip
    counts = {v: sum(label["label"] == v for label in labels) for v in TEXT_LABEL_VALUES}
    hard = {
        v: sum(label["label"] == v and rows[label["row"]]["hard"] for label in labels)
        for v in TEXT_LABEL_VALUES
    }
    return {
        "rows": len(labels),
        "counts": counts,
        "hard_counts": hard,
        "both_annotators": len(pairs),
        "agreement": observed,
        "kappa": float((observed - chance) / (1 - chance)) if pairs and chance < 1 else float("nan"),
    }


def text_label_rates(
    scores: np.ndarray, issue_benign: np.ndarray, thresholds: dict[str, float], masks: dict, resamples: int
) -> dict:
    """A gate's fire rate on each text-labelled subset: at its 1% and 5% points of our held-out benign prompts
    of the issue's kinds (the 1% one with a bootstrap interval that resamples both sides) and at the other
    thresholds."""
    out = {}
    if {"read as unsafe", "read as benign"} <= set(masks):
        # Threshold-free: does the gate rank I2P's prompts that read as unsafe above those that read as benign?
        out["auroc read as unsafe vs read as benign"] = auroc(
            torch.as_tensor(scores[masks["read as unsafe"]]), torch.as_tensor(scores[masks["read as benign"]])
        )
    for name, mask in masks.items():
        subset = scores[mask]
        at_1 = recall_at_fpr(issue_benign, subset, 0.01)[0]
        out[name] = {
            "n": int(mask.sum()),
            "at_1pct": at_1,
            "ci_1pct": bootstrap_recall(issue_benign, subset, 0.01, resamples),
            "at_5pct": recall_at_fpr(issue_benign, subset, 0.05)[0],
            "at_thresholds": {t: float(np.mean(subset > v)) for t, v in thresholds.items()},
        }
    return out


def text_supplied_rows(labels: list[dict], half: str) -> tuple[list[int], list[int], list[list[str]]]:
    """The labelled rows of one half that read as unsafe (with their categories) and those that read as
    benign; rows read as unclear are left out of both."""
    mine = [label for label in labels if label["row"] % 2 == HALVES.index(half)]
    unsafe = [label for label in mine if label["label"] == "unsafe"]
    benign = [label["row"] for label in mine if label["label"] == "benign"]
    return [label["row"] for label in unsafe], benign, [label["categories"] for label in unsafe]


def joint_benign_recall(
    own_benign: np.ndarray, own_unsafe: np.ndarray, i2p_benign: np.ndarray, i2p_unsafe: np.ndarray
) -> dict:
    """Recall of our held-out unsafe prompts and of the I2P rows read as unsafe at the 1% and 5% points of one
    benign set: our held-out benign prompts of the issue's kinds *and* the I2P rows read as benign (real
    text-to-image prompts in I2P's register)."""
    benign = np.concatenate([own_benign, i2p_benign])
    out = {}
    for fpr in (0.01, 0.05):
        t = float(np.quantile(benign, 1 - fpr, method="higher"))
        out[fpr] = {"own": float(np.mean(own_unsafe > t)), "i2p_read_unsafe": float(np.mean(i2p_unsafe > t))}
    return out


def in_register_reference(
    features: torch.Tensor,
    labels: list[dict],
    half: str = "even",
    l2s: tuple[float, ...] = (0.1, 1.0),
    fractions: tuple[float, ...] = (0.25, 0.5, 1.0),
    draws: int = 5,
    seed: int = 0,
) -> dict:
    """A reference, not a gate the library builds: a linear head (the library's balanced logistic regression)
    fitted on ``half``'s text-labelled rows alone, read as unsafe against read as benign, then scored on the
    other half's labelled rows. Returns the AUROC between the other half's read-as-unsafe and read-as-benign
    rows for each L2 penalty, and a learning curve at the largest penalty: the mean AUROC over ``draws`` random
    ``fractions`` of the training rows. It bounds what the features hold for prompts in I2P's register, given
    that many labelled examples of it."""
    train_u, train_b, _ = text_supplied_rows(labels, half)
    test_u, test_b, _ = text_supplied_rows(labels, other_half(half))
    x = features.double()

    def score(unsafe_rows, benign_rows, l2) -> float:
        w, _ = fit_logistic(x[unsafe_rows].float(), x[benign_rows].float(), l2=l2)
        s = x @ w.double()
        return auroc(s[test_u], s[test_b])

    rng = np.random.default_rng(seed)
    curve = {}
    for fraction in fractions:
        picks = [
            (rng.choice(train_u, max(2, round(len(train_u) * fraction)), replace=False).tolist(),
             rng.choice(train_b, max(2, round(len(train_b) * fraction)), replace=False).tolist())
            for _ in range(draws if fraction < 1 else 1)
        ]  # fmt: skip
        curve[fraction] = float(np.mean([score(u, b, max(l2s)) for u, b in picks]))
    return {
        "trained_on": {"read as unsafe": len(train_u), "read as benign": len(train_b)},
        "scored_on": {"read as unsafe": len(test_u), "read as benign": len(test_b)},
        "auroc_by_l2": {l2: score(train_u, train_b, l2) for l2 in l2s},
        "curve": curve,
    }


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
    labels: list[dict] = (),
):
    """The default source-gate build of ``gate_recall.prepare``, given one half's I2P prompts as
    ``source_gate_prompts`` (the library's path, ``safesteer build --source-gate-prompts``); ``extra_benign``
    joins the supplied benign prompts. ``which="text"`` supplies the half's labelled rows by their text-only
    labels (:func:`text_supplied_rows`) instead of I2P's own."""
    from gate_recall import CPU_CALL_KWARGS, build_anchors, split_pairs

    from safesteer_diffusers.build.driver import BuildConfig, build_pack
    from safesteer_diffusers.build.prompts.embedded import load_anchors, load_pairs
    from safesteer_diffusers.testing.real_models import real_sana_pipeline

    start = HALVES.index(half)
    if which == "text":
        chosen, calm, categories = text_supplied_rows(labels, half)
    else:
        chosen = supplied_rows(rows, which, half)
        categories = [rows[i]["categories"] for i in chosen]
        calm = (
            [i for i in range(start, len(rows), 2) if rows[i]["inappropriate"] == 0]
            if benign == "zero"
            else []
        )
    unsafe_texts = {rows[i]["prompt"] for i in chosen}
    supplied = GatePrompts(
        tuple(rows[i]["prompt"] for i in chosen),
        tuple(tuple(c) for c in categories),
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
    if any(gate["read_as_text"] for gate in results["gates"].values()):
        agreement = results["text_labels"]
        print(
            f"\nI2P rows read as text ({agreement['rows']} labelled: {agreement['counts']}; I2P 'hard' among them "
            f"{agreement['hard_counts']}; two annotators on {agreement['both_annotators']} rows agree "
            f"{agreement['agreement']:.2f}, kappa {agreement['kappa']:.2f}). Fire rate at the 1% point of our "
            "held-out benign [95% CI] / at the 5% point:"
        )
        for label, gate in results["gates"].items():
            cells = ", ".join(
                f"{subset} [{v['n']}] {v['at_1pct']:.2f} [{v['ci_1pct'][0]:.2f}, {v['ci_1pct'][1]:.2f}] / "
                f"{v['at_5pct']:.2f}"
                if isinstance(v, dict) and "n" in v
                else f"{subset} {v:.3f}"
                for subset, v in gate["read_as_text"].items()
                if subset != "joint benign set"
            )
            print(f"  {label}: {cells}")
    print(
        "  One benign set, ours and I2P's rows read as benign: recall of ours / of I2P's rows read as unsafe at "
        "its 1% and 5% points:"
    )
    for label, gate in results["gates"].items():
        joint = gate["read_as_text"].get("joint benign set")
        if joint:
            print(f"  {label}: " + "; ".join(
                f"{fpr:.0%}: {v['own']:.2f} / {v['i2p_read_unsafe']:.2f}" for fpr, v in joint.items()
            ))  # fmt: skip
    for label, ref in results.get("in_register_reference", {}).items():
        print(reference_line(label, ref))
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

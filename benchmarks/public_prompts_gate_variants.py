"""Source-gate variants measured on I2P that did not replace the default (follows ``public_prompts_gate.py``).

The default source-model gate (SmolLM2-135M-Instruct, chat turns, one linear head fitted on the pairs) catches
0.96 of our held-out unsafe prompts but only 0.45 of I2P's at 1% benign FPR (docs/method.md 6.5.3). This
script asks whether scoring, training data or a non-linear classifier close that gap *without* I2P data, and
whether routing the supplied-prompt head keeps our own recall. Every variant is fitted on the default build's
gate inputs (the pairs and every build anchor, read as the build reads them: same cache entries) and measured
as ``public_prompts_gate.py`` measures: the 1% (and 5%) point of ``gate_recall.py``'s held-out benign prompts
of the issue's kinds; our held-out unsafe prompts; the odd-numbered I2P prompts.

Variants:

- **whole prompt**: the default head (refitted here; the script checks it equals the pack's head).
- **clause max**: the largest of the whole prompt's score and each clause's (split on ``, ; | .`` and newlines;
  each clause read alone by the source model). I2P prompts are a subject followed by style tags; a clause
  read alone is in the register of our training prompts.
- **style-balanced augmentation** (only with ``--style-lists``): every pair gets a copy with the *same* random
  lexica-style suffix on both members (artists, mediums, flavours from clip-interrogator's MIT-licensed word
  lists, unsafe words filtered out), so the style is on both sides of the contrast; optionally 1,000 anchors
  with suffixes too.
- **non-linear**: a one-hidden-layer MLP (256 units) and a k-nearest-neighbour score (mean cosine of the 5
  nearest unsafe minus the 5 nearest benign training prompts), on the same standardised features.
- **supplied heads, routed**: the build given the even-numbered hard I2P prompts (as ``public_prompts_gate.py``)
  uses its second head only for prompts of at least 2 clauses.

With the shipped text-only labels of sampled I2P rows (``--text-labels``, see ``public_prompts_gate.py``), each
variant is also measured on the odd-half rows whose words read as unsafe and as benign, with the AUROC between
them.

Usage::

    python benchmarks/public_prompts_gate_variants.py --i2p path/to/i2p_benchmark.csv \\
        [--style-lists path/to/clip_interrogator/data] --json variants.json
    # The clauses (14,300 unique) take ~10 min through SmolLM2 once, cached; the augmented prompts ~2 min.
    # clip-interrogator's word lists: `pip download clip-interrogator==0.6.0 --no-deps`, unzip, data/.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from gate_recall import REWRITES, build_anchors, prepare, source_gate_features, split_pairs  # noqa: E402
from public_prompts_gate import (  # noqa: E402
    cached_source_features,
    parse_with_gate_recall,
    read_i2p,
    supplied_build,
    text_label_masks,
    text_labels_of,
)

from safesteer_diffusers.build.contrast import ContrastPrompts  # noqa: E402
from safesteer_diffusers.build.directions import auroc  # noqa: E402
from safesteer_diffusers.build.driver import BuildConfig  # noqa: E402
from safesteer_diffusers.build.feature_cache import FeatureCache, default_cache_dir, source_key  # noqa: E402
from safesteer_diffusers.build.gate_probe import negative_weights, source_gate_vectors  # noqa: E402
from safesteer_diffusers.build.prompts.embedded import load_anchors, load_pairs  # noqa: E402
from safesteer_diffusers.build.source_gate_fit import GateReader  # noqa: E402
from safesteer_diffusers.steering.maths import source_gate_scores  # noqa: E402
from safesteer_diffusers.testing.real_models import load_real_model  # noqa: E402

CLAUSE_SPLIT = re.compile(r"[,;|.\n]+")
MIN_CLAUSE_CHARS = 3
STYLED_BENIGN = 1000
"""Benign caption subjects with a style suffix, given to the supplied head as negatives (``--style-lists``)."""
UNSAFE_STYLE_WORDS = re.compile(
    r"(nud|naked|nsfw|sex|erot|porn|breast|nipple|boob|butt|ass\b|gore|gory|blood|bleed|violen|kill|murder|dead|"
    r"death|die\b|dying|corpse|skull|skelet|horror|horrif|creep|disturb|scar(y|ed)|terrif|demon|devil|satan|"
    r"hell\b|weapon|gun|rifle|sword|knife|blade|war\b|warfare|battle|soldier|army|bomb|explo|fire\b|burn|drug|"
    r"cocaine|weed|smok|suicid|self.harm|cut\b|wound|injur|tortur|terror|nazi|hitler|hentai|bikini|lingerie|"
    r"underwear|sensual|seduc|provocat|lewd|fetish|bdsm|bondage|grotesque|macabre|zombie|monster|gruesome|vomit|"
    r"puk|tentacle|genital|penis|vagina|hate|racis|slave|prison|arrest|crime|criminal|gang|riot|protest|abuse|"
    r"pain|agony|scream|cry|tears|sad|depress|lonely|anxiety|dark\b|evil|sinister|occult|cult\b|ritual|witch|"
    r"curse|ghost|haunt|mutil|decapit|dismember|flesh|gut|organ|vein|insect|spider|worm|rot|decay|body horror|"
    r"alien|infect|disease|plague|sick|toxic|poison|beksinski|giger|bacon|goya|bosch|junji|ito\b|gacy)",
    re.I,
)
"""Style words left out of the suffixes: the suffixes must be benign, so that only the pair decides the label."""


def clauses(prompt: str) -> list[str]:
    """The prompt's clauses: split on ``, ; | .`` and newlines, stripped, at least 3 characters."""
    return [c.strip() for c in CLAUSE_SPLIT.split(prompt) if len(c.strip()) >= MIN_CLAUSE_CHARS]


def clause_max(prompts: list[str], whole: np.ndarray, clause_score: dict[str, float]) -> np.ndarray:
    """Each prompt's largest score: its whole-prompt score or any of its clauses' (``clause_score``)."""
    out = np.asarray(whole, dtype=float).copy()
    for i, prompt in enumerate(prompts):
        for clause in clauses(prompt):
            out[i] = max(out[i], clause_score[clause])
    return out


class StyleSuffixes:
    """Random lexica-register style suffixes ("by A and B, flavour, flavour") from clip-interrogator's word
    lists (``artists.txt``, ``mediums.txt``, ``flavors.txt``), without :data:`UNSAFE_STYLE_WORDS`."""

    def __init__(self, folder: Path, seed: int = 0):
        def words(name: str, top: int | None = None) -> list[str]:
            path = Path(folder) / name
            if not path.is_file():
                raise SystemExit(
                    f"--style-lists: {path} not found (clip-interrogator's data folder holds it)"
                )
            lines = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
            return [w for w in (lines[:top] if top else lines) if not UNSAFE_STYLE_WORDS.search(w)]

        self.flavors, self.artists, self.mediums = (
            words("flavors.txt", 3000),
            words("artists.txt"),
            words("mediums.txt"),
        )
        self.rng = random.Random(seed)

    def __call__(self) -> str:
        rng, parts = self.rng, []
        if rng.random() < 0.4:
            parts.append(rng.choice(self.mediums))
        names = rng.sample(self.artists, rng.choice([1, 1, 2, 3]))
        parts.append(("by " if rng.random() < 0.6 else "in the style of ") + " and ".join(names))
        parts += rng.sample(self.flavors[:400], rng.randint(1, 3)) + rng.sample(
            self.flavors, rng.randint(0, 2)
        )
        return ", ".join(parts)


def knn_scores(z: torch.Tensor, positive: torch.Tensor, negative: torch.Tensor, k: int = 5) -> np.ndarray:
    """Mean cosine to the ``k`` nearest positives minus mean cosine to the ``k`` nearest negatives."""
    unit = torch.nn.functional.normalize
    z, positive, negative = (
        unit(z.double(), dim=1),
        unit(positive.double(), dim=1),
        unit(negative.double(), dim=1),
    )
    near = (z @ positive.T).topk(k, dim=1).values.mean(1) - (z @ negative.T).topk(k, dim=1).values.mean(1)
    return near.numpy()


def fit_mlp(positive, negative, negative_weight, hidden=256, weight_decay=1e-2, epochs=300, seed=0):
    """A one-hidden-layer MLP on standardised features, the gate's class weights (full batch, AdamW)."""
    torch.manual_seed(seed)
    net = torch.nn.Sequential(
        torch.nn.Linear(positive.shape[1], hidden), torch.nn.GELU(), torch.nn.Linear(hidden, 1)
    )
    optimiser = torch.optim.AdamW(net.parameters(), lr=1e-3, weight_decay=weight_decay)
    x = torch.cat([positive, negative]).float()
    y = torch.cat([torch.ones(len(positive)), torch.zeros(len(negative))])
    w = torch.cat(
        [
            torch.full((len(positive),), 0.5 / len(positive)),
            (0.5 * negative_weight / negative_weight.sum()).float(),
        ]
    )
    for _ in range(epochs):
        optimiser.zero_grad()
        losses = torch.nn.functional.binary_cross_entropy_with_logits(net(x).squeeze(1), y, reduction="none")
        (w * losses).sum().backward()
        optimiser.step()
    return lambda z: net(z.float()).squeeze(1).detach().double().numpy()


def measure(
    held: np.ndarray,
    i2p: np.ndarray,
    groups: dict,
    rows: list[dict],
    odd: np.ndarray,
    text: dict | None = None,
) -> dict:
    """Recall at the 1% and 5% points of the held-out benign prompts of the issue's kinds: ours (all, evasive,
    worst category) and the odd-half I2P prompts (all, hard, per category); with ``text`` (masks of
    ``public_prompts_gate.text_label_masks``) also the labelled I2P rows that read as unsafe and as benign, and
    the AUROC between them."""
    benign = [i for kind, idx in groups["benign"].items() if kind != REWRITES for i in idx]
    out = {}
    if text:
        unsafe, calm = (
            torch.as_tensor(i2p[text["read as unsafe"]]),
            torch.as_tensor(i2p[text["read as benign"]]),
        )
        out["auroc_read_unsafe_vs_benign"] = auroc(unsafe, calm)
    for fpr in (0.01, 0.05):
        t = float(np.quantile(held[benign], 1 - fpr, method="higher"))
        own = {c: float(np.mean(held[idx] > t)) for c, idx in groups["unsafe"].items()}
        categories = sorted({c for r in rows for c in r["categories"]})
        hard = odd & np.array([r["hard"] for r in rows])
        labelled = {c: np.array([c in r["categories"] for r in rows]) for c in categories}
        i2p_cat = {c: float(np.mean(i2p[odd & mask] > t)) for c, mask in labelled.items()}
        i2p_hard_cat = {c: float(np.mean(i2p[hard & mask] > t)) for c, mask in labelled.items()}
        out[fpr] = {
            "own": own["all"],
            "own_evasive": own["style: evasive (written)"],
            "own_worst_category": min(v for c, v in own.items() if c != "all" and not c.startswith("style")),
            "i2p_odd_all": float(np.mean(i2p[odd] > t)),
            "i2p_odd_hard": float(np.mean(i2p[hard] > t)),
            "i2p_odd_categories": i2p_cat,
            "i2p_odd_hard_categories": i2p_hard_cat,
        }
        if text:
            out[fpr]["i2p_read_unsafe"] = float(np.mean(i2p[text["read as unsafe"]] > t))
            out[fpr]["i2p_read_benign"] = float(np.mean(i2p[text["read as benign"]] > t))
    return out


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--i2p", type=Path, required=True, help="I2P's i2p_benchmark.csv (AIML-TUDA/i2p)")
    parser.add_argument("--style-lists", type=Path, default=None, help="clip-interrogator's data folder")
    mine, args = parse_with_gate_recall(parser, argv)
    start = time.perf_counter()
    rows = read_i2p(mine.i2p)
    texts = [r["prompt"] for r in rows]
    odd = np.arange(len(rows)) % 2 == 1
    labels = text_labels_of(mine, rows)
    # The measured (odd) half's labelled rows only; the even half's may train a supplied build.
    text = {k: m & odd for k, m in text_label_masks(labels, len(rows)).items()} if labels else None
    prompts, groups, src, _tgt, packs, _lib = prepare(args)
    pack = packs["transferred svd, source gate"]
    info = pack.metadata["source_gate"]
    layer = int(info["layer"])
    model, tokenizer, source = load_real_model("smollm2")
    cache = FeatureCache(default_cache_dir())
    revision = f"sha256:{source['sha256']}"
    config = BuildConfig(align="svd", source_gate=True, batch_size=args.batch_size)
    reader = GateReader(model, tokenizer, layer, True, config, cache,
                        source_key(source["model_id"], revision, "mean"), False)  # fmt: skip

    # The default build's gate inputs, read from the same cache entries as the build.
    train, _ = split_pairs(load_pairs(), args.test_fraction, None)
    contrast = ContrastPrompts.from_pairs([(p.safe, p.unsafe, p.category) for p in train])
    anchor_set = build_anchors(load_anchors(), "all", args.benign)
    anchors = list(anchor_set.prompts)
    pairs_f, anchors_f = reader.features(contrast.prompts).double(), reader.features(anchors).double()
    n = len(contrast.safe)
    unsafe_rows, benign_rows = {"global": list(range(n, 2 * n))}, list(range(n))
    weight = source_gate_vectors(pairs_f, unsafe_rows, benign_rows, anchors_f)[0]["global"].double()
    if not torch.allclose(weight, pack.source_gate_heads("global")[0][0].double(), atol=1e-4):
        raise SystemExit("the refitted head is not the pack's: the inputs differ from the build's")

    read = (model, tokenizer, source, layer, True)
    i2p_f = cached_source_features(cache, *read, texts, "bench_public_prompts").double()
    held_f = source_gate_features(pack, src, prompts).double()
    results: dict = {"variants": {}}

    def add(name: str, score) -> None:
        results["variants"][name] = measure(
            score(held_f, prompts), score(i2p_f, texts), groups, rows, odd, text
        )
        print(f"  measured: {name}", flush=True)

    linear = lambda w: lambda f, _texts: (f @ w).numpy()  # noqa: E731
    add("whole prompt (default)", linear(weight))

    unique = sorted({c for t in prompts + texts for c in clauses(t)})
    tick = time.perf_counter()
    clause_f = cached_source_features(cache, *read, unique, "bench_gate_clauses", batch_size=64).double()
    print(f"{len(unique)} clauses read in {time.perf_counter() - tick:.0f} s", flush=True)
    by_clause = dict(zip(unique, (clause_f @ weight).tolist(), strict=True))
    add("clause max", lambda f, t: clause_max(t, (f @ weight).numpy(), by_clause))

    if mine.style_lists is not None:
        suffix = StyleSuffixes(mine.style_lists)
        tails = [suffix() for _ in range(n)]
        safe_aug = reader.features([f"{s}, {x}" for s, x in zip(contrast.safe, tails, strict=True)]).double()
        unsafe_aug = reader.features(
            [f"{u}, {x}" for u, x in zip(contrast.unsafe, tails, strict=True)]
        ).double()
        picked = suffix.rng.sample(range(len(anchors)), 1000)
        anchors_aug = reader.features([f"{anchors[i]}, {suffix()}" for i in picked]).double()
        feats = torch.cat([pairs_f[:n], safe_aug, pairs_f[n:], unsafe_aug])
        rows_aug = {"global": list(range(2 * n, 4 * n))}
        for label, more in (
            ("", anchors_f),
            (" + 1,000 anchors with suffixes", torch.cat([anchors_f, anchors_aug])),
        ):
            w = source_gate_vectors(feats, rows_aug, list(range(2 * n)), more)[0]["global"].double()
            add(f"style-balanced augmentation of the pairs{label}", linear(w))

    negatives = torch.cat([pairs_f[:n], anchors_f])
    mean, std = negatives.mean(0), negatives.std(0).clamp_min(1e-6)
    z = lambda f: (f - mean) / std  # noqa: E731
    mlp = fit_mlp(z(pairs_f[n:]), z(negatives), negative_weights(n, len(anchors_f)))
    add("MLP, 256 hidden units", lambda f, _t: mlp(z(f)))
    add("5 nearest neighbours", lambda f, _t: knn_scores(z(f), z(pairs_f[n:]), z(negatives)))

    if mine.style_lists is not None:
        # Benign prompts in a painter's style, the kind the supplied head fires on among our benign prompts.
        suffix = StyleSuffixes(mine.style_lists, seed=1)
        subjects = [
            a.rstrip(".") for a, kind in zip(anchors, anchor_set.kinds, strict=True) if kind == "caption"
        ]
        styled = tuple(f"{suffix.rng.choice(subjects)}, {suffix()}" for _ in range(STYLED_BENIGN))
        extra = supplied_build(rows, "hard", "zero", args, source, extra_benign=styled)
        heads2, biases2, _ = extra.source_gate_heads("global")
        add(
            f"supplied heads + {STYLED_BENIGN} benign prompts in a painter's style as negatives",
            lambda f, _t: source_gate_scores(f, heads2, biases2).numpy(),
        )
    supplied = supplied_build(rows, "hard", "zero", args, source)
    heads, biases, _ = supplied.source_gate_heads("global")
    union = lambda f, _t: source_gate_scores(f, heads, biases).numpy()  # noqa: E731
    add("supplied heads (public_prompts_gate.py)", union)
    for least in (2, 4):

        def routed(f, t, least=least):
            first = (f @ heads[0].double()).numpy()
            return np.where(np.array([len(clauses(p)) >= least for p in t]), union(f, t), first)

        add(f"supplied heads, second head only for prompts of >= {least} clauses", routed)
    held = union(held_f, prompts)
    benign = [i for kind, idx in groups["benign"].items() if kind != REWRITES for i in idx]
    results["supplied_top_benign"] = [prompts[i] for i in sorted(benign, key=lambda i: -held[i])[:5]]

    print_table(results)
    results["runtime_s"] = time.perf_counter() - start
    print(f"\nruntime {results['runtime_s']:.0f} s")
    if mine.json:
        Path(mine.json).write_text(json.dumps(results, indent=1))
    return results


def print_table(results: dict) -> None:
    print("\nRecall at 1% (5%) of the held-out benign prompts of the issue's kinds:")
    print(
        "| variant | ours | evasive | worst own category | I2P odd all | hard | worst I2P category (all / hard) "
        "| I2P read as unsafe / as benign | AUROC between them |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for name, r in results["variants"].items():
        one, five = r[0.01], r[0.05]
        worst = min(one["i2p_odd_categories"].items(), key=lambda kv: kv[1])
        worst_hard = min(one["i2p_odd_hard_categories"].items(), key=lambda kv: kv[1])
        read = (f"{one['i2p_read_unsafe']:.2f} / {one['i2p_read_benign']:.2f} | "
                f"{r['auroc_read_unsafe_vs_benign']:.3f}") if "i2p_read_unsafe" in one else "- | -"  # fmt: skip
        print(f"| {name} | {one['own']:.2f} ({five['own']:.2f}) | {one['own_evasive']:.2f} | "
              f"{one['own_worst_category']:.2f} | {one['i2p_odd_all']:.2f} ({five['i2p_odd_all']:.2f}) | "
              f"{one['i2p_odd_hard']:.2f} | {worst[0]} {worst[1]:.2f} / {worst_hard[0]} {worst_hard[1]:.2f} | "
              f"{read} |")  # fmt: skip
    print("\nThe benign prompts the supplied heads score highest:")
    for prompt in results["supplied_top_benign"]:
        print(f"  {prompt}")


if __name__ == "__main__":
    main()

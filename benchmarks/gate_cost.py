"""What the gates cost per prompt, beside what the pipeline spends anyway (real models, CPU).

Measured on the real-LLM stand-in of docs/method.md 6.4 (a Sana pipeline whose text encoder is the real
Gemma-3 270M; DiT and VAE tiny and random) with SmolLM2-135M as the source model:

- ``encode``: the pipeline's own prompt encoding (``encode_prompt``, the Gemma-3 forward): paid by every call;
- ``denoiser step``: one step of the pipeline's DiT (tiny and random here: a real DiT costs far more, so every
  ratio to it is an upper bound on the gate's share);
- ``probe gate``: the target-space gate (one dot product per direction on the pooled states, inside a wrapped
  call: measured as the wrapped encode minus the unwrapped one);
- ``source gate``: the source-model gate (SmolLM2 reads the prompt; ``SourceGate.scores``).

Each number is the median of ``--repeats`` single-prompt timings after a warm-up, one process, one thread
count. Prints the table and the ratios; docs/benchmarks.md carries it with this command::

    python benchmarks/gate_cost.py            # ~2 min on 2 cores (models cached)
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from real_llm_transfer import split_pairs  # noqa: E402

from safesteer_diffusers import SafeSteer  # noqa: E402
from safesteer_diffusers.build.driver import BuildConfig, build_pack  # noqa: E402
from safesteer_diffusers.build.feature_cache import FeatureCache, default_cache_dir  # noqa: E402
from safesteer_diffusers.build.prompts.embedded import load_anchors, load_pairs  # noqa: E402
from safesteer_diffusers.build.target_statistics import BenignPrompts  # noqa: E402
from safesteer_diffusers.pipelines.source_gate import SourceGate  # noqa: E402
from safesteer_diffusers.testing.real_models import (  # noqa: E402
    CPU_CALL_KWARGS,
    FAST_CALL_KWARGS,
    load_real_model,
    real_sana_pipeline,
)

PROMPT = "a knight in silver armor on a cliff at dawn, oil painting, dramatic light"


def median_seconds(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--anchors", type=int, default=1024, help="anchors of the (cached) build")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    model, tokenizer, source = load_real_model("smollm2")
    pipe, target = real_sana_pipeline("gemma3")
    pack = build_pack(
        model, tokenizer, pipe, pairs=split_pairs(load_pairs(), 0.3, None)[0],  # the benchmarks' training split
        anchors=BenignPrompts(tuple(load_anchors()[: args.anchors]), f"embedded anchors[:{args.anchors}]"),
        config=BuildConfig(source_gate=True, call_kwargs=dict(CPU_CALL_KWARGS)),
        source_id=source["model_id"], source_revision=f"sha256:{source['sha256']}", target_id=target["target_id"],
        cache=FeatureCache(default_cache_dir()), progress=False,
    ).pack  # fmt: skip
    encode_kwargs = {"prompt": PROMPT, **CPU_CALL_KWARGS}

    def encode():
        with torch.no_grad():
            pipe.encode_prompt(**encode_kwargs, do_classifier_free_guidance=False)

    def call():
        with torch.no_grad():
            pipe(prompt=PROMPT, **FAST_CALL_KWARGS, **CPU_CALL_KWARGS)

    results = {"encode": median_seconds(encode, args.repeats)}
    results["one-step call"] = median_seconds(call, args.repeats)
    results["denoiser step (tiny DiT; call minus encode)"] = max(
        results["one-step call"] - results["encode"], 0.0
    )
    gate = SourceGate(pack, model, tokenizer)
    results["source gate"] = median_seconds(lambda: gate.scores([PROMPT]), args.repeats)
    wrapped = SafeSteer.wrap(pipe, pack, strength=3.0, gate=True)
    try:
        gated_call = median_seconds(call, args.repeats)
    finally:
        SafeSteer.unwrap(wrapped)
    results["probe gate + steering (wrapped call minus call)"] = gated_call - results["one-step call"]
    print(f"\nPer prompt, median of {args.repeats} (torch threads {args.threads}):")
    for name, seconds in results.items():
        print(f"  {name:50s} {seconds * 1e3:9.2f} ms   {seconds / results['encode']:6.3f}x encode")
    return results


if __name__ == "__main__":
    main()

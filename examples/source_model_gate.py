"""The source-model gate: the pack's source language model reads each prompt and decides what gets steered.

Real models (a pack built with `safesteer build ... --source-gate`, and its source model):

    python examples/source_model_gate.py --model black-forest-labs/FLUX.1-schnell \
        --pack packs/flux-from-llama --source meta-llama/Llama-3.1-8B-Instruct --device cuda

`SafeSteer.wrap(pipe, pack, gate=True, gate_model=(model, tokenizer))` scores every positive prompt with the
source model (as a chat turn when the pack's source has a chat template) and steers the directions whose score
passes the pack's benign-calibrated threshold; the other prompts reach the generator bit-for-bit unchanged.
It is the strongest gate measured (docs/method.md 6.5.2: 96% of held-out unsafe prompts at a 1% benign
false-positive rate on SmolLM2-135M), at the cost of one source-model forward per prompt. The report says
which prompts fired and with what `source_model` score. A call that passes only `prompt_embeds` raises
`SteeringNotApplied`: without the text, nothing can be decided.

--tiny builds a pack with a source gate from a tiny random Llama (chat tokenizer) for the demo's tiny SD
pipeline, in code, then runs the same wrap (CPU, seconds; the gate's decisions mean nothing with random weights).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from safesteer_diffusers import SafeSteer

PROMPTS = [
    "a lighthouse on a cliff at dawn, oil painting",
    "a crowd attacking a shop owner with sticks, blood on the pavement",
]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="black-forest-labs/FLUX.1-schnell", help="diffusers model id")
    parser.add_argument("--pack", default=None, help="a pack built with --source-gate (folder or file)")
    parser.add_argument("--source", default=None, help="the pack's source model (Hub id, folder or .gguf)")
    parser.add_argument("--prompts", nargs="+", default=PROMPTS)
    parser.add_argument("--strength", type=float, default=3.0)
    parser.add_argument("--gate-fpr", type=float, default=None, help="a stored benign false-positive rate")
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dtype", default="bfloat16", choices=["float32", "float16", "bfloat16"])
    parser.add_argument("--out", default="examples-output/source-gate")
    parser.add_argument("--tiny", action="store_true", help="tiny models built in code (CPU, seconds)")
    return parser.parse_args(argv)


def tiny_setup():
    """The demo's tiny SD pipeline, a tiny source LM, and a pack with a source gate built between them."""
    from safesteer_diffusers.build.driver import BuildConfig, build_pack
    from safesteer_diffusers.build.prompts.embedded import load_anchors, load_pairs
    from safesteer_diffusers.build.target_statistics import BenignPrompts
    from safesteer_diffusers.testing import tiny_pipeline, tiny_source

    pipe, call_kwargs = tiny_pipeline("sd")
    model, tokenizer, source_id = tiny_source()
    pairs = [p for c in ("violence", "sexual") for p in load_pairs(c)[:8]]
    anchors = BenignPrompts(tuple(load_anchors()[:48]), "embedded anchors[:48]")
    config = BuildConfig(align="ridge", source_gate=True, gate_quantile=0.9)
    pack = build_pack(
        model,
        tokenizer,
        pipe,
        pairs=pairs,
        anchors=anchors,
        config=config,
        source_id=source_id,
        progress=False,
    ).pack
    return pipe, call_kwargs, pack, (model, tokenizer)


def real_setup(args: argparse.Namespace):
    """The pack first (it must carry a source gate), then the source model, then the generator."""
    from diffusers import DiffusionPipeline

    from safesteer_diffusers import DirectionPack
    from safesteer_diffusers.build.model_loading import load_source

    if not args.pack or not args.source:
        raise ValueError(
            "--pack and --source are required: a pack built with `safesteer build ... --source-gate` and the "
            "source model it was built from (or use --tiny)."
        )
    pack = DirectionPack.from_pretrained(args.pack)
    if not pack.has_source_gate:
        raise ValueError(
            f"{args.pack} carries no source-model gate; rebuild it with `safesteer build --source-gate`."
        )
    gate_model = load_source(args.source, device=args.device)
    dtype = getattr(torch, args.dtype)
    pipe = DiffusionPipeline.from_pretrained(args.model, torch_dtype=dtype).to(args.device)
    call_kwargs = {"num_inference_steps": args.steps, "height": args.size, "width": args.size}
    return pipe, call_kwargs, pack, gate_model


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    try:
        pipe, call_kwargs, pack, gate_model = tiny_setup() if args.tiny else real_setup(args)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    reads = "as chat turns" if pack.metadata["source_gate"]["chat_template"] else "as written"
    print(f"pack: {pack}; its source gate reads prompts {reads}")
    pipe = SafeSteer.wrap(
        pipe, pack, strength=args.strength, gate=True, gate_model=gate_model, gate_fpr=args.gate_fpr
    )
    try:
        pipe(args.prompts, generator=torch.Generator().manual_seed(0), **call_kwargs)
        report = pipe.safety_report
        print(report)
        for row in report.prompts:
            decision = next(d for d in row.directions if d.name == "global")
            print(
                f"row {row.row}: source_model score {decision.scores['source_model']:+.3f} vs threshold "
                f"{decision.thresholds['source_model']:+.3f} -> {'steered' if row.steered else 'left unchanged'}"
            )
        (out / "report.json").write_text(json.dumps(report.to_dict(), indent=2), encoding="utf-8")
        print(f"wrote {out / 'report.json'}")
    finally:
        SafeSteer.unwrap(pipe)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

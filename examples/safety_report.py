"""The per-call safety report: which directions fired for which prompt, with scores, thresholds, strengths.

Real model (GPU):

    python examples/safety_report.py --model black-forest-labs/FLUX.1-schnell --gate --device cuda

After every call `pipe.safety_report` holds a `SteeringReport`: one row per positive prompt (per image),
each direction's score on each text space, the gate threshold it was compared with, whether it fired and the
strength applied. It prints as a table and serialises with `.to_dict()` (written to report.json here).
--tiny uses the demo's tiny SD pipeline built in code and the pack shipped for it in
pretrained_directions/ (found by `SafeSteer.wrap(pipe)` without a pack argument).
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
    parser.add_argument(
        "--pack",
        default=None,
        help="pack folder, file, or pinned Hub pack org/name@<commit>#<sha256> (default: the model's default)",
    )
    parser.add_argument("--prompts", nargs="+", default=PROMPTS)
    parser.add_argument("--strength", type=float, default=3.0)
    parser.add_argument("--gate", action="store_true", help="steer only the prompts whose gate fires")
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dtype", default="bfloat16", choices=["float32", "float16", "bfloat16"])
    parser.add_argument("--out", default="examples-output/report")
    parser.add_argument("--tiny", action="store_true", help="the demo's tiny SD pipeline (CPU, seconds)")
    return parser.parse_args(argv)


def pack_first(args: argparse.Namespace):
    """The pack for --model (or --pack), resolved before the generator's weights are loaded.

    No pack is published for real generators yet: the error then says what building one takes, and nothing
    large has been downloaded.
    """
    from safesteer_diffusers.packs.catalogue import load_pack_for

    return load_pack_for(args.model, args.pack)


def load(args: argparse.Namespace, pack=None):
    if args.tiny:
        from safesteer_diffusers.testing import tiny_pipeline

        pipe, call_kwargs = tiny_pipeline("sd")  # model id safesteer/tiny-sd-demo: a default pack is shipped
        return pipe, args.pack, call_kwargs
    from diffusers import DiffusionPipeline

    pipe = DiffusionPipeline.from_pretrained(args.model, torch_dtype=getattr(torch, args.dtype)).to(
        args.device
    )
    return pipe, pack, {"num_inference_steps": args.steps, "height": args.size, "width": args.size}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    try:
        pack = None if args.tiny else pack_first(args)  # before any weights load
    except ValueError as error:  # no pack for this model (none is published yet for real generators)
        print(f"error: {error}", file=sys.stderr)
        return 2
    pipe, pack, call_kwargs = load(args, pack)
    pipe = SafeSteer.wrap(pipe, pack, strength=args.strength, gate=args.gate)
    print(f"pack: {pipe.safety_pack}")
    pipe(args.prompts, generator=torch.Generator().manual_seed(0), **call_kwargs)
    report = pipe.safety_report
    print(report)
    for row in report.prompts:
        print(f"row {row.row}: fired={row.fired}")
    (out / "report.json").write_text(json.dumps(report.to_dict(), indent=2), encoding="utf-8")
    print(f"wrote {out / 'report.json'}")
    SafeSteer.unwrap(pipe)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

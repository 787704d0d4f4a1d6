"""Per-category strengths: a strength for each I2P category direction, optionally gated per prompt.

Real model (GPU):

    python examples/per_category_strengths.py --model stabilityai/stable-diffusion-xl-base-1.0 \
        --strength 1 --categories sexual=4 violence=3 --gate --device cuda

Each direction of the pack (global + hate, harassment, violence, self-harm, sexual, shocking, illegal activity)
has its own strength. With --gate, a direction is applied to a prompt only when the prompt's score on it
passes the pack's threshold (calibrated on benign prompts), so each prompt gets the categories it needs and
benign prompts pass through unchanged. The report printed after each call says what fired.
--tiny runs the same code on an SDXL-layout pipeline built in code (CPU, seconds; images are noise).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from safesteer_diffusers import SafeSteer

PROMPTS = [
    "a family having a picnic in a sunny park",
    "a gang beating a man with baseball bats in a parking lot",
    "a man selling stolen guns from the trunk of his car",
]


def category_strength(text: str) -> tuple[str, float]:
    name, sep, value = text.rpartition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"expected CATEGORY=STRENGTH, got {text!r}")
    return name, float(value)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--model", default="stabilityai/stable-diffusion-xl-base-1.0", help="diffusers model id"
    )
    parser.add_argument(
        "--pack",
        default=None,
        help="pack folder, file, or pinned Hub pack org/name@<commit>#<sha256> (default: the model's default)",
    )
    parser.add_argument("--prompts", nargs="+", default=PROMPTS)
    parser.add_argument("--strength", type=float, default=1.0, help="global direction strength")
    parser.add_argument(
        "--categories",
        nargs="+",
        type=category_strength,
        default=[("violence", 3.0), ("illegal activity", 3.0), ("sexual", 4.0)],
        metavar="CATEGORY=STRENGTH",
        help='per-category strengths, e.g. sexual=4 "illegal activity=3"',
    )
    parser.add_argument("--gate", action="store_true", help="apply each direction only where its gate fires")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dtype", default="float16", choices=["float32", "float16", "bfloat16"])
    parser.add_argument("--out", default="examples-output/per-category")
    parser.add_argument("--tiny", action="store_true", help="tiny pipeline built in code (CPU, seconds)")
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
        from safesteer_diffusers.testing import tiny_pack, tiny_pipeline

        pipe, call_kwargs = tiny_pipeline("sdxl")
        return pipe, args.pack or tiny_pack(pipe), call_kwargs
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
    categories = dict(args.categories)
    pipe = SafeSteer.wrap(pipe, pack, strength=args.strength, categories=categories, gate=args.gate)
    print(f"pack categories: {pipe.safety_pack.categories}")
    print(f"strengths: global={args.strength:g}, " + ", ".join(f"{k}={v:g}" for k, v in categories.items()))
    for index, prompt in enumerate(args.prompts):
        image = pipe(prompt, generator=torch.Generator().manual_seed(args.seed), **call_kwargs).images[0]
        image.save(out / f"prompt_{index}.png")
        row = pipe.safety_report.prompts[0]
        print(f"{prompt!r}: {'steered by ' + ', '.join(row.fired) if row.steered else 'untouched'}")
    # Strengths can change between calls without re-wrapping (categories not named get 0):
    pipe.set_safety_strength(args.strength, categories={name: 0.0 for name in categories})
    print(f"wrote {len(args.prompts)} images to {out}")
    SafeSteer.unwrap(pipe)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

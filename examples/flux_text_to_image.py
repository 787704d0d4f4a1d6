"""Text-to-image with FLUX.1 under safety steering: the same prompt at strength 0 and at strength S.

Real model (GPU; FLUX.1-dev needs `hf auth login` and its licence accepted):

    python examples/flux_text_to_image.py --model black-forest-labs/FLUX.1-schnell --strength 5 --device cuda
    python examples/flux_text_to_image.py --pack path/or/org-repo --prompt "..." --gate

Without --pack, `SafeSteer.wrap(pipe)` uses the registered default pack for the model (see
`safesteer list-packs`). --tiny runs the same code on a FLUX-layout pipeline built in code with random
weights and a pack built on the spot from a tiny source model (CPU, seconds; images are noise).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from safesteer_diffusers import SafeSteer


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--model", default="black-forest-labs/FLUX.1-schnell", help="diffusers FLUX.1 model id"
    )
    parser.add_argument(
        "--pack",
        default=None,
        help="pack folder, file, or pinned Hub pack org/name@<commit>#<sha256> (default: the model's default)",
    )
    parser.add_argument("--prompt", default="a knight fighting a dragon in a burning village, cinematic")
    parser.add_argument("--strength", type=float, default=5.0, help="global strength (paper: 3-5 on Flux)")
    parser.add_argument("--gate", action="store_true", help="steer only if the prompt passes the pack's gate")
    parser.add_argument("--steps", type=int, default=4, help="inference steps (schnell: 4; dev: ~28)")
    parser.add_argument("--size", type=int, default=1024, help="image height and width")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dtype", default="bfloat16", choices=["float32", "float16", "bfloat16"])
    parser.add_argument("--out", default="examples-output/flux", help="output folder")
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
    """The pipeline, the pack (real models: :func:`pack_first`'s) and the call arguments."""
    if args.tiny:
        from safesteer_diffusers.testing import tiny_pack, tiny_pipeline

        pipe, call_kwargs = tiny_pipeline("flux")
        return pipe, args.pack or tiny_pack(pipe), call_kwargs
    from diffusers import FluxPipeline

    pipe = FluxPipeline.from_pretrained(args.model, torch_dtype=getattr(torch, args.dtype)).to(args.device)
    call_kwargs = {"num_inference_steps": args.steps, "height": args.size, "width": args.size}
    if "schnell" in args.model.lower():
        call_kwargs.update(guidance_scale=0.0, max_sequence_length=256)  # the pack recipe encodes with 256
    return pipe, pack, call_kwargs


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
    for strength in (0.0, args.strength):
        pipe.set_safety_strength(strength)
        image = pipe(args.prompt, generator=torch.Generator().manual_seed(args.seed), **call_kwargs).images[0]
        path = out / f"strength_{strength:g}.png"
        image.save(path)
        print(f"wrote {path}")
        print(pipe.safety_report)
    SafeSteer.unwrap(pipe)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

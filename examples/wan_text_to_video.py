"""Text-to-video with Wan 2.x under safety steering; writes an animated GIF per strength.

Real model (GPU, large):

    python examples/wan_text_to_video.py --model Wan-AI/Wan2.2-T2V-A14B-Diffusers --strength 3 --device cuda
    python examples/wan_text_to_video.py --model Wan-AI/Wan2.1-T2V-1.3B-Diffusers --pack path/to/pack

Wan runs classifier-free guidance as two separate passes; only the conditional (positive) pass is steered,
the negative prompt is untouched. Wan 2.2's two experts read the same text states, so one pack steers both.
--tiny runs the same code on a Wan-layout pipeline built in code (CPU, seconds; frames are noise).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from safesteer_diffusers import SafeSteer


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="Wan-AI/Wan2.2-T2V-A14B-Diffusers", help="diffusers Wan model id")
    parser.add_argument(
        "--pack",
        default=None,
        help="pack folder, file, or pinned Hub pack org/name@<commit>#<sha256> (default: the model's default)",
    )
    parser.add_argument(
        "--prompt", default="a riot in a city street, people throwing bottles, police charging"
    )
    parser.add_argument("--negative-prompt", default="blurry, low quality")
    parser.add_argument("--strength", type=float, default=3.0)
    parser.add_argument("--frames", type=int, default=33)
    parser.add_argument("--height", type=int, default=480)
    parser.add_argument("--width", type=int, default=832)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dtype", default="bfloat16", choices=["float32", "float16", "bfloat16"])
    parser.add_argument("--out", default="examples-output/wan")
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

        pipe, call_kwargs = tiny_pipeline("wan")
        return pipe, args.pack or tiny_pack(pipe), call_kwargs
    from diffusers import WanPipeline

    pipe = WanPipeline.from_pretrained(args.model, torch_dtype=getattr(torch, args.dtype)).to(args.device)
    call_kwargs = {
        "num_frames": args.frames,
        "height": args.height,
        "width": args.width,
        "num_inference_steps": args.steps,
    }
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
    pipe = SafeSteer.wrap(pipe, pack, strength=args.strength)
    for strength in (0.0, args.strength):
        pipe.set_safety_strength(strength)
        frames = pipe(
            args.prompt,
            negative_prompt=args.negative_prompt,
            generator=torch.Generator().manual_seed(args.seed),
            output_type="pil",
            **call_kwargs,
        ).frames[0]
        path = out / f"strength_{strength:g}.gif"
        frames[0].save(path, save_all=True, append_images=list(frames[1:]), duration=125, loop=0)
        print(f"wrote {path} ({len(frames)} frames)")
    print(pipe.safety_report)
    SafeSteer.unwrap(pipe)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

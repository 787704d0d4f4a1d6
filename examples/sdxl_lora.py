"""SDXL with a LoRA, steered inside the UNet's cross-attention: the LoRA keeps working under steering.

Real model (GPU):

    python examples/sdxl_lora.py --lora nerijs/pixel-art-xl --lora-weight pixel-art-xl.safetensors \
        --prompt "pixel art, a street fight at night" --strength 3 --device cuda

Steering runs in the conditioning (default) or, with --layers (e.g. `up_blocks` or `all`) and --step-range,
inside the chosen cross-attention layers for part of the schedule; the LoRA's layers are untouched either
way, and `SafeSteer.unwrap` restores every original attention processor. --tiny runs the same code on an
SDXL-layout pipeline built in code with a random LoRA added through peft (CPU, seconds; images are noise).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

from safesteer_diffusers import SafeSteer


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="stabilityai/stable-diffusion-xl-base-1.0", help="SDXL model id")
    parser.add_argument("--lora", default="nerijs/pixel-art-xl", help="LoRA repo id or folder")
    parser.add_argument("--lora-weight", default=None, help="weight file name inside the LoRA repo")
    parser.add_argument("--lora-scale", type=float, default=1.0)
    parser.add_argument(
        "--pack",
        default=None,
        help="pack folder, file, or pinned Hub pack org/name@<commit>#<sha256> (default: the model's default)",
    )
    parser.add_argument("--prompt", default="pixel art, two men in a violent street fight at night")
    parser.add_argument("--strength", type=float, default=3.0)
    parser.add_argument(
        "--layers",
        default="up_blocks",
        help="cross-attention layers to steer (a name part such as up_blocks), 'all', or 'none'",
    )
    parser.add_argument("--step-range", type=float, nargs=2, default=(0.0, 1.0), metavar=("START", "END"))
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dtype", default="float16", choices=["float32", "float16", "bfloat16"])
    parser.add_argument("--out", default="examples-output/sdxl-lora")
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
    """SDXL with the LoRA loaded, the pack (real models: :func:`pack_first`'s) and the call arguments."""
    if args.tiny:
        from peft import LoraConfig

        from safesteer_diffusers.testing import tiny_pack, tiny_pipeline

        pipe, call_kwargs = tiny_pipeline("sdxl")
        pack = args.pack or tiny_pack(pipe)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(1)  # a random, non-zero LoRA stands in for a trained one
            lora = LoraConfig(
                r=4, lora_alpha=4, target_modules=["to_q", "to_k", "to_v"], init_lora_weights=False
            )
            pipe.unet.add_adapter(lora, adapter_name="tiny-lora")
        return pipe, pack, call_kwargs
    from diffusers import StableDiffusionXLPipeline

    pipe = StableDiffusionXLPipeline.from_pretrained(args.model, torch_dtype=getattr(torch, args.dtype))
    pipe.load_lora_weights(args.lora, weight_name=args.lora_weight, adapter_name="lora")
    pipe.set_adapters(["lora"], adapter_weights=[args.lora_scale])
    pipe = pipe.to(args.device)
    call_kwargs = {"num_inference_steps": args.steps, "height": args.size, "width": args.size}
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
    layers = {"none": None, "all": "all"}.get(args.layers, [args.layers])
    generate = lambda: pipe(  # noqa: E731
        args.prompt, generator=torch.Generator().manual_seed(args.seed), output_type="np", **call_kwargs
    ).images[0]

    with_lora = generate()
    processors = dict(pipe.unet.attn_processors)
    pipe = SafeSteer.wrap(
        pipe,
        pack,
        strength=args.strength,
        layers=layers,
        step_range=tuple(args.step_range) if layers else None,
    )
    steered = generate()
    print(pipe.safety_report)
    with pipe.safety_steering(strength=0.0):
        unsteered = generate()
    SafeSteer.unwrap(pipe)
    restored = all(pipe.unet.attn_processors[name] is proc for name, proc in processors.items())

    print(f"strength 0 under the wrapper == LoRA pipeline unwrapped: {np.array_equal(unsteered, with_lora)}")
    print(f"steering changed the LoRA output: mean |pixel change| = {np.abs(steered - with_lora).mean():.4f}")
    print(f"after unwrap every original attention processor is back: {restored}")
    for name, image in {"lora": with_lora, "lora_steered": steered}.items():
        path = out / f"{name}.png"
        _to_pil(image).save(path)
        print(f"wrote {path}")
    return 0


def _to_pil(array):
    from PIL import Image

    return Image.fromarray((np.clip(array, 0, 1) * 255).round().astype("uint8"))


if __name__ == "__main__":
    raise SystemExit(main())

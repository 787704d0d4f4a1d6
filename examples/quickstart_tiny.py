"""Steer a tiny Stable Diffusion pipeline built in code (offline, seconds on a CPU).

What it shows: `SafeSteer.wrap(pipe)` finds the pack shipped for the pipeline's model id in
pretrained_directions/, strength 0 and `unwrap` are bit-for-bit identical to the original, and the per-call
report says what fired. The tiny pipeline has random weights: its images are noise, the maths is the real
thing. For the whole method (building the pack too), run `safesteer demo`.

    python examples/quickstart_tiny.py [--strength 3.0]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from safesteer_diffusers import SafeSteer
from safesteer_diffusers.testing import tiny_pipeline


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--strength", type=float, default=3.0, help="global steering strength")
    parser.add_argument("--out", default=None, help="also save the original and steered images here")
    parser.add_argument("--tiny", action="store_true", help="accepted for symmetry with the other examples")
    args = parser.parse_args(argv)

    pipe, call_kwargs = tiny_pipeline("sd")  # model id safesteer/tiny-sd-demo

    def generate():
        return pipe(
            "a knight in a castle",
            negative_prompt="blurry",
            generator=torch.Generator().manual_seed(0),
            output_type="np",
            **call_kwargs,
        ).images

    baseline = generate()
    pipe = SafeSteer.wrap(pipe, strength=0.0)  # no pack given: the registered default for this model id
    print(f"pack: {pipe.safety_pack}")
    print("strength 0 identical to the unwrapped pipeline:", np.array_equal(generate(), baseline))
    pipe.set_safety_strength(args.strength, categories={"violence": 1.0})
    steered = generate()
    print(f"strength {args.strength}: mean |pixel change| = {np.abs(steered - baseline).mean():.4f}")
    print(pipe.safety_report)
    SafeSteer.unwrap(pipe)
    print("after unwrap identical to the original:", np.array_equal(generate(), baseline))
    if args.out:
        from PIL import Image

        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        for name, images in {"original": baseline, "steered": steered}.items():
            Image.fromarray((images[0] * 255).round().astype("uint8")).save(out / f"{name}.png")
        print(f"wrote {out}/original.png and steered.png")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

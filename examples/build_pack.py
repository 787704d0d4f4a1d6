"""Build a direction pack with the Python API: estimate in a source LM, align on benign anchors, calibrate.

Real models (GPU; Llama needs `hf auth login` and its licence accepted):

    python examples/build_pack.py --source meta-llama/Llama-3.1-8B-Instruct \
        --target black-forest-labs/FLUX.1-schnell --call-kwarg max_sequence_length=256 \
        --dtype bfloat16 --device cuda --out packs/flux1-schnell-from-llama31 --native-baseline
    python examples/build_pack.py --recipe pretrained_directions/sd15-from-qwen25-7b/recipe.yaml --out packs/sd15

The same as `safesteer build` (and `safesteer build --recipe`), written out so each step is visible. Only the
target's text encoders are loaded, and they see the benign anchors only. --native-baseline also builds the
paper's baseline (directions estimated from the pairs in the target space: the target then sees unsafe text;
labelled as such) and prints how close the transferred directions are to it. --tiny builds for the demo's
tiny SD pipeline with a tiny random source model on reduced prompt sets (CPU, seconds).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from safesteer_diffusers import DirectionPack
from safesteer_diffusers.build.driver import BuildConfig, build_native_pack, build_pack


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", default="meta-llama/Llama-3.1-8B-Instruct", help="transformers model id")
    parser.add_argument("--target", default="black-forest-labs/FLUX.1-schnell", help="diffusers model id")
    parser.add_argument(
        "--recipe", default=None, help="build from a recipe.yaml instead of --source/--target"
    )
    parser.add_argument("--align", default="svd", choices=["svd", "ridge", "mlp", "auto"])
    parser.add_argument("--layer", default="auto", help="source hidden-state index or 'auto'")
    parser.add_argument("--max-anchors", type=int, default=None, help="fewer anchors for a quick build")
    parser.add_argument("--call-kwarg", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument(
        "--native-baseline", action="store_true", help="also build the labelled native baseline"
    )
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dtype", default=None, choices=["float32", "float16", "bfloat16"])
    parser.add_argument("--out", default="examples-output/pack")
    parser.add_argument(
        "--tiny", action="store_true", help="tiny source and target built in code (CPU, seconds)"
    )
    return parser.parse_args(argv)


def call_kwargs(items: list[str]) -> dict:
    result = {}
    for item in items:
        key, _, value = item.partition("=")
        try:
            result[key] = json.loads(value)
        except json.JSONDecodeError:
            result[key] = value
    return result


def build(args: argparse.Namespace):
    """(result, target pipeline, pairs used) for the chosen mode."""
    if args.recipe:
        from safesteer_diffusers.build.recipes import _load_recipe_target, build_from_recipe
        from safesteer_diffusers.packs.recipe import load_recipe

        recipe = load_recipe(args.recipe)
        result = build_from_recipe(recipe, device=args.device, dtype=args.dtype, max_anchors=args.max_anchors)
        return result, _load_recipe_target(recipe, args.device, args.dtype), None
    config = BuildConfig(
        align=args.align,
        layer=args.layer if args.layer == "auto" else int(args.layer),
        call_kwargs=call_kwargs(args.call_kwarg),
        max_anchors=args.max_anchors,
    )
    if args.tiny:
        from safesteer_diffusers.build.prompts.embedded import load_pairs
        from safesteer_diffusers.packs.format import I2P_CATEGORIES
        from safesteer_diffusers.testing import tiny_pipeline, tiny_source

        source, tokenizer, source_id = tiny_source()
        target, _ = tiny_pipeline("sd")
        target_id = target.config._name_or_path
        pairs = [p for c in I2P_CATEGORIES for p in load_pairs(c)[:6]]
        config.max_anchors = args.max_anchors or 64
    else:
        from safesteer_diffusers.build.model_loading import load_source, load_target_text_encoders
        from safesteer_diffusers.utils.dtypes import parse_dtype

        dtype = parse_dtype(args.dtype)
        source, tokenizer = load_source(args.source, dtype=dtype, device=args.device)
        target = load_target_text_encoders(args.target, dtype=dtype, device=args.device)
        source_id, target_id, pairs = args.source, args.target, None
    result = build_pack(
        source, tokenizer, target, pairs=pairs, config=config, source_id=source_id, target_id=target_id
    )
    return result, target, (pairs, config, target_id)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    out = Path(args.out)
    result, target, native_inputs = build(args)
    path = result.pack.save_pretrained(out)
    (out / "build_report.json").write_text(json.dumps(result.report, indent=2, default=str), encoding="utf-8")
    metadata = result.pack.metadata
    print(f"wrote {path}")
    print(f"source layer {metadata['source']['layer']}, held-out AUROC {metadata['source'].get('auroc')}")
    for space, info in metadata["alignment"].items():
        print(
            f"{space}: {info['method']} map, held-out R^2 {info['heldout_r2']:.3f} on {info['n_anchors']} anchors"
        )
    print(f"target saw unsafe text: {metadata['provenance']['target_unsafe_data']}")
    if args.native_baseline and native_inputs is not None:
        pairs, config, target_id = native_inputs
        native = build_native_pack(
            target, pairs=pairs, config=config, target_id=target_id, progress=False
        ).pack
        native.save_pretrained(out / "native")
        print(f"wrote {out / 'native'} (baseline; target saw unsafe text: True)")
        print_agreement(result.pack, native)
    return 0


def print_agreement(transferred: DirectionPack, native: DirectionPack) -> None:
    """Cosine between each transferred direction and the native one, per space (1 = same direction)."""
    for space in transferred.spaces:
        cosines = {
            name: float(
                torch.nn.functional.cosine_similarity(
                    transferred.direction(space, name), native.direction(space, name), dim=0
                )
            )
            for name in transferred.names
        }
        print(
            f"{space} cosine(transferred, native): " + ", ".join(f"{k}={v:+.2f}" for k, v in cosines.items())
        )


if __name__ == "__main__":
    raise SystemExit(main())

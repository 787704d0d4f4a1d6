"""`safesteer` command line: `build` a pack, `inspect` one."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from safesteer_diffusers.build.recipes import add_recipe_argument
from safesteer_diffusers.packs.direction_pack import DirectionPack

from .demo import register_demo, register_list_packs
from .eval import add_eval_parser


def _key_values(items: list[str]) -> dict:
    result = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"--call-kwarg expects KEY=VALUE, got {item!r}.")
        try:
            result[key] = json.loads(value)
        except json.JSONDecodeError:
            result[key] = value
    return result


def _build(args: argparse.Namespace) -> int:
    from safesteer_diffusers.build.driver import BuildConfig, build_native_pack, build_pack
    from safesteer_diffusers.build.feature_cache import FeatureCache, default_cache_dir
    from safesteer_diffusers.build.model_loading import load_source, load_target_text_encoders
    from safesteer_diffusers.build.prompts.readers import read_pairs, read_prompts
    from safesteer_diffusers.build.target_statistics import BenignPrompts
    from safesteer_diffusers.utils.dtypes import parse_dtype

    if args.recipe:
        from safesteer_diffusers.build.recipes import build_command

        return build_command(args)
    if not args.target or not args.out:
        raise ValueError("--target and --out are required (or --recipe FILE).")
    if not args.native and not args.source:
        raise ValueError("--source is required (or --native for the target-space baseline).")
    dtype = parse_dtype(args.dtype)
    layer = args.layer if args.layer == "auto" else int(args.layer)
    config = BuildConfig(
        align=args.align,
        layer=layer,
        pooling=args.pooling,
        tokens=args.tokens,
        gate_quantile=args.gate_quantile,
        seed=args.seed,
        batch_size=args.batch_size,
        call_kwargs=_key_values(args.call_kwarg),
        max_anchors=args.max_anchors,
    )
    pairs = read_pairs(args.pairs) if args.pairs else None
    anchors = None
    if args.anchors:
        anchors = BenignPrompts(tuple(r.prompt for r in read_prompts(args.anchors)), str(args.anchors))
    cache = FeatureCache(None if args.no_cache else (args.cache_dir or default_cache_dir()))
    target = load_target_text_encoders(
        args.target, revision=args.target_revision, dtype=dtype, device=args.device
    )
    if args.native:
        result = build_native_pack(
            target, pairs=pairs, anchors=anchors, config=config, target_id=args.target, cache=cache
        )
    else:
        model, tokenizer = load_source(
            args.source,
            revision=args.source_revision,
            dtype=dtype,
            device=args.device,
            device_map=args.device_map,
        )
        result = build_pack(
            model,
            tokenizer,
            target,
            pairs=pairs,
            anchors=anchors,
            config=config,
            source_id=args.source,
            source_revision=args.source_revision,
            target_id=args.target,
            cache=cache,
        )
    out = Path(args.out)
    path = result.pack.save_pretrained(out)
    (out / "build_report.json").write_text(json.dumps(result.report, indent=2, sort_keys=True, default=str))
    print(f"wrote {path}")
    print(f"wrote {out / 'build_report.json'}")
    try:
        from safesteer_diffusers.packs.inspect import inspect_plot

        print(f"wrote {inspect_plot(result.pack, out / 'build_report.png')}")
    except ImportError:
        print("(matplotlib not installed: no build_report.png)")
    return 0


def _inspect(args: argparse.Namespace) -> int:
    from safesteer_diffusers.packs.inspect import inspect_plot, inspect_text

    pack = DirectionPack.from_pretrained(args.pack, revision=args.revision)
    print(inspect_text(pack))
    if args.plot:
        print(f"wrote {inspect_plot(pack, args.plot)}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="safesteer", description="Safety steering for diffusers pipelines.")
    commands = parser.add_subparsers(dest="command", required=True)

    build = commands.add_parser(
        "build",
        help="build a direction pack (source LM -> target text space, benign-only alignment)",
        description="Estimate safety directions in a source LM, align them to a target pipeline's text space "
        "on benign anchors only, calibrate, and write a pack.",
    )
    build.add_argument("--source", help="source model id or folder (transformers causal LM or encoder)")
    build.add_argument("--source-revision", default=None)
    build.add_argument(
        "--target", default=None, help="diffusers pipeline id or folder (text encoders only are loaded)"
    )
    build.add_argument("--target-revision", default=None)
    build.add_argument(
        "--native", action="store_true", help="baseline: estimate directly in the target space"
    )
    build.add_argument("--align", default="svd", choices=["svd", "ridge", "mlp", "auto"])
    build.add_argument("--layer", default="auto", help="source layer index or 'auto' (best held-out AUROC)")
    build.add_argument("--pooling", default="mean", choices=["mean", "last"])
    build.add_argument(
        "--tokens", default="all", choices=["all", "prompt"], help="steering token policy to calibrate for"
    )
    build.add_argument("--pairs", help="CSV/JSONL/HF dataset of safe/unsafe pairs (default: embedded)")
    build.add_argument("--anchors", help="CSV/JSONL/HF dataset of BENIGN anchor prompts (default: embedded)")
    build.add_argument("--max-anchors", type=int, default=None, help="use only the first N anchors")
    build.add_argument("--gate-quantile", type=float, default=0.99)
    build.add_argument("--seed", type=int, default=0)
    build.add_argument("--batch-size", type=int, default=16)
    build.add_argument("--dtype", default=None, choices=["float32", "float16", "bfloat16"])
    build.add_argument("--device", default=None, help="e.g. cuda, cuda:1, cpu")
    build.add_argument(
        "--device-map", default=None, help="transformers device_map for a big source model, e.g. auto"
    )
    build.add_argument(
        "--call-kwarg",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="target pipe(...) argument that changes encoding, e.g. max_sequence_length=256",
    )
    build.add_argument(
        "--cache-dir", default=None, help="feature cache (default $SAFESTEER_CACHE or ~/.cache/safesteer)"
    )
    build.add_argument("--no-cache", action="store_true")
    build.add_argument(
        "--out", default=None, help="output folder for the pack, its card and the build report"
    )
    add_recipe_argument(build)
    build.set_defaults(handler=_build)

    inspect = commands.add_parser("inspect", help="show a pack's metadata, norms, cosines and fit statistics")
    inspect.add_argument("pack", help="pack folder, file or Hub repo id")
    inspect.add_argument("--revision", default=None, help="Hub revision")
    inspect.add_argument("--plot", default=None, metavar="PNG", help="also write a PNG (needs matplotlib)")
    inspect.set_defaults(handler=_inspect)
    add_eval_parser(commands)
    register_demo(commands)
    register_list_packs(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``safesteer`` console script."""
    args = build_parser().parse_args(argv)
    try:
        return args.handler(args)
    except (ValueError, TypeError, ImportError) as error:
        print(f"safesteer: error: {error}", file=sys.stderr)
        return 2


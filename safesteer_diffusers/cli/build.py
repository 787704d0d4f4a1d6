"""``safesteer build``: the argparse subcommand that builds a direction pack, from flags or from a recipe.

Owns the command line of pack building: the ``build`` parser (:func:`register_build`, with ``--recipe`` from
:func:`add_recipe_argument`), the flag-driven build (source LM -> target text space, or ``--native``) and
:func:`build_command` (``--recipe FILE``: the recipe fixes what is built, the flags only where it runs). The
building itself is :mod:`safesteer_diffusers.build` (imported when the command runs, so ``safesteer --help``
stays quick).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from safesteer_diffusers.packs.recipe import ALIGN_METHODS, POOLINGS, TOKEN_POLICIES
from safesteer_diffusers.utils.dtypes import DTYPES

from .arguments import key_values

DEFAULT_BATCH_SIZE = 16
"""``--batch-size`` default; with ``--recipe``, any other value overrides the recipe's ``build.batch_size``."""
_RECIPE_FIXES = ("source", "target", "pairs", "anchors", "native", "source_revision", "target_revision")
"""Flags (as ``args`` attributes) that a recipe fixes, so they cannot be combined with ``--recipe``."""


def register_build(commands: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add the ``build`` subcommand to the ``safesteer`` subparsers.

    Args:
        commands: the subparsers of the ``safesteer`` parser.

    Returns:
        The ``build`` parser.
    """
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
    build.add_argument("--align", default="svd", choices=ALIGN_METHODS)
    build.add_argument("--layer", default="auto", help="source layer index or 'auto' (best held-out AUROC)")
    build.add_argument("--pooling", default="mean", choices=POOLINGS)
    build.add_argument(
        "--tokens", default="all", choices=TOKEN_POLICIES, help="steering token policy to calibrate for"
    )
    build.add_argument("--pairs", help="CSV/JSONL/HF dataset of safe/unsafe pairs (default: embedded)")
    build.add_argument("--anchors", help="CSV/JSONL/HF dataset of BENIGN anchor prompts (default: embedded)")
    build.add_argument("--max-anchors", type=int, default=None, help="use only the first N anchors")
    build.add_argument("--gate-quantile", type=float, default=0.99)
    build.add_argument("--seed", type=int, default=0)
    build.add_argument("--batch-size", type=int, default=DEFAULT_BATCH_SIZE)
    build.add_argument("--dtype", default=None, choices=list(DTYPES))
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
    return build


def add_recipe_argument(build_parser: argparse.ArgumentParser) -> None:
    """Add ``--recipe`` to the ``safesteer build`` subparser.

    Args:
        build_parser: the ``build`` parser.
    """
    build_parser.add_argument(
        "--recipe",
        default=None,
        metavar="RECIPE_YAML",
        help="build the pack a recipe describes (pretrained_directions/<name>/recipe.yaml); it fixes the "
        "source, target, prompts, alignment and calibration; --out defaults to the recipe's folder",
    )


def _build(args: argparse.Namespace) -> int:
    """``safesteer build``: from a recipe, or from the flags (``--target``, ``--out``, ``--source``/``--native``)."""
    from safesteer_diffusers.build.driver import BuildConfig, build_native_pack, build_pack
    from safesteer_diffusers.build.feature_cache import FeatureCache, default_cache_dir
    from safesteer_diffusers.build.model_loading import load_source, load_target_text_encoders
    from safesteer_diffusers.build.prompts.readers import read_pairs, read_prompts
    from safesteer_diffusers.build.target_statistics import BenignPrompts
    from safesteer_diffusers.utils.dtypes import parse_dtype

    if args.recipe:
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
        call_kwargs=key_values(args.call_kwarg, "--call-kwarg"),
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


def build_command(args: argparse.Namespace) -> int:
    """``safesteer build --recipe FILE``: build, write into the recipe folder (or ``--out``), report.

    Args:
        args: the parsed ``build`` arguments (``--recipe`` set).

    Returns:
        The exit status, 0.

    Raises:
        ValueError: flags that the recipe fixes were given, ``--max-anchors`` would overwrite the recipe's own
            pack, or the recipe does not validate / build.
    """
    from safesteer_diffusers.build.feature_cache import FeatureCache, default_cache_dir
    from safesteer_diffusers.build.recipes import build_from_recipe, write_build
    from safesteer_diffusers.packs.recipe import load_recipe
    from safesteer_diffusers.pipelines.registry import registered_targets

    given = [f"--{name.replace('_', '-')}" for name in _RECIPE_FIXES if getattr(args, name, None)]
    if given:
        raise ValueError(
            f"{', '.join(given)} cannot be combined with --recipe: the recipe fixes what is built. Edit the "
            "recipe (or copy it), or drop --recipe."
        )
    recipe = load_recipe(args.recipe, families=registered_targets())
    out = Path(args.out) if args.out else recipe.folder
    if args.max_anchors and out == recipe.folder:
        raise ValueError(
            "--max-anchors changes the pack, so it would not reproduce the recipe: pass --out to write it "
            "elsewhere."
        )
    cache = FeatureCache(None if args.no_cache else (args.cache_dir or default_cache_dir()))
    # Only a batch size the user chose overrides the recipe's (the parser cannot tell "16" from the default).
    batch_size = args.batch_size if args.batch_size != DEFAULT_BATCH_SIZE else None
    print(f"building {recipe.name}: {recipe.source.model} -> {recipe.target.model} ({recipe.target.family})")
    result = build_from_recipe(
        recipe,
        device=args.device,
        dtype=args.dtype,
        device_map=args.device_map,
        cache=cache,
        max_anchors=args.max_anchors,
        batch_size=batch_size,
    )
    for label, path in write_build(result, recipe, out).items():
        print(f"wrote {path} ({label})")
    print(f"inspect it: safesteer inspect {out} [--plot build_report.png]")
    return 0

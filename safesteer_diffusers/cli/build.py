"""``safesteer build``: the argparse subcommand that builds a direction pack, from flags or from a recipe.

Owns the command line of pack building: the ``build`` parser (:func:`register_build`, with ``--recipe`` from
:func:`add_recipe_argument`), the flag-driven build (source LM -> target text space, or ``--native``; a GGUF
source, ``--gguf-file``, is recorded in the pack by its SHA-256; ``--source-chat-template`` feeds the source chat
turns) and :func:`build_command` (``--recipe FILE``: the recipe fixes what is built, the flags only where it runs). Both
end with the summary of :mod:`.build_summary`. The building itself is :mod:`safesteer_diffusers.build`
(imported when the command runs, so ``safesteer --help`` stays quick); the model references are checked
first (:mod:`.references`), so a mistyped path fails before any model loads.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from safesteer_diffusers.utils.logging import get_logger

from .arguments import (
    ALIGN_CHOICES,
    ALIGN_ON_CHOICES,
    DTYPE_CHOICES,
    POOLING_CHOICES,
    TOKEN_CHOICES,
    HelpFormatter,
    key_values,
)

logger = get_logger(__name__)

DEFAULT_BATCH_SIZE = 16
"""``--batch-size`` default; with ``--recipe``, any other value overrides the recipe's ``build.batch_size``."""
_RECIPE_FIXES = (
    "align_on",
    "source",
    "target",
    "pairs",
    "anchors",
    "native",
    "source_revision",
    "target_revision",
    "gguf_file",
    "source_chat_template",
    "gate",
    "source_gate",
    "source_gate_framing",
    "source_gate_prompts",
    "source_gate_benign",
)
"""Flags (as ``args`` attributes) that a recipe fixes, so they cannot be combined with ``--recipe``."""
_SOURCE = "a transformers model folder, a .gguf file or a Hub repo id"
CODE_TARGET_PREFIX = "python:"
"""``--target python:module:function``: a pipeline built in code (e.g. the real-LLM stand-in of the benchmarks)."""
_TARGET = (
    "a diffusers pipeline folder or Hub repo id, or python:module:function for a pipeline built in code "
    "(e.g. python:safesteer_diffusers.testing.real_models:real_sana_pipeline)"
)
_PROMPTS = "a CSV / JSONL file, a dataset folder or a Hugging Face dataset id"


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
        formatter_class=HelpFormatter,
    )
    build.add_argument(
        "--source", help=f"source model: {_SOURCE} (default: none; required unless --native or --recipe)"
    )
    build.add_argument("--source-revision", default=None, help="Hub revision of --source (default: main)")
    build.add_argument(
        "--gguf-file",
        default=None,
        metavar="NAME",
        help="the GGUF file inside --source when it is a Hub repo or a folder holding several, e.g. "
        "--source org/repo --gguf-file model.Q4_K_M.gguf; converted once, cached by its SHA-256, which the "
        "pack records (default: none; a .gguf --source, or a folder with one .gguf file, needs none)",
    )
    build.add_argument(
        "--source-chat-template",
        action="store_true",
        help="write each source prompt (pairs and anchors) as a user turn of the source tokenizer's chat "
        "template, as an instruct model reads requests; recorded in the pack (source.chat_template)",
    )
    build.add_argument(
        "--target",
        default=None,
        help=f"target pipeline: {_TARGET}; only its text encoders are loaded (default: none; required unless "
        "--recipe)",
    )
    build.add_argument("--target-revision", default=None, help="Hub revision of --target (default: main)")
    build.add_argument(
        "--native", action="store_true", help="baseline: estimate directly in the target space"
    )
    build.add_argument("--align", default="svd", choices=ALIGN_CHOICES, help="alignment map")
    build.add_argument(
        "--align-on",
        default=None,
        choices=ALIGN_ON_CHOICES,
        help="anchors that fit the alignment map: auto (default: the sensitive-topic anchors when there are "
        "at least 512, else all), all, or sensitive; calibration and gates always use every anchor",
    )
    build.add_argument("--layer", default="auto", help="source layer index or 'auto' (best held-out AUROC)")
    build.add_argument(
        "--pooling", default="mean", choices=POOLING_CHOICES, help="source pooling over tokens"
    )
    build.add_argument(
        "--tokens", default="all", choices=TOKEN_CHOICES, help="steering token policy to calibrate for"
    )
    build.add_argument("--pairs", help=f"safe/unsafe pairs: {_PROMPTS} (default: the embedded pairs)")
    build.add_argument("--anchors", help=f"BENIGN anchor prompts: {_PROMPTS} (default: the embedded anchors)")
    build.add_argument(
        "--max-anchors", type=int, default=None, help="use only the first N anchors (default: all)"
    )
    build.add_argument(
        "--gate-quantile",
        type=float,
        default=0.99,
        help="gate threshold = this quantile of the benign anchors' scores",
    )
    build.add_argument(
        "--gate",
        default=None,
        choices=["probe", "direction"],
        help="what the gate scores along: probe (default; a source classifier of unsafe vs benign prompts, "
        "carried to the target by a map fitted on benign anchors) or direction (the classic gate)",
    )
    build.add_argument(
        "--source-gate",
        action="store_true",
        help="also store a gate scored in the source model at inference (the strongest gate measured; use it "
        "with SafeSteer.wrap(..., gate=True, gate_model=(model, tokenizer)))",
    )
    build.add_argument(
        "--source-gate-framing",
        default=None,
        choices=["auto", "chat", "plain"],
        help="how the source gate's model reads a prompt: chat (as one user turn of its chat template), plain "
        "(as written) or auto (default: chat when the source tokenizer has a chat template); with --source-gate",
    )
    build.add_argument(
        "--source-gate-prompts",
        default=None,
        metavar="FILE",
        help="unsafe prompts for the source gate alone (.txt one per line, or CSV/JSONL with a prompt column and "
        "optional I2P-style categories): read by the source model only, they fit a second gate head; the pack "
        "records their count and hash, not the text; with --source-gate (default: none)",
    )
    build.add_argument(
        "--source-gate-benign",
        default=None,
        metavar="FILE",
        help="benign prompts in the same style as --source-gate-prompts (.txt, CSV or JSONL): negatives of the "
        "second gate head only, so it learns what is unsafe in those prompts rather than their style; never "
        "used to calibrate (default: none)",
    )
    build.add_argument("--seed", type=int, default=0, help="seed of the held-out splits and the fits")
    build.add_argument("--batch-size", type=int, default=DEFAULT_BATCH_SIZE, help="prompts per forward pass")
    build.add_argument(
        "--dtype", default=None, choices=DTYPE_CHOICES, help="model dtype (default: the checkpoint's)"
    )
    build.add_argument(
        "--device", default=None, help="e.g. cuda, cuda:1, cpu (default: where the models load, the CPU)"
    )
    build.add_argument(
        "--device-map",
        default=None,
        help="transformers device_map for a big source model, e.g. auto (default: none, one device)",
    )
    build.add_argument(
        "--call-kwarg",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="target pipe(...) argument that changes encoding, e.g. max_sequence_length=256 (repeatable; "
        "default: none)",
    )
    build.add_argument(
        "--cache-dir", default=None, help="feature cache (default $SAFESTEER_CACHE or ~/.cache/safesteer)"
    )
    build.add_argument("--no-cache", action="store_true", help="do not read or write the feature cache")
    build.add_argument(
        "--out",
        default=None,
        help="output folder for the pack, its card and the build report (required unless --recipe, whose "
        "default is the recipe's folder)",
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
        "source, target, prompts, alignment and calibration; --out defaults to the recipe's folder "
        "(default: no recipe, the flags say what to build)",
    )


def _check_references(args: argparse.Namespace) -> None:
    """Fail on a missing path or an unreachable, uncached Hub id before any model loads."""
    from .references import resolve_data, resolve_model

    if not args.target.startswith(CODE_TARGET_PREFIX):  # a pipeline built in code is checked when it loads
        args.target = resolve_model(args.target, flag="--target", what=_TARGET, noun="target pipeline")
    if args.source:
        args.source = resolve_model(args.source, flag="--source", what=_SOURCE, noun="source model")
    for flag in ("pairs", "anchors", "source_gate_prompts", "source_gate_benign"):
        if getattr(args, flag):
            name = f"--{flag.replace('_', '-')}"
            setattr(args, flag, resolve_data(getattr(args, flag), flag=name, what=_PROMPTS))


def _build(args: argparse.Namespace) -> int:
    """``safesteer build``: from a recipe, or from the flags (``--target``, ``--out``, ``--source``/``--native``)."""
    if args.recipe:
        return build_command(args)
    if not args.target or not args.out:
        raise ValueError("--target and --out are required (or --recipe FILE).")
    if not args.native and not args.source:
        raise ValueError("--source is required (or --native for the target-space baseline).")
    source_only = [
        flag
        for flag, given in (
            ("--gguf-file", args.gguf_file),
            ("--source-chat-template", args.source_chat_template),
            ("--source-gate", args.source_gate),
            ("--source-gate-framing", args.source_gate_framing),
            ("--source-gate-prompts", args.source_gate_prompts),
            ("--source-gate-benign", args.source_gate_benign),
        )
        if given
    ]
    if args.native and source_only:
        raise ValueError(
            f"{' and '.join(source_only)}: only for a source model, and --native uses none (it estimates in the "
            "target space). Drop them, or drop --native."
        )
    layer = args.layer if args.layer == "auto" else _layer(args.layer)
    call_kwargs = key_values(args.call_kwarg, "--call-kwarg")
    _check_references(args)

    from safesteer_diffusers.build.driver import BuildConfig, build_native_pack, build_pack
    from safesteer_diffusers.build.feature_cache import FeatureCache, default_cache_dir
    from safesteer_diffusers.build.gate_prompts import GatePrompts
    from safesteer_diffusers.build.model_loading import (
        load_code_target,
        load_source_identified,
        load_target_text_encoders,
    )
    from safesteer_diffusers.build.prompts.readers import read_pairs, read_prompts
    from safesteer_diffusers.build.target_statistics import BenignPrompts
    from safesteer_diffusers.utils.dtypes import parse_dtype

    dtype = parse_dtype(args.dtype)
    config = BuildConfig(
        align=args.align,
        align_on=args.align_on or "auto",
        layer=layer,
        pooling=args.pooling,
        tokens=args.tokens,
        gate_quantile=args.gate_quantile,
        gate=args.gate or "probe",
        source_gate=args.source_gate,
        source_gate_framing=args.source_gate_framing or "auto",
        seed=args.seed,
        batch_size=args.batch_size,
        call_kwargs=call_kwargs,
        max_anchors=args.max_anchors,
    )
    pairs = read_pairs(args.pairs) if args.pairs else None
    anchors = None
    if args.anchors:
        anchors = BenignPrompts(tuple(r.prompt for r in read_prompts(args.anchors)), str(args.anchors))
    if args.source_gate_benign and not args.source_gate_prompts:
        raise ValueError(
            "--source-gate-benign gives negatives for the gate head fitted on --source-gate-prompts; add "
            "--source-gate-prompts FILE, or drop --source-gate-benign."
        )
    gate_prompts = GatePrompts.read(args.source_gate_prompts) if args.source_gate_prompts else None
    if args.source_gate_benign:
        gate_prompts = gate_prompts.with_benign(args.source_gate_benign)
    cache = FeatureCache(None if args.no_cache else (args.cache_dir or default_cache_dir()))
    target_id = args.target
    with _loading(args.target, "target pipeline", "--target"):
        if args.target.startswith(CODE_TARGET_PREFIX):
            target, target_id = load_code_target(args.target.removeprefix(CODE_TARGET_PREFIX))
        else:
            target = load_target_text_encoders(
                args.target, revision=args.target_revision, dtype=dtype, device=args.device
            )
    if args.native:
        result = build_native_pack(
            target, pairs=pairs, anchors=anchors, config=config, target_id=target_id, cache=cache
        )
    else:
        with _loading(args.source, "source model", "--source"):
            model, tokenizer, identity = load_source_identified(
                args.source,
                revision=args.source_revision,
                dtype=dtype,
                device=args.device,
                device_map=args.device_map,
                gguf_file=args.gguf_file,
            )
        result = build_pack(
            model,
            tokenizer,
            target,
            pairs=pairs,
            anchors=anchors,
            config=config,
            source_id=args.source,
            source_revision=identity.pop("revision"),  # a GGUF file without one: "sha256:<hex>"
            target_id=target_id,
            cache=cache,
            source_chat_template=args.source_chat_template,
            source_identity=identity,
            source_gate_prompts=gate_prompts,
        )
    out = Path(args.out)
    written = {"pack": result.pack.save_pretrained(out)}
    written["report"] = out / "build_report.json"
    written["report"].write_text(json.dumps(result.report, indent=2, sort_keys=True, default=str))
    card = out / "README.md"
    if card.is_file():
        written["card"] = card
    plot = _plot(result.pack, out / "build_report.png")
    if plot is not None:
        written["plot"] = plot
    code_target = args.target if args.target.startswith(CODE_TARGET_PREFIX) else None
    _finish(result.pack, out, written, code_target)
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
    given = [f"--{name.replace('_', '-')}" for name in _RECIPE_FIXES if getattr(args, name, None)]
    if given:
        raise ValueError(
            f"{', '.join(given)} cannot be combined with --recipe: the recipe fixes what is built. Edit the "
            "recipe (or copy it), or drop --recipe."
        )
    from .references import missing_path_message

    if not Path(args.recipe).expanduser().is_file():
        raise ValueError(missing_path_message(args.recipe, "--recipe", "a recipe.yaml file", "recipe"))

    from safesteer_diffusers.build.feature_cache import FeatureCache, default_cache_dir
    from safesteer_diffusers.build.recipes import build_from_recipe, write_build
    from safesteer_diffusers.packs.recipe import load_recipe
    from safesteer_diffusers.pipelines.registry import registered_targets

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
    logger.info(
        "building %s: %s -> %s (%s)",
        recipe.name,
        recipe.source.model,
        recipe.target.model,
        recipe.target.family,
    )
    result = build_from_recipe(
        recipe,
        device=args.device,
        dtype=args.dtype,
        device_map=args.device_map,
        cache=cache,
        max_anchors=args.max_anchors,
        batch_size=batch_size,
    )
    written = write_build(result, recipe, out)
    plot = _plot(result.pack, out / "build_report.png")
    if plot is not None:
        written["plot"] = plot
    _finish(result.pack, out, written)
    return 0


def _layer(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise ValueError(f"--layer expects a layer index (0, 1, ...) or 'auto', got {text!r}.") from None


class _loading:  # noqa: N801 (used as a lower-case context manager, like contextlib's)
    """Turns a model loading failure into one message that names the model, the flag and the fix."""

    def __init__(self, model_id: str, what: str, flag: str) -> None:
        self.model_id, self.what, self.flag = model_id, what, flag

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind, error, traceback) -> bool:  # noqa: ANN001
        if isinstance(error, OSError):
            from safesteer_diffusers.evaluate.missing_models import missing_model

            raise missing_model(self.model_id, self.what, error, self.flag) from error
        return False


def _plot(pack, path: Path) -> Path | None:
    try:
        from safesteer_diffusers.packs.inspect import inspect_plot

        return inspect_plot(pack, path)
    except ImportError:
        logger.info("matplotlib is not installed: no %s (pip install matplotlib).", path.name)
        return None


def _finish(pack, out: Path, written: dict[str, Path], code_target: str | None = None) -> None:
    from .build_summary import build_summary

    print(build_summary(pack, out, written, code_target=code_target))

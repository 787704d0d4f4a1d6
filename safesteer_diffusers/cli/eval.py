"""``safesteer eval``: the argparse subcommand (registered by ``safesteer_diffusers.cli.main.build_parser``)."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from safesteer_diffusers.utils.dtypes import DTYPES

from .arguments import key_values as _key_values

__all__ = ["add_eval_parser"]

METRICS = ("asr", "clip", "fid")

_DESCRIPTION = """\
Generate images (or videos) for unsafe and benign prompts with each pack at each strength, and measure the
attack success rate (ASR: fraction flagged by the detectors, with a 95% bootstrap interval), the CLIP score
and the FID. Writes results.jsonl (one row per item), summary.csv / summary.md (per pack x strength x
category), tradeoff.png and grids/. Rerunning into the same --out skips what exists. Under
`accelerate launch -m safesteer_diffusers.cli eval ...` the items are sharded over the processes.
See docs/evaluation.md."""

_EXAMPLE = """\
example:
  safesteer eval --pipeline black-forest-labs/FLUX.1-schnell \\
      --pack packs/flux1-schnell-from-llama31 --pack packs/flux1-schnell-native \\
      --prompts i2p.csv --benign-prompts coco_val.csv --strengths 0,1,3,5 --metrics asr,clip,fid \\
      --reference-images coco_val2014/ --seeds 1 --out results/flux \\
      --call-kwarg num_inference_steps=4 --call-kwarg guidance_scale=0 --call-kwarg max_sequence_length=256
"""


def add_eval_parser(commands: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register ``eval`` on the ``safesteer`` subcommands; returns its parser."""
    parser = commands.add_parser(
        "eval",
        help="measure ASR, CLIP score and FID across packs and strengths (resumable, multi-GPU)",
        description=_DESCRIPTION,
        epilog=_EXAMPLE,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    model = parser.add_argument_group("generator")
    model.add_argument("--pipeline", required=True, help="diffusers pipeline id or folder")
    model.add_argument("--revision", default=None, help="Hub revision of the pipeline")
    model.add_argument("--dtype", default=None, choices=list(DTYPES))
    model.add_argument("--device", default=None, help="default: this process's GPU (cuda) or cpu")
    model.add_argument(
        "--cpu-offload", action="store_true", help="enable_model_cpu_offload() instead of .to(device)"
    )
    model.add_argument(
        "--keep-safety-checker",
        action="store_true",
        help="keep the pipeline's own safety checker (SD 1.x/2.x); by default it is removed, as in I2P's protocol, "
        "so that the detectors see what the model generates",
    )
    model.add_argument(
        "--call-kwarg",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="pipe(...) argument for every call (JSON values), e.g. num_inference_steps=4",
    )
    model.add_argument(
        "--batch-size", type=int, default=1, help="prompts per call (1: every item reproducible on its own)"
    )
    model.add_argument("--video-frames", type=int, default=4, help="frames sampled evenly from each video")

    steer = parser.add_argument_group("steering")
    steer.add_argument(
        "--pack",
        action="append",
        default=[],
        required=True,
        metavar="[NAME=]PATH",
        help="pack folder, file or Hub repo id (repeat for several); NAME labels it in the outputs",
    )
    steer.add_argument(
        "--strengths", default="0,1,3,5", help="comma-separated global strengths (default 0,1,3,5)"
    )
    steer.add_argument(
        "--wrap-kwarg",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help='SafeSteer.wrap argument (JSON values), e.g. gate=true, mode=project, categories={"sexual":2}',
    )

    data = parser.add_argument_group("prompts")
    data.add_argument(
        "--prompts", help="unsafe prompts for ASR: CSV, JSONL, dataset folder or HF dataset id (I2P as is)"
    )
    data.add_argument("--prompt-col", default="prompt")
    data.add_argument("--category-col", default=None, help="default: 'categories' or 'category' when present")
    data.add_argument("--split", default="train", help="dataset split (datasets only)")
    data.add_argument(
        "--seed-col",
        default=None,
        help="per-prompt seed column (default: I2P's evaluation_seed when present; 'none' to ignore)",
    )
    data.add_argument(
        "--guidance-col",
        default=None,
        help="per-prompt guidance scale column (default: I2P's evaluation_guidance when present; 'none' to ignore)",
    )
    data.add_argument("--benign-prompts", help="benign prompts for CLIP score and FID (e.g. COCO captions)")
    data.add_argument("--benign-prompt-col", default="prompt")
    data.add_argument(
        "--benign-split", default=None, help="dataset split of the benign prompts (default: --split)"
    )
    data.add_argument("--limit", type=int, default=None, help="use only the first N prompts (quick runs)")
    data.add_argument(
        "--benign-limit", type=int, default=None, help="first N benign prompts (default: --limit)"
    )
    data.add_argument("--seeds", type=int, default=1, help="images per prompt (consecutive seeds)")
    data.add_argument("--seed", type=int, default=0, help="first seed of prompts without a seed column")

    metrics = parser.add_argument_group("metrics")
    metrics.add_argument(
        "--metrics",
        default=None,
        help="comma-separated subset of asr,clip,fid (default: asr,clip, plus fid with --reference-images)",
    )
    metrics.add_argument(
        "--detector",
        action="append",
        default=[],
        metavar="SPEC",
        help="unsafe-content detector (repeat for several): nudenet-5 (default; alias nudenet), nudenet-9, "
        "nudenet:labels=A+B,threshold=0.5, q16:PROMPTS_FILE, hf:MODEL_ID[,labels=nsfw][,threshold=0.5]",
    )
    metrics.add_argument(
        "--combine", default="any", choices=["any", "all"], help="how detector flags combine"
    )
    metrics.add_argument(
        "--clip-model", default="openai/clip-vit-large-patch14", help="CLIP model for the CLIP score"
    )
    metrics.add_argument("--reference-images", default=None, help="folder of reference images for FID")
    metrics.add_argument("--reference-limit", type=int, default=None, help="use the first N reference images")
    metrics.add_argument(
        "--fid-features",
        default="inception",
        choices=["inception", "clip"],
        help="inception: torch-fidelity InceptionV3 pool3 (standard FID); clip: --clip-model image embeddings",
    )
    metrics.add_argument(
        "--fid-weights", default=None, help="local Inception weights file (offline machines)"
    )
    metrics.add_argument(
        "--fid-resolution", type=int, default=299, help="square size images are resized to for FID"
    )
    metrics.add_argument(
        "--bootstrap", type=int, default=1000, help="bootstrap resamples of the ASR interval"
    )

    output = parser.add_argument_group("output")
    output.add_argument("--out", required=True, help="output folder (reruns resume in it)")
    output.add_argument("--grid-prompts", type=int, default=4, help="prompts per strength grid (0: none)")
    output.add_argument("--dry-run", action="store_true", help="print the plan and the work left, then stop")
    output.add_argument("--no-progress", action="store_true", help="no progress bars")
    output.add_argument(
        "--allow-config-change",
        action="store_true",
        help="reuse an --out folder whose images were made with other generation settings",
    )
    parser.set_defaults(handler=_handle)
    return parser


# ------------------------------------------------------------------------------------------------ parsing


def _strengths(text: str) -> list[float]:
    try:
        values = [float(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise ValueError(
            f"--strengths expects comma-separated numbers such as 0,1,3,5, got {text!r}."
        ) from None
    if not values:
        raise ValueError("--strengths is empty.")
    return values


def _metrics(text: str | None, has_reference: bool) -> list[str]:
    if text is None:
        return ["asr", "clip"] + (["fid"] if has_reference else [])
    chosen = [part.strip().lower() for part in text.split(",") if part.strip()]
    unknown = [m for m in chosen if m not in METRICS]
    if unknown or not chosen:
        raise ValueError(f"--metrics: unknown {unknown or text!r}; choose from {', '.join(METRICS)}.")
    return chosen


def _pack_specs(items: list[str]) -> list[tuple[str, str]]:
    from safesteer_diffusers.evaluate.work_items import pack_label

    specs = []
    for item in items:
        name, sep, path = item.partition("=")
        if sep and name and "/" not in name and os.sep not in name:
            specs.append((pack_label(name), path))
            continue
        p = Path(item.rstrip("/"))
        base = (
            p.parent.name
            if p.suffix == ".safetensors" and p.name.startswith("safesteer_pack")
            else p.stem
            if p.suffix
            else p.name
        )
        specs.append((pack_label(base), item))
    names = [name for name, _ in specs]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ValueError(f"Several packs are named {duplicates}; name them with --pack NAME=PATH.")
    return specs


def _column(value: str | None, default: str) -> tuple[str | None, bool]:
    """(column, explicit): 'none' disables; None means the default, used only when present."""
    if value is None:
        return default, False
    if value.lower() == "none":
        return None, False
    return value, True


def _read_set(
    name: str, source: str, args: argparse.Namespace, prompt_col: str, split: str, limit: int | None
):
    from safesteer_diffusers.build.prompts.readers import read_prompts
    from safesteer_diffusers.evaluate.work_items import PromptSet

    category_col = args.category_col if name == "unsafe" else None
    records = read_prompts(source, prompt_col=prompt_col, category_col=category_col, split=split, limit=limit)
    seed_col, seed_explicit = _column(args.seed_col, "evaluation_seed")
    guidance_col, guidance_explicit = _column(args.guidance_col, "evaluation_guidance")
    columns = set(records[0].extra)
    for column, explicit, flag in (
        (seed_col, seed_explicit, "--seed-col"),
        (guidance_col, guidance_explicit, "--guidance-col"),
    ):
        if explicit and column not in columns:
            raise ValueError(
                f"{source} has no column {column!r} (asked for by {flag}); other columns: {sorted(columns)}. "
                f"Pass {flag} none to use --seed / the call arguments instead."
            )
    return PromptSet(name, records, seed_col=seed_col, guidance_col=guidance_col)


class _Named:
    """Stands for a scorer in the plan printed before the models are loaded."""

    def __init__(self, name: str, **extra: Any) -> None:
        self.name = name
        self.__dict__.update(extra)


# ------------------------------------------------------------------------------------------------ handler


def _handle(args: argparse.Namespace) -> int:
    try:
        return _run(args)
    except OSError as error:  # e.g. a prompt file that is not there: reported like the other user errors
        raise ValueError(str(error)) from None


def _run(args: argparse.Namespace) -> int:
    import torch

    from safesteer_diffusers.evaluate.run_plan import EvalSettings
    from safesteer_diffusers.evaluate.runner import run_evaluation
    from safesteer_diffusers.packs.direction_pack import DirectionPack
    from safesteer_diffusers.utils.distributed import current_process_group
    from safesteer_diffusers.utils.dtypes import parse_dtype

    dtype = parse_dtype(args.dtype)
    metrics = _metrics(args.metrics, args.reference_images is not None)
    if "fid" in metrics and (args.reference_images is None or args.benign_prompts is None):
        raise ValueError("--metrics fid needs --reference-images <folder> and --benign-prompts <file>.")
    if args.prompts is None and args.benign_prompts is None:
        raise ValueError(
            "Pass --prompts (unsafe prompts, for ASR) and/or --benign-prompts (for CLIP score and FID)."
        )
    if args.reference_images is not None and not Path(args.reference_images).is_dir():
        raise ValueError(f"--reference-images {args.reference_images}: no such folder.")
    strengths = _strengths(args.strengths)
    specs = _pack_specs(args.pack)
    packs = {name: DirectionPack.from_pretrained(path) for name, path in specs}
    prompt_sets = {}
    if args.prompts:
        prompt_sets["unsafe"] = _read_set(
            "unsafe", args.prompts, args, args.prompt_col, args.split, args.limit
        )
    if args.benign_prompts:
        prompt_sets["benign"] = _read_set(
            "benign",
            args.benign_prompts,
            args,
            args.benign_prompt_col,
            args.benign_split or args.split,
            args.benign_limit or args.limit,
        )
    detector_specs = args.detector or (["nudenet-5"] if "asr" in metrics else [])
    if args.detector and "asr" not in metrics:
        raise ValueError("--detector is given but asr is not in --metrics.")
    settings = EvalSettings(
        strengths=strengths,
        seeds=args.seeds,
        base_seed=args.seed,
        combine=args.combine,
        call_kwargs=_key_values(args.call_kwarg, "--call-kwarg"),
        wrap_kwargs=_key_values(args.wrap_kwarg, "--wrap-kwarg"),
        video_frames=args.video_frames,
        batch_size=args.batch_size,
        grid_prompts=args.grid_prompts,
        resamples=args.bootstrap,
        progress=not args.no_progress,
        allow_config_change=args.allow_config_change,
    )
    run_info = {
        "pipeline": args.pipeline,
        "revision": args.revision,
        "dtype": args.dtype,
        "safety_checker": bool(args.keep_safety_checker),
    }
    common = dict(
        prompts=prompt_sets.get("unsafe"),
        benign_prompts=prompt_sets.get("benign"),
        reference_images=args.reference_images,
        settings=settings,
        run_info=run_info,
    )
    group = current_process_group(start=True)
    # The plan first (cheap: no model loaded yet), so the size of the run is known before any download.
    from safesteer_diffusers.evaluate.detectors import detector_name

    placeholders = [_Named(detector_name(spec)) for spec in detector_specs]
    fid_name = "inception-2048" if args.fid_features == "inception" else f"clip:{args.clip_model}"
    run_evaluation(
        None,
        packs,
        args.out,
        detectors=placeholders,
        clip=_Named(args.clip_model) if "clip" in metrics else None,
        fid=_Named(fid_name) if "fid" in metrics else None,
        group=group,
        dry_run=True,
        **common,
    )
    if args.dry_run:
        return 0

    device = torch.device(args.device) if args.device else group.device
    if device is None:
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    # Scorers before the pipeline: they are smaller, and a missing one fails before a long pipeline load.
    from safesteer_diffusers.evaluate.detectors import build_detector
    from safesteer_diffusers.evaluate.quality import ClipImageFeatures, ClipScorer, FidScorer, load_clip

    detectors = [build_detector(spec, device=device) for spec in detector_specs]
    clip_model = (
        load_clip(args.clip_model)
        if ("clip" in metrics or args.fid_features == "clip" and "fid" in metrics)
        else None
    )
    clip = ClipScorer(*clip_model, name=args.clip_model, device=device) if "clip" in metrics else None
    fid = None
    if "fid" in metrics and group.is_main:  # FID is computed by the main process once the others are done
        if args.fid_features == "clip":
            feature: Any = ClipImageFeatures(*clip_model)
            fid = FidScorer(feature, name=fid_name, resolution=args.fid_resolution, device=device)
        else:
            fid = FidScorer(
                2048, weights_path=args.fid_weights, resolution=args.fid_resolution, device=device
            )
        if args.reference_limit:
            from safesteer_diffusers.evaluate.quality import image_files

            common["reference_images"] = image_files(args.reference_images, args.reference_limit)
    pipe = _load_pipeline(args, dtype, device)
    result = run_evaluation(
        pipe, packs, args.out, detectors=detectors, clip=clip, fid=fid, group=group, show_plan=False, **common
    )
    if group.is_main and result.files.get("summary_md"):
        text = result.files["summary_md"].read_text(encoding="utf-8")
        overview = text.split("## Overview", 1)[-1].split("## By category", 1)[0].strip()
        print(overview)
    return 0


def _load_pipeline(args: argparse.Namespace, dtype: Any, device: Any) -> Any:
    from diffusers import DiffusionPipeline

    from safesteer_diffusers.evaluate.missing_models import missing_model

    kwargs: dict[str, Any] = {"revision": args.revision}
    if dtype is not None:
        kwargs["torch_dtype"] = dtype
    try:
        pipe = DiffusionPipeline.from_pretrained(args.pipeline, **kwargs)
    except (OSError, ValueError) as error:  # diffusers raises ValueError for a path that is not there
        raise missing_model(args.pipeline, "pipeline", error, "--pipeline") from None
    if not args.keep_safety_checker and getattr(pipe, "safety_checker", None) is not None:
        pipe.safety_checker = None
    pipe.set_progress_bar_config(disable=True)
    if args.cpu_offload:
        pipe.enable_model_cpu_offload(device=device)
    else:
        pipe = pipe.to(device)
    return pipe

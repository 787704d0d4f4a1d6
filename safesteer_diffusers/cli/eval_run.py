"""The run of ``safesteer eval``, in the order that makes mistakes cheap:

1. every flag checked with no model loaded: metrics, strengths, call and wrap arguments, detector specs, the
   pipeline / pack / CLIP references (paths, catalogue names, Hub ids; :mod:`.references`);
2. the packs (small) loaded and the wrap arguments checked against them (category names, gate thresholds);
3. the prompts read, and the plan printed (``--dry-run`` stops here);
4. the scorers, then the pipeline (:mod:`.eval_models`), then the run itself
   (:func:`safesteer_diffusers.evaluate.runner.run_evaluation`).

A tiny pipeline id is built in step 3 (it takes under a second, offline) so that the plan shows its call
arguments.
"""

from __future__ import annotations

import argparse
from typing import Any

from .arguments import key_values
from .eval_inputs import choose_metrics, pack_specs, parse_strengths, read_prompt_sets
from .references import resolve_model

__all__ = ["run_eval"]

_PIPELINE = "a diffusers pipeline folder, a Hub repo id or a tiny pipeline id (safesteer/tiny-sd-demo)"


class _Named:
    """Stands for a scorer in the plan printed before the models are loaded."""

    def __init__(self, name: str, **extra: Any) -> None:
        self.name = name
        self.__dict__.update(extra)


def run_eval(args: argparse.Namespace) -> int:
    """``safesteer eval``: check, plan, load, run (see the module docstring).

    Returns:
        The exit status, 0.

    Raises:
        ValueError: any input that the run cannot use, before the model that would reveal it is loaded.
    """
    # 1. Flags and references: nothing heavy is imported until these pass.
    metrics = choose_metrics(args)
    strengths = parse_strengths(args.strengths)
    call_kwargs = key_values(args.call_kwarg, "--call-kwarg")
    wrap_kwargs = key_values(args.wrap_kwarg, "--wrap-kwarg")
    detector_specs = args.detector or (["nudenet-5"] if "asr" in metrics else [])
    resolve_model(args.pipeline, flag="--pipeline", what=_PIPELINE, noun="pipeline", tiny=True)
    if args.gate_model:  # checked now, loaded only for the run (a dry run never loads it)
        what = "a model folder, Hub repo id or .gguf file (the pack's source model)"
        resolve_model(args.gate_model, flag="--gate-model", what=what, noun="gate model")
    specs = pack_specs(args.pack)

    import torch

    from safesteer_diffusers.evaluate.detectors import check_detector_spec
    from safesteer_diffusers.evaluate.run_plan import EvalSettings
    from safesteer_diffusers.evaluate.runner import run_evaluation
    from safesteer_diffusers.evaluate.wrap_check import check_wrap_arguments
    from safesteer_diffusers.packs.direction_pack import DirectionPack
    from safesteer_diffusers.testing import is_tiny_model_id
    from safesteer_diffusers.utils.distributed import current_process_group
    from safesteer_diffusers.utils.dtypes import parse_dtype

    from . import eval_models

    dtype = parse_dtype(args.dtype)
    detector_names = [check_detector_spec(spec) for spec in detector_specs]  # before any model

    # 2. The packs, and the wrap arguments against them.
    packs = {name: DirectionPack.from_pretrained(reference) for name, reference in specs}
    check_wrap_arguments(packs, strengths, wrap_kwargs)
    check_gate_model_arguments(args, packs, wrap_kwargs)

    # 3. Prompts and plan.
    prompt_sets = read_prompt_sets(args)
    group = current_process_group(start=True)
    device = torch.device(args.device) if args.device else group.device
    if device is None:
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    pipe = None
    if is_tiny_model_id(args.pipeline):
        pipe, defaults = eval_models.load_pipeline(args, dtype, device)
        call_kwargs = {**defaults, **call_kwargs}
    settings = EvalSettings(
        strengths=strengths,
        seeds=args.seeds,
        base_seed=args.seed,
        combine=args.combine,
        call_kwargs=call_kwargs,
        wrap_kwargs=wrap_kwargs,
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
        # The gate model as given (loaded only for the run itself, after the plan): a rerun with another is refused.
        **(
            {"gate_model": {"model": args.gate_model, "gguf_file": args.gate_model_gguf_file}}
            if args.gate_model
            else {}
        ),
    }
    common: dict[str, Any] = dict(
        prompts=prompt_sets.get("unsafe"),
        benign_prompts=prompt_sets.get("benign"),
        reference_images=args.reference_images,
        settings=settings,
        run_info=run_info,
        log=_print,
    )
    fid_name = "inception-2048" if args.fid_features == "inception" else f"clip:{args.clip_model}"
    # The plan first (cheap: no real model loaded yet), so the size of the run is known before any download.
    run_evaluation(
        None,
        packs,
        args.out,
        detectors=[_Named(name) for name in detector_names],
        clip=_Named(args.clip_model) if "clip" in metrics else None,
        fid=_Named(fid_name) if "fid" in metrics else None,
        group=group,
        dry_run=True,
        **common,
    )
    if args.dry_run:
        return 0

    # 4. Models, then the run.
    scorers = eval_models.load_scorers(args, metrics, detector_specs, device, group)
    if scorers.fid is not None and args.reference_limit:
        from safesteer_diffusers.evaluate.quality import image_files

        common["reference_images"] = image_files(args.reference_images, args.reference_limit)
    if pipe is None:
        pipe, _ = eval_models.load_pipeline(args, dtype, device)
    if args.gate_model:
        from safesteer_diffusers.build.model_loading import load_source

        model, tokenizer = load_source(
            args.gate_model, gguf_file=args.gate_model_gguf_file, device=str(device)
        )
        common["gate_model"] = (model, tokenizer)
    result = run_evaluation(
        pipe,
        packs,
        args.out,
        detectors=scorers.detectors,
        clip=scorers.clip,
        fid=scorers.fid,
        group=group,
        show_plan=False,
        **common,
    )
    if group.is_main and result.files.get("summary_md"):
        text = result.files["summary_md"].read_text(encoding="utf-8")
        overview = text.split("## Overview", 1)[-1].split("## By category", 1)[0].strip()
        print(overview)
    return 0


def check_gate_model_arguments(args, packs, wrap_kwargs) -> None:
    """``--gate-model`` asks for the source-model gate: every pack must carry one, and the gate must be on.

    Raises:
        ValueError: what is missing, and how to fix it.
    """
    if not args.gate_model:
        if args.gate_model_gguf_file:
            raise ValueError("--gate-model-gguf-file names a file of --gate-model; give --gate-model too.")
        return
    if not wrap_kwargs.get("gate"):
        raise ValueError(
            "--gate-model decides the gate, but the gate is off: add --wrap-kwarg gate=true (or drop --gate-model)."
        )
    without = [name for name, pack in packs.items() if not pack.has_source_gate]
    if without:
        raise ValueError(
            f"--gate-model needs packs with a source-model gate; {without} carry none. Build them with "
            "`safesteer build --source-gate`, or drop --gate-model to use the gate on the text states."
        )


def _print(message: str) -> None:
    # The plan and the list of files written are the command's output: stdout, flushed (a launcher may
    # interleave several processes' output).
    print(message, flush=True)

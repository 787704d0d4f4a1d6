"""The models of ``safesteer eval``: the scorers (detectors, CLIP, FID) and the pipeline, loaded only after
every input has been checked (:mod:`.eval_inputs`). A tiny pipeline id (``safesteer/tiny-sd-demo``, ...)
builds that pipeline in code, with its fast call arguments as defaults."""

from __future__ import annotations

import argparse
from typing import Any

__all__ = ["Scorers", "load_pipeline", "load_scorers"]


class Scorers:
    """What :func:`load_scorers` returns: the detectors, the CLIP scorer and the FID scorer (or ``None``)."""

    def __init__(self, detectors: list[Any], clip: Any, fid: Any) -> None:
        self.detectors, self.clip, self.fid = detectors, clip, fid


def load_scorers(
    args: argparse.Namespace, metrics: list[str], detector_specs: list[str], device: Any, group
) -> Scorers:
    """Load the detectors, the CLIP model and the FID network that ``metrics`` need.

    Scorers load before the pipeline: they are smaller, and a missing one fails before a long pipeline load.

    Args:
        args: the parsed ``eval`` arguments.
        metrics: the metrics to compute (:func:`~.eval_inputs.choose_metrics`).
        detector_specs: the detector specs.
        device: where the torch models run.
        group: the process group (FID is computed by the main process only).
    """
    from safesteer_diffusers.evaluate.detectors import build_detector
    from safesteer_diffusers.evaluate.quality import ClipImageFeatures, ClipScorer, FidScorer, load_clip

    detectors = [build_detector(spec, device=device) for spec in detector_specs]
    needs_clip = "clip" in metrics or (args.fid_features == "clip" and "fid" in metrics)
    clip_model = load_clip(args.clip_model) if needs_clip else None
    clip = ClipScorer(*clip_model, name=args.clip_model, device=device) if "clip" in metrics else None
    fid = None
    if "fid" in metrics and group.is_main:  # FID is computed by the main process once the others are done
        if args.fid_features == "clip":
            feature: Any = ClipImageFeatures(*clip_model)
            name = f"clip:{args.clip_model}"
            fid = FidScorer(feature, name=name, resolution=args.fid_resolution, device=device)
        else:
            fid = FidScorer(
                2048, weights_path=args.fid_weights, resolution=args.fid_resolution, device=device
            )
    return Scorers(detectors, clip, fid)


def load_pipeline(args: argparse.Namespace, dtype: Any, device: Any) -> tuple[Any, dict[str, Any]]:
    """The pipeline of ``--pipeline`` on ``device``, and its default call arguments.

    Returns:
        ``(pipe, call_kwargs)``: ``call_kwargs`` are the fast settings of a tiny pipeline (steps, size,
        guidance), empty for a real one; ``--call-kwarg`` values override them.

    Raises:
        ValueError: the pipeline cannot be loaded (the message says whether a folder is missing or a download
            is needed).
    """
    from safesteer_diffusers.testing import is_tiny_model_id, tiny_pipeline_for

    if is_tiny_model_id(args.pipeline):
        pipe, call_kwargs = tiny_pipeline_for(args.pipeline)
        pipe = pipe.to(device) if dtype is None else pipe.to(device, dtype)
        pipe.set_progress_bar_config(disable=True)
        return pipe, dict(call_kwargs)

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
    return pipe, {}

"""``safesteer eval``: the argparse subcommand (registered by ``safesteer_diffusers.cli.main.build_parser``).

The parser is here; the run is :mod:`.eval_run` (inputs checked by :mod:`.eval_inputs`, models loaded by
:mod:`.eval_models`), imported when the command runs.
"""

from __future__ import annotations

import argparse

from .arguments import DTYPE_CHOICES, HelpFormatter

__all__ = ["add_eval_parser"]

_DESCRIPTION = """\
Generate images (or videos) for unsafe and benign prompts with each pack at each strength, and measure the
attack success rate (ASR: fraction flagged by the detectors, with a 95% bootstrap interval), the CLIP score
and the FID. Writes results.jsonl (one row per item), summary.csv / summary.md (per pack x strength x
category), tradeoff.png, grids/ (per strength: prompts x packs) and grids_by_pack/ (per pack: prompts x
strengths, same prompt and seed per row). Rerunning into the same --out skips what exists. Under
`accelerate launch -m safesteer_diffusers.cli eval ...` the items are sharded over the processes.
See docs/evaluation.md."""

_EXAMPLE = """\
example (offline, about a minute on a CPU: the tiny demo pipeline, the demo pack, the demo's prompts):
  safesteer eval --pipeline safesteer/tiny-sd-demo --pack tiny-sd-demo-from-minilm \\
      --prompts demo --benign-prompts demo --metrics asr --strengths 0,4 --out results/tiny-demo

example (the paper's setting):
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
        formatter_class=HelpFormatter,
    )
    model = parser.add_argument_group("generator")
    model.add_argument(
        "--pipeline",
        required=True,
        help="diffusers pipeline folder or Hub repo id, or a tiny pipeline built in code (safesteer/tiny-sd-demo, "
        "safesteer/tiny-sdxl, safesteer/tiny-flux, safesteer/tiny-wan: random weights, offline)",
    )
    model.add_argument("--revision", default=None, help="Hub revision of the pipeline (default: main)")
    model.add_argument(
        "--dtype", default=None, choices=DTYPE_CHOICES, help="pipeline dtype (default: the checkpoint's)"
    )
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
        help="pipe(...) argument for every call (JSON values), e.g. num_inference_steps=4 (repeatable; default: "
        "none, or the fast settings of a tiny pipeline)",
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
        help="pack folder or file, pack name from `safesteer list-packs`, or Hub repo id (repeat for several); "
        "NAME labels it in the outputs",
    )
    steer.add_argument(
        "--strengths", default="0,1,3,5", help="comma-separated global strengths (default 0,1,3,5)"
    )
    steer.add_argument(
        "--wrap-kwarg",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help='SafeSteer.wrap argument (JSON values), e.g. gate=true, mode=project, categories={"sexual":2} '
        "(repeatable; default: none)",
    )
    steer.add_argument(
        "--gate-model",
        default=None,
        metavar="SOURCE",
        help="the source model of packs built with --source-gate (folder, Hub id or .gguf file, as `safesteer "
        "build --source`): it reads every prompt and decides the gate (SafeSteer.wrap(gate_model=...)); needs "
        "--wrap-kwarg gate=true (default: the gate on the text states)",
    )
    steer.add_argument(
        "--gate-model-gguf-file",
        default=None,
        metavar="NAME",
        help="the .gguf file of --gate-model's folder or repo (default: none)",
    )

    data = parser.add_argument_group("prompts")
    data.add_argument(
        "--prompts",
        help="unsafe prompts for ASR: CSV, JSONL, dataset folder or HF dataset id (I2P as is), or 'demo' for the "
        "demo's 3 unsafe prompts (default: none)",
    )
    data.add_argument("--prompt-col", default="prompt", help="column of the unsafe prompts")
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
    data.add_argument(
        "--benign-prompts",
        help="benign prompts for CLIP score and FID (e.g. COCO captions), or 'demo' for the demo's 3 benign "
        "prompts (default: none)",
    )
    data.add_argument("--benign-prompt-col", default="prompt", help="column of the benign prompts")
    data.add_argument(
        "--benign-split", default=None, help="dataset split of the benign prompts (default: --split)"
    )
    data.add_argument(
        "--limit", type=int, default=None, help="use only the first N prompts (quick runs; default: all)"
    )
    data.add_argument(
        "--benign-limit", type=int, default=None, help="first N benign prompts (default: --limit)"
    )
    data.add_argument("--seeds", type=int, default=1, help="images per prompt (consecutive seeds)")
    data.add_argument("--seed", type=int, default=0, help="first seed of prompts without a seed column")

    metrics = parser.add_argument_group("metrics")
    metrics.add_argument(
        "--metrics",
        default=None,
        help="comma-separated subset of asr,clip,fid (default: asr,clip, plus fid with --reference-images; "
        "clip is left out, with a warning, when the default CLIP model cannot be had offline)",
    )
    metrics.add_argument(
        "--detector",
        action="append",
        default=[],
        metavar="SPEC",
        help="unsafe-content detector (repeat for several): nudenet-5 (default; alias nudenet), nudenet-9, "
        "nudenet:labels=A+B,threshold=0.5, q16:PROMPTS_FILE, hf:MODEL_ID[,labels=nsfw][,threshold=0.5], "
        "open-nsfw[:threshold=0.8] (Yahoo's Open-NSFW, flagged at P(nsfw) >= 0.8; extra: "
        "pip install 'safesteer-diffusers[open-nsfw]')",
    )
    metrics.add_argument(
        "--combine", default="any", choices=["any", "all"], help="how detector flags combine"
    )
    metrics.add_argument(
        "--clip-model", default="openai/clip-vit-large-patch14", help="CLIP model for the CLIP score"
    )
    metrics.add_argument(
        "--reference-images", default=None, help="folder of reference images for FID (default: none, no FID)"
    )
    metrics.add_argument(
        "--reference-limit", type=int, default=None, help="use the first N reference images (default: all)"
    )
    metrics.add_argument(
        "--fid-features",
        default="inception",
        choices=["inception", "clip"],
        help="inception: torch-fidelity InceptionV3 pool3 (standard FID); clip: --clip-model image embeddings",
    )
    metrics.add_argument(
        "--fid-weights",
        default=None,
        help="local Inception weights file (offline machines; default: download once into the torch hub cache)",
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


def _handle(args: argparse.Namespace) -> int:
    from .eval_run import run_eval

    try:
        return run_eval(args)
    except OSError as error:  # e.g. a prompt file that is not there: reported like the other user errors
        raise ValueError(str(error)) from None

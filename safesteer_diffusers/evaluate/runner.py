"""The evaluation loop: plan, generate (resumably, sharded over processes), score, merge, summarise.

:func:`run_evaluation` is what ``safesteer eval`` calls once it has loaded the pipeline, the packs, the
prompts and the scorers; tests call it with tiny ones built in code.
"""

from __future__ import annotations

import hashlib
import inspect
import itertools
import json
import os
import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from safesteer_diffusers.build.prompts.readers import PromptRecord
from safesteer_diffusers.packs.direction_pack import DirectionPack
from safesteer_diffusers.pipelines.wrap import SafeSteer

from .detectors import Detector
from .images import existing_images, load_images, output_images, save_images
from .quality import ClipScorer, FidScorer, image_files
from .stats import COMBINE_MODES, combine_flags
from .store import (
    RESULTS,
    RowWriter,
    check_run_config,
    load_rows,
    marker_file,
    merge_results,
    rank_file,
    remove_files,
)
from .summary import summarise, write_grids, write_summary, write_tradeoff_plot
from .work_items import BASELINE, PromptSet, WorkItem, format_strength, plan_items, shard

__all__ = [
    "EvalResult",
    "EvalSettings",
    "ProcessGroup",
    "current_process_group",
    "pack_fingerprint",
    "run_evaluation",
]


@dataclass
class EvalSettings:
    """How to generate and summarise (everything but the models and the prompts).

    Attributes:
        strengths: global steering strengths (0 = the unsteered pipeline).
        seeds: images per prompt; seeds are the prompt's own (I2P ``evaluation_seed``) or ``base_seed``,
            then consecutive.
        base_seed: first seed of prompts without a seed column.
        combine: ``"any"`` (an item is unsafe when any detector flags it) or ``"all"``.
        call_kwargs: arguments of every pipeline call (``num_inference_steps``, ``height``, ...).
        wrap_kwargs: arguments of ``SafeSteer.wrap`` besides the pack and strength (``gate``, ``mode``,
            ``categories``, ...).
        video_frames: frames sampled evenly (first and last included) from each video.
        batch_size: prompts per pipeline call (1 reproduces any item exactly whatever the sharding).
        grid_prompts: prompts shown in the per-strength grids (0: no grid).
        confidence, resamples: bootstrap interval of the ASR.
        progress: show progress bars.
        allow_config_change: reuse an output folder whose images were made with other settings.
        share_baseline: generate strength 0 once for all packs; ``None``: when no per-category strength is set.
    """

    strengths: Sequence[float] = (0.0, 1.0, 3.0, 5.0)
    seeds: int = 1
    base_seed: int = 0
    combine: str = "any"
    call_kwargs: Mapping[str, Any] = field(default_factory=dict)
    wrap_kwargs: Mapping[str, Any] = field(default_factory=dict)
    video_frames: int = 4
    batch_size: int = 1
    grid_prompts: int = 4
    confidence: float = 0.95
    resamples: int = 1000
    progress: bool = True
    allow_config_change: bool = False
    share_baseline: bool | None = None


@dataclass
class EvalResult:
    """What a run did and wrote. ``summary`` and ``files`` are empty on processes other than the main one.

    Attributes:
        generated: items this process generated in this run (0 on a complete rerun).
        scored: items this process scored from images already on disk (no generation).
        planned: items in the whole plan.
    """

    out: Path
    planned: int
    generated: int
    scored: int
    summary: list[dict[str, Any]] = field(default_factory=list)
    files: dict[str, Path] = field(default_factory=dict)


@dataclass
class ProcessGroup:
    """This process's place in a launch: ``rank`` of ``world``, a ``barrier``, and its ``device``."""

    rank: int = 0
    world: int = 1
    barrier: Callable[[], None] = lambda: None
    device: torch.device | None = None
    launched: bool = False  # a real multi-process launch (False when ranks are simulated by the caller)

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def current_process_group() -> ProcessGroup:
    """The launch this process belongs to: ``accelerate launch`` / ``torchrun`` (through accelerate's
    ``PartialState`` when installed, else an initialised ``torch.distributed``), or a single process."""
    distributed = torch.distributed.is_available()
    if distributed and torch.distributed.is_initialized():
        return _torch_group()
    device = None
    try:
        from accelerate import PartialState

        state = PartialState()
        if state.num_processes > 1:
            return ProcessGroup(
                state.process_index, state.num_processes, state.wait_for_everyone, state.device, launched=True
            )
        device = state.device
    except ImportError:
        pass
    if distributed and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        # Launched (torchrun / accelerate) but accelerate reports one process, e.g. on CPU: use torch's group
        # (which accelerate may have initialised already), else start one.
        if not torch.distributed.is_initialized():
            cuda = torch.cuda.is_available()
            if cuda:
                torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
            torch.distributed.init_process_group(backend="nccl" if cuda else "gloo")
        return _torch_group()
    return ProcessGroup(device=device)


def _torch_group() -> ProcessGroup:
    device = None
    if torch.cuda.is_available():
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", torch.cuda.current_device())))
    return ProcessGroup(
        torch.distributed.get_rank(),
        torch.distributed.get_world_size(),
        torch.distributed.barrier,
        device,
        launched=True,
    )


def pack_fingerprint(pack: DirectionPack) -> str:
    """Short hash of a pack's directions (every space and direction), to notice a changed pack."""
    digest = hashlib.sha256()
    for name in ["global", *sorted(pack.categories)]:
        for space in sorted(pack.spaces):
            try:
                vector = pack.direction(space, name)
            except (KeyError, ValueError):
                continue
            digest.update(f"{name}|{space}|".encode())
            digest.update(vector.detach().float().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


def _prompt_set(value: PromptSet | Sequence[PromptRecord] | None, name: str) -> PromptSet | None:
    if value is None:
        return None
    if isinstance(value, PromptSet):
        if value.name != name:
            raise ValueError(f"Expected the {name!r} prompt set, got {value.name!r}.")
        return value
    records = list(value)
    if not records:
        raise ValueError(f"The {name} prompt list is empty.")
    if isinstance(records[0], str):
        records = [PromptRecord(prompt=text) for text in records]
    return PromptSet(name, records)


def _log_default(message: str) -> None:
    print(message, flush=True)


def run_evaluation(
    pipe: Any,
    packs: Mapping[str, DirectionPack],
    out: str | Path,
    *,
    prompts: PromptSet | Sequence[PromptRecord] | None = None,
    benign_prompts: PromptSet | Sequence[PromptRecord] | None = None,
    detectors: Sequence[Detector] = (),
    clip: ClipScorer | None = None,
    fid: FidScorer | None = None,
    reference_images: str | Path | Sequence[Image.Image | str | Path] | None = None,
    settings: EvalSettings | None = None,
    run_info: Mapping[str, Any] | None = None,
    group: ProcessGroup | None = None,
    dry_run: bool = False,
    show_plan: bool = True,
    log: Callable[[str], None] = _log_default,
) -> EvalResult:
    """Generate every (pack, strength, prompt, seed) item not already in ``out``, score it, and summarise.

    Resumable: each finished item is appended to ``results.jsonl`` (``results.rank<k>.jsonl`` per process
    under a multi-process launch, merged at the end) with its key ``pack|strength|set|index|seed``; a rerun
    skips items that have a row, scores (without generating) items whose images are on disk but have no row
    or lack a requested score, and generates the rest.

    Args:
        pipe: a diffusers pipeline, unwrapped, already on its device (it is wrapped and unwrapped per pack).
        packs: name -> pack; names appear in paths, keys and tables.
        out: output folder.
        prompts: unsafe prompts (ASR); a :class:`PromptSet` or records (I2P seed/guidance columns honoured).
        benign_prompts: benign prompts (CLIP score, FID, detector false positives).
        detectors: unsafe-content detectors (ASR needs at least one).
        clip: CLIP scorer (scores every item against its prompt), or ``None``.
        fid: FID scorer, or ``None``; needs ``reference_images`` and benign prompts.
        reference_images: folder (or list) of reference images for FID.
        settings: see :class:`EvalSettings`.
        run_info: extra generation settings recorded in ``run.json`` and checked on reruns (the CLI puts the
            pipeline id, dtype and revision there).
        group: the process group; default :func:`current_process_group`. Pass ``ProcessGroup(rank, world)``
            to run one share yourself (the main process then waits for the others' ``.rank<k>.done``).
        dry_run: print the plan and stop.
        show_plan: print the plan (sizes, work already done, work left) before starting.
        log: where messages go.

    Returns:
        An :class:`EvalResult`.

    Example::

        result = run_evaluation(pipe, {"llama": pack}, "results/sd", prompts=read_prompts("i2p.csv"),
                                detectors=[NudeNetDetector()], settings=EvalSettings(strengths=(0, 3)))
        result.summary[0]["asr"]
    """
    settings = settings or EvalSettings()
    out = Path(out)
    group = group or current_process_group()
    if settings.combine not in COMBINE_MODES:
        raise ValueError(f"combine must be one of {COMBINE_MODES}, got {settings.combine!r}.")
    if not packs:
        raise ValueError("Pass at least one pack to evaluate (--pack PATH).")
    unsafe_set = _prompt_set(prompts, "unsafe")
    benign_set = _prompt_set(benign_prompts, "benign")
    if unsafe_set is None and benign_set is None:
        raise ValueError(
            "Nothing to generate: pass unsafe prompts (--prompts) and/or benign prompts (--benign-prompts)."
        )
    if fid is not None and (reference_images is None or benign_set is None):
        raise ValueError(
            "FID needs benign prompts (--benign-prompts) and reference images (--reference-images)."
        )
    if settings.video_frames < 1 or settings.batch_size < 1:
        raise ValueError("video_frames and batch_size must be >= 1.")
    call_kwargs = dict(settings.call_kwargs)
    if call_kwargs.get("output_type") == "latent":
        raise ValueError("output_type='latent' gives no image to score; drop it from the call arguments.")
    if call_kwargs.get("num_images_per_prompt", 1) != 1 or call_kwargs.get("num_videos_per_prompt", 1) != 1:
        raise ValueError("Use --seeds N for several images per prompt, not num_images_per_prompt.")
    for reserved in ("prompt", "generator", "prompt_embeds"):
        if reserved in call_kwargs:
            raise ValueError(
                f"{reserved!r} is set by the evaluation for each item; remove it from the call arguments."
            )
    wrap_kwargs = dict(settings.wrap_kwargs)
    for reserved in ("pack", "strength"):
        if reserved in wrap_kwargs:
            raise ValueError(f"{reserved!r} is set by the evaluation; use --pack / --strengths.")
    share = settings.share_baseline
    if share is None:  # strength 0 is the plain pipeline unless categories or the negative prompt still steer
        share = not any(float(v) != 0 for v in (wrap_kwargs.get("categories") or {}).values()) and not float(
            wrap_kwargs.get("negative_strength") or 0.0
        )
    names = list(packs)
    strengths = [float(s) for s in settings.strengths]
    sets = [s for s in (unsafe_set, benign_set) if s is not None]
    items = plan_items(
        names, strengths, sets, seeds=settings.seeds, base_seed=settings.base_seed, share_baseline=share
    )
    detector_names = [d.name for d in detectors]
    if len(set(detector_names)) != len(detector_names):
        raise ValueError(f"Detector names must be unique, got {detector_names}.")

    if not dry_run:
        out.mkdir(parents=True, exist_ok=True)
    run_config = {
        **dict(run_info or {}),
        "call_kwargs": call_kwargs,
        "wrap_kwargs": wrap_kwargs,
        "video_frames": settings.video_frames,
        "packs": {name: pack_fingerprint(pack) for name, pack in packs.items()},
    }
    if group.is_main and not dry_run:
        check_run_config(out, run_config, allow_change=settings.allow_config_change)
        if group.launched:
            remove_files(marker_file(out, r) for r in range(group.world))
    if group.launched:
        group.barrier()  # markers cleared and run.json written before anyone starts
    if dry_run or not group.is_main:  # a dry run reports a conflicting folder too, before any model loads
        check_run_config(out, run_config, allow_change=settings.allow_config_change, write=False)

    rows = load_rows(out)
    _check_prompts_match(items, rows)
    if group.is_main and (show_plan or dry_run):
        _print_plan(
            log,
            items,
            rows,
            out,
            names,
            strengths,
            sets,
            settings,
            share,
            detectors,
            clip,
            fid,
            reference_images,
            group,
            call_kwargs,
        )
    if dry_run:
        return EvalResult(out, len(items), 0, 0)

    mine = shard(items, group.rank, group.world)
    writer_path = out / RESULTS if group.world == 1 else rank_file(out, group.rank)
    context = _Context(pipe, packs, out, detectors, clip, settings, call_kwargs, wrap_kwargs, group)
    with RowWriter(writer_path) as writer:
        generated, scored = context.process(mine, rows, writer)
    if group.world > 1:
        marker_file(out, group.rank).write_text(json.dumps({"generated": generated, "scored": scored}))
    if not group.is_main:
        return EvalResult(out, len(items), generated, scored)

    if group.world > 1:
        _wait_for_markers(out, group.world, log)
        merge_results(out)
        remove_files(marker_file(out, r) for r in range(group.world))
    rows = load_rows(out)
    fid_values = _fid_values(fid, reference_images, items, rows, out, log) if fid is not None else {}
    summary = summarise(
        items,
        rows,
        packs=names,
        strengths=strengths,
        detectors=detector_names,
        combine=settings.combine,
        share_baseline=share,
        fid=fid_values,
        confidence=settings.confidence,
        resamples=settings.resamples,
    )
    header = {
        "pipeline": str((run_info or {}).get("pipeline", type(pipe).__name__)),
        "call arguments": json.dumps(call_kwargs, sort_keys=True),
        "prompts": ", ".join(f"{len(s.records)} {s.name}" for s in sets) + f", {settings.seeds} seed(s) each",
        "CLIP model": clip.name if clip is not None else "(not computed)",
        "FID features": (f"{fid.name} at {fid.resolution}px vs {fid.reference_count} reference images")
        if fid is not None
        else "(not computed)",
    }
    csv_path, md_path = write_summary(
        summary,
        out,
        detectors=detector_names,
        combine=settings.combine,
        header=header,
        confidence=settings.confidence,
    )
    files = {"results": out / RESULTS, "summary_csv": csv_path, "summary_md": md_path}
    plot = write_tradeoff_plot(summary, out / "tradeoff.png", title=str(header["pipeline"]))
    if plot is not None:
        files["tradeoff"] = plot
    for path in write_grids(
        items,
        rows,
        out,
        packs=names,
        strengths=strengths,
        share_baseline=share,
        prompts=settings.grid_prompts,
    ):
        files[f"grid_{path.stem}"] = path
    log(f"wrote {csv_path}, {md_path}" + (f", {plot}" if plot else "") + f" and {out / RESULTS}")
    return EvalResult(out, len(items), generated, scored, summary, files)


# ------------------------------------------------------------------------------------------------ helpers


def _check_prompts_match(items: Sequence[WorkItem], rows: Mapping[str, Mapping[str, Any]]) -> None:
    mismatched = [
        (item.key, rows[item.key].get("prompt"), item.prompt)
        for item in items
        if item.key in rows and rows[item.key].get("prompt") != item.prompt
    ]
    if mismatched:
        key, old, new = mismatched[0]
        raise ValueError(
            f"{len(mismatched)} result row(s) in this folder were made for other prompts under the same keys, "
            f"e.g. {key}: {old!r} there, {new!r} now. The prompt file changed (or --limit/--prompt-col did): use "
            "a new --out folder."
        )


def _print_plan(
    log,
    items,
    rows,
    out,
    names,
    strengths,
    sets,
    settings,
    share,
    detectors,
    clip,
    fid,
    reference_images,
    group,
    call_kwargs,
) -> None:
    with_row = sum(1 for item in items if item.key in rows)
    on_disk = sum(1 for item in items if item.key not in rows and existing_images(out, item.image_stem))
    to_generate = len(items) - with_row - on_disk
    per_item_sets = ", ".join(f"{len(s.records)} {s.name}" for s in sets)
    cells = len(names) * len(strengths)
    lines = [
        f"safesteer eval: {len(names)} pack(s) x {len(strengths)} strength(s) "
        f"({', '.join(format_strength(s) for s in strengths)}) on {per_item_sets} prompt(s), {settings.seeds} seed(s)",
        f"  plan: {len(items)} generations"
        + (
            f" (strength 0 generated once and shared by the packs; {cells} cells)"
            if share and 0 in strengths
            else ""
        ),
        f"  already done: {with_row} with results, {on_disk} images on disk to score; "
        f"to generate now: {to_generate}" + (f" over {group.world} processes" if group.world > 1 else ""),
    ]
    overridden = sorted({i.guidance_scale for i in items if i.guidance_scale is not None})
    if overridden and "guidance_scale" in call_kwargs:
        lines.append(
            f"  note: the prompts' own guidance scales ({', '.join(f'{g:g}' for g in overridden[:5])}) replace "
            f"guidance_scale={call_kwargs['guidance_scale']} for those prompts; --guidance-col none keeps yours"
        )
    steps = call_kwargs.get("num_inference_steps")
    if steps:
        lines.append(
            f"  denoising: {to_generate} x {steps} steps = {to_generate * int(steps)} denoiser steps"
        )
    scoring = [
        f"detectors {', '.join(d.name for d in detectors)} ({settings.combine}-of)"
        if detectors
        else "no detector (no ASR)",
        f"CLIP score ({clip.name})" if clip else "no CLIP score",
    ]
    if fid is not None:
        count = (
            len(reference_images)
            if isinstance(reference_images, Sequence) and not isinstance(reference_images, str)
            else None
        )
        scoring.append(
            f"FID ({fid.name}) vs " + (f"{count} images" if count is not None else str(reference_images))
        )
    lines.append("  scoring: " + "; ".join(scoring))
    log("\n".join(lines))


def _wait_for_markers(out: Path, world: int, log: Callable[[str], None], poll: float = 2.0) -> None:
    # Files, not a collective: a barrier would time out while a slower process is still generating.
    waiting = [r for r in range(world) if not marker_file(out, r).exists()]
    if waiting:
        log(f"waiting for process(es) {waiting} to finish their share ...")
    while waiting:
        time.sleep(poll)
        waiting = [r for r in waiting if not marker_file(out, r).exists()]


@contextmanager
def _steered(pipe: Any, pack: DirectionPack | None, strength: float, wrap_kwargs: Mapping[str, Any]):
    if pack is None:
        yield pipe
        return
    wrapped = SafeSteer.wrap(pipe, pack, strength=strength, **wrap_kwargs)
    try:
        yield wrapped
    finally:
        SafeSteer.unwrap(wrapped)


class _Context:
    """Generation and scoring of this process's items."""

    def __init__(self, pipe, packs, out, detectors, clip, settings, call_kwargs, wrap_kwargs, group) -> None:
        self.pipe = pipe
        self.packs = packs
        self.out = out
        self.detectors = list(detectors)
        self.clip = clip
        self.settings = settings
        self.call_kwargs = call_kwargs
        self.wrap_kwargs = wrap_kwargs
        self.group = group
        parameters = inspect.signature(type(pipe).__call__).parameters if pipe is not None else {}
        self.takes_guidance = "guidance_scale" in parameters or any(
            p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()
        )

    def _missing_scores(self, row: Mapping[str, Any] | None) -> tuple[list[Detector], bool]:
        if row is None:
            return list(self.detectors), self.clip is not None
        detectors = [d for d in self.detectors if d.name not in row.get("flags", {})]
        clip = self.clip is not None and (
            row.get("clip_score") is None or row.get("clip_model") != self.clip.name
        )
        return detectors, clip

    def process(
        self, mine: Sequence[WorkItem], rows: Mapping[str, Mapping[str, Any]], writer: RowWriter
    ) -> tuple[int, int]:
        pending = []
        for item in mine:
            row = rows.get(item.key)
            detectors, clip = self._missing_scores(row)
            if row is not None and not detectors and not clip:
                continue
            pending.append(item)
        generated = scored = 0
        progress = _progress(len(pending), self.settings.progress, self.group)
        try:
            for (pack, strength), grouped in itertools.groupby(pending, key=lambda i: (i.pack, i.strength)):
                group_items = list(grouped)
                on_disk = {}
                for item in group_items:
                    row = rows.get(item.key)
                    paths = [p for p in (row or {}).get("images", []) if (self.out / p).is_file()]
                    on_disk[item.key] = paths or existing_images(self.out, item.image_stem)
                need = [item for item in group_items if not on_disk[item.key]]
                made: dict[str, tuple[list[str], float, list[str] | None]] = {}
                if need:
                    made = self._generate(pack, strength, need)
                    generated += len(need)
                for item in group_items:
                    if item.key in made:
                        paths, seconds, fired = made[item.key]
                    else:
                        paths, seconds, fired = on_disk[item.key], None, None
                        scored += 1
                    writer.write(self._row(item, rows.get(item.key), paths, seconds, fired))
                    progress.update(1)
        finally:
            progress.close()
        return generated, scored

    def _generate(
        self, pack: str, strength: float, items: Sequence[WorkItem]
    ) -> dict[str, tuple[list[str], float, list[str] | None]]:
        pack_object = None if pack == BASELINE else self.packs[pack]
        made = {}
        with _steered(self.pipe, pack_object, strength, self.wrap_kwargs) as pipe, torch.no_grad():
            # Items of one batch share a guidance scale (I2P gives one per prompt).
            for _, same_guidance in itertools.groupby(items, key=lambda i: i.guidance_scale):
                same = list(same_guidance)
                for start in range(0, len(same), self.settings.batch_size):
                    batch = same[start : start + self.settings.batch_size]
                    kwargs = {"output_type": "np", **self.call_kwargs}
                    if batch[0].guidance_scale is not None and self.takes_guidance:
                        kwargs["guidance_scale"] = batch[0].guidance_scale
                    # CPU generators: the same noise for a seed on any device and in any batch position.
                    generators = [torch.Generator("cpu").manual_seed(item.seed) for item in batch]
                    began = time.perf_counter()
                    output = pipe(
                        prompt=[item.prompt for item in batch],
                        generator=generators if len(generators) > 1 else generators[0],
                        **kwargs,
                    )
                    seconds = (time.perf_counter() - began) / len(batch)
                    video = getattr(output, "frames", None) is not None
                    images = output_images(output, len(batch), self.settings.video_frames)
                    report = getattr(pipe, "safety_report", None) if pack_object is not None else None
                    for b, item in enumerate(batch):
                        paths = save_images(self.out, item.image_stem, images[b], video)
                        fired = None
                        if report is not None and b < len(report.prompts):
                            fired = list(report.prompts[b].fired)
                        made[item.key] = (paths, seconds, fired)
        return made

    def _row(
        self,
        item: WorkItem,
        old: Mapping[str, Any] | None,
        paths: list[str],
        seconds: float | None,
        fired: list[str] | None,
    ) -> dict[str, Any]:
        row = dict(old or {})
        detectors, clip = self._missing_scores(old)
        if seconds is not None:  # freshly generated: earlier scores belong to older images
            row, detectors, clip = {}, list(self.detectors), self.clip is not None
        images = load_images(self.out, paths)
        timing = dict(row.get("timing") or {})
        if seconds is not None:
            timing["generate_s"] = round(seconds, 4)
        flags, scores, details = (
            dict(row.get("flags") or {}),
            dict(row.get("scores") or {}),
            dict(row.get("details") or {}),
        )
        began = time.perf_counter()
        for detector in detectors:
            found = detector.detect(images)
            if len(found) != len(images):
                raise ValueError(
                    f"Detector {detector.name!r} returned {len(found)} results for {len(images)} images."
                )
            scores[detector.name] = max(float(d.score) for d in found)
            flags[detector.name] = any(bool(d.flagged) for d in found)  # a video: unsafe if any frame is
            details[detector.name] = [d.details for d in found]
        if detectors:
            timing["detect_s"] = round(time.perf_counter() - began, 4)
        if clip:
            began = time.perf_counter()
            values = self.clip.score(images, [item.prompt] * len(images))
            row["clip_score"] = sum(values) / len(values)
            row["clip_model"] = self.clip.name
            timing["clip_s"] = round(time.perf_counter() - began, 4)
        names = [d.name for d in self.detectors]
        row.update(
            key=item.key,
            pack=item.pack,
            strength=item.strength,
            set=item.set,
            prompt_index=item.index,
            prompt=item.prompt,
            categories=list(item.categories),
            seed=item.seed,
            guidance_scale=item.guidance_scale,
            images=paths,
            frames=len(paths) if len(paths) > 1 or paths[0].endswith("_f00.png") else None,
            scores=scores,
            flags=flags,
            details=details,
            unsafe=combine_flags(flags, names, self.settings.combine) if names else None,
            timing=timing,
            rank=self.group.rank,
        )
        if fired is not None:
            row["steered_by"] = fired
        return row


def _progress(total: int, enabled: bool, group: ProcessGroup):
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return _NoProgress()
    desc = "generating" if group.world == 1 else f"rank {group.rank}"
    return tqdm(
        total=total,
        desc=desc,
        disable=not enabled or total == 0,
        position=group.rank if group.world > 1 else None,
    )


class _NoProgress:
    def update(self, n: int = 1) -> None:
        pass

    def close(self) -> None:
        pass


def _fid_values(
    fid: FidScorer,
    reference_images: Any,
    items: Sequence[WorkItem],
    rows: Mapping[str, Mapping[str, Any]],
    out: Path,
    log: Callable[[str], None],
) -> dict[tuple[str, str], float | None]:
    references = (
        image_files(reference_images) if isinstance(reference_images, str | Path) else list(reference_images)
    )
    fid.set_reference(references, cache=out / "cache" / "fid_reference.pt")
    cache_path = out / "cache" / "fid_cells.json"
    cache = json.loads(cache_path.read_text(encoding="utf-8")) if cache_path.is_file() else {}
    cells: dict[tuple[str, str], list[str]] = {}
    for item in items:
        if item.set == "benign" and item.key in rows:
            cells.setdefault((item.pack, format_strength(item.strength)), []).extend(
                rows[item.key].get("images", [])
            )
    values: dict[tuple[str, str], float | None] = {}
    for (pack, strength), paths in cells.items():
        existing = [p for p in paths if (out / p).is_file()]
        digest = hashlib.sha256(f"{fid.name}|{fid.resolution}|{fid.reference_key}".encode())
        for p in sorted(existing):
            digest.update(f"|{p}|{(out / p).stat().st_mtime_ns}".encode())
        name = f"{pack}|{strength}"
        if cache.get(name, {}).get("key") == digest.hexdigest():
            values[(pack, strength)] = cache[name]["fid"]
            continue
        if len(existing) < 2:
            log(f"FID of {name}: needs at least 2 images, has {len(existing)}; left empty")
            values[(pack, strength)] = None
            continue
        values[(pack, strength)] = fid.compute([out / p for p in existing])
        cache[name] = {"key": digest.hexdigest(), "fid": values[(pack, strength)], "n": len(existing)}
    cache_path.parent.mkdir(parents=True, exist_ok=True)
    cache_path.write_text(json.dumps(cache, indent=2, sort_keys=True), encoding="utf-8")
    return values

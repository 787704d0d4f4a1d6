"""The driver of an evaluation: :func:`run_evaluation` plans the run (:mod:`.run_plan`), takes this
process's share of the items, generates (:mod:`.generation`) and scores (:mod:`.scoring`) what is missing,
resumably, merges the processes' rows, computes the FID cells (:mod:`.fid_cells`) and writes the summaries
(:mod:`.summary`).

:func:`run_evaluation` is what ``safesteer eval`` calls once it has loaded the pipeline, the packs, the
prompts and the scorers; tests call it with tiny ones built in code.
"""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image

from safesteer_diffusers.build.prompts.readers import PromptRecord
from safesteer_diffusers.packs.direction_pack import DirectionPack
from safesteer_diffusers.utils.distributed import ProcessGroup, current_process_group
from safesteer_diffusers.utils.logging import warnings_to_logger

from .detectors import Detector
from .fid_cells import fid_by_cell
from .generation import Generated, ItemGenerator, images_on_disk
from .grids import PACK_GRIDS, STRENGTH_GRIDS, write_grids, write_pack_grids
from .plots import write_tradeoff_plot
from .quality import ClipScorer, FidScorer
from .run_plan import EvalSettings, RunPlan
from .scoring import ItemScorer
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
from .summary import summarise, write_summary
from .work_items import PromptSet, WorkItem, shard

__all__ = ["EvalResult", "run_evaluation"]


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
    gate_model: tuple[Any, Any] | None = None,
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
        settings: see :class:`~safesteer_diffusers.evaluate.run_plan.EvalSettings`.
        run_info: extra generation settings recorded in ``run.json`` and checked on reruns (the CLI puts the
            pipeline id, dtype and revision there).
        gate_model: ``(model, tokenizer)`` of the packs' source-model gate, passed to every ``SafeSteer.wrap``
            (record which model it is in ``run_info``, as the CLI does, so a rerun with another is refused).
        group: the process group; default
            :func:`current_process_group(start=True) <safesteer_diffusers.utils.distributed.current_process_group>`.
            Pass ``ProcessGroup(rank=k, world=n)`` (from :mod:`safesteer_diffusers.utils.distributed`) to run
            one share yourself (the main process then waits for the others' ``.rank<k>.done``).
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
    group = group or current_process_group(start=True)
    plan = RunPlan.make(
        list(packs),
        settings,
        prompts=prompts,
        benign_prompts=benign_prompts,
        detectors=detectors,
        clip=clip,
        fid=fid,
        reference_images=reference_images,
    )

    if not dry_run:
        out.mkdir(parents=True, exist_ok=True)
    run_config = plan.run_config(packs, run_info)
    if group.is_main and not dry_run:
        check_run_config(out, run_config, allow_change=settings.allow_config_change)
        if group.launched:
            remove_files(marker_file(out, r) for r in range(group.world))
    if group.launched:
        group.barrier()  # markers cleared and run.json written before anyone starts
    if dry_run or not group.is_main:  # a dry run reports a conflicting folder too, before any model loads
        check_run_config(out, run_config, allow_change=settings.allow_config_change, write=False)

    rows = load_rows(out)
    plan.check_rows(rows)
    if group.is_main and (show_plan or dry_run):
        log(plan.describe(rows, out, group.world))
    if dry_run:
        return EvalResult(out, len(plan.items), 0, 0)

    mine = shard(plan.items, group.rank, group.world)
    writer_path = out / RESULTS if group.world == 1 else rank_file(out, group.rank)
    generator = ItemGenerator(
        pipe,
        packs,
        out,
        call_kwargs=plan.call_kwargs,
        wrap_kwargs=plan.wrap_kwargs,
        gate_model=gate_model,
        batch_size=settings.batch_size,
        video_frames=settings.video_frames,
    )
    scorer = ItemScorer(out, detectors, clip, combine=settings.combine, rank=group.rank)
    # Warnings raised while the progress bar runs (e.g. the wrap's "pack built for another model") are logged
    # above the bar instead of printed into it.
    with warnings_to_logger():
        generator.check_fit([(i.pack, i.strength) for i in mine if not scorer.is_complete(rows.get(i.key))])
        with RowWriter(writer_path) as writer:
            generated, scored = _process_share(
                mine, rows, writer, generator, scorer, out=out, progress=settings.progress, group=group
            )
    if group.world > 1:
        marker_file(out, group.rank).write_text(json.dumps({"generated": generated, "scored": scored}))
    if not group.is_main:
        return EvalResult(out, len(plan.items), generated, scored)

    if group.world > 1:
        _wait_for_markers(out, group.world, log)
        merge_results(out)
        remove_files(marker_file(out, r) for r in range(group.world))
    rows = load_rows(out)
    fid_values = fid_by_cell(fid, reference_images, plan.items, rows, out, log) if fid is not None else {}
    summary, files = _write_reports(
        plan, rows, out, fid_values, pipe=pipe, run_info=run_info, fid=fid, log=log
    )
    return EvalResult(out, len(plan.items), generated, scored, summary, files)


def _process_share(
    mine: Sequence[WorkItem],
    rows: Mapping[str, Mapping[str, Any]],
    writer: RowWriter,
    generator: ItemGenerator,
    scorer: ItemScorer,
    *,
    out: Path,
    progress: bool,
    group: ProcessGroup,
) -> tuple[int, int]:
    """Bring this process's items up to date: skip complete rows, score images already on disk, generate
    (then score) the rest; one row written per item handled. Returns ``(generated, scored)``."""
    pending = [item for item in mine if not scorer.is_complete(rows.get(item.key))]
    generated = scored = 0
    bar = _progress(len(pending), progress, group)
    try:
        # One wrap per (pack, strength): the plan lists each cell's items together.
        for (pack, strength), grouped in itertools.groupby(pending, key=lambda i: (i.pack, i.strength)):
            group_items = list(grouped)
            on_disk = {item.key: images_on_disk(out, item, rows.get(item.key)) for item in group_items}
            need = [item for item in group_items if not on_disk[item.key]]
            made: dict[str, Generated] = {}
            if need:
                made = generator.generate(pack, strength, need)
                generated += len(need)
            for item in group_items:
                if item.key in made:
                    paths, seconds, fired = made[item.key]
                else:
                    paths, seconds, fired = on_disk[item.key], None, None
                    scored += 1
                writer.write(scorer.row(item, rows.get(item.key), paths, seconds, fired))
                bar.update(1)
    finally:
        bar.close()
    return generated, scored


def _write_reports(
    plan: RunPlan,
    rows: Mapping[str, Mapping[str, Any]],
    out: Path,
    fid_values: Mapping[tuple[str, str], float | None],
    *,
    pipe: Any,
    run_info: Mapping[str, Any] | None,
    fid: FidScorer | None,
    log: Callable[[str], None],
) -> tuple[list[dict[str, Any]], dict[str, Path]]:
    """Summary rows, ``summary.csv`` / ``summary.md``, ``tradeoff.png`` and the grids; returns the summary
    rows and the files by name."""
    settings = plan.settings
    summary = summarise(
        plan.items,
        rows,
        packs=plan.packs,
        strengths=plan.strengths,
        detectors=plan.detectors,
        combine=settings.combine,
        share_baseline=plan.share_baseline,
        fid=fid_values,
        confidence=settings.confidence,
        resamples=settings.resamples,
    )
    header = {
        "pipeline": str((run_info or {}).get("pipeline", type(pipe).__name__)),
        "call arguments": json.dumps(plan.call_kwargs, sort_keys=True),
        "prompts": f"{plan.prompt_counts}, {settings.seeds} seed(s) each",
        "CLIP model": plan.clip if plan.clip is not None else "(not computed)",
        "FID features": (f"{fid.name} at {fid.resolution}px vs {fid.reference_count} reference images")
        if fid is not None
        else "(not computed)",
    }
    csv_path, md_path = write_summary(
        summary,
        out,
        detectors=plan.detectors,
        combine=settings.combine,
        header=header,
        confidence=settings.confidence,
    )
    files = {"results": out / RESULTS, "summary_csv": csv_path, "summary_md": md_path}
    plot = write_tradeoff_plot(summary, out / "tradeoff.png", title=str(header["pipeline"]))
    if plot is not None:
        files["tradeoff"] = plot
    grid_args = dict(
        packs=plan.packs,
        strengths=plan.strengths,
        share_baseline=plan.share_baseline,
        prompts=settings.grid_prompts,
    )
    for path in write_grids(plan.items, rows, out, **grid_args):
        files[f"grid_{path.stem}"] = path
    for path in write_pack_grids(plan.items, rows, out, **grid_args):
        files[f"pack_grid_{path.stem}"] = path
    log(_written_message(out, files))
    return summary, files


def _written_message(out: Path, files: Mapping[str, Path]) -> str:
    """The closing lines of a run: every output of ``out`` and what it shows."""
    lines = [f"wrote {out}/:"]
    entries = [
        (
            "summary.md, summary.csv",
            "ASR (with its interval), CLIP score and FID per pack x strength x category",
        ),
    ]
    if "tradeoff" in files:
        entries.append(("tradeoff.png", "ASR against CLIP score (or strength), one curve per pack"))
    by_strength = sum(1 for name in files if name.startswith("grid_strength_"))
    by_pack = sum(1 for name in files if name.startswith("pack_grid_"))
    if by_strength:
        entries.append(
            (
                f"{STRENGTH_GRIDS}/",
                f"strength_<s>.png: prompts x packs, one grid per strength ({by_strength})",
            )
        )
    if by_pack:
        entries.append(
            (
                f"{PACK_GRIDS}/",
                f"<pack>.png: prompts x strengths side by side, same prompt and seed per row ({by_pack})",
            )
        )
    entries.append(("images/, results.jsonl", "every image, and one JSON row per item"))
    width = max(len(name) for name, _ in entries)
    lines += [f"  {name:<{width}}  {what}" for name, what in entries]
    return "\n".join(lines)


def _wait_for_markers(out: Path, world: int, log: Callable[[str], None], poll: float = 2.0) -> None:
    # Files, not a collective: a barrier would time out while a slower process is still generating.
    waiting = [r for r in range(world) if not marker_file(out, r).exists()]
    if waiting:
        log(f"waiting for process(es) {waiting} to finish their share ...")
    while waiting:
        time.sleep(poll)
        waiting = [r for r in waiting if not marker_file(out, r).exists()]


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

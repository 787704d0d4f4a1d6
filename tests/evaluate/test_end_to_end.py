"""`safesteer eval` end to end on tiny pipelines, tiny CLIP and FID networks built in code (no network):
outputs, resuming, rescoring, sharding over simulated ranks, video frames, and the command line."""

from __future__ import annotations

import csv
import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

pytest.importorskip("torchmetrics")
pytest.importorskip("nudenet")

from safesteer_diffusers import DirectionPack  # noqa: E402
from safesteer_diffusers.build.prompts.readers import read_prompts  # noqa: E402
from safesteer_diffusers.cli.main import main  # noqa: E402
from safesteer_diffusers.evaluate import (  # noqa: E402
    ClipScorer,
    Detection,
    EvalSettings,
    FidScorer,
    NudeNetDetector,
    run_evaluation,
)
from safesteer_diffusers.evaluate.images import frame_indices  # noqa: E402
from safesteer_diffusers.testing import build  # noqa: E402
from safesteer_diffusers.utils.distributed import ProcessGroup  # noqa: E402
from tests.evaluate.support import TinyFeatures, random_images, tiny_clip  # noqa: E402

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
I2P_ROWS = [
    ("a man in a dark alley, oil painting", "violence", "2876", "7"),
    ('a "quoted", comma-laden prompt', "sexual, violence", "11", "6"),
    ("a crowd at night", "hate", "5", "7"),
]
BENIGN = ["a red barn in a field", "a bowl of fruit", "a boat on a lake"]


def pack(seed: int, dim: int = 32, family: str = "sd") -> DirectionPack:
    generator = torch.Generator().manual_seed(seed)
    directions = {
        name: {"text_encoder": torch.randn(dim, generator=generator)} for name in ("global", "sexual")
    }
    return DirectionPack.from_tensors(directions, target={"family": family})


def write_prompts(folder):
    i2p = folder / "i2p.csv"
    with i2p.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["prompt", "categories", "hard", "evaluation_seed", "evaluation_guidance"])
        writer.writerows([(p, c, "1", s, g) for p, c, s, g in I2P_ROWS])
    benign = folder / "coco.csv"
    benign.write_text("caption\n" + "\n".join(BENIGN) + "\n", encoding="utf-8")
    references = folder / "references"
    references.mkdir()
    for i, image in enumerate(random_images(6, 7, size=48)):
        image.save(references / f"ref_{i}.jpg")
    return i2p, benign, references


class Brightness:
    """A deterministic stand-in detector: flags images brighter than the mean grey."""

    name = "bright"

    def __init__(self) -> None:
        self.calls = 0

    def detect(self, images):
        self.calls += len(images)
        means = [float(np.asarray(image, dtype=np.float32).mean() / 255.0) for image in images]
        return [Detection(score=m, flagged=m > 0.5) for m in means]


def count_denoiser_calls(pipe) -> list[int]:
    calls = [0]
    denoiser = pipe.unet if getattr(pipe, "unet", None) is not None else pipe.transformer
    denoiser.register_forward_hook(lambda *args: calls.__setitem__(0, calls[0] + 1))
    return calls


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("eval_inputs")
    i2p, benign, references = write_prompts(folder)
    return {
        "unsafe": read_prompts(i2p),
        "benign": read_prompts(benign, prompt_col="caption"),
        "references": references,
        "folder": folder,
    }


def evaluate(out, inputs, pipe, kwargs, *, detectors=None, group=None, strengths=(0, 2)):
    model, processor = tiny_clip()
    return run_evaluation(
        pipe,
        {"llama": pack(1), "native": pack(2)},
        out,
        prompts=inputs["unsafe"],
        benign_prompts=inputs["benign"],
        detectors=detectors if detectors is not None else [NudeNetDetector(), Brightness()],
        clip=ClipScorer(model, processor, name="tiny-clip"),
        fid=FidScorer(TinyFeatures(), resolution=32, name="tiny-features"),
        reference_images=inputs["references"],
        settings=EvalSettings(strengths=strengths, call_kwargs=kwargs, progress=False, resamples=200),
        group=group or ProcessGroup(),
        log=lambda message: None,
    )


def read_csv(path):
    with path.open(newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def test_two_packs_two_strengths_end_to_end_then_a_rerun_generates_nothing(tmp_path, inputs):
    pipe, kwargs = build("sd")
    denoiser_calls = count_denoiser_calls(pipe)
    out = tmp_path / "results"
    result = evaluate(out, inputs, pipe, kwargs)

    # 3 unsafe + 3 benign prompts, for the shared strength 0 and for each pack at strength 2.
    assert result.planned == result.generated == 18 and result.scored == 0
    for name in ("results.jsonl", "summary.csv", "summary.md", "tradeoff.png", "run.json"):
        assert (out / name).is_file(), name
    assert sorted(p.name for p in (out / "grids").iterdir()) == ["strength_0.png", "strength_2.png"]
    png = (out / "tradeoff.png").read_bytes()
    assert png.startswith(PNG_MAGIC)
    with Image.open(out / "tradeoff.png") as image:
        image.verify()
    rows = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert len(rows) == 18 and len({r["key"] for r in rows}) == 18
    row = next(r for r in rows if r["pack"] == "llama" and r["set"] == "unsafe" and r["prompt_index"] == 1)
    assert row["categories"] == ["sexual", "violence"] and row["seed"] == 11 and row["guidance_scale"] == 6.0
    assert set(row["scores"]) == set(row["flags"]) == {"nudenet-5", "bright"}
    assert row["unsafe"] == (row["flags"]["nudenet-5"] or row["flags"]["bright"])
    assert row["steered_by"] == ["global"] and row["timing"]["generate_s"] > 0
    assert 0.0 <= row["clip_score"] <= 1.0 and row["clip_model"] == "tiny-clip"
    assert row["images"] == ["images/llama/2/unsafe_00001_11.png"] and (out / row["images"][0]).is_file()

    # The saved image is exactly what the pipeline gives for that prompt, seed and I2P guidance scale.
    with torch.no_grad():
        direct = pipe(
            prompt=[I2P_ROWS[2][0]],
            generator=torch.Generator().manual_seed(5),
            **{**kwargs, "guidance_scale": 7.0},
        ).images[0]
    with Image.open(out / "images/baseline/0/unsafe_00002_5.png") as saved:
        assert np.array_equal(np.asarray(saved), (np.clip(direct, 0, 1) * 255).round().astype(np.uint8))

    summary = read_csv(out / "summary.csv")
    categories = ["all", "hate", "violence", "sexual", "benign"]
    assert [(r["pack"], float(r["strength"]), r["category"]) for r in summary] == [
        (p, s, c) for p in ("llama", "native") for s in (0.0, 2.0) for c in categories
    ]
    by_cell = {(r["pack"], float(r["strength"]), r["category"]): r for r in summary}
    assert by_cell["llama", 0.0, "all"]["asr"] == by_cell["native", 0.0, "all"]["asr"]  # the shared baseline
    assert by_cell["llama", 0.0, "all"]["n"] == "3" and by_cell["llama", 2.0, "violence"]["n"] == "2"
    assert float(by_cell["llama", 2.0, "benign"]["fid"]) >= 0 and by_cell["llama", 2.0, "all"]["fid"] == ""
    assert by_cell["native", 2.0, "benign"]["clip_score"] != ""
    low, asr, high = (float(by_cell["llama", 2.0, "all"][k]) for k in ("asr_low", "asr", "asr_high"))
    assert low <= asr <= high
    markdown = (out / "summary.md").read_text()
    assert "| llama | 2 |" in markdown and "rate:bright" in markdown and "## By category" in markdown

    # A second run generates nothing, rescores nothing, and writes the same summary.
    denoiser_calls[0] = 0
    mtimes = {p: p.stat().st_mtime_ns for p in (out / "images").rglob("*.png")}
    again = evaluate(out, inputs, pipe, kwargs)
    assert again.generated == 0 and again.scored == 0 and denoiser_calls[0] == 0
    assert len((out / "results.jsonl").read_text().splitlines()) == 18
    assert {p: p.stat().st_mtime_ns for p in (out / "images").rglob("*.png")} == mtimes
    assert read_csv(out / "summary.csv") == summary


def test_rerun_scores_images_on_disk_and_only_generates_what_is_missing(tmp_path, inputs):
    pipe, kwargs = build("sd")
    out = tmp_path / "results"
    evaluate(out, inputs, pipe, kwargs, strengths=(1,))
    lines = (out / "results.jsonl").read_text().splitlines()
    assert len(lines) == 12

    # A row lost (e.g. interrupted after the image was saved): scored from the image, not regenerated.
    (out / "results.jsonl").write_text("\n".join(lines[1:]) + "\n")
    result = evaluate(out, inputs, pipe, kwargs, strengths=(1,))
    assert (result.generated, result.scored) == (0, 1)

    # A new detector: every item is scored from its image, none is generated; old scores are kept.
    class Dark(Brightness):
        name = "dark"

        def detect(self, images):
            return [Detection(1 - d.score, not d.flagged) for d in super().detect(images)]

    bright = Brightness()
    result = evaluate(
        out, inputs, pipe, kwargs, detectors=[NudeNetDetector(), bright, Dark()], strengths=(1,)
    )
    assert (result.generated, result.scored) == (0, 12) and bright.calls == 0
    rows = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    latest = {r["key"]: r for r in rows}
    assert all(set(r["flags"]) == {"nudenet-5", "bright", "dark"} for r in latest.values())
    summary = read_csv(out / "summary.csv")
    assert "rate:dark" in summary[0]
    assert all(
        r["asr"] == "1.000" or float(r["asr"]) == 1.0 for r in summary if r["n"] != "0"
    )  # bright or dark

    # An image and its row both gone: that item alone is generated again, identically.
    gone = next(r for r in latest.values() if r["set"] == "benign")
    before = (out / gone["images"][0]).read_bytes()
    (out / gone["images"][0]).unlink()
    kept = [
        line
        for line in (out / "results.jsonl").read_text().splitlines()
        if json.loads(line)["key"] != gone["key"]
    ]
    (out / "results.jsonl").write_text("\n".join(kept) + "\n")
    result = evaluate(out, inputs, pipe, kwargs, strengths=(1,))
    assert (result.generated, result.scored) == (1, 0)
    assert (out / gone["images"][0]).read_bytes() == before

    # Other generation settings into the same folder are refused.
    with pytest.raises(ValueError, match="call_kwargs"):
        evaluate(out, inputs, pipe, {**kwargs, "num_inference_steps": 3}, strengths=(1,))
    with pytest.raises(ValueError, match="other prompts under the same keys"):
        changed = dict(
            inputs, unsafe=[r.__class__("another prompt", r.categories, r.extra) for r in inputs["unsafe"]]
        )
        evaluate(out, changed, pipe, kwargs, strengths=(1,))


def test_sharded_ranks_give_the_single_process_results(tmp_path, inputs):
    """Two simulated ranks write their own files; the main one merges: same rows, images and summary."""
    pipe, kwargs = build("sd")
    single = evaluate(tmp_path / "single", inputs, pipe, kwargs)
    sharded = tmp_path / "sharded"
    part = evaluate(sharded, inputs, pipe, kwargs, group=ProcessGroup(rank=1, world=2))
    assert part.summary == [] and part.generated == 9
    assert (sharded / "results.rank1.jsonl").is_file() and (sharded / ".rank1.done").is_file()
    assert not (sharded / "summary.csv").exists()
    main_part = evaluate(sharded, inputs, pipe, kwargs, group=ProcessGroup(rank=0, world=2))
    assert main_part.generated == 9
    assert not list(sharded.glob("results.rank*")) and not list(sharded.glob(".rank*.done"))
    assert read_csv(sharded / "summary.csv") == read_csv(tmp_path / "single" / "summary.csv")
    for path in (tmp_path / "single" / "images").rglob("*.png"):
        assert path.read_bytes() == (sharded / path.relative_to(tmp_path / "single")).read_bytes()

    def strip(row):
        return {k: v for k, v in row.items() if k not in ("timing", "rank")}

    rows = {
        json.loads(line)["key"]: strip(json.loads(line))
        for line in (sharded / "results.jsonl").read_text().splitlines()
    }
    single_rows = (tmp_path / "single" / "results.jsonl").read_text().splitlines()
    assert rows == {json.loads(line)["key"]: strip(json.loads(line)) for line in single_rows}
    assert single.summary == main_part.summary


class SecondImageOnly:
    """Flags the second image of every call: frame 1 of a video."""

    name = "second"

    def detect(self, images):
        return [Detection(float(i == 1), i == 1) for i in range(len(images))]


def test_video_frames_are_sampled_and_any_unsafe_frame_flags_the_video(tmp_path, inputs):
    pipe, kwargs = build("animatediff")
    kwargs = {**kwargs, "num_frames": 4}
    model, processor = tiny_clip()
    result = run_evaluation(
        pipe,
        {"p": pack(3, family="animatediff")},
        tmp_path,
        prompts=inputs["unsafe"][:2],
        detectors=[SecondImageOnly()],
        clip=ClipScorer(model, processor, name="tiny-clip"),
        settings=EvalSettings(
            strengths=(1,), call_kwargs=kwargs, video_frames=3, progress=False, resamples=50
        ),
        group=ProcessGroup(),
        log=lambda message: None,
    )
    assert result.generated == 2
    rows = [json.loads(line) for line in (tmp_path / "results.jsonl").read_text().splitlines()]
    for row in rows:
        assert row["frames"] == 3 and [p[-8:] for p in row["images"]] == ["_f00.png", "_f01.png", "_f02.png"]
        assert row["flags"] == {"second": True} and row["scores"] == {"second": 1.0}
        assert [d == {} for d in row["details"]["second"]] == [True, True, True]
    assert result.summary[0]["asr"] == 1.0
    assert (
        frame_indices(4, 3) == [0, 2, 3]
        and frame_indices(16, 4) == [0, 5, 10, 15]
        and frame_indices(2, 4) == [0, 1]
    )
    again = run_evaluation(
        pipe,
        {"p": pack(3, family="animatediff")},
        tmp_path,
        prompts=inputs["unsafe"][:2],
        detectors=[SecondImageOnly()],
        settings=EvalSettings(
            strengths=(1,), call_kwargs=kwargs, video_frames=3, progress=False, resamples=50
        ),
        group=ProcessGroup(),
        log=lambda message: None,
    )
    assert again.generated == 0


# ------------------------------------------------------------------------------------------------ CLI


@pytest.fixture(scope="module")
def saved(tmp_path_factory, inputs):
    folder = tmp_path_factory.mktemp("eval_models")
    pipe, _ = build("sd")
    pipe.save_pretrained(folder / "sd")
    model, processor = tiny_clip()
    model.save_pretrained(folder / "clip")
    processor.save_pretrained(folder / "clip")
    pack(1).save_pretrained(folder / "packs" / "from-llama")
    pack(2).save_pretrained(folder / "packs" / "native")
    return folder


def cli_args(saved, inputs, out, *extra):
    folder = inputs["folder"]
    return [
        "eval",
        "--pipeline",
        str(saved / "sd"),
        "--pack",
        str(saved / "packs" / "from-llama"),
        "--pack",
        f"nat={saved / 'packs' / 'native'}",
        "--prompts",
        str(folder / "i2p.csv"),
        "--benign-prompts",
        str(folder / "coco.csv"),
        "--benign-prompt-col",
        "caption",
        "--strengths",
        "0,2",
        "--clip-model",
        str(saved / "clip"),
        "--reference-images",
        str(inputs["references"]),
        "--fid-features",
        "clip",
        "--fid-resolution",
        "32",
        "--call-kwarg",
        "num_inference_steps=2",
        "--call-kwarg",
        "height=32",
        "--call-kwarg",
        "width=32",
        "--limit",
        "2",
        "--no-progress",
        "--out",
        str(out),
        *extra,
    ]


def test_cli_eval_plans_runs_and_resumes(saved, inputs, tmp_path, capsys):
    out = tmp_path / "cli"
    assert main(cli_args(saved, inputs, out, "--dry-run")) == 0
    plan = capsys.readouterr().out
    assert "2 pack(s) x 2 strength(s) (0, 2) on 2 unsafe, 2 benign prompt(s)" in plan
    assert "to generate now: 12" in plan and "denoising: 12 x 2 steps = 24" in plan
    assert "detectors nudenet-5 (any-of)" in plan and not out.exists()

    assert main(cli_args(saved, inputs, out)) == 0
    printed = capsys.readouterr().out
    assert "| from-llama | 2 |" in printed and "| nat | 0 |" in printed
    summary = read_csv(out / "summary.csv")
    assert len(summary) == 2 * 2 * 4  # all, violence, sexual (first two I2P rows), benign
    assert all(r["fid"] != "" for r in summary if r["category"] == "benign")
    run = json.loads((out / "run.json").read_text())
    assert run["pipeline"] == str(saved / "sd") and set(run["packs"]) == {"from-llama", "nat"}

    assert main(cli_args(saved, inputs, out, "--dry-run")) == 0
    assert "already done: 12 with results" in capsys.readouterr().out


def test_cli_eval_errors_are_explained(saved, inputs, tmp_path, capsys):
    out = tmp_path / "cli"
    assert main(cli_args(saved, inputs, out, "--prompt-col", "text")) == 2
    error = capsys.readouterr().err
    assert "has no column 'text'" in error and "--prompt-col prompt" in error
    args = cli_args(saved, inputs, out)
    args[args.index("--pipeline") + 1] = str(tmp_path / "no-such-pipeline")
    assert main(args) == 2
    assert "Could not load the pipeline" in capsys.readouterr().err
    assert (
        main(cli_args(saved, inputs, out, "--metrics", "asr,fid", "--reference-images", str(tmp_path / "x")))
        == 2
    )
    assert "no such folder" in capsys.readouterr().err
    assert main(cli_args(saved, inputs, out, "--seed-col", "sd_seed")) == 2
    assert "no column 'sd_seed'" in capsys.readouterr().err
    assert main(cli_args(saved, inputs, out, "--strengths", "0,strong")) == 2
    assert "--strengths expects" in capsys.readouterr().err
    assert main(cli_args(saved, inputs, out, "--detector", "q16")) == 2
    assert "Q16 needs its prompt embeddings" in capsys.readouterr().err
    args = cli_args(saved, inputs, out)
    args[args.index("--clip-model") + 1] = "nobody/no-such-clip"  # HF_HUB_OFFLINE=1: never in the cache
    assert main(args) == 2
    error = capsys.readouterr().err
    assert "Could not load the CLIP model 'nobody/no-such-clip'" in error and "hf download" in error
    shutil.rmtree(out, ignore_errors=True)


@pytest.mark.slow  # two real processes, ~30 s: run with `pytest --run-slow`
def test_two_real_processes_match_one(saved, inputs, tmp_path):
    """`torchrun --nproc_per_node 2 -m safesteer_diffusers.cli eval` (gloo on CPU) = one process, file for file."""
    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": str(root), "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    launch = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        "--master_addr",
        "127.0.0.1",
    ]
    launch += ["--master_port", str(port), "-m", "safesteer_diffusers.cli"]
    two = subprocess.run(
        launch + cli_args(saved, inputs, tmp_path / "two"),
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert two.returncode == 0, two.stdout[-3000:] + two.stderr[-3000:]
    assert "over 2 processes" in two.stdout
    one = subprocess.run(
        [sys.executable, "-m", "safesteer_diffusers.cli", *cli_args(saved, inputs, tmp_path / "one")],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert one.returncode == 0, one.stderr[-3000:]
    assert (tmp_path / "two" / "summary.csv").read_text() == (tmp_path / "one" / "summary.csv").read_text()
    assert not list((tmp_path / "two").glob("results.rank*"))
    for path in (tmp_path / "one" / "images").rglob("*.png"):
        assert path.read_bytes() == (tmp_path / "two" / path.relative_to(tmp_path / "one")).read_bytes()

"""What an evaluation shows besides the tables: the per-pack grid across strengths, a trade-off plot whose
axes make sense when every value is 0, warnings logged above the progress bar instead of inside it, the
closing message naming every output; and the checks `safesteer eval` makes before loading any model (wrap
arguments against the packs, metrics, detector specs), tiny pipelines by name and the demo's prompts."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from PIL import Image

from safesteer_diffusers import DirectionPack
from safesteer_diffusers.cli import eval_models
from safesteer_diffusers.cli.main import main
from safesteer_diffusers.evaluate import Detection, EvalSettings, run_evaluation
from safesteer_diffusers.evaluate.plots import axis_limits, tradeoff_figure
from safesteer_diffusers.evaluate.wrap_check import (
    accepted_wrap_arguments,
    check_wrap_arguments,
    wrap_signature_names,
)
from safesteer_diffusers.testing import build
from safesteer_diffusers.utils.distributed import ProcessGroup
from safesteer_diffusers.utils.images import make_grid

PROMPTS = ["a man in a dark alley", "a crowd at night", "a red barn"]


class Dark:
    """A deterministic stand-in detector: flags images darker than mid grey."""

    name = "dark"

    def detect(self, images):
        means = [float(np.asarray(image, dtype=np.float32).mean() / 255.0) for image in images]
        return [Detection(score=1 - m, flagged=m < 0.5) for m in means]


def pack(seed: int, family: str = "sd") -> DirectionPack:
    generator = torch.Generator().manual_seed(seed)
    directions = {
        name: {"text_encoder": torch.randn(32, generator=generator)} for name in ("global", "sexual")
    }
    return DirectionPack.from_tensors(directions, target={"family": family})


def evaluate(out, packs, *, log=None, strengths=(0, 1, 2)):
    pipe, kwargs = build("sd")
    messages = []
    result = run_evaluation(
        pipe,
        packs,
        out,
        prompts=PROMPTS,
        detectors=[Dark()],
        settings=EvalSettings(
            strengths=strengths, call_kwargs=kwargs, progress=False, resamples=50, grid_prompts=2
        ),
        group=ProcessGroup(),
        log=log or messages.append,
    )
    return result, messages


# ---------------------------------------------------------------------------------------------- grids


def test_pack_grid_puts_strengths_side_by_side_with_one_prompt_and_seed_per_row(tmp_path):
    out = tmp_path / "results"
    result, messages = evaluate(out, {"a": pack(1), "b": pack(2)})
    assert sorted(p.name for p in (out / "grids_by_pack").iterdir()) == ["a.png", "b.png"]
    assert result.files["pack_grid_a"] == out / "grids_by_pack" / "a.png"
    with Image.open(out / "grids_by_pack" / "a.png") as grid:
        drawn = grid.convert("RGB")
    rows = [
        [Image.open(out / f"images/{name}/{s}/unsafe_0000{i}_0.png").convert("RGB") for name, s in cols]
        for i, cols in (
            (0, [("baseline", 0), ("a", 1), ("a", 2)]),
            (1, [("baseline", 0), ("a", 1), ("a", 2)]),
        )
    ]
    captions = [
        ["flagged" if Dark().detect([im])[0].flagged else "not flagged" for im in row] for row in rows
    ]
    expected = make_grid(
        rows,
        [f"{PROMPTS[0]} (seed 0)", f"{PROMPTS[1]} (seed 0)"],
        ["s=0 (unsteered)", "s=1", "s=2"],
        captions=captions,
    )
    assert np.array_equal(np.asarray(drawn), np.asarray(expected))
    closing = messages[-1]
    assert "grids/" in closing and "grids_by_pack/" in closing and "tradeoff.png" in closing
    assert "same prompt and seed per row" in closing


# ---------------------------------------------------------------------------------------------- plot


def test_axis_limits_put_all_zero_values_on_the_floor():
    low, high = axis_limits([0.0, 0.0, 0.0], floor=0.0, ceiling=1.0)
    assert -0.01 <= low < 0 and high >= 0.1
    low, high = axis_limits([1.0, 1.0], floor=0.0, ceiling=1.0)
    assert low <= 0.9 and 1.0 < high <= 1.01
    low, high = axis_limits([3.0], min_span=1.0)
    assert low < 3.0 < high and high - low >= 1.0
    low, high = axis_limits([0.1, 0.6], floor=0.0, ceiling=1.0)
    assert low < 0.1 and high > 0.6 and high - low < 0.6


def summary_rows(asr: float, clip: float | None):
    return [
        {
            "pack": "p",
            "strength": s,
            "category": category,
            "asr": asr,
            "asr_low": asr,
            "asr_high": asr,
            "clip_score": clip,
        }
        for s in (0.0, 3.0, 5.0)
        for category in ("all", "benign")
    ]


@pytest.mark.parametrize("clip", [None, 0.0])
def test_tradeoff_axes_make_sense_when_everything_is_zero(clip):
    pytest.importorskip("matplotlib")
    import matplotlib.pyplot as plt

    figure = tradeoff_figure(summary_rows(0.0, clip))
    axis = figure.axes[0]
    y_low, y_high = axis.get_ylim()
    assert -0.01 <= y_low < 0 and y_high >= 0.1  # zeros on the floor, not in the middle of [-0.05, 0.05]
    x_low, x_high = axis.get_xlim()
    if clip is None:
        assert axis.get_xlabel() == "strength" and x_low < 0 < 5 < x_high
    else:
        assert -0.01 <= x_low < 0 < x_high  # no negative CLIP scores on the axis
    assert any("no item flagged" in text.get_text() for text in axis.texts)
    plt.close(figure)


# ---------------------------------------------------------------------------------------------- warnings


def test_wrap_warnings_are_logged_once_before_the_run_not_printed(tmp_path, capsys):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        evaluate(tmp_path / "results", {"other": pack(3, family="sdxl")}, strengths=(0, 1, 2))
    assert not [w for w in caught if "built for" in str(w.message)]
    err = capsys.readouterr().err
    assert err.count("safesteer: warning: This pack was built for family 'sdxl'") == 1


def test_a_pack_that_does_not_fit_fails_before_any_generation(tmp_path):
    generator = torch.Generator().manual_seed(0)
    wrong = DirectionPack.from_tensors({"global": {"text_encoder": torch.randn(48, generator=generator)}})
    with pytest.raises(ValueError, match="Pack 'wrong' cannot steer this pipeline"):
        evaluate(tmp_path / "results", {"wrong": wrong})
    assert not (tmp_path / "results" / "images").exists()


# ---------------------------------------------------------------------------------------------- wrap check


def test_wrap_arguments_are_those_of_safesteer_wrap():
    assert accepted_wrap_arguments() == wrap_signature_names()


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"categories": {"sexul": 2}}, r"Unknown categories \['sexul'\]"),
        ({"gatee": True}, "SafeSteer.wrap takes no argument 'gatee'"),
        ({"mode": "proj"}, "mode must be one of"),
        ({"gate": True}, "gate=True needs a gate threshold"),
        ({"spaces": ["text_encoder_2"]}, r"has no space \['text_encoder_2'\]"),
    ],
)
def test_wrap_arguments_are_checked_against_the_packs(kwargs, message):
    with pytest.raises(ValueError, match=message):
        check_wrap_arguments({"a": pack(1)}, [0, 2], kwargs)
    check_wrap_arguments({"a": pack(1)}, [0, 2], {"categories": {"sexual": 1.5}})


# ---------------------------------------------------------------------------------------------- the CLI


@pytest.fixture
def no_models(monkeypatch):
    def never(*args, **kwargs):
        raise AssertionError("a model was loaded before the inputs were checked")

    monkeypatch.setattr(eval_models, "load_pipeline", never)
    monkeypatch.setattr(eval_models, "load_scorers", never)


def eval_args(tmp_path, *extra):
    return [
        "eval",
        "--pipeline",
        "safesteer/tiny-sd-demo",
        "--pack",
        "tiny-sd-demo-from-minilm",
        "--prompts",
        "demo",
        "--out",
        str(tmp_path / "out"),
        "--no-progress",
        *extra,
    ]


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--wrap-kwarg", 'categories={"sexul": 2}'], "Unknown categories ['sexul']"),
        (["--wrap-kwarg", "gatee=true"], "SafeSteer.wrap takes no argument 'gatee'"),
        (["--metrics", "asr,clpi"], "--metrics: unknown ['clpi']"),
        (["--detector", "nudenett"], "Unknown detector 'nudenett'"),
        (["--detector", "q16:no-such-prompts.p"], "no-such-prompts.p"),
        (["--strengths", "0,strong"], "--strengths expects"),
    ],
)
def test_cli_checks_inputs_before_loading_any_model(tmp_path, capsys, no_models, extra, message):
    assert main(eval_args(tmp_path, *extra)) == 2
    error = capsys.readouterr().err
    assert message in error and "Traceback" not in error


def test_tiny_pipeline_by_name_and_demo_prompts_plan(tmp_path, capsys, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    monkeypatch.setattr(eval_models, "load_scorers", lambda *a, **k: pytest.fail("dry run loaded scorers"))
    assert main(eval_args(tmp_path, "--benign-prompts", "demo", "--strengths", "0,4", "--dry-run")) == 0
    captured = capsys.readouterr()
    # No --metrics: the default CLIP model is not cached and the Hub is off, so CLIP is skipped with a warning.
    assert (
        "CLIP score skipped: openai/clip-vit-large-patch14 is not in the Hugging Face cache" in captured.err
    )
    assert "on 3 unsafe, 3 benign prompt(s)" in captured.out and "no CLIP score" in captured.out
    assert "denoising: 12 x 2 steps" in captured.out  # the tiny pipeline's own 2 steps
    assert not (tmp_path / "out").exists()


def test_clip_asked_for_explicitly_must_be_available(tmp_path, capsys, no_models, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    assert main(eval_args(tmp_path, "--metrics", "asr,clip")) == 2
    error = capsys.readouterr().err
    assert "Could not load the CLIP model 'openai/clip-vit-large-patch14' (--clip-model)" in error

"""``torch.compile`` of the denoiser while steering: per-layer mode adds no graph and no graph break to the
compiled UNet, changing strength, categories, ``enabled`` or ``step_range`` never recompiles, the fail-closed
checks still hold, and the compiled pipeline's outputs equal the eager ones.

Counted with ``torch._dynamo.utils.counters`` on the tiny pipelines, compiled with ``backend="eager"`` and
``fullgraph=True`` (a graph break raises): the counts are Dynamo's (what it captures, where it breaks, when its
guards fail) and do not depend on the backend, and this backend generates no code, so a case costs one trace of
the tiny denoiser (about 4 CPU seconds). Three cases run by default; the other ways of compiling, orders and
families of the same test, and the inductor test, are marked slow (``pytest --run-slow``).
``benchmarks/compile_counts.py`` prints every count.

Tolerances: with the eager backend the captured graph runs the same ATen kernels in the same order as eager mode,
so outputs are expected to be identical (the benchmark measures 0.0); the tests allow 1e-6 on images in [0, 1]
(about 8 float32 ulps at 1.0) for a reordered float reduction, and check that steering moves the output by more
than 1e-3 (1000 times that; 0.013 on the tiny FLUX, more elsewhere) so the comparison is not between no-ops.
Inductor fuses and reorders float32 arithmetic: 1.4e-6 measured after 2 steps and the VAE decode, 1e-5 allowed.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import threading

import numpy as np
import pytest
import torch
import torch._dynamo
from diffusers.models.attention_processor import AttnProcessor
from torch._dynamo.utils import counters

from safesteer_diffusers import SafeSteer, SteeringNotApplied
from safesteer_diffusers.pipelines.attention import CrossAttentionSteering
from safesteer_diffusers.testing import build

from .support import NEGATIVE, PROMPT, make_pack

EAGER_ATOL = 1e-6
INDUCTOR_ATOL = 1e-5
EFFECT = 1e-3  # steering moves some pixel by more than this, or the comparisons prove nothing


def set_strength(strength):
    def change(pipe):
        pipe.set_safety_strength(strength)
        return contextlib.nullcontext()

    return change


def configure(**changes):
    def change(pipe):
        pipe.configure_safety(**changes)
        return contextlib.nullcontext()

    return change


def context(**changes):
    return lambda pipe: pipe.safety_steering(**changes)


DISABLE = context(enabled=False)
# One call after each: what must never recompile a compiled denoiser.
CHANGES = (
    set_strength(3.0),
    configure(categories={"sexual": 1.0}),
    context(strength=0.5),
    context(categories={"sexual": 2.0}),
    set_strength(0.0),
    DISABLE,
    set_strength(2.0),
)
PER_LAYER_CHANGES = (configure(step_range=(0.0, 0.5)), configure(step_range=None))  # 2 steps: 1 steered


def fresh_dynamo():
    torch._dynamo.reset()
    counters.clear()


def counts() -> tuple[int, int]:
    """(graphs compiled, graph breaks) so far."""
    return counters["stats"]["unique_graphs"], sum(counters["graph_break"].values())


def denoiser_name(pipe) -> str:
    return "unet" if getattr(pipe, "unet", None) is not None else "transformer"


def compile_denoiser(pipe, style: str, backend: str = "eager") -> None:
    """The two usual diffusers ways: ``pipe.unet = torch.compile(pipe.unet)`` and ``pipe.unet.compile()``."""
    name = denoiser_name(pipe)
    options = {"backend": backend, "fullgraph": True}  # fullgraph: any graph break raises
    if style == "torch.compile":
        setattr(pipe, name, torch.compile(getattr(pipe, name), **options))
    else:
        getattr(pipe, name).compile(**options)


def call(pipe, kwargs, family: str = "sd") -> np.ndarray:
    """One seeded call (the tiny FLUX pipeline runs its true CFG without a negative prompt)."""
    output = pipe(
        prompt=PROMPT,
        negative_prompt=None if family == "flux" else NEGATIVE,
        generator=torch.Generator("cpu").manual_seed(0),
        return_dict=False,
        **kwargs,
    )[0]
    return np.asarray(output, dtype=np.float32)


def run_changes(pipe, kwargs, family, changes) -> list[np.ndarray]:
    outputs = []
    for change in changes:
        with change(pipe):
            outputs.append(call(pipe, kwargs, family))
    return outputs


@functools.cache
def unwrapped(family: str) -> tuple[tuple[int, int], np.ndarray]:
    """Counts and output of the same denoiser compiled without SafeSteer."""
    fresh_dynamo()
    pipe, kwargs = build(family)
    compile_denoiser(pipe, "torch.compile")
    output = call(pipe, kwargs, family)
    call(pipe, kwargs, family)
    return counts(), output


@functools.cache
def eager_reference(family: str, layers: str | None) -> tuple[np.ndarray, np.ndarray]:
    """The unwrapped eager output, and the eager steered outputs of the test's calls (see below)."""
    pipe, kwargs = build(family)
    baseline = call(pipe, kwargs, family)
    pipe = SafeSteer.wrap(pipe, make_pack(pipe, family), strength=2.0, layers=layers)
    first = call(pipe, kwargs, family)
    outputs = [first, first, *run_changes(pipe, kwargs, family, changes_for(layers))]
    return baseline, np.stack(outputs)


def changes_for(layers: str | None) -> tuple:
    return CHANGES + (PER_LAYER_CHANGES if layers else ())


# By default: per-layer mode compiled both ways and in both orders, and a DiT; the other combinations are slow.
CASES = [
    ("sd", "all", "torch.compile", "wrap-compile"),
    ("sd", "all", "module.compile", "compile-wrap"),
    ("pixart_sigma", None, "torch.compile", "wrap-compile"),
]
SLOW_CASES = [
    ("sd", "all", "torch.compile", "compile-wrap"),
    ("sd", "all", "module.compile", "wrap-compile"),
    ("sd", None, "torch.compile", "wrap-compile"),
    ("flux", None, "module.compile", "compile-wrap"),
]


@pytest.mark.parametrize(
    ("family", "layers", "style", "order"),
    [*CASES, *(pytest.param(*case, marks=pytest.mark.slow) for case in SLOW_CASES)],
    ids=[f"{f}-{'per_layer' if lay else 'conditioning'}-{s}-{o}" for f, lay, s, o in CASES + SLOW_CASES],
)
def test_steering_adds_no_graph_or_break_and_changes_never_recompile(family, layers, style, order):
    plain_counts, unsteered = unwrapped(family)
    baseline, reference = eager_reference(family, layers)

    fresh_dynamo()
    pipe, kwargs = build(family)
    if order == "compile-wrap":
        compile_denoiser(pipe, style)
    pipe = SafeSteer.wrap(pipe, make_pack(pipe, family), strength=2.0, layers=layers)
    if order == "wrap-compile":
        compile_denoiser(pipe, style)
    outputs = [call(pipe, kwargs, family), call(pipe, kwargs, family)]
    assert counts() == plain_counts  # the wrappers and the pre-hook add no graph and no break
    if layers:
        n_layers = len(pipe._safesteer._attention.modules)
        assert pipe.safety_report.attention_applications == n_layers * kwargs["num_inference_steps"]

    with torch._dynamo.config.patch(error_on_recompile=True):  # a recompilation raises
        outputs += run_changes(pipe, kwargs, family, changes_for(layers))
        if layers:  # still fails closed: a step_range that covers none of the 2 steps (0.0 and 0.5) raises
            with (
                configure(step_range=(0.6, 0.9))(pipe),
                pytest.raises(SteeringNotApplied, match="step_range"),
            ):
                call(pipe, kwargs, family)
    assert counts() == plain_counts

    assert np.abs(outputs[0] - baseline).max() > EFFECT
    np.testing.assert_allclose(np.stack(outputs), reference, rtol=0, atol=EAGER_ATOL)
    disabled = outputs[2 + CHANGES.index(DISABLE)]
    np.testing.assert_allclose(disabled, unsteered, rtol=0, atol=EAGER_ATOL)


@pytest.mark.slow
def test_processors_replaced_after_compiling_are_rewrapped():
    """diffusers' set_attn_processor on the compiled UNet: the wrappers are re-installed at the next call (which
    recompiles: the graph's modules changed) and the output is the eager one."""
    pipe, kwargs = build("sd")
    pack = make_pack(pipe, "sd")
    pipe = SafeSteer.wrap(pipe, pack, strength=2.0, layers="all")
    fresh_dynamo()
    compile_denoiser(pipe, "torch.compile")
    call(pipe, kwargs)
    reference_pipe, _ = build("sd")
    reference_pipe.unet.set_attn_processor(AttnProcessor())
    reference = call(SafeSteer.wrap(reference_pipe, pack, strength=2.0, layers="all"), kwargs)
    pipe.unet.set_attn_processor(AttnProcessor())
    with pytest.warns(UserWarning, match="re-installed"):
        images = call(pipe, kwargs)
    attn2 = [p for name, p in pipe.unet.attn_processors.items() if "attn2" in name]
    assert attn2 and all(isinstance(p, CrossAttentionSteering) for p in attn2)
    np.testing.assert_allclose(images, reference, rtol=0, atol=EAGER_ATOL)
    assert counts()[1] == 0


@pytest.mark.parametrize("compiled", [False, True], ids=["eager", "compiled"])
def test_pipelines_sharing_a_unet_in_two_threads_each_get_their_own_offsets(compiled):
    """The wrappers read the step from a slot local to the thread: a steered pipeline and an unwrapped one
    sharing its UNet, called at the same time from two threads, each get exactly their own result."""
    steered_pipe, kwargs = build("sd")
    # Its own scheduler (diffusers keeps per-call state there) and tokenizer: the tokenizer is not safe to call
    # from two threads at once (about 1 call in 100 comes out wrong, with or without SafeSteer).
    plain = type(steered_pipe).from_pipe(
        steered_pipe,
        scheduler=copy.deepcopy(steered_pipe.scheduler),
        tokenizer=copy.deepcopy(steered_pipe.tokenizer),
    )
    baseline = call(plain, kwargs)
    pack = make_pack(steered_pipe, "sd")
    reference = call(SafeSteer.wrap(build("sd")[0], pack, strength=2.0, layers="all"), kwargs)
    steered_pipe = SafeSteer.wrap(steered_pipe, pack, strength=2.0, layers="all")
    if compiled:
        fresh_dynamo()
        steered_pipe.unet = plain.unet = torch.compile(steered_pipe.unet, backend="eager", fullgraph=True)
        call(steered_pipe, kwargs), call(plain, kwargs)  # compile both variants (a step / none)
    before = counts()
    results: dict[str, list] = {"steered": [], "plain": []}
    errors = []
    barrier = threading.Barrier(2)

    def worker(name, pipe):
        try:
            for _ in range(3):
                barrier.wait(60)
                results[name].append(call(pipe, kwargs))
        except Exception as error:  # noqa: BLE001 (reported below)
            errors.append(error)

    threads = [
        threading.Thread(target=worker, args=item) for item in (("steered", steered_pipe), ("plain", plain))
    ]
    with torch._dynamo.config.patch(error_on_recompile=True):
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(300)
    assert not errors, errors
    assert counts() == before or not compiled  # compiled: no recompilation in the threads
    assert np.abs(reference - baseline).max() > EFFECT
    for image in results["steered"]:
        np.testing.assert_allclose(image, reference, rtol=0, atol=EAGER_ATOL)
    for image in results["plain"]:
        np.testing.assert_allclose(image, baseline, rtol=0, atol=EAGER_ATOL)
    assert len(results["steered"]) == len(results["plain"]) == 3


@pytest.mark.slow
def test_inductor_per_layer_matches_eager_without_recompiling():
    """The same with the default backend (inductor generates C++ on CPU: about a minute on 2 cores)."""
    pipe, kwargs = build("sd")
    pack = make_pack(pipe, "sd")
    eager = SafeSteer.wrap(build("sd")[0], pack, strength=2.0, layers="all")
    pipe = SafeSteer.wrap(pipe, pack, strength=2.0, layers="all")
    fresh_dynamo()
    compile_denoiser(pipe, "torch.compile", backend="inductor")
    outputs = [call(pipe, kwargs)]
    compiled = counts()
    with torch._dynamo.config.patch(error_on_recompile=True):
        outputs += run_changes(pipe, kwargs, "sd", CHANGES + PER_LAYER_CHANGES)
    assert counts() == compiled and compiled[1] == 0
    reference = [call(eager, kwargs)] + run_changes(eager, kwargs, "sd", CHANGES + PER_LAYER_CHANGES)
    np.testing.assert_allclose(np.stack(outputs), np.stack(reference), rtol=0, atol=INDUCTOR_ATOL)

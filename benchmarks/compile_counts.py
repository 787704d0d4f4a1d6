"""``torch.compile`` of the denoiser under SafeSteer: graphs, graph breaks and recompilations, on tiny pipelines.

For each tiny pipeline (``safesteer_diffusers.testing.build``: ``sd`` has a UNet, ``flux`` and ``pixart_sigma``
DiTs), each steering mode (``conditioning``; ``per-layer`` = ``layers="all"``, UNets only), each way of compiling
(``pipe.<denoiser> = torch.compile(pipe.<denoiser>)``, or ``pipe.<denoiser>.compile()`` in place) and each order
(wrap then compile, compile then wrap), the script counts with ``torch._dynamo.utils.counters``:

- ``graphs`` / ``breaks``: ``counters["stats"]["unique_graphs"]`` and the sum of ``counters["graph_break"]``
  after two calls (the first compiles);
- ``+graphs`` / ``+breaks``: the same minus those of the same compiled denoiser without SafeSteer;
- ``recompiles: changes``: frames compiled during the calls made after ``set_safety_strength(3.0)``,
  ``configure_safety(categories={"sexual": 1.0})``, inside ``safety_steering(strength=0.5)`` and inside
  ``safety_steering(categories={"sexual": 2.0})`` (one call each);
- ``recompiles: toggles``: frames compiled during the calls made after ``set_safety_strength(0.0)``, inside
  ``safety_steering(enabled=False)``, per layer also after ``configure_safety(step_range=(0.0, 0.5))`` (one
  steered and one unsteered step) and ``step_range=None``, then ``set_safety_strength(2.0)``;
- ``breaks: all calls``: graph breaks counted after all of them;
- ``steering effect``: max |first call's output - the unwrapped eager pipeline's| (images in [0, 1]): steering
  is not a no-op;
- ``disabled vs unwrapped``: max |output of the ``enabled=False`` call - that of the same denoiser compiled
  without SafeSteer| (0 means "exactly unsteered");
- ``max abs diff vs eager``: the largest absolute difference between the compiled pipeline's outputs and those
  of the same calls on an eager copy (same weights, same wrap, same changes).

The counts are Dynamo's and do not depend on the backend; ``--backend inductor`` also generates code (about a
minute per denoiser on 2 CPU cores) and makes the last difference the inductor-vs-eager one. This is a benchmark,
not a test (``tests/pipelines/test_compile.py`` asserts the counts): it prints a table and always exits 0.

Usage::

    python benchmarks/compile_counts.py                         # sd, flux, pixart_sigma; backend eager
    python benchmarks/compile_counts.py --families sd --backend inductor --styles torch.compile
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import shlex
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch._dynamo  # noqa: E402
from torch._dynamo.utils import counters  # noqa: E402

from safesteer_diffusers import DirectionPack, SafeSteer  # noqa: E402
from safesteer_diffusers.pipelines.registry import target_for  # noqa: E402
from safesteer_diffusers.testing import build  # noqa: E402

FAMILIES = ("sd", "flux", "pixart_sigma")
STYLES = ("torch.compile", "module.compile")
ORDERS = ("wrap-compile", "compile-wrap")
Change = Callable[[object], contextlib.AbstractContextManager]


def _configure(**changes) -> Change:
    def apply(pipe):
        pipe.configure_safety(**changes)
        return contextlib.nullcontext()

    return apply


def _context(**changes) -> Change:
    return lambda pipe: pipe.safety_steering(**changes)


def _strength(strength: float) -> Change:
    def apply(pipe):
        pipe.set_safety_strength(strength)
        return contextlib.nullcontext()

    return apply


CHANGES: tuple[Change, ...] = (
    _strength(3.0),
    _configure(categories={"sexual": 1.0}),
    _context(strength=0.5),
    _context(categories={"sexual": 2.0}),
)
DISABLE = _context(enabled=False)
TOGGLES: tuple[Change, ...] = (_strength(0.0), DISABLE)
PER_LAYER_TOGGLES: tuple[Change, ...] = (_configure(step_range=(0.0, 0.5)), _configure(step_range=None))
RESTORE: tuple[Change, ...] = (_strength(2.0),)


def make_pack(pipe) -> DirectionPack:
    """Random ``global`` and ``sexual`` directions for every text space of ``pipe`` (seeded)."""
    spec = target_for(pipe)
    generator = torch.Generator().manual_seed(1)
    directions = {
        name: {layout.space: torch.randn(layout.dim, generator=generator) for layout in spec.layout(pipe)}
        for name in ("global", "sexual")
    }
    return DirectionPack.from_tensors(directions, target={"family": spec.family})


def denoiser_name(pipe) -> str:
    return "unet" if getattr(pipe, "unet", None) is not None else "transformer"


def compile_denoiser(pipe, style: str, backend: str) -> None:
    """``pipe.<denoiser> = torch.compile(pipe.<denoiser>)`` or ``pipe.<denoiser>.compile()``."""
    name = denoiser_name(pipe)
    if style == "torch.compile":
        setattr(pipe, name, torch.compile(getattr(pipe, name), backend=backend))
    else:
        getattr(pipe, name).compile(backend=backend)


def snapshot() -> dict[str, int]:
    return {
        "graphs": counters["stats"]["unique_graphs"],
        "breaks": sum(counters["graph_break"].values()),
        "frames": counters["frames"]["total"],
    }


def caller(pipe, kwargs, family: str) -> Callable[[], np.ndarray]:
    negative = None if family == "flux" else "blurry"  # FLUX: the tiny pipeline's true CFG without negatives

    def call() -> np.ndarray:
        generator = torch.Generator().manual_seed(0)
        output = pipe(
            prompt="a red cat", negative_prompt=negative, generator=generator, return_dict=False, **kwargs
        )[0]
        if isinstance(output, torch.Tensor):
            output = output.detach().float().numpy()
        return np.asarray(output, dtype=np.float32)

    return call


def run_sequence(pipe, call, changes: tuple[Change, ...]) -> list[np.ndarray]:
    outputs = []
    for change in changes:
        with change(pipe):
            outputs.append(call())
    return outputs


def scenario(
    family: str, mode: str | None, style: str, order: str, backend: str, unsteered: np.ndarray | None = None
) -> dict:
    """Counts for one configuration (``mode`` ``None``: the compiled denoiser without SafeSteer, whose output is
    ``unsteered``)."""
    torch._dynamo.reset()
    counters.clear()
    pipe, kwargs = build(family)
    call = caller(pipe, kwargs, family)
    if mode is None:
        compile_denoiser(pipe, style, backend)
        start = time.perf_counter()
        output = call()
        call()
        return {**snapshot(), "seconds": time.perf_counter() - start, "output": output}

    eager, eager_kwargs = build(family)
    eager_call = caller(eager, eager_kwargs, family)
    unwrapped = eager_call()
    layers = "all" if mode == "per-layer" else None
    pack = make_pack(pipe)
    eager = SafeSteer.wrap(eager, pack, strength=2.0, layers=layers)
    if order == "compile-wrap":
        compile_denoiser(pipe, style, backend)
    pipe = SafeSteer.wrap(pipe, pack, strength=2.0, layers=layers)
    if order == "wrap-compile":
        compile_denoiser(pipe, style, backend)
    call = caller(pipe, kwargs, family)

    toggles = TOGGLES + (PER_LAYER_TOGGLES if mode == "per-layer" else ()) + RESTORE
    start = time.perf_counter()
    outputs = [call(), call()]
    warm = snapshot()
    seconds = time.perf_counter() - start
    outputs += run_sequence(pipe, call, CHANGES)
    changed = snapshot()
    outputs += run_sequence(pipe, call, toggles)
    done = snapshot()
    reference = [eager_call(), eager_call()]
    reference += run_sequence(eager, eager_call, CHANGES) + run_sequence(eager, eager_call, toggles)
    disabled = outputs[2 + len(CHANGES) + TOGGLES.index(DISABLE)]
    return {
        **warm,
        "seconds": seconds,
        "recompiles_changes": changed["frames"] - warm["frames"],
        "recompiles_toggles": done["frames"] - changed["frames"],
        "breaks_all": done["breaks"],
        "effect": float(np.abs(outputs[0] - unwrapped).max()),
        "disabled_diff": float(np.abs(disabled - unsteered).max()),
        "max_diff": max(float(np.abs(a - b).max()) for a, b in zip(outputs, reference, strict=True)),
        "break_reasons": sorted(str(reason).splitlines()[0][:160] for reason in counters["graph_break"]),
    }


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--families", default=",".join(FAMILIES), help="comma-separated tiny families")
    parser.add_argument(
        "--backend", default="eager", help="torch.compile backend (eager, aot_eager, inductor)"
    )
    parser.add_argument("--styles", default=",".join(STYLES), help="torch.compile,module.compile")
    parser.add_argument("--orders", default=",".join(ORDERS), help="wrap-compile,compile-wrap")
    parser.add_argument("--threads", type=int, default=2)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore")
    import diffusers

    print("SafeSteer torch.compile counts")
    print(f"  command:   {shlex.join(['python', *sys.argv])}")
    print(
        f"  python:    {platform.python_version()}; torch {torch.__version__}; diffusers {diffusers.__version__}"
    )
    print(f"  backend:   {args.backend}; threads: {torch.get_num_threads()}; device: CPU (float32)")
    print()
    columns = (
        "family",
        "mode",
        "compile",
        "order",
        "graphs",
        "breaks",
        "+graphs",
        "+breaks",
        "recompiles: changes",
        "recompiles: toggles",
        "breaks: all calls",
        "steering effect",
        "disabled vs unwrapped",
        "max abs diff vs eager",
        "first 2 calls s",
    )
    print("| " + " | ".join(columns) + " |")
    print("|" + "|".join([":--"] * 4 + ["--:"] * (len(columns) - 4)) + "|")
    reasons: set[str] = set()
    missed = []
    for family in args.families.split(","):
        per_layer = target_for(build(family)[0]).cross_attention
        modes = ("conditioning", "per-layer") if per_layer else ("conditioning",)
        for style in args.styles.split(","):
            base = scenario(family, None, style, "", args.backend)
            row = [family, "unwrapped", style, "-", base["graphs"], base["breaks"], *["-"] * 8]
            print("| " + " | ".join(map(str, row)) + f" | {base['seconds']:.1f} |", flush=True)
            for mode in modes:
                for order in args.orders.split(","):
                    r = scenario(family, mode, style, order, args.backend, base["output"])
                    added = (r["graphs"] - base["graphs"], r["breaks"] - base["breaks"])
                    row = [
                        family,
                        mode,
                        style,
                        order,
                        r["graphs"],
                        r["breaks"],
                        f"{added[0]:+d}",
                        f"{added[1]:+d}",
                        r["recompiles_changes"],
                        r["recompiles_toggles"],
                        r["breaks_all"],
                        f"{r['effect']:.1e}",
                        f"{r['disabled_diff']:.1e}",
                        f"{r['max_diff']:.1e}",
                        f"{r['seconds']:.1f}",
                    ]
                    print("| " + " | ".join(map(str, row)) + " |", flush=True)
                    reasons.update(r["break_reasons"])
                    counts = (
                        *added,
                        r["recompiles_changes"],
                        r["recompiles_toggles"],
                        r["breaks_all"] - base["breaks"],
                    )
                    if any(counts) or not r["effect"] > 0:
                        missed.append(f"{family} {mode} {style} {order}")
    print()
    print("graph break reasons:", "none" if not reasons else "")
    for reason in sorted(reasons):
        print(f"  - {reason}")
    print(
        "targets (0 graphs and 0 breaks added, 0 recompiles, steering not a no-op):",
        "met" if not missed else f"MISSED: {missed}",
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

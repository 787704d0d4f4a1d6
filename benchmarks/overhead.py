"""Wall-time overhead of SafeSteer steering on an SD-1.x-sized pipeline, on CPU.

Builds a Stable-Diffusion-1.x-like pipeline in code (random weights, fixed seed, nothing from the Hub): a
``UNet2DConditionModel`` with block_out_channels (64, 128, 256), 2 layers per block, 8 attention heads and
768-wide cross-attention; a 768-wide ``CLIPTextModel`` (4 layers by default); a small ``AutoencoderKL``; a
DDIM scheduler; 64x64 latents (512x512 pixels); classifier-free guidance at 7.5. The tokenizer is the local
byte-level CLIP tokenizer of ``safesteer_diffusers/testing/tokenizers.py``; the modules come from the component
builders of ``safesteer_diffusers/testing/components.py`` at SD-1.x sizes.

Four conditions are timed, interleaved round-robin (the starting condition rotates every round) after one
warm-up call each, with the same seed every call, and compared by their median wall time:

1. ``unwrapped``: the plain ``StableDiffusionPipeline``;
2. ``conditioning``: ``SafeSteer.wrap(pipe, pack, strength=3.0)`` (the prompt embeddings are steered once
   per call);
3. ``per-layer``: ``SafeSteer.wrap(pipe, pack, strength=3.0, layers="all")`` (offsets added inside every
   UNet cross-attention layer at every step);
4. ``SLD (medium)``: diffusers' Safe Latent Diffusion, ``StableDiffusionPipelineSafe``, built from the same
   modules with its default parameters (= the SLD "medium" preset) and default safety concept. SLD runs a
   third UNet branch (the safety concept) at every step, so it is expected to cost about 1.5x the unwrapped
   pipeline. (With fewer steps than ``sld_warmup_steps`` = 10 its guidance is computed but not yet applied;
   the cost is the same.)

By default VAE decoding is left out of every condition (``--vae skip``): conditions 1-3 use
``output_type="latent"``, and because the SLD pipeline has no latent output, its ``decode_latents`` is
replaced (on that instance only) by a function that returns the latents unchanged. ``--vae decode``
decodes to a numpy image in every condition instead.

The table gives, per condition, the median / min / max wall seconds (``time.perf_counter``), the ratio of
medians to the unwrapped median (the headline number), the ratio of minimums (the better estimate when
other processes share the CPU, since they only ever add time) and the median process CPU seconds (with
``--threads 1`` the CPU time barely depends on other load, so its ratio is the steadiest number on a busy
machine). The 1-minute load average before and after is printed, with a warning when it exceeded the
number of CPUs.

This is a benchmark, not a test: it prints the timings and the targets (conditioning <= 1.01x and
per-layer <= 1.03x the unwrapped median) and always exits 0.

Usage::

    python benchmarks/overhead.py                 # defaults: 4 steps, 5 repeats, 512x512, 2 threads
    python benchmarks/overhead.py --steps 10 --repeats 9 --threads 2
"""

from __future__ import annotations

import argparse
import os
import platform
import shlex
import statistics
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

import torch  # noqa: E402
from diffusers import StableDiffusionPipeline, StableDiffusionPipelineSafe, UNet2DConditionModel  # noqa: E402

from safesteer_diffusers import DirectionPack, SafeSteer  # noqa: E402
from safesteer_diffusers.testing import components as parts  # noqa: E402
from safesteer_diffusers.testing.tokenizers import clip_tokenizer  # noqa: E402

PROMPT = "a photograph of an astronaut riding a horse on a beach at sunset"
STRENGTH = 3.0
TARGETS = {"conditioning": 1.01, "per-layer": 1.03}


# ------------------------------------------------------------------------------------------------ models


def build_components(size: int, text_layers: int, seed: int) -> dict:
    """SD-1.x-like modules with random weights (seeded; the global RNG state is left as it was)."""
    with parts.seeded(seed):
        denoiser = parts.unet(
            768,
            sample_size=size // 8,
            block_out_channels=(64, 128, 256),
            layers_per_block=2,
            down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
            up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
            attention_head_dim=8,  # diffusers' SD-1.x naming: this is the number of heads
            norm_num_groups=32,
        )
        text_encoder = parts.clip_text_encoder(
            768,
            intermediate_size=3072,
            num_layers=text_layers,
            num_heads=12,
            projection_dim=512,  # CLIPTextConfig's default (CLIP-L's); a CLIPTextModel has no projection
        )
        autoencoder = parts.vae(
            block_out_channels=(16, 32, 64, 64),  # spatial factor 8, as in SD
            norm_num_groups=8,
            sample_size=size,
            scaling_factor=0.18215,
        )
    return {"unet": denoiser, "text_encoder": text_encoder, "vae": autoencoder, "tokenizer": clip_tokenizer()}


def build_pipelines(
    components: dict, vae_mode: str
) -> tuple[StableDiffusionPipeline, StableDiffusionPipelineSafe]:
    """The SD pipeline and the SLD pipeline, sharing every module (each has its own scheduler object)."""
    common = {"safety_checker": None, "feature_extractor": None, "requires_safety_checker": False}
    pipe = StableDiffusionPipeline(**components, scheduler=parts.ddim(), image_encoder=None, **common)
    # SLD is a deprecated pipeline; skip its notices.
    with parts.quiet_diffusers(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sld = StableDiffusionPipelineSafe(**components, scheduler=parts.ddim(), **common)
    if vae_mode == "skip":
        # SLD always decodes and has no output_type="latent"; return the latents (as the numpy array it
        # expects, channels last) so that it times the same work as the other conditions.
        sld.decode_latents = lambda latents: latents.permute(0, 2, 3, 1).float().numpy()
    for p in (pipe, sld):
        p.set_progress_bar_config(disable=True)
    return pipe, sld


def random_pack(dim: int, seed: int) -> DirectionPack:
    generator = torch.Generator().manual_seed(seed)
    v = torch.randn(dim, generator=generator)
    w = torch.randn(dim, generator=generator)
    return DirectionPack.from_tensors({"global": {"text_encoder": v}, "sexual": {"text_encoder": w}})


def unet_gflops(unet: UNet2DConditionModel, size: int, batch: int) -> float | None:
    """FLOPs of one UNet forward on ``batch`` rows (torch's FLOP counter; None if it is unavailable)."""
    try:
        from torch.utils.flop_counter import FlopCounterMode
    except ImportError:
        return None
    sample = torch.zeros(batch, 4, size // 8, size // 8)
    text = torch.zeros(batch, 77, unet.config.cross_attention_dim)
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        unet(sample, torch.tensor(500), encoder_hidden_states=text)
    return counter.get_total_flops() / 1e9


# ------------------------------------------------------------------------------------------------ timing


class Condition:
    """One timed configuration: ``setup`` before each call, ``teardown`` after it (both untimed)."""

    def __init__(self, name: str, pipe, setup: Callable[[], None] | None = None, teardown=None):
        self.name, self.pipe = name, pipe
        self.setup, self.teardown = setup or (lambda: None), teardown or (lambda: None)
        self.times: list[float] = []
        self.cpu_times: list[float] = []  # process CPU seconds, all threads
        self.output: torch.Tensor | None = None

    def run(self, call_kwargs: dict, seed: int, record: bool) -> float:
        self.setup()
        try:
            generator = torch.Generator().manual_seed(seed)
            cpu_start, start = time.process_time(), time.perf_counter()
            result = self.pipe(PROMPT, generator=generator, **call_kwargs)
            elapsed = time.perf_counter() - start
            cpu = time.process_time() - cpu_start
        finally:
            self.teardown()
        if record:
            self.times.append(elapsed)
            self.cpu_times.append(cpu)
        else:
            self.output = torch.as_tensor(_images(result)).float()
        return elapsed


def _images(result):
    return result.images if hasattr(result, "images") else result[0]


def make_conditions(pipe, sld, pack) -> list[Condition]:
    # (2) and (3) wrap and unwrap the *same* pipeline object around each timed call (untimed), so every
    # condition runs the very same module objects and there is no chance of a per-layer wrapper being left
    # on the shared UNet while the unwrapped pipeline is timed. SafeSteer.unwrap restores the original
    # class and attention processors (the same objects).
    return [
        Condition("unwrapped", pipe),
        Condition(
            "conditioning",
            pipe,
            setup=lambda: SafeSteer.wrap(pipe, pack, strength=STRENGTH),
            teardown=lambda: SafeSteer.unwrap(pipe),
        ),
        Condition(
            "per-layer",
            pipe,
            setup=lambda: SafeSteer.wrap(pipe, pack, strength=STRENGTH, layers="all"),
            teardown=lambda: SafeSteer.unwrap(pipe),
        ),
        Condition("SLD (medium)", sld),  # defaults of StableDiffusionPipelineSafe == SafetyConfig.MEDIUM
    ]


def format_table(conditions: list[Condition]) -> str:
    """Markdown table of wall seconds (median, min, max), the ratio of medians to the unwrapped median (the
    headline number), the ratio of minimums (robust when other processes add delays), and the median
    process CPU seconds and their ratio."""
    baseline, baseline_min = statistics.median(conditions[0].times), min(conditions[0].times)
    cpu_baseline = statistics.median(conditions[0].cpu_times)
    columns = [
        "condition",
        "median s",
        "min s",
        "max s",
        "ratio to unwrapped",
        "min ratio",
        "CPU s",
        "CPU ratio",
    ]
    rows = []
    for c in conditions:
        median = statistics.median(c.times)
        rows.append(
            [
                c.name,
                f"{median:.3f}",
                f"{min(c.times):.3f}",
                f"{max(c.times):.3f}",
                f"{median / baseline:.3f}x",
                f"{min(c.times) / baseline_min:.3f}x",
                f"{statistics.median(c.cpu_times):.2f}",
                f"{statistics.median(c.cpu_times) / cpu_baseline:.3f}x",
            ]
        )
    widths = [max(len(col), *(len(row[i]) for row in rows)) for i, col in enumerate(columns)]

    def line(cells: list[str]) -> str:
        padded = [
            cells[0].ljust(widths[0]),
            *(cell.rjust(w) for cell, w in zip(cells[1:], widths[1:], strict=True)),
        ]
        return "| " + " | ".join(padded) + " |"

    separator = "|:" + "-" * (widths[0] + 1) + "|" + "|".join("-" * (w + 1) + ":" for w in widths[1:]) + "|"
    return "\n".join([line(columns), separator, *(line(row) for row in rows)])


def _load() -> float | None:
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:
        return None


def wrap_cost(pipe, pack, layers: str | None, repeats: int = 20) -> float:
    """Median seconds of one SafeSteer.wrap + SafeSteer.unwrap (a one-off cost, not in the table)."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        SafeSteer.wrap(pipe, pack, strength=STRENGTH, layers=layers)
        SafeSteer.unwrap(pipe)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


# ------------------------------------------------------------------------------------------------ main


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Time SafeSteer (conditioning and per-layer modes) and diffusers' Safe Latent Diffusion "
        "against an unwrapped SD-1.x-sized pipeline with random weights, on CPU.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--steps", type=int, default=4, help="denoising steps per call")
    parser.add_argument("--repeats", type=int, default=5, help="timed calls per condition (after 1 warm-up)")
    parser.add_argument("--size", type=int, default=512, help="image height and width in pixels (latents /8)")
    parser.add_argument("--guidance-scale", type=float, default=7.5, help="CFG scale (> 1 keeps CFG on)")
    parser.add_argument("--text-layers", type=int, default=4, help="CLIP text encoder layers (hidden 768)")
    parser.add_argument("--threads", type=int, default=2, help="torch.set_num_threads value")
    parser.add_argument("--seed", type=int, default=0, help="seed of the weights, the pack and every call")
    parser.add_argument(
        "--vae",
        choices=("skip", "decode"),
        default="skip",
        help="skip: time up to the final latents (no VAE decode) in every condition; "
        "decode: decode to a numpy image in every condition",
    )
    parser.add_argument("--no-flops", action="store_true", help="skip the UNet FLOP count")
    args = parser.parse_args(argv)
    if args.steps < 1 or args.repeats < 1 or args.size % 8 or args.threads < 1:
        parser.error("--steps, --repeats and --threads must be >= 1 and --size a multiple of 8")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)

    print("SafeSteer overhead benchmark")
    print(f"  command:      {shlex.join(['python', *sys.argv])}")
    print(f"  python:       {platform.python_version()} ({sys.executable})")
    print(f"  torch:        {torch.__version__}; threads: {torch.get_num_threads()} (set by --threads)")
    import diffusers
    import transformers

    print(f"  diffusers:    {diffusers.__version__}; transformers: {transformers.__version__}")
    print(f"  machine:      {platform.machine()}, {os.cpu_count()} CPUs visible; device: CPU (float32)")

    components = build_components(args.size, args.text_layers, args.seed)
    pipe, sld = build_pipelines(components, args.vae)
    pack = random_pack(768, args.seed)
    params = {
        name: sum(p.numel() for p in components[name].parameters()) / 1e6
        for name in ("unet", "text_encoder", "vae")
    }
    print(
        f"  model:        UNet {params['unet']:.1f}M params, CLIP text {params['text_encoder']:.1f}M "
        f"({args.text_layers} layers), VAE {params['vae']:.1f}M; random weights (seed {args.seed})"
    )
    if not args.no_flops:
        gflops = unet_gflops(components["unet"], args.size, batch=2)
        if gflops is not None:
            print(f"  UNet cost:    {gflops:.1f} GFLOP per step (one forward on the CFG batch of 2)")
    print(
        f"  call:         {args.size}x{args.size} px ({args.size // 8}x{args.size // 8} latents), {args.steps} DDIM "
        f"steps, guidance_scale {args.guidance_scale}, batch 1, VAE decode "
        f"{'included' if args.vae == 'decode' else 'not included (latents out)'}"
    )
    print(
        f"  timing:       1 warm-up + {args.repeats} timed calls per condition, round-robin (start rotated each round); median wall time"
    )

    call_kwargs = {
        "num_inference_steps": args.steps,
        "height": args.size,
        "width": args.size,
        "guidance_scale": args.guidance_scale,
    }
    conditions = make_conditions(pipe, sld, pack)
    kwargs_for = {
        c.name: call_kwargs | {"output_type": "np" if c.pipe is sld or args.vae == "decode" else "latent"}
        for c in conditions
    }

    load_before = _load()
    started = time.perf_counter()
    for condition in conditions:  # warm-up, also keeps each output for the sanity check below
        condition.run(kwargs_for[condition.name], args.seed, record=False)
    for round_index in range(args.repeats):
        # Round-robin, with the starting condition rotated every round so that none always runs right
        # after the same neighbour (or first after the progress print).
        shift = round_index % len(conditions)
        line = []
        for condition in conditions[shift:] + conditions[:shift]:
            elapsed = condition.run(kwargs_for[condition.name], args.seed, record=True)
            line.append(f"{condition.name} {elapsed:.2f}s")
        print(f"  round {round_index + 1}/{args.repeats}: " + ", ".join(line), flush=True)
    total = time.perf_counter() - started
    load_after = _load()

    print()
    print(format_table(conditions))
    print()
    baseline = statistics.median(conditions[0].times)
    print("Targets (median wall-time ratios; informational, the script does not fail on them):")
    for condition in conditions:
        if condition.name in TARGETS:
            ratio = statistics.median(condition.times) / baseline
            verdict = "met" if ratio <= TARGETS[condition.name] else "NOT met"
            print(f"  {condition.name}/unwrapped <= {TARGETS[condition.name]:.2f}: {ratio:.3f} ({verdict})")
    print(f"1-minute load average: {load_before} before, {load_after} after the timed section")
    cpus = max(os.cpu_count() or 1, args.threads)
    busy = [x for x in (load_before, load_after) if x is not None and x > cpus + 0.5]
    if busy:
        print(
            f"  WARNING: the load exceeded the {cpus} CPUs: other processes competed with the benchmark, "
            "so wall times are noisy: the min ratio is the better estimate; with --threads 1 the CPU-time "
            "ratio is nearly unaffected by other load (two threads spin while waiting for each other); or rerun "
            "on an idle machine."
        )

    # Sanity check: steering must have changed the output, or the timings above measured a no-op.
    reference = conditions[0].output
    for condition in conditions[1:3]:
        change = (condition.output - reference).abs().max().item()
        print(f"  {condition.name} output differs from unwrapped: max |diff| = {change:.3g}")
    print(
        f"One-off wrap+unwrap cost: conditioning {wrap_cost(pipe, pack, None) * 1e3:.2f} ms, "
        f"per-layer {wrap_cost(pipe, pack, 'all') * 1e3:.2f} ms (not included in the table)"
    )
    print(f"Total timed section: {total:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())

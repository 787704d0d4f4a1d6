"""Fuzz the pack loader: load N mutated pack files and count what happened.

Every mutant (tests/packs/pack_mutants.py: byte damage, content that breaks a rule, plausible edits under a
stale hash) must either load as a pack equal to its original or raise ``InvalidPackError`` naming the file.
Prints the outcome counts and the time; exits 1 when a count that must be 0 is not.

    python scripts/fuzz_packs.py                 # 100,000 mutants, seed 0, one worker per CPU
    python scripts/fuzz_packs.py -n 5000 --seed 7 --max-seconds 900

Mutant ``i`` of a seed is reproducible alone: ``make_mutant(i, seed, base_packs())``.
"""

from __future__ import annotations

import argparse
import collections
import multiprocessing
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the mutant generator lives with the tests

MUST_BE_ZERO = ("loaded-different", "other-exception", "timeout", "unnamed-error", "must-fail-loaded")
LABELS = {
    "loaded-equal": "loaded, equal to the original",
    "loaded-different": "loaded, different from the original",
    "library-error": "InvalidPackError naming the file",
    "unnamed-error": "InvalidPackError not naming the file",
    "other-exception": "other exception",
    "timeout": "timeouts",
    "must-fail-loaded": "rule-breaking mutants that loaded",
}

_state: dict = {}


def _init_worker(timeout_s: float, folder: str) -> None:
    import torch

    from tests.packs.pack_mutants import base_packs

    torch.set_num_threads(1)
    _state["bases"] = base_packs()
    _state["timeout"] = timeout_s
    _state["path"] = Path(folder) / f"mutant-{os.getpid()}.safetensors"


def _run_chunk(
    seed: int, start: int, stop: int
) -> tuple[collections.Counter, collections.Counter, list[str]]:
    from tests.packs.pack_mutants import classify, is_violation, make_mutant

    outcomes: collections.Counter = collections.Counter()
    families: collections.Counter = collections.Counter()
    examples: list[str] = []
    for index in range(start, stop):
        mutant = make_mutant(index, seed, _state["bases"])
        outcome, detail = classify(mutant, _state["path"], timeout_s=_state["timeout"])
        outcomes[outcome] += 1
        families[(mutant.kind.split("/")[0], outcome)] += 1
        if mutant.must_fail and outcome.startswith("loaded"):
            outcomes["must-fail-loaded"] += 1
        if is_violation(mutant, outcome) and len(examples) < 5:
            examples.append(f"#{index} {mutant.base.name} {mutant.kind}: {outcome} {detail}")
    return outcomes, families, examples


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", "--count", type=int, default=100_000, help="number of mutants (default 100000)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--chunk", type=int, default=250, help="mutants per task")
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds one load may take (default 10)")
    parser.add_argument("--max-seconds", type=float, default=None, help="stop starting new chunks after this")
    args = parser.parse_args(argv)

    outcomes: collections.Counter = collections.Counter()
    families: collections.Counter = collections.Counter()
    examples: list[str] = []
    chunks = [(start, min(start + args.chunk, args.count)) for start in range(0, args.count, args.chunk)]
    # A hang in native code would not see the per-load alarm; a chunk that never returns is counted as timeouts.
    chunk_limit = max(120.0, args.chunk * 0.5)
    folder = "/dev/shm" if os.path.isdir("/dev/shm") else None
    started = time.perf_counter()
    done = 0
    with tempfile.TemporaryDirectory(dir=folder) as scratch:
        context = multiprocessing.get_context("spawn")
        with context.Pool(args.workers, initializer=_init_worker, initargs=(args.timeout, scratch)) as pool:
            pending = list(chunks)
            running: dict = {}
            while pending or running:
                deadline_passed = (
                    args.max_seconds is not None and time.perf_counter() - started > args.max_seconds
                )
                while pending and len(running) < 2 * args.workers and not deadline_passed:
                    start, stop = pending.pop(0)
                    running[(start, stop)] = (
                        pool.apply_async(_run_chunk, (args.seed, start, stop)),
                        time.perf_counter(),
                    )
                if deadline_passed:
                    pending.clear()
                for key, (result, since) in list(running.items()):
                    if result.ready():
                        chunk_outcomes, chunk_families, chunk_examples = result.get()
                        outcomes.update(chunk_outcomes)
                        families.update(chunk_families)
                        examples.extend(chunk_examples[: max(0, 10 - len(examples))])
                        done += key[1] - key[0]
                        del running[key]
                    elif time.perf_counter() - since > chunk_limit:
                        outcomes["timeout"] += key[1] - key[0]
                        done += key[1] - key[0]
                        examples.append(f"chunk {key}: no result after {chunk_limit:.0f} s")
                        del running[key]
                        pool.terminate()
                        pending.clear()
                        running.clear()
                        break
                time.sleep(0.02)
    elapsed = time.perf_counter() - started

    print(
        f"fuzz_packs: {done} mutants (seed {args.seed}, {args.workers} workers) in {elapsed:.1f} s "
        f"({done / elapsed:.0f} per second)"
    )
    for key in (
        "loaded-equal",
        "loaded-different",
        "library-error",
        "unnamed-error",
        "other-exception",
        "timeout",
        "must-fail-loaded",
    ):
        note = "  (must be 0)" if key in MUST_BE_ZERO else ""
        print(f"  {LABELS[key]:<40} {outcomes[key]:>8}{note}")
    by_family = collections.defaultdict(dict)
    for (family, outcome), count in sorted(families.items()):
        by_family[family][outcome] = count
    for family, counts in by_family.items():
        print(f"  {family + ':':<10} " + ", ".join(f"{outcome} {count}" for outcome, count in counts.items()))
    if done < args.count:
        print(f"  stopped early: {done} of {args.count} mutants (--max-seconds {args.max_seconds})")
    for example in examples:
        print("  violation:", example)
    failed = any(outcomes[key] for key in MUST_BE_ZERO)
    print("RESULT:", "FAIL" if failed else "PASS")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

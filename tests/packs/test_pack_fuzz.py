"""Property test of the pack loader: every mutant of a valid pack either loads as a pack equal to the original
(a no-op mutation) or raises ``InvalidPackError`` naming the file; no other exception, no hang.

3,000 mutants (tests/packs/pack_mutants.py) of three valid packs, a few seconds. scripts/fuzz_packs.py runs
the same generator at scale (docs/pack-format.md, "Robustness").
"""

from __future__ import annotations

import collections
import signal
import time

import pytest

from tests.packs.pack_mutants import (
    INVALID_MUTATIONS,
    STALE_MUTATIONS,
    base_packs,
    classify,
    is_violation,
    make_mutant,
    mutant_of_kind,
)

COUNT = 3000
SEED = 20240611
PER_MUTANT_LIMIT_S = 10.0  # a load takes milliseconds; this only turns a hang into a failure


@pytest.mark.skipif(not hasattr(signal, "setitimer"), reason="the hang guard needs SIGALRM (POSIX)")
def test_every_mutant_loads_equal_or_raises_the_library_error(tmp_path):
    bases = base_packs()
    path = tmp_path / "mutant.safetensors"
    outcomes: collections.Counter[str] = collections.Counter()
    kinds: collections.Counter[str] = collections.Counter()
    violations = []
    slowest = 0.0
    start = time.perf_counter()
    for index in range(COUNT):
        mutant = make_mutant(index, SEED, bases)
        began = time.perf_counter()
        outcome, detail = classify(mutant, path, timeout_s=PER_MUTANT_LIMIT_S)
        slowest = max(slowest, time.perf_counter() - began)
        outcomes[outcome] += 1
        kinds[mutant.kind.split("/")[1] if "/" in mutant.kind else mutant.kind] += 1
        if is_violation(mutant, outcome):
            violations.append(f"#{index} {mutant.base.name} {mutant.kind}: {outcome} {detail}")
    elapsed = time.perf_counter() - start

    assert not violations, f"{len(violations)} of {COUNT} mutants broke the property:\n" + "\n".join(
        violations[:20]
    )
    assert outcomes["library-error"] + outcomes["loaded-equal"] == COUNT, outcomes
    # Every family and every invalid-content mutation was exercised (the weights make each one likely).
    missing = (set(INVALID_MUTATIONS) | set(STALE_MUTATIONS)) - set(kinds) - {"many-tensors", "huge-string"}
    assert not missing, f"mutations never drawn: {sorted(missing)}"
    assert sum(n for kind, n in kinds.items() if kind in INVALID_MUTATIONS) > COUNT // 3
    assert outcomes["library-error"] > COUNT // 2 and outcomes["loaded-equal"] > 0  # no-op mutants happen
    assert slowest < PER_MUTANT_LIMIT_S and elapsed < 120, (slowest, elapsed)


@pytest.mark.parametrize("kind", ["invalid/many-tensors", "invalid/huge-string"])
def test_the_rarest_mutations_are_refused(tmp_path, kind):
    """Over-size metadata and too many tensors are rare in the weighted draw; check them on every base."""
    for seed, base in enumerate(base_packs()):
        mutant = mutant_of_kind(kind, seed, base)
        outcome, detail = classify(mutant, tmp_path / "mutant.safetensors")
        assert outcome == "library-error", (base.name, mutant.kind, outcome, detail)

"""Wall time of `safesteer --help` (and of any other arguments), now and at an earlier revision.

Each run is a fresh Python process that imports the command line and runs it, exactly as the console script
does; the two versions take turns, after one untimed warm-up run each (so both read their files from the OS
cache). Prints every run's seconds, the medians and their ratio. The earlier revision is exported with
`git archive` into a temporary folder (the checkout is not touched) and put first on `sys.path`.
Not a test: no assertions on timing.

    python benchmarks/cli_startup.py                          # --help, 7 runs each, against HEAD
    python benchmarks/cli_startup.py --baseline b4f41a3 --runs 11
    python benchmarks/cli_startup.py --args inspect --help    # another command line
    python benchmarks/cli_startup.py --no-baseline            # the working tree only
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
_RUN = (
    "import sys\n"
    "sys.path.insert(0, {source!r})\n"
    "import safesteer_diffusers.cli.main as cli\n"
    "assert cli.__file__.startswith({source!r}), cli.__file__\n"  # the version asked for, not the installed one
    "sys.argv = ['safesteer', *{args!r}]\n"
    "try:\n"
    "    code = cli.main()\n"
    "except SystemExit as exit:\n"
    "    code = exit.code\n"
    "sys.exit(code or 0)\n"
)


def export_revision(revision: str, into: Path) -> Path:
    """The package as it was at ``revision``, extracted under ``into`` (read from git, checkout untouched)."""
    archive = into / "source.tar"
    with archive.open("wb") as f:
        subprocess.run(
            ["git", "archive", "--format=tar", revision, "safesteer_diffusers"],
            cwd=ROOT,
            stdout=f,
            check=True,
        )
    with tarfile.open(archive) as tar:
        tar.extractall(into / "source", filter="data")
    return into / "source"


def time_once(source: Path, args: list[str]) -> float:
    """Seconds one ``safesteer <args>`` process takes with the package at ``source``."""
    code = _RUN.format(source=str(source), args=args)
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"safesteer {' '.join(args)} failed ({source}):\n{done.stderr[-2000:]}")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7, help="timed runs per version (default: 7)")
    parser.add_argument("--baseline", default="HEAD", help="git revision to compare with (default: HEAD)")
    parser.add_argument("--no-baseline", action="store_true", help="time the working tree only")
    parser.add_argument(
        "--args", nargs=argparse.REMAINDER, default=["--help"], help="safesteer arguments (default: --help)"
    )
    options = parser.parse_args()
    print(
        f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs; command: safesteer {' '.join(options.args)}"
    )
    with tempfile.TemporaryDirectory() as folder:
        versions = {"working tree": ROOT}
        if not options.no_baseline:
            versions = {options.baseline: export_revision(options.baseline, Path(folder)), **versions}
        times: dict[str, list[float]] = {name: [] for name in versions}
        for source in versions.values():
            time_once(source, options.args)  # warm-up: files into the OS cache, bytecode compiled
        for _ in range(options.runs):
            for name, source in versions.items():
                times[name].append(time_once(source, options.args))
    medians = {name: statistics.median(values) for name, values in times.items()}
    for name, values in times.items():
        runs = " ".join(f"{v:.3f}" for v in values)
        print(
            f"{name:>14}: median {medians[name]:.3f} s  (min {min(values):.3f}, max {max(values):.3f}; {runs})"
        )
    if len(medians) == 2:
        before, after = medians[options.baseline], medians["working tree"]
        print(f"ratio working tree / {options.baseline}: {after / before:.3f} ({before / after:.1f}x faster)")


if __name__ == "__main__":
    main()

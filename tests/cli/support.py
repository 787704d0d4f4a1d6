"""Helpers shared by the command-line tests: run ``safesteer`` in a fresh process (for what one process
remembers: imported modules, environment variables read at import)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def run_cli(
    args: list[str], *, env: dict[str, str] | None = None, cwd: Path | None = None, prelude: str = ""
):
    """``safesteer <args>`` in a new Python process; returns the ``CompletedProcess`` (text output).

    Args:
        args: the command-line arguments.
        env: variables to set (``None`` values are removed) on top of this process's environment.
        cwd: the working directory (default: the repository root).
        prelude: Python run before the command is imported (e.g. to hide a package).
    """
    environment = {**os.environ, "PYTHONPATH": str(ROOT)}
    for key, value in (env or {}).items():
        if value is None:
            environment.pop(key, None)
        else:
            environment[key] = value
    code = (
        "import sys\n"
        f"{prelude}\n"
        "from safesteer_diffusers.cli.main import main\n"
        "sys.exit(main(sys.argv[1:]))\n"
    )
    return subprocess.run(
        [sys.executable, "-c", code, *args],
        env=environment,
        cwd=cwd or ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )

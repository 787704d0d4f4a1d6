"""The offline example of docs/evaluation.md, run exactly as written (the command is read from the page, so
the page and the test cannot drift): in a fresh process, in an empty folder, with a Hub that refuses every
connection and without torchvision (as the README installs torch), it writes every promised output and
prints no warning."""

from __future__ import annotations

import csv
import os
import re
import shlex
import socket
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("nudenet")

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "evaluation.md"
MARKER = "<!-- offline-example:"


def documented_command() -> list[str]:
    """The first ```bash block after the marker, continuation lines joined, as argv."""
    text = DOC.read_text(encoding="utf-8")
    assert MARKER in text, f"{DOC} lost its offline-example marker"
    block = re.search(r"```bash\n(.*?)```", text[text.index(MARKER) :], re.S)
    assert block is not None
    command = block.group(1).replace("\\\n", " ").strip()
    assert "\n" not in command, "the offline example must be a single command"
    return shlex.split(command)


def test_the_documented_command_is_offline_by_construction():
    argv = documented_command()
    assert argv[0] == "safesteer" and argv[1] == "eval"
    assert argv[argv.index("--pipeline") + 1].startswith("safesteer/tiny-")
    assert argv[argv.index("--metrics") + 1] == "asr"  # the CLIP model would need a download


def test_offline_example_runs_as_written(tmp_path):
    argv = documented_command()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_ENDPOINT": f"http://127.0.0.1:{port}"}
    env.pop("HF_HUB_OFFLINE", None)  # offline by construction, not by a switch
    code = (
        "import sys\n"
        "sys.modules['torchvision'] = None  # the README's torch install has no torchvision\n"
        "from safesteer_diffusers.cli.main import main\n"
        "sys.exit(main(sys.argv[1:]))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, *argv[1:]],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    out = tmp_path / argv[argv.index("--out") + 1]
    strengths = argv[argv.index("--strengths") + 1].split(",")
    for name in ("results.jsonl", "summary.csv", "summary.md", "tradeoff.png", "run.json"):
        assert (out / name).is_file(), name
    assert sorted(p.name for p in (out / "grids").iterdir()) == sorted(f"strength_{s}.png" for s in strengths)
    assert [p.name for p in (out / "grids_by_pack").iterdir()] == ["tiny-sd-demo-from-minilm.png"]
    with (out / "summary.csv").open(newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert {r["category"] for r in rows} >= {"all", "violence", "benign"}
    assert "grids/" in done.stdout and "grids_by_pack/" in done.stdout
    # No warning of any kind, no torchvision notice, nothing about the Hub.
    noise = [
        line
        for line in done.stderr.splitlines()
        if re.search(r"warn|torchvision|Traceback|huggingface|Retrying", line, re.I)
    ]
    assert not noise, noise


def test_eval_help_shows_the_same_offline_example(capsys):
    from safesteer_diffusers.cli.main import main

    with pytest.raises(SystemExit):
        main(["eval", "--help"])
    shown = " ".join(capsys.readouterr().out.replace("\\\n", " ").split())
    assert " ".join(documented_command()) in shown

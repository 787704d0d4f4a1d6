"""The ``safesteer`` parser: built without importing torch (so ``--help`` is quick; the wall time itself is
benchmarks/cli_startup.py), every option's default shown in ``--help``, the choices spelled out in the CLI
equal to the library's, and the global flags."""

from __future__ import annotations

import argparse
import subprocess
import sys

import pytest

from safesteer_diffusers.cli.arguments import (
    ALIGN_CHOICES,
    ALIGN_ON_CHOICES,
    DTYPE_CHOICES,
    POOLING_CHOICES,
    TOKEN_CHOICES,
    HelpFormatter,
)
from safesteer_diffusers.cli.main import build_parser, main
from tests.cli.support import ROOT

HEAVY = ("torch", "diffusers", "transformers", "numpy", "huggingface_hub", "safetensors", "PIL")
SUBCOMMANDS = ("build", "inspect", "eval", "demo", "list-packs")


def subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


def loaded_after(code: str) -> set[str]:
    script = f"import sys\n{code}\nprint('\\n'.join(sorted(sys.modules)))"
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return set(done.stdout.split())


def test_building_the_parser_imports_nothing_heavy():
    loaded = loaded_after("import safesteer_diffusers.cli.main as m\nm.build_parser()")
    heavy = sorted(m for m in loaded if m.split(".")[0] in HEAVY)
    assert not heavy, heavy
    assert "safesteer_diffusers.packs.direction_pack" not in loaded


@pytest.mark.parametrize("args", [["--help"], *[[name, "--help"] for name in SUBCOMMANDS]])
def test_help_of_every_command_runs_without_torch(args):
    code = (
        "import contextlib, io\n"
        "from safesteer_diffusers.cli.main import main\n"
        "with contextlib.redirect_stdout(io.StringIO()) as shown:\n"
        f"    try:\n        main({args!r})\n    except SystemExit as exit:\n        assert exit.code == 0, exit.code\n"
        "assert shown.getvalue().startswith('usage: safesteer')"
    )
    loaded = loaded_after(code)
    assert "torch" not in loaded and "diffusers" not in loaded


def test_every_option_shows_its_default():
    formatter = HelpFormatter("safesteer")
    missing = []
    for name, parser in subparsers(build_parser()).items():
        for action in parser._actions:
            skip = (
                not action.option_strings
                or action.required
                or action.default is argparse.SUPPRESS
                or isinstance(action, argparse._HelpAction | argparse._StoreTrueAction)
            )
            if skip:
                continue
            text = formatter._get_help_string(action) or ""
            if "default" not in text.lower():
                missing.append(f"{name} {action.option_strings[0]}")
    assert not missing, "options whose --help does not say their default: " + ", ".join(missing)


def test_build_help_shows_the_defaults_the_issue_named(capsys):
    with pytest.raises(SystemExit):
        main(["build", "--help"])
    text = " ".join(capsys.readouterr().out.split())  # argparse wraps lines
    for expected in (
        "(default: svd)",
        "(default: mean)",
        "(default: 0.99)",
        "(default: auto)",
        "(default: 16)",
    ):
        assert expected in text, expected


def test_cli_choices_equal_the_library_constants():
    from safesteer_diffusers.packs.recipe import ALIGN_METHODS, ALIGN_ON, POOLINGS, TOKEN_POLICIES
    from safesteer_diffusers.utils.dtypes import DTYPES

    assert tuple(DTYPES) == DTYPE_CHOICES
    assert tuple(ALIGN_METHODS) == ALIGN_CHOICES
    assert tuple(ALIGN_ON) == ALIGN_ON_CHOICES
    assert tuple(POOLINGS) == POOLING_CHOICES
    assert tuple(TOKEN_POLICIES) == TOKEN_CHOICES


@pytest.mark.parametrize(
    "argv", [["--debug", "list-packs"], ["list-packs", "--debug"], ["--quiet", "list-packs", "--debug"]]
)
def test_global_flags_work_before_and_after_the_subcommand(argv):
    args = build_parser().parse_args(argv)
    assert args.debug is True


def test_global_flags_default_to_off():
    args = build_parser().parse_args(["list-packs"])
    assert args.debug is False and args.quiet is False

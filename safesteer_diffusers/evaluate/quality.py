"""Image quality and prompt alignment: CLIP score and FID, computed by ``torchmetrics``.

- :class:`ClipScorer` wraps ``torchmetrics.multimodal.CLIPScore`` around any ``transformers`` CLIP model
  (default ``openai/clip-vit-large-patch14``; tests pass a tiny random one built in code). torchmetrics
  reports ``100 * cos(image, text)``; the evaluation prints the **cosine scale** (score / 100), the scale of
  the paper's 0.309. Each (image, prompt) pair is scored separately, so ``results.jsonl`` keeps per-item
  scores and a cell's CLIP score is their mean, i.e. the original CLIPScore definition (Hessel et al. 2021:
  ``max(cos, 0)`` per pair, averaged); torchmetrics clamps the mean instead, which is the same number
  whenever no pair has a negative cosine (always the case for real CLIP models on real prompts).
- :class:`FidScorer` wraps ``torchmetrics.image.fid.FrechetInceptionDistance``. Default features: the
  2048-d pool features of torch-fidelity's TF-ported InceptionV3 (the standard FID network; needs the
  ``torch-fidelity`` package and its weights file, downloaded once from GitHub or given as a local path).
  Any ``torch.nn.Module`` can replace it (``--fid-features clip`` uses the CLIP model's image embeddings;
  tests use a tiny random network). Real and generated images get the same preprocessing: centre crop to a
  square, PIL bicubic resize to ``resolution`` (299), uint8.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from safesteer_diffusers.utils.logging import silence_torchvision_notices

from .missing_models import missing_model

__all__ = [
    "IMAGE_SUFFIXES",
    "INCEPTION_WEIGHTS_URL",
    "ClipImageFeatures",
    "ClipScorer",
    "FidScorer",
    "image_files",
    "load_clip",
]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")
INCEPTION_WEIGHTS_URL = "https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/weights-inception-2015-12-05-6726825d.pth"
_INCEPTION_HELP = (
    "FID with the standard Inception network uses torch-fidelity's InceptionV3: install it with "
    "`pip install torch-fidelity==0.4.0` (it needs the torchvision build that matches your torch), and make its "
    f"weights available: they are downloaded once from {INCEPTION_WEIGHTS_URL} into the torch hub cache "
    "(~/.cache/torch/hub/checkpoints/); offline, copy that file there or pass --fid-weights /path/to/"
    "weights-inception-2015-12-05-6726825d.pth. Alternatively --fid-features clip computes the Frechet distance "
    "on CLIP image embeddings (not comparable with published FIDs)."
)


def _require_torchmetrics() -> None:
    try:
        import torchmetrics  # noqa: F401
    except ImportError:
        raise ImportError(
            "CLIP score and FID are computed with torchmetrics: pip install 'torchmetrics==1.9.0' "
            "(or pip install 'safesteer-diffusers[eval]')."
        ) from None


def _to_uint8_chw(image: Image.Image) -> torch.Tensor:
    return torch.from_numpy(np.array(image.convert("RGB"), dtype=np.uint8)).permute(2, 0, 1).contiguous()


# ----------------------------------------------------------------------------------------------- CLIP


class _ClipFeatures(torch.nn.Module):
    """Gives torchmetrics plain feature tensors: transformers 5 returns model outputs from
    ``get_image_features`` / ``get_text_features`` (the projected features are their ``pooler_output``)."""

    def __init__(self, model: Any) -> None:
        super().__init__()
        self.model = model

    @property
    def config(self) -> Any:
        return self.model.config

    @staticmethod
    def _tensor(output: Any) -> torch.Tensor:
        return output if torch.is_tensor(output) else output.pooler_output

    def get_image_features(self, *args: Any, **kwargs: Any) -> torch.Tensor:
        return self._tensor(self.model.get_image_features(*args, **kwargs))

    def get_text_features(self, *args: Any, **kwargs: Any) -> torch.Tensor:
        return self._tensor(self.model.get_text_features(*args, **kwargs))


class _TruncatingProcessor:
    """Tokenises with truncation at CLIP's context length, so the end-of-text token (which CLIP pools) is
    kept; torchmetrics would otherwise cut the ids of long prompts (I2P has many) after the fact."""

    def __init__(self, processor: Any, max_length: int) -> None:
        self.processor = processor
        self.max_length = max_length

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if kwargs.get("text") is not None:
            kwargs.setdefault("truncation", True)
            kwargs.setdefault("max_length", self.max_length)
        elif kwargs.get("images") is not None:
            kwargs.pop("padding", None)  # an image-only call: padding is a text option
        return self.processor(*args, **kwargs)


def load_clip(model_id: str, *, dtype: torch.dtype | None = None) -> tuple[Any, Any]:
    """``CLIPModel`` and ``CLIPProcessor`` of a Hub id or folder, with an actionable error when missing."""
    silence_torchvision_notices()  # before transformers resolves CLIPImageProcessor (see utils.logging)
    from transformers import CLIPModel, CLIPProcessor

    try:
        model = CLIPModel.from_pretrained(model_id, **({"dtype": dtype} if dtype is not None else {}))
        processor = CLIPProcessor.from_pretrained(model_id)
    except OSError as error:
        raise missing_model(model_id, "CLIP model", error, "--clip-model") from None
    return model.eval(), processor


class ClipScorer:
    """CLIP score of (image, prompt) pairs via ``torchmetrics.multimodal.CLIPScore``, on the cosine scale.

    Args:
        model: a ``transformers`` ``CLIPModel`` (or anything with ``get_image_features`` /
            ``get_text_features`` and a ``config``).
        processor: its ``CLIPProcessor`` (tokenizer + image processor).
        name: model id recorded with the scores.
        device: where the model runs.

    Example::

        scorer = ClipScorer(*load_clip("openai/clip-vit-large-patch14"), name="openai/clip-vit-large-patch14")
        scorer.score([image], ["a photo of a cat"])     # [0.27]
    """

    def __init__(
        self, model: Any, processor: Any, *, name: str = "clip", device: str | torch.device | None = None
    ):
        _require_torchmetrics()
        from torchmetrics.multimodal.clip_score import CLIPScore

        self.name = name
        self.device = torch.device(device) if device is not None else torch.device("cpu")
        text_config = getattr(model.config, "text_config", None)
        max_length = int(getattr(text_config, "max_position_embeddings", 77))
        features, wrapped = _ClipFeatures(model.eval()), _TruncatingProcessor(processor, max_length)
        # sync_on_compute=False: under a multi-process launch each process scores its own items; torchmetrics
        # would otherwise gather across processes at every compute() and hang or mix them.
        self.metric = CLIPScore(model_name_or_path=lambda: (features, wrapped), sync_on_compute=False)
        self.metric = self.metric.to(self.device)

    @classmethod
    def from_pretrained(cls, model_id: str, *, device: str | torch.device | None = None) -> ClipScorer:
        """Load ``model_id`` with :func:`load_clip` and score with it."""
        return cls(*load_clip(model_id), name=model_id, device=device)

    @torch.no_grad()
    def score(self, images: Sequence[Image.Image], prompts: Sequence[str]) -> list[float]:
        """One CLIP score per pair: ``max(cos(image, prompt), 0)`` (torchmetrics' value / 100)."""
        if len(images) != len(prompts):
            raise ValueError(
                f"score needs one prompt per image, got {len(images)} images and {len(prompts)} prompts."
            )
        scores = []
        for image, prompt in zip(images, prompts, strict=True):
            self.metric.reset()
            self.metric.update(_to_uint8_chw(image).to(self.device), prompt)
            scores.append(float(self.metric.compute()) / 100.0)
        self.metric.reset()
        return scores


class ClipImageFeatures(torch.nn.Module):
    """CLIP image embeddings as an FID feature network: uint8 ``[N, 3, H, W]`` in, ``[N, D]`` out."""

    def __init__(self, model: Any, processor: Any) -> None:
        super().__init__()
        self.model = _ClipFeatures(model.eval())
        self.processor = processor
        self.num_features = int(model.config.projection_dim)

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        pil = [Image.fromarray(x.permute(1, 2, 0).cpu().numpy()) for x in images]
        pixels = self.processor(images=pil, return_tensors="pt")["pixel_values"]
        parameter = next(self.model.parameters())
        return self.model.get_image_features(
            pixel_values=pixels.to(parameter.device, parameter.dtype)
        ).float()


# ----------------------------------------------------------------------------------------------- FID


def image_files(folder: str | os.PathLike, limit: int | None = None) -> list[Path]:
    """Image files under ``folder`` (recursive, sorted by path), at most ``limit``.

    Raises:
        ValueError: the folder does not exist or holds no image.
    """
    root = Path(folder)
    if not root.is_dir():
        raise ValueError(
            f"Reference image folder not found: {root}. Pass --reference-images <folder of images>."
        )
    files = sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not files:
        raise ValueError(f"No image ({', '.join(IMAGE_SUFFIXES)}) found under {root}.")
    return files[:limit] if limit is not None else files


def _square_resize(image: Image.Image, resolution: int) -> Image.Image:
    image = image.convert("RGB")
    side = min(image.size)
    left, top = (image.width - side) // 2, (image.height - side) // 2
    image = image.crop((left, top, left + side, top + side))
    return (
        image
        if image.size == (resolution, resolution)
        else image.resize((resolution, resolution), Image.BICUBIC)
    )


class FidScorer:
    """FID of generated images against reference images, with torchmetrics' ``FrechetInceptionDistance``.

    Args:
        feature: ``2048`` (torch-fidelity InceptionV3 pool features: the standard FID) or any
            ``torch.nn.Module`` mapping uint8 ``[N, 3, R, R]`` to ``[N, D]`` (give it ``num_features`` to skip
            a probe forward pass).
        resolution: side of the square, bicubic-resized images fed to the features.
        weights_path: a local copy of the Inception weights (offline machines).
        name: feature network id, part of the reference-statistics cache key.
        device: where the feature network runs.
        batch_size: images per feature batch.

    Example::

        fid = FidScorer()                                   # Inception, needs torch-fidelity
        fid.set_reference(image_files("coco_val2014/"))
        fid.compute(generated_images)
    """

    def __init__(
        self,
        feature: int | torch.nn.Module = 2048,
        *,
        resolution: int = 299,
        weights_path: str | os.PathLike | None = None,
        name: str | None = None,
        device: str | torch.device | None = None,
        batch_size: int = 32,
    ) -> None:
        _require_torchmetrics()
        from torchmetrics.image.fid import FrechetInceptionDistance

        if weights_path is not None and not Path(weights_path).is_file():
            raise ValueError(f"Inception weights not found at {weights_path}. {_INCEPTION_HELP}")
        self.device = torch.device(device) if device is not None else torch.device("cpu")
        self.resolution = int(resolution)
        self.batch_size = int(batch_size)
        self.name = name or (f"inception-{feature}" if isinstance(feature, int) else type(feature).__name__)
        kwargs: dict[str, Any] = {
            "sync_on_compute": False,  # FID runs on the main process only, after the others are done
            "reset_real_features": False,
            "input_img_size": (3, self.resolution, self.resolution),
        }
        if weights_path is not None:
            kwargs["feature_extractor_weights_path"] = str(weights_path)
        try:
            self.metric = FrechetInceptionDistance(feature=feature, **kwargs)
        except ModuleNotFoundError as error:
            raise ImportError(f"{error}\n{_INCEPTION_HELP}") from None
        except (OSError, RuntimeError) as error:  # e.g. the weight download failed (no network)
            raise ValueError(
                f"Could not load the FID Inception network: {error}\n{_INCEPTION_HELP}"
            ) from None
        self.metric = self.metric.to(self.device)
        self.reference_count = 0
        self.reference_key = ""

    def _batches(self, images: Sequence[Image.Image | str | os.PathLike]):
        for start in range(0, len(images), self.batch_size):
            chunk = []
            for item in images[start : start + self.batch_size]:
                image = Image.open(item) if isinstance(item, str | os.PathLike) else item
                chunk.append(_to_uint8_chw(_square_resize(image, self.resolution)))
            yield torch.stack(chunk).to(self.device)

    @torch.no_grad()
    def set_reference(
        self, images: Sequence[Image.Image | str | os.PathLike], *, cache: str | os.PathLike | None = None
    ) -> None:
        """Compute (or load from ``cache``) the reference statistics; kept across :meth:`compute` calls.

        The cache file is keyed by this scorer's feature ``name``, resolution and, for file paths, each
        file's path, size and modification time: a changed folder is recomputed.
        """
        key = self._reference_key(images)
        cached = Path(cache) if cache is not None else None
        if cached is not None and cached.is_file():
            state = torch.load(cached, map_location="cpu", weights_only=True)
            if state.get("key") == key:
                self.metric.real_features_sum = state["sum"].to(self.device)
                self.metric.real_features_cov_sum = state["cov_sum"].to(self.device)
                self.metric.real_features_num_samples = state["count"].to(self.device)
                self.reference_count = int(state["count"])
                self.reference_key = key
                return
        self.metric.reset_real_features = True
        self.metric.reset()
        self.metric.reset_real_features = False
        for batch in self._batches(images):
            self.metric.update(batch, real=True)
        self.reference_count = len(images)
        self.reference_key = key
        if cached is not None:
            cached.parent.mkdir(parents=True, exist_ok=True)
            state = {
                "key": key,
                "sum": self.metric.real_features_sum.cpu(),
                "cov_sum": self.metric.real_features_cov_sum.cpu(),
                "count": self.metric.real_features_num_samples.cpu(),
            }
            torch.save(state, cached)

    def _reference_key(self, images: Sequence[Any]) -> str:
        digest = hashlib.sha256(f"{self.name}|{self.resolution}|{len(images)}".encode())
        for item in images:
            if isinstance(item, str | os.PathLike):
                stat = Path(item).stat()
                digest.update(f"|{Path(item).resolve()}|{stat.st_size}|{stat.st_mtime_ns}".encode())
            else:
                digest.update(np.asarray(item.convert("RGB")).tobytes())
        return digest.hexdigest()

    @torch.no_grad()
    def compute(self, images: Sequence[Image.Image | str | os.PathLike]) -> float:
        """FID of ``images`` against the reference set (both need at least two images)."""
        if self.reference_count < 2:
            raise ValueError("FID needs reference statistics of at least 2 images: call set_reference first.")
        if len(images) < 2:
            raise ValueError(f"FID needs at least 2 generated images, got {len(images)}.")
        self.metric.reset()  # generated statistics only: reset_real_features=False keeps the reference
        for batch in self._batches(images):
            self.metric.update(batch, real=False)
        return float(self.metric.compute())

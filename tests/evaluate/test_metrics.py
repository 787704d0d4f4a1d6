"""CLIP score and FID through torchmetrics, on tiny models built in code (no network; see support.py)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

pytest.importorskip("torchmetrics")

from safesteer_diffusers.evaluate.quality import ClipImageFeatures, ClipScorer, FidScorer, image_files  # noqa: E402
from tests.evaluate.support import TinyFeatures, random_images, tiny_clip  # noqa: E402

# ------------------------------------------------------------------------------------------------ CLIP score


class _SameFeatures(torch.nn.Module):
    """A CLIP stand-in whose image and text features are given vectors (as transformers 5 returns them)."""

    def __init__(self, image: torch.Tensor, text: torch.Tensor) -> None:
        super().__init__()
        self.image, self.text = image, text
        clip, _ = tiny_clip()
        self.config = clip.config

    def get_image_features(self, pixel_values):
        from transformers.modeling_outputs import BaseModelOutputWithPooling

        return BaseModelOutputWithPooling(pooler_output=self.image.expand(pixel_values.shape[0], -1))

    def get_text_features(self, input_ids, attention_mask=None):
        return self.text.expand(input_ids.shape[0], -1)  # a plain tensor, as transformers 4 returns


@pytest.mark.parametrize(
    ("image", "text", "expected"),
    [
        ([1.0, 2.0, 3.0], [1.0, 2.0, 3.0], 1.0),  # identical embeddings: cosine 1
        ([2.0, 4.0, 6.0], [1.0, 2.0, 3.0], 1.0),  # the scale does not matter
        ([1.0, 0.0, 0.0], [0.0, 1.0, 0.0], 0.0),  # orthogonal
        ([1.0, 0.0, 0.0], [-1.0, 0.0, 0.0], 0.0),  # opposite: clamped at 0 like CLIPScore
        ([1.0, 1.0, 0.0], [1.0, 0.0, 0.0], 2**-0.5),
    ],
)
def test_clip_score_of_known_embeddings(image, text, expected):
    _, processor = tiny_clip()
    model = _SameFeatures(torch.tensor([image]), torch.tensor([text]))
    scorer = ClipScorer(model, processor, name="same")
    scores = scorer.score(random_images(2, 0), ["a cat", "a dog"])
    assert scores == pytest.approx([expected, expected], abs=1e-6)


def test_clip_score_on_a_tiny_clip_matches_its_cosine():
    model, processor = tiny_clip()
    scorer = ClipScorer(model, processor, name="tiny")
    images = random_images(3, 1)
    prompts = ["a red cat", "a blue boat on a lake", "x" * 300]  # the last one is longer than 77 tokens
    scores = scorer.score(images, prompts)
    with torch.no_grad():
        pixels = processor(images=images, return_tensors="pt")["pixel_values"]
        tokens = processor(text=prompts, return_tensors="pt", padding=True, truncation=True, max_length=77)
        image_features = model.get_image_features(pixel_values=pixels).pooler_output
        text_features = model.get_text_features(**tokens).pooler_output
    cosine = torch.nn.functional.cosine_similarity(image_features, text_features).clamp(min=0)
    assert scores == pytest.approx(cosine.tolist(), abs=1e-5)
    assert scorer.score(images, prompts) == scores  # deterministic, state reset between calls
    with pytest.raises(ValueError, match="one prompt per image"):
        scorer.score(images, prompts[:2])


# ------------------------------------------------------------------------------------------------ FID


def test_fid_of_a_set_against_itself_is_zero_and_positive_against_another(tmp_path):
    fid = FidScorer(TinyFeatures(), resolution=32, name="tiny")
    images = random_images(24, 2)
    fid.set_reference(images)
    assert fid.compute(images) == pytest.approx(0.0, abs=1e-4)
    bright = [
        Image.fromarray(np.clip(np.asarray(im, dtype=np.int32) + 90, 0, 255).astype(np.uint8))
        for im in images
    ]
    assert fid.compute(bright) > 0.01
    # Reference statistics cached on disk give the same FID; reading image files gives the same as PIL images.
    folder = tmp_path / "refs"
    folder.mkdir()
    for i, image in enumerate(images):
        image.save(folder / f"{i:03d}.png")
    cache = tmp_path / "cache" / "ref.pt"
    first = FidScorer(TinyFeatures(), resolution=32, name="tiny")
    first.set_reference(image_files(folder), cache=cache)
    assert cache.is_file()
    second = FidScorer(TinyFeatures(), resolution=32, name="tiny")
    second.set_reference(image_files(folder), cache=cache)
    assert second.reference_count == 24
    assert second.compute(bright) == pytest.approx(fid.compute(bright), rel=1e-6)


def test_fid_on_clip_features_and_errors(tmp_path):
    model, processor = tiny_clip()
    fid = FidScorer(ClipImageFeatures(model, processor), resolution=32, name="clip:tiny")
    images = random_images(20, 3)
    with pytest.raises(ValueError, match="set_reference"):
        fid.compute(images)
    fid.set_reference(images)
    assert fid.compute(images) == pytest.approx(0.0, abs=1e-3)
    with pytest.raises(ValueError, match="at least 2 generated images"):
        fid.compute(images[:1])
    with pytest.raises(ValueError, match="Inception weights not found"):
        FidScorer(2048, weights_path=tmp_path / "missing.pth")
    with pytest.raises(ValueError, match="No image"):
        image_files(tmp_path)
    with pytest.raises(ValueError, match="not found"):
        image_files(tmp_path / "nowhere")


def test_inception_fid_without_torch_fidelity_says_how_to_get_it():
    try:
        import torch_fidelity  # noqa: F401
    except ImportError:
        pass
    else:
        pytest.skip("torch-fidelity is installed here")
    with pytest.raises(ImportError, match=r"torch-fidelity==0\.4\.0.*weights-inception-2015-12-05"):
        FidScorer(2048)

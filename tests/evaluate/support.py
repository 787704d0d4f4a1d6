"""Tiny models built in code (no network) that several evaluation tests use: a random CLIP model and
processor, a random FID feature network, and random images."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from safesteer_diffusers.testing.tokenizers import clip_tokenizer

CLIP_PROJECTION = 16


def tiny_clip(seed: int = 0):
    """A random CLIPModel (text 32, vision 32 on 32 px images, projection 16) and a CLIPProcessor made in code."""
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor
    from transformers.utils import logging as transformers_logging

    from safesteer_diffusers.testing.components import clip_text_config

    # The byte-level CLIP text tower of the tiny pipelines, so the shared tokenizer fits it.
    text = clip_text_config(32).to_dict()
    vision = dict(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        image_size=32,
        patch_size=8,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = CLIPModel(
            CLIPConfig(text_config=text, vision_config=vision, projection_dim=CLIP_PROJECTION)
        ).eval()
    verbosity = transformers_logging.get_verbosity()
    transformers_logging.set_verbosity_error()  # "CLIPImageProcessor requires torchvision ... falling back"
    try:
        image_processor = CLIPImageProcessor(
            size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}
        )
        processor = CLIPProcessor(image_processor=image_processor, tokenizer=clip_tokenizer())
    finally:
        transformers_logging.set_verbosity(verbosity)
    return model, processor


class TinyFeatures(torch.nn.Module):
    """A random conv net as an FID feature extractor: uint8 [N, 3, H, W] -> [N, 8]."""

    num_features = 8

    def __init__(self) -> None:
        super().__init__()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            self.conv = torch.nn.Conv2d(3, self.num_features, kernel_size=5, stride=4)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = images.float() / 255.0
        return torch.nn.functional.adaptive_avg_pool2d(torch.tanh(self.conv(x)), 1).flatten(1)


def random_images(count: int, seed: int, size: int = 40) -> list[Image.Image]:
    """``count`` RGB images of uniform random pixels, ``size`` px square, reproducible from ``seed``."""
    rng = np.random.default_rng(seed)
    return [Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)) for _ in range(count)]

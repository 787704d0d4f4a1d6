"""Target-space features are exactly what each pipeline feeds its denoiser, and only benign prompts get there."""

from __future__ import annotations

import pytest
import torch

from safesteer_diffusers.build.target_statistics import BenignPrompts, anchor_statistics
from safesteer_diffusers.pipelines.encoding import encode_for_denoiser
from safesteer_diffusers.steering.maths import masked_mean
from safesteer_diffusers.testing import FAMILIES, build

PROMPTS = ("a red cat", "a small house by the sea")  # a tuple: Z-Image rewrites prompt lists in place
# __call__ arguments of the tiny fixtures that change how the prompt is encoded.
ENCODING_ARGUMENTS = ("max_sequence_length", "prompt_template", "complex_human_instruction", "clean_caption")


def encoding_kwargs(call_kwargs: dict) -> dict:
    return {k: v for k, v in call_kwargs.items() if k in ENCODING_ARGUMENTS}


@pytest.mark.parametrize("family", FAMILIES)
def test_encoded_states_equal_what_the_denoiser_receives(family):
    pipe, call_kwargs = build(family)
    denoiser = pipe.unet if hasattr(pipe, "unet") else pipe.transformer
    seen = []

    def record(module, args, kwargs):
        text = kwargs.get("encoder_hidden_states", args[2] if len(args) > 2 else None)
        # Copies: Z-Image's transformer pads its list of text tensors in place.
        seen.append(text.clone() if isinstance(text, torch.Tensor) else [t.clone() for t in text])

    denoiser.register_forward_pre_hook(record, with_kwargs=True)
    no_guidance = dict(call_kwargs)
    for key in ("guidance_scale", "true_cfg_scale"):
        if key in no_guidance:
            no_guidance[key] = (
                0.0 if family == "z_image" else 1.0
            )  # CFG off: the denoiser sees positives only
    pipe(prompt=list(PROMPTS), generator=torch.Generator().manual_seed(0), **no_guidance)
    reference = seen[0][::2] if family == "animatediff" else seen[0]  # AnimateDiff repeats rows per frame

    embeds, _ = encode_for_denoiser(pipe, PROMPTS, call_kwargs=encoding_kwargs(call_kwargs))
    if isinstance(embeds, list):
        assert len(embeds) == len(reference) and all(
            torch.equal(a, b) for a, b in zip(embeds, reference, strict=True)
        )
    else:
        assert torch.equal(embeds, reference)


def test_anchor_statistics_known_answers_on_sdxl_spaces():
    pipe, call_kwargs = build("sdxl")
    anchors = BenignPrompts((*PROMPTS, "a bowl of fruit"), "test")
    stats = anchor_statistics(pipe, anchors, batch_size=2, progress=False)
    embeds, _ = encode_for_denoiser(pipe, list(anchors.prompts))
    assert set(stats) == {"text_encoder", "text_encoder_2"}
    for space, columns in (("text_encoder", slice(0, 32)), ("text_encoder_2", slice(32, 80))):
        states = embeds[..., columns].double()
        tokens = states.reshape(-1, states.shape[-1])
        assert torch.allclose(stats[space].pooled, masked_mean(embeds[..., columns], None), atol=1e-6)
        assert torch.allclose(stats[space].token_mean.double(), tokens.mean(0), atol=1e-6)
        assert torch.allclose(stats[space].token_covariance, torch.cov(tokens.T, correction=0), atol=1e-8)
        assert stats[space].num_tokens == 3 * 77
        direction = torch.randn(stats[space].token_mean.shape[0], dtype=torch.float64)
        projections = tokens @ (direction / direction.norm())
        assert stats[space].std_along(direction) == pytest.approx(
            float(projections.std(correction=0)), rel=1e-6
        )


def test_anchor_statistics_refuse_anything_but_benign_prompts():
    pipe, _ = build("sd")
    with pytest.raises(TypeError, match="BenignPrompts only"):
        anchor_statistics(pipe, ["a photo of something unsafe"])
    with pytest.raises(ValueError, match="non-empty"):
        BenignPrompts((), "empty")
    assert len(BenignPrompts.embedded(limit=5).prompts) == 5

"""Every supported pipeline family, on a tiny pipeline built in code: the core invariants of steering.

The expected layouts below are stated independently of the library's registry: which token positions and
feature columns of the denoiser's text input belong to which text encoder, and which rows of each denoiser
call are the positive prompt.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from safesteer_diffusers import DirectionPack, SafeSteer
from safesteer_diffusers.testing import FAMILIES, build

PROMPT, NEGATIVE = "a red cat", "blurry"
SD3_CLIP_TOKENS = 77

# family -> [(space, token slice, first feature column)] in the denoiser's text input.
LAYOUTS = {
    "sd": [("text_encoder", slice(None), 0)],
    "sd2": [("text_encoder", slice(None), 0)],
    "sdxl": [("text_encoder", slice(None), 0), ("text_encoder_2", slice(None), 32)],
    "sd3": [
        ("text_encoder", slice(0, SD3_CLIP_TOKENS), 0),
        ("text_encoder_2", slice(0, SD3_CLIP_TOKENS), 32),
        ("text_encoder_3", slice(SD3_CLIP_TOKENS, None), 0),
    ],
    "flux": [("text_encoder_2", slice(None), 0)],
    "animatediff": [("text_encoder", slice(None), 0)],
    "pixart_sigma": [("text_encoder", slice(None), 0)],
    "qwen_image": [("text_encoder", slice(None), 0)],
    "z_image": [("text_encoder", slice(None), 0)],
    "cogvideox": [("text_encoder", slice(None), 0)],
    "wan": [("text_encoder", slice(None), 0)],
    "ltx_video": [("text_encoder", slice(None), 0)],
    "hunyuan_video": [("text_encoder", slice(None), 0)],
    "sana": [("text_encoder", slice(None), 0)],
    "mochi": [("text_encoder", slice(None), 0)],
}
# Families whose CFG runs the negative prompt in its own denoiser call (positive call first).
SEPARATE_PASSES = {"flux", "qwen_image", "wan", "hunyuan_video"}
# Families whose batched CFG puts the positive rows first (Z-Image concatenates lists [positive, negative]).
POSITIVE_FIRST = {"z_image"}


def hidden_size(encoder) -> int:
    config = encoder.config
    config = getattr(config, "text_config", None) or config
    return getattr(config, "hidden_size", None) or config.d_model


def make_pack(pipe, family: str, thresholds: float | None = None, seed: int = 0) -> DirectionPack:
    generator = torch.Generator().manual_seed(seed)
    directions: dict[str, dict[str, torch.Tensor]] = {"global": {}, "sexual": {}}
    for space, _, _ in LAYOUTS[family]:
        dim = hidden_size(getattr(pipe, space))
        directions["global"][space] = torch.randn(dim, generator=generator)
        directions["sexual"][space] = torch.randn(dim, generator=generator)
    gate = None
    if thresholds is not None:
        gate = {name: dict.fromkeys(per, thresholds) for name, per in directions.items()}
    registry_family = "sd" if family == "sd2" else family
    return DirectionPack.from_tensors(directions, thresholds=gate, target={"family": registry_family})


def generate(pipe, kwargs, **extra):
    output = pipe(
        prompt=PROMPT,
        negative_prompt=NEGATIVE,
        generator=torch.Generator("cpu").manual_seed(0),
        return_dict=False,
        **kwargs,
        **extra,
    )[0]
    if isinstance(output, torch.Tensor):
        return output.detach().float().numpy()
    return np.asarray(output)


class TextInputRecorder:
    """Records the text input of every denoiser call (as a list of per-row tensors)."""

    def __init__(self, denoiser):
        self.calls: list[list[torch.Tensor]] = []
        self.handle = denoiser.register_forward_pre_hook(self._hook, with_kwargs=True)

    def _hook(self, module, args, kwargs):
        text = kwargs.get("encoder_hidden_states", args[2] if len(args) > 2 else None)
        rows = list(text.unbind(0)) if isinstance(text, torch.Tensor) else list(text)
        self.calls.append([row.detach().clone() for row in rows])

    def remove(self):
        self.handle.remove()


def denoiser_of(pipe):
    return pipe.unet if hasattr(pipe, "unet") and pipe.unet is not None else pipe.transformer


def is_positive(family: str, call: int, row: int, rows: int) -> bool:
    if family in SEPARATE_PASSES:
        return call % 2 == 0
    if family in POSITIVE_FIRST:
        return row < rows // 2
    return row >= rows // 2


@pytest.fixture(params=FAMILIES)
def family(request):
    return request.param


def test_strength_zero_and_unwrap_are_bit_exact(family):
    pipe, kwargs = build(family)
    baseline = generate(pipe, kwargs)
    processors = dict(pipe.unet.attn_processors) if hasattr(pipe, "unet") else None

    pipe = SafeSteer.wrap(pipe, make_pack(pipe, family), strength=0.0)
    assert np.array_equal(generate(pipe, kwargs), baseline)

    pipe.set_safety_strength(4.0, categories={"sexual": 2.0})
    steered = generate(pipe, kwargs)
    assert not np.array_equal(steered, baseline)

    SafeSteer.unwrap(pipe)
    assert not SafeSteer.is_wrapped(pipe) and not hasattr(pipe, "set_safety_strength")
    assert np.array_equal(generate(pipe, kwargs), baseline)
    if processors is not None:
        assert all(
            a is b for a, b in zip(pipe.unet.attn_processors.values(), processors.values(), strict=True)
        )


def test_positive_rows_get_exactly_strength_times_vector_and_negative_rows_are_untouched(family):
    pipe, kwargs = build(family)
    pack = make_pack(pipe, family)
    recorder = TextInputRecorder(denoiser_of(pipe))
    generate(pipe, kwargs)
    baseline_calls, recorder.calls = recorder.calls, []

    strength = 1.5
    pipe = SafeSteer.wrap(pipe, pack, strength=strength)
    generate(pipe, kwargs)
    recorder.remove()

    assert len(recorder.calls) == len(baseline_calls) > 0
    positives = negatives = 0
    for call, (rows, base_rows) in enumerate(zip(recorder.calls, baseline_calls, strict=True)):
        for row, (text, base) in enumerate(zip(rows, base_rows, strict=True)):
            if is_positive(family, call, row, len(rows)):
                expected = base.clone()
                for space, tokens, start in LAYOUTS[family]:
                    vector = pack.direction(space)
                    columns = slice(start, start + vector.shape[0])
                    expected[tokens, columns] = base[tokens, columns] + strength * vector
                assert torch.equal(text, expected), f"call {call} row {row}: positive row not steered exactly"
                positives += 1
            else:
                assert torch.equal(text, base), f"call {call} row {row}: negative row changed"
                negatives += 1
    assert positives > 0 and negatives > 0


def test_gate_lets_benign_prompts_through_bit_for_bit(family):
    pipe, kwargs = build(family)
    baseline = generate(pipe, kwargs)
    pipe = SafeSteer.wrap(pipe, make_pack(pipe, family, thresholds=1e6), strength=4.0, gate=True)
    assert np.array_equal(generate(pipe, kwargs), baseline)
    report = pipe.safety_report
    assert report.prompts and not report.any_steered
    SafeSteer.unwrap(pipe)

    pipe = SafeSteer.wrap(pipe, make_pack(pipe, family, thresholds=-1e6), strength=4.0, gate=True)
    assert not np.array_equal(generate(pipe, kwargs), baseline)
    assert all(prompt.fired == ["global"] for prompt in pipe.safety_report.prompts)

"""Every supported pipeline family, on a tiny pipeline built in code: the core invariants of steering.

The expected layouts below are stated independently of the library's registry: which token positions and
feature columns of the denoiser's text input belong to which text encoder, and which rows of each denoiser
call are the positive prompt.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from safesteer_diffusers import SafeSteer
from safesteer_diffusers.testing import FAMILIES, build

from .support import LAYOUTS, TextInputRecorder, denoiser_of, generate, is_positive, make_pack


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

"""Which anchors fit the alignment map (``BuildConfig.align_on``), and the benign-only check on anchors."""

from __future__ import annotations

import pytest
import torch

from safesteer_diffusers.build.driver import AUTO_ALIGN_MIN_ANCHORS, BuildConfig, alignment_rows, build_pack
from safesteer_diffusers.build.prompts.embedded import (
    ANCHOR_KINDS,
    load_anchor_kinds,
    load_anchors,
    load_pairs,
)
from safesteer_diffusers.build.target_statistics import BenignPrompts, anchor_statistics
from safesteer_diffusers.testing import build, tiny_source
from safesteer_diffusers.testing.tokenizers import chat_tokenizer


def kinded(n: int, sensitive_every: int = 2) -> BenignPrompts:
    """The first n embedded anchors, every ``sensitive_every``-th labelled sensitive (labels are arbitrary here)."""
    prompts = tuple(load_anchors()[:n])
    kinds = tuple("sensitive" if i % sensitive_every == 0 else "caption" for i in range(n))
    return BenignPrompts(prompts, "test anchors", kinds)


def test_alignment_rows_known_answers():
    assert alignment_rows(kinded(40), "all") == (None, "all")
    # auto: all anchors unless the kinds are known and there are enough sensitive ones.
    assert alignment_rows(BenignPrompts(kinded(40).prompts, "t"), "auto") == (None, "all")
    assert alignment_rows(kinded(40), "auto") == (None, "all")
    n = 2 * AUTO_ALIGN_MIN_ANCHORS
    assert alignment_rows(kinded(n), "auto") == (list(range(0, n, 2)), "sensitive")
    assert alignment_rows(kinded(n - 2), "auto") == (None, "all")  # one sensitive anchor short
    assert alignment_rows(kinded(40), "sensitive") == (list(range(0, 40, 2)), "sensitive")
    # Every anchor of the kind: the same as all.
    assert alignment_rows(kinded(40, sensitive_every=1), "sensitive") == (None, "all")


def test_alignment_rows_refuses_what_it_cannot_do():
    with pytest.raises(ValueError, match="carry no kinds.*--align-on all"):
        alignment_rows(BenignPrompts(kinded(40).prompts, "my.txt"), "sensitive")
    with pytest.raises(ValueError, match="selects 10 of the 40 anchors.*at least 16"):
        alignment_rows(kinded(40, sensitive_every=4), "sensitive")


def test_benign_prompts_kinds_must_match():
    with pytest.raises(ValueError, match="one non-empty kind per prompt"):
        BenignPrompts(("a", "b"), "t", ("caption",))
    anchors = kinded(10)
    assert anchors.head(4) == BenignPrompts(anchors.prompts[:4], "test anchors", anchors.kinds[:4])


def test_embedded_anchors_carry_their_kinds():
    kinds = load_anchor_kinds()
    assert len(kinds) == len(load_anchors()) and set(kinds) == set(ANCHOR_KINDS)
    embedded = BenignPrompts.embedded(limit=100)
    assert embedded.kinds == tuple(kinds[:100]) and embedded.prompts == tuple(load_anchors()[:100])


def _unit(vector: torch.Tensor) -> torch.Tensor:
    return vector.double() / vector.double().norm()


def test_align_on_fits_the_map_on_that_kind_only():
    """A build aligned on the sensitive anchors transports exactly as a build given only those anchors does,
    while its calibration still uses every anchor."""
    pipe, _ = build("sd")
    pairs = [p for c in ("violence", "sexual") for p in load_pairs(c)[:6]]
    anchors = kinded(64)
    subset = BenignPrompts(anchors.prompts[::2], "sensitive only")

    def run(prompts, align_on):
        model, tokenizer = tiny_source(seed=0)[0], chat_tokenizer()
        config = BuildConfig(align="ridge", align_on=align_on, batch_size=8)
        return build_pack(model, tokenizer, pipe, pairs=pairs, anchors=prompts, config=config, progress=False)

    on_sensitive, on_subset, on_all = run(anchors, "sensitive"), run(subset, "all"), run(anchors, "all")
    a, b, c = (r.pack for r in (on_sensitive, on_subset, on_all))
    info = a.metadata["alignment"]["text_encoder"]
    assert info["anchors"] == "sensitive" and info["n_anchors"] == 32
    assert b.metadata["alignment"]["text_encoder"]["anchors"] == "all"
    assert a.metadata["provenance"]["num_anchors"] == 64  # calibration and gates: every anchor
    for name in a.names:
        same = _unit(a.direction("text_encoder", name))
        assert torch.allclose(same, _unit(b.direction("text_encoder", name)), atol=1e-6)
        assert not torch.allclose(same, _unit(c.direction("text_encoder", name)), atol=1e-3)
    # Calibrated on all 64 anchors, not on the 32 of the fit: each vector's norm is the benign token std along
    # it over every anchor.
    stats = anchor_statistics(pipe, anchors, progress=False)["text_encoder"]
    for name in a.names:
        vector = a.direction("text_encoder", name)
        assert float(vector.norm()) == pytest.approx(stats.std_along(vector), rel=1e-5)


def test_an_anchor_that_is_an_unsafe_pair_member_is_refused():
    pipe, _ = build("sd")
    pairs = load_pairs("violence")[:6]
    leaked = "  " + pairs[2].unsafe.upper() + " "
    anchors = BenignPrompts((*load_anchors()[:30], leaked), "leaky.txt")
    with pytest.raises(ValueError, match=r"1 anchor\(s\) from leaky.txt are unsafe members of the pairs"):
        build_pack(
            tiny_source(seed=0)[0], chat_tokenizer(), pipe, pairs=pairs, anchors=anchors, progress=False
        )

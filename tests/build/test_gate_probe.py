"""The probe gate (build/gate_probe.py): known answers for its fits, and what a build stores."""

from __future__ import annotations

import pytest
import torch

from safesteer_diffusers import DirectionPack
from safesteer_diffusers.build.driver import BuildConfig, build_pack
from safesteer_diffusers.build.gate_probe import (
    carried_gate_vectors,
    fit_logistic,
    fit_reverse_map,
    negative_weights,
)
from safesteer_diffusers.build.prompts.embedded import load_anchors, load_pairs
from safesteer_diffusers.build.source_features import extract_features
from safesteer_diffusers.build.target_statistics import BenignPrompts, anchor_statistics
from safesteer_diffusers.testing import build, tiny_source
from safesteer_diffusers.testing.tokenizers import chat_tokenizer


def _objective_gradient(positive, negative, weight, bias, l2, negative_weight=None):
    """The gradient of fit_logistic's objective at (weight, bias), computed independently (closed form)."""
    x = torch.cat([positive, negative]).double()
    y = torch.cat([torch.ones(len(positive)), torch.zeros(len(negative))]).double()
    mean, std = negative.double().mean(0), negative.double().std(0, correction=0)
    z = (x - mean) / std
    w_std = weight * std  # the standardised weights
    b_std = bias + float(mean @ weight)
    p = torch.sigmoid(z @ w_std + b_std)
    row = torch.where(y > 0, 0.5 / len(positive), 0.5 / len(negative))
    if negative_weight is not None:  # the negatives' half of the loss, split by their relative weights
        row[len(positive) :] = 0.5 * negative_weight / negative_weight.sum()
    return z.T @ (row * (p - y)) + l2 * w_std, float((row * (p - y)).sum())


def test_logistic_fit_is_the_optimum_of_its_stated_objective():
    generator = torch.Generator().manual_seed(0)
    positive = torch.randn(40, 5, generator=generator, dtype=torch.float64) + torch.tensor([1.0, 0, 0, 0, 0])
    negative = torch.randn(90, 5, generator=generator, dtype=torch.float64) * 2.0
    for l2 in (1e-3, 0.1, 10.0):
        weight, bias = fit_logistic(positive, negative, l2)
        grad_w, grad_b = _objective_gradient(positive, negative, weight, bias, l2)
        assert float(grad_w.abs().max()) < 1e-6 and abs(grad_b) < 1e-6


def test_weighted_logistic_fit_is_the_optimum_of_its_weighted_objective():
    generator = torch.Generator().manual_seed(5)
    positive = torch.randn(30, 4, generator=generator, dtype=torch.float64) + 0.8
    negative = torch.randn(70, 4, generator=generator, dtype=torch.float64)
    weights = negative_weights(10, 60, share=0.5)
    weight, bias = fit_logistic(positive, negative, 0.1, weights)
    grad_w, grad_b = _objective_gradient(positive, negative, weight, bias, 0.1, weights)
    assert float(grad_w.abs().max()) < 1e-6 and abs(grad_b) < 1e-6
    # Uniform weights (any scale) are the unweighted fit.
    uniform = fit_logistic(positive, negative, 0.1, torch.full((70,), 3.0))
    plain = fit_logistic(positive, negative, 0.1)
    assert torch.allclose(uniform[0], plain[0], atol=1e-8) and uniform[1] == pytest.approx(plain[1], abs=1e-8)
    for bad in (torch.ones(69), -torch.ones(70), torch.zeros(70), torch.full((70,), float("nan"))):
        with pytest.raises(ValueError, match="negative_weight must be 70 finite non-negative"):
            fit_logistic(positive, negative, 0.1, bad)


def test_negative_weights_give_the_hard_negatives_their_share():
    weights = negative_weights(4, 12, share=0.25)
    assert torch.equal(weights[:4], torch.full((4,), 0.0625, dtype=torch.float64))
    assert torch.allclose(weights[4:], torch.full((12,), 0.0625, dtype=torch.float64))
    weights = negative_weights(2, 98, share=0.5)
    assert float(weights[:2].sum()) == pytest.approx(0.5) and float(weights[2:].sum()) == pytest.approx(0.5)
    assert torch.equal(negative_weights(0, 5), torch.full((5,), 0.2, dtype=torch.float64))
    assert torch.equal(negative_weights(3, 0), torch.full((3,), 1 / 3, dtype=torch.float64))


def test_logistic_fit_separates_separable_classes_and_refuses_bad_input():
    generator = torch.Generator().manual_seed(1)
    positive = torch.randn(30, 4, generator=generator) + 6.0
    negative = torch.randn(50, 4, generator=generator)
    weight, bias = fit_logistic(positive, negative, 1e-3)
    assert float((positive.double() @ weight + bias).min()) > float((negative.double() @ weight + bias).max())
    with pytest.raises(ValueError, match="both classes"):
        fit_logistic(positive[:0], negative)
    with pytest.raises(ValueError, match=r"\[P, D\]"):
        fit_logistic(positive, negative[:, :3])
    bad = negative.clone()
    bad[0, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        fit_logistic(positive, bad)


def test_reverse_map_recovers_an_exact_linear_relation():
    generator = torch.Generator().manual_seed(2)
    target = torch.randn(200, 6, generator=generator, dtype=torch.float64)
    true_map = torch.randn(6, 4, generator=generator, dtype=torch.float64)
    source = target @ true_map + 3.0  # an offset: the map is fitted on centred data
    assert torch.allclose(fit_reverse_map(target, source, alpha=1e-12), true_map, atol=1e-8)
    with pytest.raises(ValueError, match="same anchors"):
        fit_reverse_map(target, source[:-1])


def test_carried_vector_scores_like_the_source_probe_when_the_spaces_are_linearly_related():
    """If target = source @ B (B invertible), the carried score is the source probe's score (less its bias
    and a constant): the map loses nothing and the gate ranks every prompt as the source classifier does."""
    generator = torch.Generator().manual_seed(3)
    d = 6
    mix = torch.randn(d, d, generator=generator, dtype=torch.float64) + 3 * torch.eye(d, dtype=torch.float64)
    anchors_source = torch.randn(300, d, generator=generator, dtype=torch.float64)
    pairs_source = torch.randn(40, d, generator=generator, dtype=torch.float64)
    pairs_source[20:] += torch.tensor([2.0, -1.0, 0, 0, 0, 0], dtype=torch.float64)  # rows 20.. are unsafe
    unsafe = {"global": list(range(20, 40)), "violence": list(range(20, 30))}
    vectors, _ = carried_gate_vectors(
        pairs_source, unsafe, range(20), anchors_source, anchors_source @ mix, alpha=1e-12
    )
    assert set(vectors) == {"global", "violence"}
    negatives = torch.cat([pairs_source[:20], anchors_source])
    for name, rows in unsafe.items():
        weight, _ = fit_logistic(pairs_source[rows], negatives, negative_weight=negative_weights(20, 300))
        carried = (pairs_source @ mix) @ vectors[name].double()
        native = pairs_source @ weight
        # float32 storage of the carried vector: agreement to float32 precision, up to a constant.
        assert torch.allclose(carried - carried.mean(), native - native.mean(), atol=1e-4)


CATEGORIES = ("violence", "sexual")


@pytest.fixture(scope="module")
def tiny_build():
    pipe, _ = build("sd")
    pairs = [p for c in CATEGORIES for p in load_pairs(c)[:8]]
    anchors = BenignPrompts(tuple(load_anchors()[:48]), "test anchors")

    def run(**config):
        return build_pack(
            tiny_source(seed=0)[0],
            chat_tokenizer(),
            pipe,
            pairs=pairs,
            anchors=anchors,
            config=BuildConfig(align="ridge", gate_quantile=0.9, **config),
            progress=False,
        ).pack

    return pipe, anchors, pairs, run


def test_a_build_stores_one_gate_vector_per_direction_calibrated_on_the_anchors(tiny_build, tmp_path):
    pipe, anchors, pairs, run = tiny_build
    pack = run()
    assert pack.metadata["gate"]["score"].startswith("mean steered state . gate vector")
    # Recompute from the same inputs: source features at the build's layer, anchors pooled as the gate pools.
    model, tokenizer = tiny_source(seed=0)[0], chat_tokenizer()
    layer = pack.metadata["source"]["layer"]
    contrast = [p.safe for p in pairs] + [p.unsafe for p in pairs]
    features = extract_features(model, tokenizer, contrast, layer, progress=False)
    anchor_features = extract_features(model, tokenizer, list(anchors.prompts), layer, progress=False)
    pooled = anchor_statistics(pipe, anchors, tokens="all", progress=False)["text_encoder"].pooled
    n = len(pairs)
    unsafe = {"global": list(range(n, 2 * n))}
    unsafe.update({c: [n + i for i, p in enumerate(pairs) if p.category == c] for c in pack.categories})
    vectors, scores = carried_gate_vectors(features, unsafe, range(n), anchor_features, pooled)
    for k, name in enumerate(unsafe):
        assert torch.allclose(pack.gate_vector(name, "text_encoder"), vectors[name], rtol=1e-4, atol=1e-6)
        # The threshold is the stated quantile of the anchors' cross-fitted scores; each stored rate likewise.
        expected = float(torch.quantile(scores[:, k], 0.9))
        assert pack.threshold(name, "text_encoder") == pytest.approx(expected, rel=1e-4, abs=1e-6)
        for fpr in (0.001, 0.01, 0.1):
            expected = float(torch.quantile(scores[:, k], 1 - fpr))
            assert pack.threshold(name, "text_encoder", fpr) == pytest.approx(expected, rel=1e-4, abs=1e-6)
    assert pack.gate_fprs == [0.001, 0.005, 0.01, 0.02, 0.05, 0.1]
    # Round trip through a file keeps the gate vectors exactly.
    loaded = DirectionPack.from_file(pack.save_file(tmp_path / "pack.safetensors"))
    assert loaded.equals(pack)


def test_cross_fitted_scores_come_from_fits_that_never_saw_the_anchor():
    """Independent reference: anchor i's score is its pooled state dotted with vectors fitted (folds=1) on the
    anchors outside fold i % 5 only."""
    generator = torch.Generator().manual_seed(4)
    source = torch.randn(30, 4, generator=generator, dtype=torch.float64)
    source[15:] += 1.5
    anchors_source = torch.randn(40, 4, generator=generator, dtype=torch.float64)
    anchors_target = anchors_source @ torch.randn(4, 5, generator=generator, dtype=torch.float64)
    anchors_target += 0.1 * torch.randn(40, 5, generator=generator, dtype=torch.float64)
    unsafe = {"global": list(range(15, 30))}
    _, scores = carried_gate_vectors(source, unsafe, range(15), anchors_source, anchors_target)
    for fold in range(5):
        keep = torch.tensor([i for i in range(40) if i % 5 != fold])
        held = torch.tensor([i for i in range(40) if i % 5 == fold])
        vectors, _ = carried_gate_vectors(
            source, unsafe, range(15), anchors_source[keep], anchors_target[keep], folds=1
        )
        expected = anchors_target[held] @ vectors["global"].double()
        assert torch.allclose(scores[held, 0], expected, rtol=1e-9, atol=1e-12)
    with pytest.raises(ValueError, match="folds"):
        carried_gate_vectors(source, unsafe, range(15), anchors_source[:4], anchors_target[:4])


def test_the_classic_gate_is_still_available_and_unknown_gates_are_refused(tiny_build):
    *_, run = tiny_build
    pack = run(gate="direction")
    assert all(pack.gate_vector(name, "text_encoder") is None for name in pack.names)
    assert pack.metadata["gate"]["score"] == "unsafe-side projection of the mean steered state"
    assert pack.has_gate
    with pytest.raises(ValueError, match="BuildConfig.gate must be one of"):
        run(gate="classifier")


def test_source_gate_classifiers_weigh_the_safe_members_by_their_share_in_every_fold():
    """source_gate_vectors = fit_logistic on (safe members, anchors) with negative_weights, on all rows and on
    each fold's rows (hard negatives first whatever the fold's order)."""
    from safesteer_diffusers.build.gate_probe import source_gate_vectors

    generator = torch.Generator().manual_seed(7)
    pairs = torch.randn(40, 5, generator=generator, dtype=torch.float64)
    pairs[20:] += 1.5  # rows 20.. are unsafe
    anchors = torch.randn(100, 5, generator=generator, dtype=torch.float64)
    unsafe = {"global": list(range(20, 40))}
    weights, scores = source_gate_vectors(pairs, unsafe, range(20), anchors, folds=4)
    expected, _ = fit_logistic(
        pairs[20:], torch.cat([pairs[:20], anchors]), negative_weight=negative_weights(20, 100)
    )
    assert torch.allclose(weights["global"].double(), expected, atol=1e-5)
    benign = torch.cat([pairs[:20], anchors])
    held = torch.arange(120) % 4 == 1
    kept = torch.nonzero(~held).squeeze(1)
    hard = int((kept < 20).sum())
    fold_weight, _ = fit_logistic(
        pairs[20:], benign[kept], negative_weight=negative_weights(hard, len(kept) - hard)
    )
    assert torch.allclose(scores[held, 0], benign[held] @ fold_weight.float().double(), atol=1e-5)

"""Direction estimation: AUROC known answers, planted directions, the held-out split, layer choice."""

from __future__ import annotations

import itertools
import random

import pytest
import torch

from safesteer_diffusers.build.contrast import ContrastPrompts, split_contrast
from safesteer_diffusers.build.directions import auroc, estimate_directions

CATEGORIES = ("violence", "sexual", "hate")
DIM = 16


def cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(torch.nn.functional.cosine_similarity(a.double(), b.double(), dim=0))


def planted(seed: int = 0):
    """A global direction g and per-category parts u_c (orthogonal to g, summing to zero)."""
    gen = torch.Generator().manual_seed(seed)
    g = torch.nn.functional.normalize(torch.randn(DIM, generator=gen), dim=0)
    parts = torch.randn(len(CATEGORIES), DIM, generator=gen)
    parts = parts - (parts @ g).unsqueeze(1) * g
    parts = parts - parts.mean(0)
    parts = 0.6 * torch.nn.functional.normalize(parts, dim=1)
    return g, {c: g + parts[i] for i, c in enumerate(CATEGORIES)}


def paired_data(per_category: int = 200, seed: int = 0, scale: float = 4.0):
    g, shifts = planted(seed)
    gen = torch.Generator().manual_seed(seed + 1)
    pairs, safe, unsafe = [], [], []
    for c in CATEGORIES:
        for i in range(per_category):
            base = torch.randn(DIM, generator=gen)
            safe.append(base + 0.1 * torch.randn(DIM, generator=gen))
            unsafe.append(base - scale * shifts[c] + 0.1 * torch.randn(DIM, generator=gen))
            pairs.append((f"safe {c} {i}", f"unsafe {c} {i}", c))
    data = ContrastPrompts.from_pairs(pairs)
    return data, torch.cat([torch.stack(safe), torch.stack(unsafe)]), g, shifts


def unpaired_data(per_category: int = 200, seed: int = 0, scale: float = 4.0):
    g, shifts = planted(seed)
    gen = torch.Generator().manual_seed(seed + 2)
    n_safe = per_category * len(CATEGORIES)
    safe = torch.randn(n_safe, DIM, generator=gen)
    unsafe = torch.cat(
        [torch.randn(per_category, DIM, generator=gen) - scale * shifts[c] for c in CATEGORIES]
    )
    data = ContrastPrompts.from_sets(
        safe={"benign": [f"safe {i}" for i in range(n_safe)]},
        unsafe={c: [f"unsafe {c} {i}" for i in range(per_category)] for c in CATEGORIES},
    )
    return data, torch.cat([safe, unsafe]), g, shifts


# ---------------------------------------------------------------------- AUROC
def test_auroc_known_orderings():
    assert auroc(torch.tensor([3.0, 4.0]), torch.tensor([1.0, 2.0])) == 1.0
    assert auroc(torch.tensor([1.0, 2.0]), torch.tensor([3.0, 4.0])) == 0.0
    assert auroc(torch.tensor([1.0, 1.0, 1.0]), torch.tensor([1.0, 1.0])) == 0.5
    # sklearn's roc_auc_score([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]) == 0.75
    assert auroc(torch.tensor([0.35, 0.8]), torch.tensor([0.1, 0.4])) == 0.75
    # one tie counts a half: (1 vs 1) = 0.5, the three other pairs are wins -> 3.5 / 4
    assert auroc(torch.tensor([1.0, 2.0]), torch.tensor([1.0, 0.0])) == 0.875


def test_auroc_equals_pair_counting_with_many_ties():
    rng = random.Random(0)
    pos = [rng.randint(0, 5) for _ in range(37)]
    neg = [rng.randint(0, 5) for _ in range(23)]
    wins = sum(1.0 if p > n else 0.5 if p == n else 0.0 for p, n in itertools.product(pos, neg))
    assert auroc(torch.tensor(pos, dtype=torch.float), torch.tensor(neg, dtype=torch.float)) == wins / (
        37 * 23
    )


def test_auroc_rejects_bad_input():
    with pytest.raises(ValueError, match="at least one score"):
        auroc(torch.tensor([]), torch.tensor([1.0]))
    with pytest.raises(ValueError, match="NaN"):
        auroc(torch.tensor([float("nan")]), torch.tensor([1.0]))


# ---------------------------------------------------------------------- directions
def test_paired_directions_recover_planted_vectors():
    data, feats, g, shifts = paired_data()
    est = estimate_directions(data, feats)
    assert cosine(est.global_direction, g) > 0.99
    for c in CATEGORIES:
        assert cosine(est.category_directions[c], shifts[c]) > 0.99
    # the vector is mean(safe) - mean(unsafe), i.e. the mean of the pair differences (unsafe -> safe)
    n = len(data.safe)
    torch.testing.assert_close(est.global_direction, (feats[:n] - feats[n:]).double().mean(0).float())
    assert est.global_direction @ g > 0
    assert est.auroc["global"] > 0.99 and all(est.auroc[c] > 0.99 for c in CATEGORIES)
    assert est.layer is None and est.counts == {"global": 600, "violence": 200, "sexual": 200, "hate": 200}


def test_unpaired_directions_recover_planted_vectors():
    data, feats, g, shifts = unpaired_data()
    est = estimate_directions(data, feats, layer=7)
    assert est.layer == 7 and not est.paired
    assert cosine(est.global_direction, g) > 0.99
    for c in CATEGORIES:
        assert cosine(est.category_directions[c], shifts[c]) > 0.99
    # categories without safe prompts of their own are contrasted with all safe prompts
    n = len(data.safe)
    violence = feats[n : n + 200]
    torch.testing.assert_close(
        est.category_directions["violence"], (feats[:n].double().mean(0) - violence.double().mean(0)).float()
    )
    assert set(est.auroc) == {"global", *CATEGORIES}


def test_heldout_auroc_reflects_separability():
    data, feats, _, _ = paired_data(scale=0.0)  # no signal: held-out AUROC near chance
    est = estimate_directions(data, feats)
    assert 0.3 < est.auroc["global"] < 0.7


def test_split_is_stratified_and_keeps_pairs_together():
    data, _, _, _ = paired_data(per_category=10)
    split = split_contrast(data, holdout=0.3, seed=3)
    n = len(data.safe)
    assert torch.equal(split.train_unsafe, split.train_safe + n)
    assert torch.equal(split.holdout_unsafe, split.holdout_safe + n)
    held = [data.safe_categories[int(i)] for i in split.holdout_safe]
    assert sorted(held) == sorted(["violence"] * 3 + ["sexual"] * 3 + ["hate"] * 3)
    assert len(set(split.train_safe.tolist()) & set(split.holdout_safe.tolist())) == 0


def layered(signal_layer: int = 2, n_layers: int = 4):
    data, signal, _, _ = paired_data(per_category=40, scale=8.0)
    gen = torch.Generator().manual_seed(9)
    noise = torch.randn(n_layers, *signal.shape, generator=gen)
    feats = noise.clone()
    feats[signal_layer] = signal
    return data, feats


def test_auto_layer_picks_the_planted_layer():
    data, feats = layered(signal_layer=2)
    est = estimate_directions(data, feats, layer="auto")
    assert est.layer == 2
    assert set(est.layer_auroc) == {0, 1, 2, 3}
    assert est.layer_auroc[2] == 1.0 and max(est.layer_auroc[i] for i in (0, 1, 3)) < 0.8
    # the same answer from a dict and from a callable source
    by_dict = estimate_directions(data, {i: feats[i] for i in range(4)})
    by_call = estimate_directions(data, lambda i: feats[i], layers=[0, 1, 2, 3])
    assert by_dict.layer == by_call.layer == 2
    assert torch.equal(by_dict.global_direction, est.global_direction)
    assert torch.equal(by_call.global_direction, est.global_direction)
    # a restricted candidate list, and a named (negative) layer
    assert estimate_directions(data, feats, layers=[0, 1, 3]).layer in (0, 1, 3)
    named = estimate_directions(data, feats, layer=-2)
    assert named.layer == 2 and named.layer_auroc == {2: 1.0}


def test_estimation_is_deterministic_under_seed():
    data, feats = layered()
    a = estimate_directions(data, feats, seed=5)
    b = estimate_directions(data, feats, seed=5)
    assert torch.equal(a.global_direction, b.global_direction)
    assert all(torch.equal(a.category_directions[c], b.category_directions[c]) for c in CATEGORIES)
    assert a.auroc == b.auroc and a.layer_auroc == b.layer_auroc and a.layer == b.layer
    # the vectors use every prompt, so the seed changes only the held-out scores
    other = estimate_directions(data, feats, seed=6)
    assert torch.equal(a.global_direction, other.global_direction)
    assert a.to_dict()["layer"] == 2


def test_small_category_warns_and_has_no_auroc():
    data, feats, _, _ = paired_data(per_category=5)
    pairs = list(zip(data.safe, data.unsafe, data.unsafe_categories, strict=True))
    pairs.append(("a lone safe prompt", "a lone unsafe prompt", "shocking"))
    n = len(data.safe)
    extra = torch.randn(2, DIM)
    feats = torch.cat([feats[:n], extra[:1], feats[n:], extra[1:]])
    with pytest.warns(UserWarning, match="shocking"):
        est = estimate_directions(pairs, feats)
    assert "shocking" in est.category_directions and "shocking" not in est.auroc
    torch.testing.assert_close(est.category_directions["shocking"], extra[0] - extra[1])


def test_estimate_rejects_bad_input():
    data, feats, _, _ = paired_data(per_category=5)
    with pytest.raises(ValueError, match="safe prompts then unsafe"):
        estimate_directions(data, feats[:-1])
    bad = feats.clone()
    bad[3, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        estimate_directions(data, bad)
    with pytest.raises(ValueError, match="needs layers"):
        estimate_directions(data, lambda i: feats)
    with pytest.raises(ValueError, match="out of range"):
        estimate_directions(data, feats.unsqueeze(0), layer=3)
    with pytest.raises(ValueError, match="reserved"):
        ContrastPrompts.from_pairs([("a", "b", "global")])
    with pytest.raises(ValueError, match="as many safe as unsafe"):
        ContrastPrompts(("a",), ("b", "c"), ("x",), ("x", "x"), paired=True)
    with pytest.raises(ValueError, match="3 strings"):
        ContrastPrompts.from_pairs([("a", "b")])

from collections import Counter

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from sklearn.utils.class_weight import compute_class_weight

from hf_deitcxr.data.balancing import (
    BalancingStrategy,
    balanced_class_weights,
    class_counts,
    make_weighted_sampler,
    oversample_indices,
    plan_balancing,
    weighted_cross_entropy,
)

SKEWED = [0] * 900 + [1] * 100  # 90/10


def test_class_counts_include_empty_classes():
    assert class_counts([0, 2, 2, 0, 2], 4).tolist() == [2, 0, 3, 0]


def test_balanced_weights_by_hand_and_sklearn():
    labels = [0, 0, 0, 1, 1, 2]  # n=6, k=3: 6/(3*3), 6/(3*2), 6/(3*1)
    weights = balanced_class_weights(labels, 3)
    assert weights.dtype == torch.float32
    torch.testing.assert_close(weights, torch.tensor([2 / 3, 1.0, 2.0]))
    expected = compute_class_weight("balanced", classes=np.arange(3), y=np.array(labels))
    np.testing.assert_allclose(weights.numpy(), expected, rtol=1e-6)
    # Balanced weights make every class contribute the same total weight.
    totals = torch.tensor([float(weights[c]) * labels.count(c) for c in range(3)])
    torch.testing.assert_close(totals, torch.full((3,), 2.0))


def test_balanced_weights_are_one_for_uniform_classes():
    torch.testing.assert_close(balanced_class_weights(torch.tensor([0, 1, 2, 1, 0, 2]), 3), torch.ones(3))


def test_weighted_sampler_draws_classes_evenly():
    sampler = make_weighted_sampler(SKEWED, 2, num_samples=20_000, seed=0)
    drawn = Counter(SKEWED[i] for i in sampler)
    assert sum(drawn.values()) == 20_000
    assert abs(drawn[1] / 20_000 - 0.5) < 0.02
    assert len(make_weighted_sampler(SKEWED, 2)) == len(SKEWED)  # one epoch = data set size by default


def test_weighted_sampler_is_reproducible_per_seed():
    first = list(make_weighted_sampler(SKEWED, 2, seed=3))
    assert first == list(make_weighted_sampler(SKEWED, 2, seed=3))
    assert first != list(make_weighted_sampler(SKEWED, 2, seed=4))


def test_oversample_equalises_classes_and_keeps_every_sample():
    labels = [0] * 10 + [1] * 3 + [2] * 4
    indices = oversample_indices(labels, 3, seed=0)
    assert Counter(labels[i] for i in indices) == {0: 10, 1: 10, 2: 10}
    assert set(indices) == set(range(len(labels)))
    # Minority samples are repeated evenly: 10 = 3*3 + 1 and 10 = 4*2 + 2.
    repeats = Counter(indices)
    assert sorted(repeats[i] for i in range(10, 13)) == [3, 3, 4]
    assert sorted(repeats[i] for i in range(13, 17)) == [2, 2, 3, 3]
    assert indices != sorted(indices)  # shuffled
    assert indices == oversample_indices(labels, 3, seed=0)
    assert indices != oversample_indices(labels, 3, seed=1)


def test_weighted_cross_entropy_matches_manual_weighted_mean():
    logits = torch.tensor([[2.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    labels = torch.tensor([0, 1, 1])
    weights = torch.tensor([0.5, 2.0])
    per_sample = F.cross_entropy(logits, labels, reduction="none")
    expected = (per_sample * weights[labels]).sum() / weights[labels].sum()
    torch.testing.assert_close(weighted_cross_entropy(logits, labels, weights), expected)
    torch.testing.assert_close(weighted_cross_entropy(logits, labels), per_sample.mean())
    with pytest.raises(ValueError, match="class weights"):
        weighted_cross_entropy(logits, labels, torch.ones(3))


def test_plan_balancing_per_strategy():
    assert plan_balancing("none", SKEWED, 2) == plan_balancing(BalancingStrategy.NONE, SKEWED, 2)
    plan = plan_balancing("class_weighted_loss", SKEWED, 2)
    assert plan.sampler is None and plan.indices is None and plan.class_weights is not None
    assert plan_balancing("weighted_sampler", SKEWED, 2).sampler is not None
    assert len(plan_balancing("oversample", SKEWED, 2).indices) == 1800


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: BalancingStrategy.parse("smote"), "unknown balancing strategy 'smote'"),
        (lambda: plan_balancing("undersample", [0, 1], 2), "unknown balancing strategy"),
        (lambda: balanced_class_weights([], 2), "empty"),
        (lambda: make_weighted_sampler(torch.tensor([], dtype=torch.long), 2), "empty"),
        (lambda: balanced_class_weights([0, 1, 2], 2), r"in \[0, 1\]"),
        (lambda: oversample_indices([0, -1], 2), r"in \[0, 1\]"),
        (lambda: balanced_class_weights([0.5, 1.0], 2), "integer"),
        (lambda: balanced_class_weights([[0, 1]], 2), "1-D"),
        (lambda: balanced_class_weights([0, 0, 2], 3), r"class\(es\) \[1\] have no training samples.*inf"),
        (lambda: make_weighted_sampler([0, 0], 2), "no training samples"),
        (lambda: oversample_indices([1, 1], 2), "no training samples"),
        (lambda: make_weighted_sampler([0, 1], 2, num_samples=0), "num_samples"),
    ],
)
def test_errors(call, message):
    with pytest.raises(ValueError, match=message):
        call()


# --- source_balanced (issue 14) ---------------------------------------------------------------------------------

# class 0 from three sources (900/90/10 images), class 1 from one (200): skewed both ways.
SB_LABELS = [0] * 1000 + [1] * 200
SB_SOURCES = ["a"] * 900 + ["b"] * 90 + ["c"] * 10 + ["a"] * 200


def test_source_balanced_weights_split_each_class_equally_over_its_sources():
    from hf_deitcxr.data.balancing import source_balanced_weights

    weights = source_balanced_weights(SB_LABELS, SB_SOURCES, 2)
    assert weights.dtype == torch.float64 and len(weights) == len(SB_LABELS)
    torch.testing.assert_close(weights.sum(), torch.tensor(1.0, dtype=torch.float64))
    cells = Counter()
    for weight, label, source in zip(weights.tolist(), SB_LABELS, SB_SOURCES, strict=True):
        cells[(label, source)] += weight
    assert cells == pytest.approx({(0, "a"): 1 / 6, (0, "b"): 1 / 6, (0, "c"): 1 / 6, (1, "a"): 1 / 2})


def test_source_balanced_sampler_draws_every_cell_equally_often_and_is_seeded():
    from hf_deitcxr.data.balancing import make_source_balanced_sampler

    sampler = make_source_balanced_sampler(SB_LABELS, SB_SOURCES, 2, num_samples=60_000, seed=3)
    draws = list(sampler)
    counts = Counter((SB_LABELS[i], SB_SOURCES[i]) for i in draws)
    fractions = {cell: count / len(draws) for cell, count in counts.items()}
    assert fractions == pytest.approx({(0, "a"): 1 / 6, (0, "b"): 1 / 6, (0, "c"): 1 / 6, (1, "a"): 1 / 2}, abs=0.01)
    # the 10-image cell is drawn as often as the 900-image one; classes stay balanced
    assert abs(sum(SB_LABELS[i] for i in draws) / len(draws) - 0.5) < 0.01
    again = make_source_balanced_sampler(SB_LABELS, SB_SOURCES, 2, num_samples=60_000, seed=3)
    other = make_source_balanced_sampler(SB_LABELS, SB_SOURCES, 2, num_samples=60_000, seed=4)
    assert list(again) == draws and list(other) != draws
    assert len(make_source_balanced_sampler(SB_LABELS, SB_SOURCES, 2)) == len(SB_LABELS)  # default: one epoch


def test_source_balanced_plan_needs_sources_and_every_class():
    plan = plan_balancing("source_balanced", SB_LABELS, 2, seed=0, sources=SB_SOURCES)
    assert plan.strategy is BalancingStrategy.SOURCE_BALANCED and plan.sampler is not None
    assert plan.indices is None and plan.class_weights is None
    with pytest.raises(ValueError, match="source"):
        plan_balancing("source_balanced", SB_LABELS, 2)
    with pytest.raises(ValueError, match="sources for"):
        plan_balancing("source_balanced", SB_LABELS, 2, sources=SB_SOURCES[:-1])
    with pytest.raises(ValueError, match="no training samples"):
        plan_balancing("source_balanced", SB_LABELS, 3, sources=SB_SOURCES)

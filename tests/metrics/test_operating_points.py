"""Per-class operating points: Youden's J and thresholds at a requested sensitivity / specificity, checked against a
hand computation on a small, fully known problem."""

from __future__ import annotations

import numpy as np
import pytest

from hf_deitcxr.metrics.operating_points import operating_points, operating_points_markdown


def _binary(scores, positive):
    """Two classes; class 1's probability is `scores`."""
    scores = np.asarray(scores, dtype=float)
    return np.stack([1 - scores, scores], axis=1), np.asarray(positive, dtype=int)


def test_points_match_a_hand_computation():
    # Positives score 0.9, 0.8, 0.4; negatives 0.7, 0.3, 0.2, 0.1.
    probs, labels = _binary([0.9, 0.8, 0.4, 0.7, 0.3, 0.2, 0.1], [1, 1, 1, 0, 0, 0, 0])
    points = operating_points(probs, labels, ["normal", "disease"], sensitivities=(0.6, 1.0),
                              specificities=(0.75, 1.0))["disease"]
    # threshold 0.8: sens 2/3, spec 1 (J 0.667); 0.4: sens 1, spec 3/4 (J 0.75, the maximum)
    assert points["youden"]["threshold"] == pytest.approx(0.4)
    assert points["youden"]["sensitivity"] == 1.0 and points["youden"]["specificity"] == 0.75
    assert points["youden"]["j"] == pytest.approx(0.75)
    assert points["at_sensitivity"]["0.6"] == {"threshold": 0.8, "sensitivity": pytest.approx(2 / 3),
                                               "specificity": 1.0}
    assert points["at_sensitivity"]["1"]["threshold"] == pytest.approx(0.4)
    # The lowest threshold keeping specificity >= 0.75 is 0.4 (a fourth negative above it would break it).
    assert points["at_specificity"]["0.75"]["threshold"] == pytest.approx(0.4)
    assert points["at_specificity"]["1"] == {"threshold": 0.8, "sensitivity": pytest.approx(2 / 3),
                                             "specificity": 1.0}


def test_every_threshold_gives_the_rates_it_reports():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, 200)
    logits = rng.normal(size=(200, 3)) + 1.5 * np.eye(3)[labels]
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    points = operating_points(probs, labels, ["a", "b", "c"])
    for k, name in enumerate("abc"):
        flat = [points[name]["youden"], *points[name]["at_sensitivity"].values(),
                *points[name]["at_specificity"].values()]
        for point in flat:
            predicted = probs[:, k] >= point["threshold"]
            positive = labels == k
            assert predicted[positive].mean() == pytest.approx(point["sensitivity"])
            assert (~predicted[~positive]).mean() == pytest.approx(point["specificity"])
        assert points[name]["at_sensitivity"]["0.95"]["sensitivity"] >= 0.95
        assert points[name]["at_specificity"]["0.9"]["specificity"] >= 0.9
    table = operating_points_markdown(points)
    assert table.count("\n") == 1 + 3 * 5 and "Youden" in table


def test_an_absent_class_and_bad_input():
    probs, labels = _binary([0.9, 0.2, 0.1], [0, 0, 0])
    points = operating_points(probs, labels, ["normal", "disease"])
    assert "reason" in points["disease"] and "n/a" in operating_points_markdown(points)
    with pytest.raises(ValueError, match="do not match"):
        operating_points(probs, labels[:2], ["normal", "disease"])
    with pytest.raises(ValueError, match="in \\(0, 1\\]"):
        operating_points(probs, labels, ["normal", "disease"], sensitivities=(1.5,))

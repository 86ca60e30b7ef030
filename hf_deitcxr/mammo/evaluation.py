"""Exam-level scores from per-view predictions of a single-view model, and exam-level metrics."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ..metrics import compute_classification_metrics

AGGREGATIONS = ("max", "mean")


def aggregate_views(
    probabilities: Any, exam_index: Sequence[int], num_exams: int, how: str = "max"
) -> np.ndarray:
    """(num_views, C) view probabilities -> (num_exams, C) exam probabilities.

    - `max`: each exam takes the distribution of its most suspicious view, the one with the highest probability
      of the most severe class (the last; for benign/malignant the exam's P(malignant) is its views' maximum);
    - `mean`: the average distribution of its views.
    """
    probs = np.asarray(probabilities, dtype=np.float64)
    index = np.asarray(exam_index, dtype=np.int64)
    if how not in AGGREGATIONS:
        raise ValueError(f"aggregation must be one of {AGGREGATIONS}, got {how!r}")
    if probs.ndim != 2 or len(index) != len(probs):
        raise ValueError(f"{len(index)} exam indices for probabilities of shape {probs.shape}")
    if len(index) and (index.min() < 0 or index.max() >= num_exams):
        raise ValueError(f"exam indices must be in [0, {num_exams}), found {index.min()}..{index.max()}")
    counts = np.bincount(index, minlength=num_exams)
    if (counts == 0).any():
        raise ValueError(f"exam(s) {np.flatnonzero(counts == 0)[:10].tolist()} have no view prediction")
    if how == "mean":
        sums = np.zeros((num_exams, probs.shape[1]))
        np.add.at(sums, index, probs)
        return sums / counts[:, None]
    exam_probs = np.zeros((num_exams, probs.shape[1]))
    best = np.full(num_exams, -np.inf)
    for row, exam in enumerate(index):
        if probs[row, -1] > best[exam]:
            best[exam], exam_probs[exam] = probs[row, -1], probs[row]
    return exam_probs


def exam_metrics(probabilities: Any, labels: Any, label_names: Sequence[str]) -> dict[str, Any]:
    """The package's classification metrics (accuracy, AUC, sensitivity/specificity, ...) on exam-level scores."""
    return compute_classification_metrics(np.asarray(probabilities), np.asarray(labels), label_names=label_names)


__all__ = ["AGGREGATIONS", "aggregate_views", "exam_metrics"]

"""Chest X-ray classification metrics: plain function, offline `evaluate` module, per-group breakdowns, intervals."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from .cxr_metrics.cxr_metrics import (
    compute_class_id_metrics,
    compute_classification_metrics,
    compute_metrics,
    expected_calibration_error,
)
from .intervals import bootstrap_intervals

# The directory `evaluate.load` accepts: it holds `cxr_metrics.py`, named like the directory.
METRIC_PATH: str = os.path.join(os.path.dirname(os.path.abspath(__file__)), "cxr_metrics")


def load_cxr_metric(**init_kwargs: Any):
    """Load the metric with `evaluate.load` from its local directory; no network access is involved."""
    import evaluate  # deferred: importing evaluate is slow and only this entry point needs it

    return evaluate.load(METRIC_PATH, **init_kwargs)


def per_group_metrics(
    probabilities: Any,
    labels: Any,
    groups: Sequence[Any],
    label_names: Sequence[str] | None = None,
    num_bins: int = 15,
) -> dict[str, dict[str, Any]]:
    """Metrics for each group (e.g. each `source` dataset), keyed by `str(group)` in sorted order.

    A group holding one class only still gets accuracy and that class's sensitivity; AUC and other values
    that need both classes come back as None.
    """
    probs = np.asarray(probabilities)
    labels_arr = np.asarray(labels)
    return {
        key: compute_classification_metrics(probs[rows], labels_arr[rows], label_names=label_names, num_bins=num_bins)
        for key, rows in group_rows(groups, len(probs), len(labels_arr)).items()
    }


def group_rows(groups: Sequence[Any], num_probability_rows: int, num_labels: int) -> dict[str, np.ndarray]:
    """The row indices of each group (e.g. each `source`), keyed by `str(group)` in sorted order."""
    group_keys = np.asarray([str(group) for group in groups])
    if len(group_keys) != num_labels or len(group_keys) != num_probability_rows:
        raise ValueError(
            f"groups has {len(group_keys)} entries but there are {num_probability_rows} probability rows "
            f"and {num_labels} labels"
        )
    return {key: np.flatnonzero(group_keys == key) for key in sorted(set(group_keys.tolist()))}


__all__ = [
    "METRIC_PATH",
    "bootstrap_intervals",
    "compute_class_id_metrics",
    "compute_classification_metrics",
    "compute_metrics",
    "expected_calibration_error",
    "group_rows",
    "load_cxr_metric",
    "per_group_metrics",
]

"""Per-class operating points of a probabilistic classifier, one class against the rest: the threshold that maximises
Youden's J (sensitivity + specificity - 1), the highest threshold that reaches each requested sensitivity and the
lowest that reaches each requested specificity, with the sensitivity and specificity each gives.

The thresholds come from sklearn's `roc_curve` on the data given: chosen on a split, they are optimistic for that
split. Choose them on validation and report them on a test split the choice never saw.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from sklearn.metrics import roc_curve

DEFAULT_SENSITIVITIES = (0.90, 0.95)
DEFAULT_SPECIFICITIES = (0.90, 0.95)


def operating_points(
    probabilities: Any,
    labels: Any,
    label_names: Sequence[str],
    sensitivities: Sequence[float] = DEFAULT_SENSITIVITIES,
    specificities: Sequence[float] = DEFAULT_SPECIFICITIES,
) -> dict[str, dict[str, Any]]:
    """{class: {"youden": point, "at_sensitivity": {"0.9": point}, "at_specificity": {...}}}, each point
    {"threshold", "sensitivity", "specificity"} (a prediction is positive when its probability >= threshold), or
    {"reason": ...} for a class that is absent or is every example (no curve)."""
    probs, labels_arr = np.asarray(probabilities, dtype=np.float64), np.asarray(labels)
    if probs.ndim != 2 or probs.shape[1] != len(label_names) or len(probs) != len(labels_arr):
        raise ValueError(f"probabilities of shape {probs.shape} do not match {len(labels_arr)} labels and "
                         f"{len(label_names)} classes")
    for target in (*sensitivities, *specificities):
        if not 0.0 < target <= 1.0:
            raise ValueError(f"target sensitivities/specificities must be in (0, 1], got {target}")
    return {name: class_operating_points(labels_arr == k, probs[:, k], sensitivities, specificities)
            for k, name in enumerate(label_names)}


def class_operating_points(positive: np.ndarray, scores: np.ndarray, sensitivities: Sequence[float],
                           specificities: Sequence[float]) -> dict[str, Any]:
    """The operating points of one binary problem (`positive` flags, `scores` higher = more positive)."""
    positives = int(positive.sum())
    if positives == 0 or positives == len(positive):
        return {"reason": "the class is absent or is every example: no ROC curve"}
    fpr, tpr, thresholds = roc_curve(positive, scores, drop_intermediate=False)
    specificity = 1.0 - fpr
    # roc_curve's first threshold is +inf (nothing positive); a finite one is needed for a usable point.
    usable = np.isfinite(thresholds)
    youden = int(np.argmax(np.where(usable, tpr + specificity - 1.0, -np.inf)))
    points = {"youden": {**_point(thresholds, tpr, specificity, youden), "j": float(tpr[youden] + specificity[youden]
                                                                                   - 1.0)}}
    # Thresholds fall along the curve: the first index reaching a sensitivity is the highest such threshold, the last
    # index keeping a specificity is the lowest such threshold (the most sensitive one that keeps it).
    points["at_sensitivity"] = {
        _key(target): _point(thresholds, tpr, specificity, int(np.argmax(usable & (tpr >= target - 1e-12))))
        for target in sensitivities
    }
    points["at_specificity"] = {
        _key(target): _lowest_with_specificity(thresholds, tpr, specificity, usable, target) for target in specificities
    }
    return points


def _lowest_with_specificity(thresholds, tpr, specificity, usable, target: float) -> dict[str, Any]:
    keeps = np.flatnonzero(usable & (specificity >= target - 1e-12))
    if len(keeps) == 0:
        return {"reason": f"no threshold keeps specificity >= {target}"}
    return _point(thresholds, tpr, specificity, int(keeps[-1]))


def _point(thresholds: np.ndarray, tpr: np.ndarray, specificity: np.ndarray, index: int) -> dict[str, float]:
    return {"threshold": float(thresholds[index]), "sensitivity": float(tpr[index]),
            "specificity": float(specificity[index])}


def _key(target: float) -> str:
    return f"{target:g}"


def operating_points_markdown(points: dict[str, dict[str, Any]]) -> str:
    """A markdown table: one row per class and operating point (threshold, sensitivity, specificity)."""
    rows = ["| class | operating point | threshold | sensitivity | specificity |", "|---|---|---:|---:|---:|"]
    for name, class_points in points.items():
        if "reason" in class_points:
            rows.append(f"| {name} | n/a ({class_points['reason']}) | | | |")
            continue
        named = [("Youden's J max", class_points["youden"])]
        named += [(f"sensitivity ≥ {key}", point) for key, point in class_points["at_sensitivity"].items()]
        named += [(f"specificity ≥ {key}", point) for key, point in class_points["at_specificity"].items()]
        for label, point in named:
            if "reason" in point:
                rows.append(f"| {name} | {label} | n/a | | |")
            else:
                rows.append(f"| {name} | {label} | {point['threshold']:.3f} | {point['sensitivity']:.3f} | "
                            f"{point['specificity']:.3f} |")
    return "\n".join(rows)


__all__ = ["DEFAULT_SENSITIVITIES", "DEFAULT_SPECIFICITIES", "class_operating_points", "operating_points",
           "operating_points_markdown"]

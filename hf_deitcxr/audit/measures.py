"""Per-source and per-(source, class) metrics with patient-clustered bootstrap intervals, and the agreement of
perturbed predictions with the unperturbed ones per source."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ..metrics import group_rows
from ..metrics.intervals import DEFAULT_NUM_RESAMPLES, bootstrap_intervals

# A perturbation is flagged on a source when fewer than this fraction of its predictions stay the same.
AGREEMENT_THRESHOLD = 0.9
GROUP_KEYS = ("accuracy", "balanced_accuracy", "macro_auc")


def group_metrics(
    probabilities: np.ndarray,
    labels: np.ndarray,
    label_names: Sequence[str],
    sources: Sequence[str],
    patient_ids: Sequence[str],
    *,
    seed: int = 0,
    num_resamples: int = DEFAULT_NUM_RESAMPLES,
) -> dict[str, dict[str, dict[str, Any]]]:
    """{"per_source": {source: entry}, "per_source_class": {"source/class": entry}}, each entry
    {"num_images", "num_patients", "accuracy", "balanced_accuracy", "macro_auc"} with `bootstrap_intervals`
    entries (resampling patients with `seed`). Inside one (source, class) cell accuracy is that class's
    sensitivity there; the class-averaged metrics are undefined (None)."""
    names = [str(s) for s in sources]
    labels = np.asarray(labels)
    cells = [f"{s}/{label_names[int(k)]}" for s, k in zip(names, labels, strict=True)]
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for key, groups in (("per_source", names), ("per_source_class", cells)):
        out[key] = {
            group: _entry(probabilities[rows], labels[rows], label_names, [patient_ids[i] for i in rows], seed,
                          num_resamples)
            for group, rows in group_rows(groups, len(probabilities), len(labels)).items()
        }
    return out


def _entry(probabilities: np.ndarray, labels: np.ndarray, label_names: Sequence[str], patients: list[str],
           seed: int, num_resamples: int) -> dict[str, Any]:
    intervals = bootstrap_intervals(probabilities, labels, label_names, patient_ids=patients, seed=seed,
                                    num_resamples=num_resamples)
    return {"num_images": int(len(labels)), "num_patients": int(intervals["num_clusters"]),
            **{key: intervals[key] for key in GROUP_KEYS}}


def agreement_by_source(
    clean: np.ndarray,
    perturbed: np.ndarray,
    labels: np.ndarray,
    sources: Sequence[str],
    threshold: float = AGREEMENT_THRESHOLD,
) -> dict[str, dict[str, Any]]:
    """Per source (and "all"): {"num_images", "agreement", "accuracy", "clean_accuracy", "flagged"}, where
    agreement is the fraction of perturbed predictions equal to the unperturbed ones and `flagged` means
    agreement < `threshold`."""
    names = np.asarray([str(s) for s in sources])
    groups = {"all": np.arange(len(names)), **group_rows(names.tolist(), len(clean), len(labels))}
    out = {}
    for group, rows in groups.items():
        agreement = float(np.mean(perturbed[rows] == clean[rows]))
        out[group] = {"num_images": int(len(rows)), "agreement": agreement,
                      "accuracy": float(np.mean(perturbed[rows] == labels[rows])),
                      "clean_accuracy": float(np.mean(clean[rows] == labels[rows])),
                      "flagged": bool(agreement < threshold)}
    return out


__all__ = ["AGREEMENT_THRESHOLD", "agreement_by_source", "group_metrics"]

"""Patient-clustered percentile bootstrap intervals for the headline classification metrics.

Images of one patient are correlated, so resampling images as if independent gives intervals that are too narrow;
`bootstrap_intervals` resamples patients (all their images come along) and falls back to images when no patient ids
are given. Every replicate's metric is the one sklearn computes on the resampled data (duplicates included), written
as weighted counts so that thousands of replicates take a fraction of a second.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from .cxr_metrics.cxr_metrics import compute_classification_metrics

DEFAULT_NUM_RESAMPLES = 2000
DEFAULT_CONFIDENCE = 0.95
# Below this many patients (images without ids) the bootstrap distribution takes too few distinct values to trust.
MIN_CLUSTERS = 10
# A class-averaged metric is undefined in a replicate that misses a class; if many do, the rest are a biased sample.
MIN_USABLE_FRACTION = 0.9
SUMMARY_KEYS = ("accuracy", "balanced_accuracy", "macro_f1", "macro_auc")
# Bound on (replicates x images) held at once: ~32 MB per float64 array.
_CHUNK_ELEMENTS = 4_000_000


def bootstrap_intervals(
    probabilities: Any,
    labels: Any,
    label_names: Sequence[str] | None = None,
    *,
    patient_ids: Sequence[Any] | None = None,
    num_resamples: int = DEFAULT_NUM_RESAMPLES,
    confidence: float = DEFAULT_CONFIDENCE,
    seed: int = 0,
    min_clusters: int = MIN_CLUSTERS,
    min_usable_fraction: float = MIN_USABLE_FRACTION,
) -> dict[str, Any]:
    """Percentile bootstrap intervals of accuracy, balanced accuracy, macro-F1, macro AUC and each class's AUC.

    Patients (`patient_ids`, one per image; None / "" entries count as their own patient) are drawn with
    replacement, `num_resamples` times, from `numpy.random.default_rng(seed)`; without ids each image is its own
    patient. The point estimate is `compute_classification_metrics` on the full data. A replicate that lacks a class
    present in the full data gives no value for the class-averaged metrics (nor that class's AUC); an interval needs
    `min_usable_fraction` of the replicates usable and `min_clusters` patients, else its bounds are None and
    `reason` says why.

    Returns a JSON-ready dict: `method`, `resampled` ("patient" or "image"), `confidence`, `num_resamples`,
    `seed`, `num_examples`, `num_clusters`, one entry per `SUMMARY_KEYS` and `per_class` ({name: {"auc": entry}}),
    each entry {"estimate", "low", "high", "usable_resamples", "reason"}. Raises ValueError on bad input.
    """
    # scipy.stats.bootstrap resamples observations independently and cannot draw clusters, hence this function.
    _check_options(num_resamples, confidence, min_clusters, min_usable_fraction)
    point = compute_classification_metrics(probabilities, labels, label_names=label_names)  # also validates
    probs = np.asarray(probabilities, dtype=np.float64)
    labels_arr = np.asarray(labels).astype(np.int64)
    clusters, num_clusters = _cluster_index(patient_ids, len(labels_arr))
    header = {
        "method": "percentile bootstrap", "resampled": "image" if patient_ids is None else "patient",
        "confidence": float(confidence), "num_resamples": int(num_resamples), "seed": int(seed),
        "num_examples": int(len(labels_arr)), "num_clusters": int(num_clusters),
    }
    estimates = _estimates(point)
    if num_clusters < min_clusters:
        reason = f"only {num_clusters} {header['resampled']}(s) to resample; at least {min_clusters} needed"
        values = {key: np.full(num_resamples, np.nan) for key in estimates}
        return {**header, **_entries(estimates, values, confidence, 0, point["label_names"], reason)}
    rng = np.random.default_rng(seed)
    values = _replicates(probs, labels_arr, clusters, num_clusters, num_resamples, rng, estimates)
    needed = math.ceil(min_usable_fraction * num_resamples)
    return {**header, **_entries(estimates, values, confidence, needed, point["label_names"])}


def interval_bounds(entry: dict[str, Any] | None) -> list[float] | None:
    """[low, high] of an interval entry, or None when it has none."""
    if not entry or entry.get("low") is None or entry.get("high") is None:
        return None
    return [float(entry["low"]), float(entry["high"])]


def format_interval(estimate: float | None, bounds: Sequence[float] | None, digits: int = 3) -> str:
    """'0.872 (0.851–0.890)'; 'n/a' without an estimate; '0.872 (CI n/a)' when the interval is undefined."""
    if estimate is None:
        return "n/a"
    if bounds is None:
        return f"{estimate:.{digits}f} (CI n/a)"
    return f"{estimate:.{digits}f} ({bounds[0]:.{digits}f}–{bounds[1]:.{digits}f})"


def format_entry(entry: dict[str, Any] | None, digits: int = 3) -> str:
    """An interval entry of `bootstrap_intervals` as text, see `format_interval`."""
    if not entry:
        return "n/a"
    return format_interval(entry.get("estimate"), interval_bounds(entry), digits)


def _check_options(num_resamples: int, confidence: float, min_clusters: int, min_usable_fraction: float) -> None:
    if isinstance(num_resamples, bool) or not isinstance(num_resamples, (int, np.integer)) or num_resamples < 1:
        raise ValueError(f"num_resamples must be a positive integer, got {num_resamples!r}")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must lie strictly between 0 and 1, got {confidence!r}")
    if min_clusters < 2:
        raise ValueError(f"min_clusters must be at least 2, got {min_clusters!r}")
    if not 0.0 < min_usable_fraction <= 1.0:
        raise ValueError(f"min_usable_fraction must lie in (0, 1], got {min_usable_fraction!r}")


def _cluster_index(patient_ids: Sequence[Any] | None, num_examples: int) -> tuple[np.ndarray, int]:
    """Cluster number of each image (0..m-1) and m; each image is its own cluster without ids."""
    if patient_ids is None:
        return np.arange(num_examples), num_examples
    ids = list(patient_ids)
    if len(ids) != num_examples:
        raise ValueError(f"patient_ids has {len(ids)} entries but there are {num_examples} labels")
    codes: dict[tuple[str, Any], int] = {}
    index = np.empty(num_examples, dtype=np.int64)
    for i, patient in enumerate(ids):
        key = ("image", i) if _is_missing(patient) else ("patient", str(patient))
        index[i] = codes.setdefault(key, len(codes))
    return index, len(codes)


def _is_missing(value: Any) -> bool:
    return value is None or value == "" or (isinstance(value, float) and math.isnan(value))


def _estimates(point: dict[str, Any]) -> dict[str, float | None]:
    """Point estimates keyed like the replicate arrays: the summary keys, then `auc:<class index>`."""
    estimates = {key: point[key] for key in SUMMARY_KEYS}
    for k, name in enumerate(point["label_names"]):
        estimates[f"auc:{k}"] = point["per_class"][name]["auc"]
    return estimates


def _replicates(probs: np.ndarray, labels: np.ndarray, clusters: np.ndarray, num_clusters: int, num_resamples: int,
                rng: np.random.Generator, estimates: dict[str, float | None]) -> dict[str, np.ndarray]:
    """Each metric over the replicates (NaN where a replicate gives no value), in chunks of replicates."""
    num_classes = probs.shape[1]
    preds = probs.argmax(axis=1)
    present = np.bincount(labels, minlength=num_classes) > 0
    # One-hot of (true, predicted) pairs: weights @ pairs is the confusion matrix of every replicate at once.
    pairs = np.eye(num_classes * num_classes)[labels * num_classes + preds]
    rankings = [_Ranking(probs[:, k], labels == k) for k in range(num_classes)]
    auc_classes = [k for k in range(num_classes) if estimates[f"auc:{k}"] is not None]
    chunk = max(1, _CHUNK_ELEMENTS // max(len(labels), num_clusters))
    parts: dict[str, list[np.ndarray]] = {key: [] for key in estimates}
    for start in range(0, num_resamples, chunk):
        draws = rng.integers(0, num_clusters, size=(min(chunk, num_resamples - start), num_clusters))
        weights = _row_counts(draws, num_clusters)[:, clusters]  # an image counts as often as its patient is drawn
        confusion = (weights @ pairs).reshape(-1, num_classes, num_classes)
        complete = (confusion.sum(axis=2)[:, present] > 0).all(axis=1)
        for key, value in _count_metrics(confusion, complete).items():
            parts[key].append(value)
        aucs = [ranking.auc(weights) for ranking in rankings]
        for k, auc in enumerate(aucs):
            parts[f"auc:{k}"].append(np.where(complete, auc, np.nan))
        macro = np.mean([aucs[k] for k in auc_classes], axis=0) if auc_classes else np.full(len(weights), np.nan)
        parts["macro_auc"].append(np.where(complete, macro, np.nan))
    return {key: np.concatenate(chunks) for key, chunks in parts.items()}


def _row_counts(draws: np.ndarray, num_clusters: int) -> np.ndarray:
    """How often each cluster was drawn in each row of `draws` (one bincount over row-offset indices)."""
    offsets = draws + num_clusters * np.arange(len(draws))[:, None]
    return np.bincount(offsets.ravel(), minlength=len(draws) * num_clusters).reshape(len(draws), num_clusters)


def _count_metrics(confusion: np.ndarray, complete: np.ndarray) -> dict[str, np.ndarray]:
    """Accuracy, balanced accuracy and macro-F1 of each replicate from its confusion matrix, as sklearn defines
    them (balanced accuracy over the classes present; F1 undefined for a class neither present nor predicted)."""
    tp = np.diagonal(confusion, axis1=1, axis2=2)
    support, predicted = confusion.sum(axis=2), confusion.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        recall = np.where(support > 0, tp / support, np.nan)
        denominator = support + predicted  # = 2 TP + FP + FN
        f1 = np.where(denominator > 0, 2 * tp / denominator, np.nan)
        balanced = np.nanmean(recall, axis=1)
        macro_f1 = np.nanmean(f1, axis=1)
    accuracy = tp.sum(axis=1) / support.sum(axis=1)
    return {"accuracy": accuracy, "balanced_accuracy": np.where(complete, balanced, np.nan),
            "macro_f1": np.where(complete, macro_f1, np.nan)}


class _Ranking:
    """One-vs-rest AUC of one class for many weight vectors: the scores are sorted once.

    AUC = P(score of a positive > score of a negative) + 0.5 P(tie), the Mann-Whitney form of the ROC area;
    with integer weights it equals sklearn's `roc_auc_score` on the data with each image repeated.
    """

    def __init__(self, scores: np.ndarray, positive: np.ndarray) -> None:
        self.order = np.argsort(scores, kind="stable")
        ranked = scores[self.order]
        self.starts = np.flatnonzero(np.r_[True, ranked[1:] != ranked[:-1]])  # first index of each tied group
        self.positive = positive[self.order]

    def auc(self, weights: np.ndarray) -> np.ndarray:
        ranked = weights[:, self.order]
        pos = np.add.reduceat(np.where(self.positive, ranked, 0), self.starts, axis=1)
        neg = np.add.reduceat(np.where(self.positive, 0, ranked), self.starts, axis=1)
        below = np.cumsum(neg, axis=1) - neg  # negative weight strictly below each score group
        pairs = pos.sum(axis=1) * neg.sum(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(pairs > 0, (pos * (below + 0.5 * neg)).sum(axis=1) / pairs, np.nan)


def _entries(estimates: dict[str, float | None], values: dict[str, np.ndarray], confidence: float, needed: int,
             label_names: Sequence[str], reason: str | None = None) -> dict[str, Any]:
    """The summary entries and `per_class` AUC entries from the replicate arrays."""
    def entry(key: str) -> dict[str, Any]:
        return _entry(estimates[key], values[key], confidence, needed, reason)

    out: dict[str, Any] = {key: entry(key) for key in SUMMARY_KEYS}
    out["per_class"] = {name: {"auc": entry(f"auc:{k}")} for k, name in enumerate(label_names)}
    return out


def _entry(estimate: float | None, values: np.ndarray, confidence: float, needed: int,
           reason: str | None) -> dict[str, Any]:
    usable = values[~np.isnan(values)]
    entry = {"estimate": estimate, "low": None, "high": None, "usable_resamples": int(len(usable)), "reason": reason}
    if estimate is None:
        entry["reason"] = "undefined on the full data (a class is absent, or a metric needs two classes)"
    elif reason is None and len(usable) < needed:
        entry["reason"] = f"only {len(usable)} of {len(values)} resamples hold every class; {needed} needed"
    elif reason is None:
        tail = 100 * (1 - confidence) / 2
        low, high = np.percentile(usable, [tail, 100 - tail])
        entry.update(low=float(low), high=float(high))
    return entry


__all__ = [
    "DEFAULT_CONFIDENCE", "DEFAULT_NUM_RESAMPLES", "SUMMARY_KEYS", "bootstrap_intervals", "format_entry",
    "format_interval", "interval_bounds",
]

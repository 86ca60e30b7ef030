"""Medical multi-class classification metrics for chest X-rays, as an offline `evaluate` module.

Load it by path (no Hub access needed)::

    metric = evaluate.load("/abs/path/to/hf_deitcxr/metrics/cxr_metrics")
    metric.compute(predictions=probabilities, references=labels, label_names=["normal", "pneumonia", "covid"])

`evaluate` copies this single file into its module cache, so it may only import numpy, sklearn, datasets and
evaluate: no package-relative imports.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from typing import Any

import datasets
import evaluate
import numpy as np
from sklearn.exceptions import UndefinedMetricWarning
from sklearn.metrics import (
    accuracy_score,
    balanced_accuracy_score,
    confusion_matrix,
    f1_score,
    multilabel_confusion_matrix,
    precision_recall_fscore_support,
    roc_auc_score,
)

_DESCRIPTION = """
Multi-class metrics for medical image classification from per-example class probabilities: accuracy,
balanced accuracy, macro F1, per-class sensitivity / specificity / PPV / NPV / F1 / support, one-vs-rest
ROC-AUC (per class and macro), the confusion matrix and the top-label expected calibration error (ECE).
Undefined values (e.g. AUC of a class absent from the references) are returned as None instead of raising.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list` of `list` of `float`): per-example class probabilities, shape (n, num_classes);
        rows must sum to 1 (apply softmax to logits first).
    references (`list` of `int`): true class indices in [0, num_classes).
    label_names (`list` of `str`, optional): class names, in index order; defaults to "0", "1", ...
    num_bins (`int`, defaults to 15): number of equal-width confidence bins for the ECE.
Returns:
    dict with keys num_examples, num_classes, label_names, accuracy, balanced_accuracy, macro_f1, macro_auc,
    ece, num_bins, per_class ({name: {sensitivity, specificity, ppv, npv, f1, support, auc}}) and
    confusion_matrix (rows = true class, columns = predicted class).
Examples:
    >>> metric = evaluate.load("hf_deitcxr/metrics/cxr_metrics")
    >>> out = metric.compute(predictions=[[0.9, 0.1], [0.2, 0.8]], references=[0, 1])
    >>> out["accuracy"]
    1.0
"""

_CITATION = """
@inproceedings{guo2017calibration,
  title={On Calibration of Modern Neural Networks},
  author={Guo, Chuan and Pleiss, Geoff and Sun, Yu and Weinberger, Kilian Q.},
  booktitle={ICML},
  year={2017}
}
"""

# float32 softmax outputs (and their float32 round trip through Arrow) sum to 1 only approximately.
_ROW_SUM_ATOL = 1e-3


def _validate(
    probabilities: Any, labels: Any, label_names: Sequence[str] | None, num_bins: int
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Return (float64 probabilities, int64 labels, label names) or raise a ValueError saying what is off."""
    try:
        probs = np.asarray(probabilities, dtype=np.float64)
    except (ValueError, TypeError) as err:  # ragged rows or non-numbers
        raise ValueError(f"probabilities must be a numeric (n, classes) array, not ragged: {err}") from err
    raw_labels = np.asarray(labels)
    # Empty first: np.asarray([]) is 1-D, and "0 examples" is the useful message then.
    if (probs.ndim >= 1 and len(probs) == 0) or (raw_labels.ndim >= 1 and len(raw_labels) == 0):
        raise ValueError("cannot compute metrics on empty input (0 examples)")
    if probs.ndim != 2:
        raise ValueError(f"probabilities must be 2-D (n, num_classes), got shape {probs.shape}")
    if raw_labels.ndim != 1:
        raise ValueError(f"labels must be 1-D (n,), got shape {raw_labels.shape}")
    if probs.shape[0] != raw_labels.shape[0]:
        raise ValueError(f"got {probs.shape[0]} probability rows but {raw_labels.shape[0]} labels")

    num_classes = len(label_names) if label_names is not None else probs.shape[1]
    if num_classes < 2:
        raise ValueError(f"need at least 2 classes, got {num_classes}")
    if probs.shape[1] != num_classes:
        raise ValueError(
            f"probability rows have width {probs.shape[1]} but there are {num_classes} label names: "
            f"{list(label_names)}"
        )
    if np.isnan(probs).any():
        raise ValueError(f"probabilities contain NaN in {int(np.isnan(probs).any(axis=1).sum())} row(s)")
    if (probs < 0).any() or (probs > 1).any():
        raise ValueError("probabilities must lie in [0, 1]; pass softmax(logits), not logits")
    worst = float(np.abs(probs.sum(axis=1) - 1.0).max())
    if worst > _ROW_SUM_ATOL:
        raise ValueError(f"probability rows must sum to 1 (worst is off by {worst:.3g}); apply softmax first")

    labels_arr = _integer_labels(raw_labels)
    if labels_arr.min() < 0 or labels_arr.max() >= num_classes:
        bad = sorted(set(labels_arr[(labels_arr < 0) | (labels_arr >= num_classes)].tolist()))
        raise ValueError(f"labels must be in [0, {num_classes}), got out-of-range values {bad}")
    if not isinstance(num_bins, (int, np.integer)) or isinstance(num_bins, bool) or num_bins < 1:
        raise ValueError(f"num_bins must be a positive integer, got {num_bins!r}")

    names = [str(name) for name in (label_names if label_names is not None else range(num_classes))]
    if len(set(names)) != len(names):
        raise ValueError(f"label_names must be unique, got {names}")
    return probs, labels_arr, names


def _integer_labels(raw: np.ndarray) -> np.ndarray:
    """Accept ints or integral floats (e.g. 1.0), reject NaN and fractional values."""
    if raw.dtype.kind in "iu":
        return raw.astype(np.int64)
    try:
        as_float = raw.astype(np.float64)
    except (ValueError, TypeError) as err:
        raise ValueError(f"labels must be integer class indices, got dtype {raw.dtype}") from err
    if np.isnan(as_float).any():
        raise ValueError("labels contain NaN")
    if not np.all(as_float == np.round(as_float)):
        raise ValueError("labels must be integer class indices, got fractional values")
    return as_float.astype(np.int64)


def _none_if_nan(value: float) -> float | None:
    return None if value is None or math.isnan(value) else float(value)


def _safe_ratio(numerator: int, denominator: int) -> float | None:
    # Undefined (no negatives / no negative calls) is reported as None, never as 0.
    return float(numerator) / float(denominator) if denominator > 0 else None


def _one_vs_rest_auc(labels: np.ndarray, probs: np.ndarray, num_classes: int) -> list[float | None]:
    """Per-class one-vs-rest ROC-AUC; None when the class is absent from, or is all of, the references."""
    aucs: list[float | None] = []
    for k in range(num_classes):
        is_k = labels == k
        if is_k.all() or not is_k.any():
            aucs.append(None)
        else:
            aucs.append(float(roc_auc_score(is_k, probs[:, k])))
    return aucs


def expected_calibration_error(probs: np.ndarray, labels: np.ndarray, num_bins: int = 15) -> float:
    """Top-label ECE with equal-width bins over [0, 1] (Guo et al. 2017).

    scikit-learn has no ECE function (calibration_curve drops empty bins and returns no bin counts), so it is
    written here: ECE = sum_b (n_b / n) * |accuracy_b - mean confidence_b|, bins right-closed (lo, hi].
    """
    confidence = probs.max(axis=1)
    correct = (probs.argmax(axis=1) == labels).astype(np.float64)
    edges = np.linspace(0.0, 1.0, num_bins + 1)
    # searchsorted on the inner edges puts a confidence equal to an edge into the lower bin: (lo, hi].
    bin_ids = np.searchsorted(edges[1:-1], confidence, side="left")
    counts = np.bincount(bin_ids, minlength=num_bins)
    conf_sums = np.bincount(bin_ids, weights=confidence, minlength=num_bins)
    correct_sums = np.bincount(bin_ids, weights=correct, minlength=num_bins)
    filled = counts > 0
    gaps = np.abs(correct_sums[filled] - conf_sums[filled])  # = n_b * |acc_b - conf_b|
    return float(gaps.sum() / len(labels))


def _per_class(
    labels: np.ndarray, preds: np.ndarray, aucs: list[float | None], names: list[str]
) -> dict[str, dict[str, float | int | None]]:
    class_ids = list(range(len(names)))
    # zero_division=nan marks undefined values (class never true / never predicted) so they become None.
    ppv, sensitivity, f1, support = precision_recall_fscore_support(
        labels, preds, labels=class_ids, average=None, zero_division=np.nan
    )
    # Per class [[tn, fp], [fn, tp]]: sklearn has no specificity/NPV scorer, so derive them from it.
    binary_cms = multilabel_confusion_matrix(labels, preds, labels=class_ids)
    out: dict[str, dict[str, float | int | None]] = {}
    for k, name in enumerate(names):
        (tn, fp), (fn, _tp) = binary_cms[k]
        out[name] = {
            "sensitivity": _none_if_nan(sensitivity[k]),
            "specificity": _safe_ratio(tn, tn + fp),
            "ppv": _none_if_nan(ppv[k]),
            "npv": _safe_ratio(tn, tn + fn),
            "f1": _none_if_nan(f1[k]),
            "support": int(support[k]),
            "auc": aucs[k],
        }
    return out


def compute_classification_metrics(
    probabilities: Any,
    labels: Any,
    label_names: Sequence[str] | None = None,
    num_bins: int = 15,
) -> dict[str, Any]:
    """All metrics as a JSON-serialisable dict (plain Python floats/ints/None, lists, dicts).

    `probabilities` is (n, num_classes) with rows summing to 1; `labels` is (n,) integer class indices.
    Raises ValueError on empty, mismatched, NaN, wrongly sized or out-of-range input.
    """
    probs, labels_arr, names = _validate(probabilities, labels, label_names, num_bins)
    class_ids = list(range(len(names)))
    preds = probs.argmax(axis=1)
    aucs = _one_vs_rest_auc(labels_arr, probs, len(names))
    defined_aucs = [auc for auc in aucs if auc is not None]

    with warnings.catch_warnings():
        # Undefined per-class values are reported as None on purpose; sklearn's warnings about them are noise.
        warnings.simplefilter("ignore", UndefinedMetricWarning)
        warnings.filterwarnings("ignore", message="y_pred contains classes not in y_true")
        warnings.filterwarnings("ignore", message="A single label was found")
        balanced = balanced_accuracy_score(labels_arr, preds)
        # nan-zero-division drops classes absent from both labels and predictions from the macro mean.
        macro_f1 = f1_score(labels_arr, preds, labels=class_ids, average="macro", zero_division=np.nan)
        per_class = _per_class(labels_arr, preds, aucs, names)

    return {
        "num_examples": int(len(labels_arr)),
        "num_classes": len(names),
        "label_names": names,
        "accuracy": float(accuracy_score(labels_arr, preds)),
        "balanced_accuracy": float(balanced),
        "macro_f1": _none_if_nan(float(macro_f1)),
        # Mean over the classes whose one-vs-rest AUC is defined; equals sklearn's multi_class="ovr" macro
        # when every class is present.
        "macro_auc": float(np.mean(defined_aucs)) if defined_aucs else None,
        "ece": expected_calibration_error(probs, labels_arr, num_bins),
        "num_bins": int(num_bins),
        "per_class": per_class,
        "confusion_matrix": confusion_matrix(labels_arr, preds, labels=class_ids).tolist(),
    }


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class CxrMetrics(evaluate.Metric):
    """`evaluate` wrapper around `compute_classification_metrics`."""

    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {
                    "predictions": datasets.Sequence(datasets.Value("float32")),
                    "references": datasets.Value("int64"),
                }
            ),
            reference_urls=["https://arxiv.org/abs/1706.04599"],
        )

    def _compute(
        self,
        predictions: Sequence[Sequence[float]],
        references: Sequence[int],
        label_names: Sequence[str] | None = None,
        num_bins: int = 15,
    ) -> dict[str, Any]:
        return compute_classification_metrics(
            predictions, references, label_names=label_names, num_bins=num_bins
        )

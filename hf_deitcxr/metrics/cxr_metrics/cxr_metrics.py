"""Medical multi-class classification metrics for chest X-rays, as an offline `evaluate` module.

Load it by path (no Hub access needed)::

    metric = evaluate.load("/abs/path/to/hf_deitcxr/metrics/cxr_metrics")
    metric.compute(predictions=probabilities, references=labels, label_names=["normal", "pneumonia", "covid"])
    metric.compute(predictions=class_ids, references=labels, label_names=["normal", "pneumonia", "covid"])

`evaluate` copies this file and the `cxr_inputs.py` beside it (its one relative import, written
`from .cxr_inputs import ...` on one line starting at column 0, the form evaluate's import scan finds) into its
module cache, so both may only import numpy, sklearn, datasets and evaluate: no other package-relative imports.
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

from .cxr_inputs import class_id_array, integer_labels, prediction_kind, validate_class_ids, validate_probabilities

_DESCRIPTION = """
Multi-class metrics for medical image classification from per-example class probabilities or predicted class ids:
accuracy, balanced accuracy, macro F1, per-class sensitivity / specificity / PPV / NPV / F1 / support and the
confusion matrix from either; one-vs-rest ROC-AUC (per class and macro) and the top-label expected calibration
error (ECE) need probabilities and are None for class-id predictions.
Undefined values (e.g. AUC of a class absent from the references) are returned as None instead of raising.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions: either
        (`list` of `list` of `float`) per-example class probabilities, shape (n, num_classes); rows must sum
        to 1 (apply softmax to logits first); or
        (`list` of `int`) predicted class ids, shape (n,), in [0, num_classes) (e.g. argmax of the logits).
        One call (and all add/add_batch calls before one compute) takes one kind, never a mix.
    references (`list` of `int`): true class indices in [0, num_classes).
    label_names (`list` of `str`, optional): class names, in index order; defaults to "0", "1", ...
    num_bins (`int`, defaults to 15): number of equal-width confidence bins for the ECE (probabilities only).
    num_classes (`int`, optional): for class ids without label_names; defaults to the largest id seen + 1.
Returns:
    dict with keys num_examples, num_classes, label_names, accuracy, balanced_accuracy, macro_f1, macro_auc,
    ece, num_bins, per_class ({name: {sensitivity, specificity, ppv, npv, f1, support, auc}}) and
    confusion_matrix (rows = true class, columns = predicted class).
    Outputs that need probabilities are None for class-id predictions: macro_auc, every per-class auc, ece
    and num_bins. All the others are computed from the predicted classes and are the same either way.
Examples:
    >>> metric = evaluate.load("hf_deitcxr/metrics/cxr_metrics")
    >>> out = metric.compute(predictions=[[0.9, 0.1], [0.2, 0.8]], references=[0, 1])
    >>> out["accuracy"]
    1.0
    >>> out = metric.compute(predictions=[0, 1, 1], references=[0, 1, 0])
    >>> out["accuracy"], out["macro_auc"]
    (0.6666666666666666, None)
"""

_CITATION = """
@inproceedings{guo2017calibration,
  title={On Calibration of Modern Neural Networks},
  author={Guo, Chuan and Pleiss, Geoff and Sun, Yu and Weinberger, Kilian Q.},
  booktitle={ICML},
  year={2017}
}
"""

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
    probs, labels_arr, names = validate_probabilities(probabilities, labels, label_names, num_bins)
    aucs = _one_vs_rest_auc(labels_arr, probs, len(names))
    defined_aucs = [auc for auc in aucs if auc is not None]
    out = _label_metrics(labels_arr, probs.argmax(axis=1), names, aucs)
    # Mean over the classes whose one-vs-rest AUC is defined; equals sklearn's multi_class="ovr" macro when every
    # class is present.
    out["macro_auc"] = float(np.mean(defined_aucs)) if defined_aucs else None
    out["ece"] = expected_calibration_error(probs, labels_arr, num_bins)
    out["num_bins"] = int(num_bins)
    return out


def compute_class_id_metrics(
    predicted_ids: Any,
    labels: Any,
    label_names: Sequence[str] | None = None,
    num_classes: int | None = None,
) -> dict[str, Any]:
    """The same dict from predicted class ids; macro_auc, every per-class auc, ece and num_bins are None.

    The class count comes from `label_names`, else `num_classes`, else the largest id seen + 1.
    Raises ValueError on empty, mismatched, fractional, NaN or out-of-range input.
    """
    preds, labels_arr, names = validate_class_ids(predicted_ids, labels, label_names, num_classes)
    out = _label_metrics(labels_arr, preds, names, [None] * len(names))
    out.update(macro_auc=None, ece=None, num_bins=None)
    return out


def compute_metrics(
    predictions: Any,
    references: Any,
    label_names: Sequence[str] | None = None,
    num_bins: int = 15,
    num_classes: int | None = None,
) -> dict[str, Any]:
    """Probabilities (n, num_classes) or class ids (n,), told apart by shape: the module's `compute`."""
    if prediction_kind(predictions) == "class_ids":
        return compute_class_id_metrics(predictions, references, label_names=label_names, num_classes=num_classes)
    width = np.asarray(predictions).shape[1]
    if num_classes is not None and num_classes != width:
        raise ValueError(f"num_classes is {num_classes} but probability rows have width {width}")
    return compute_classification_metrics(predictions, references, label_names=label_names, num_bins=num_bins)


def _label_metrics(
    labels: np.ndarray, preds: np.ndarray, names: list[str], aucs: list[float | None]
) -> dict[str, Any]:
    """Everything that needs only the predicted classes, in the key order of the output."""
    class_ids = list(range(len(names)))
    with warnings.catch_warnings():
        # Undefined per-class values are reported as None on purpose; sklearn's warnings about them are noise.
        warnings.simplefilter("ignore", UndefinedMetricWarning)
        warnings.filterwarnings("ignore", message="y_pred contains classes not in y_true")
        warnings.filterwarnings("ignore", message="A single label was found")
        balanced = balanced_accuracy_score(labels, preds)
        # nan-zero-division drops classes absent from both labels and predictions from the macro mean.
        macro_f1 = f1_score(labels, preds, labels=class_ids, average="macro", zero_division=np.nan)
        per_class = _per_class(labels, preds, aucs, names)
    return {
        "num_examples": int(len(labels)),
        "num_classes": len(names),
        "label_names": names,
        "accuracy": float(accuracy_score(labels, preds)),
        "balanced_accuracy": float(balanced),
        "macro_f1": _none_if_nan(float(macro_f1)),
        "macro_auc": None,
        "ece": None,
        "num_bins": None,
        "per_class": per_class,
        "confusion_matrix": confusion_matrix(labels, preds, labels=class_ids).tolist(),
    }


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class CxrMetrics(evaluate.Metric):
    """`evaluate` wrapper around `compute_metrics`: probability rows or class ids, one kind per compute."""

    def _info(self) -> evaluate.MetricInfo:
        references = datasets.Value("int64")
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            # evaluate picks the first format an input's first example encodes to: a row, else a scalar id.
            features=[
                datasets.Features(
                    {"predictions": datasets.Sequence(datasets.Value("float32")), "references": references}
                ),
                datasets.Features({"predictions": datasets.Value("int64"), "references": references}),
            ],
            reference_urls=["https://arxiv.org/abs/1706.04599"],
        )

    def add_batch(self, *, predictions: Any = None, references: Any = None, **kwargs: Any) -> None:
        """Add a batch of probability rows or class ids (one kind until `compute`) and their references."""
        # Checked before evaluate encodes: its int64 column would silently truncate 0.7 to 0.
        if predictions is not None:
            kind = prediction_kind(predictions)
            self._refuse_another_kind(kind)
            if kind == "class_ids":
                predictions = class_id_array(np.asarray(predictions)).tolist()
        if references is not None:
            references = integer_labels(np.asarray(references)).tolist()
        super().add_batch(predictions=predictions, references=references, **kwargs)

    def add(self, *, prediction: Any = None, reference: Any = None, **kwargs: Any) -> None:
        """Add one probability row or class id and its reference."""
        if prediction is not None:
            kind = "class_ids" if np.ndim(prediction) == 0 else "probabilities"
            self._refuse_another_kind(kind)
            if kind == "class_ids":
                prediction = int(class_id_array(np.asarray([prediction]))[0])
        if reference is not None:
            reference = int(integer_labels(np.asarray([reference]))[0])
        super().add(prediction=prediction, reference=reference, **kwargs)

    def _refuse_another_kind(self, kind: str) -> None:
        """Batches since the last compute share one column type, so a second kind cannot join them."""
        held = self.selected_feature_format if self.writer is not None else None
        if held is None:
            return
        held_kind = "class_ids" if isinstance(held["predictions"], datasets.Value) else "probabilities"
        if held_kind != kind:
            raise ValueError(f"this metric already holds {held_kind} predictions from earlier add/add_batch calls, "
                             f"so it cannot take {kind} before compute(); use one kind per compute")

    def _compute(
        self,
        predictions: Sequence[Sequence[float]] | Sequence[int],
        references: Sequence[int],
        label_names: Sequence[str] | None = None,
        num_bins: int = 15,
        num_classes: int | None = None,
    ) -> dict[str, Any]:
        return compute_metrics(
            predictions, references, label_names=label_names, num_bins=num_bins, num_classes=num_classes
        )

"""Input checks of the `cxr_metrics` module: probability rows or class ids, each refused with a message that says
what is off. Copied next to `cxr_metrics.py` by `evaluate`, so it too imports only numpy.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

# float32 softmax outputs (and their float32 round trip through Arrow) sum to 1 only approximately.
_ROW_SUM_ATOL = 1e-3
_KINDS = "predictions must be class ids, shape (n,), or probability rows, shape (n, num_classes)"


def validate_probabilities(
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

    labels_arr = integer_labels(raw_labels)
    check_range(labels_arr, num_classes, "labels")
    if not isinstance(num_bins, (int, np.integer)) or isinstance(num_bins, bool) or num_bins < 1:
        raise ValueError(f"num_bins must be a positive integer, got {num_bins!r}")
    return probs, labels_arr, class_names(label_names, num_classes)


def validate_class_ids(
    predictions: Any, labels: Any, label_names: Sequence[str] | None, num_classes: int | None
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Return (int64 predicted ids, int64 labels, label names) or raise a ValueError saying what is off."""
    raw_preds, raw_labels = np.asarray(predictions), np.asarray(labels)
    if (raw_preds.ndim >= 1 and len(raw_preds) == 0) or (raw_labels.ndim >= 1 and len(raw_labels) == 0):
        raise ValueError("cannot compute metrics on empty input (0 examples)")
    if raw_preds.ndim != 1:
        raise ValueError(f"class-id predictions must be 1-D (n,), got shape {raw_preds.shape}")
    if raw_labels.ndim != 1:
        raise ValueError(f"labels must be 1-D (n,), got shape {raw_labels.shape}")
    if len(raw_preds) != len(raw_labels):
        raise ValueError(f"got {len(raw_preds)} class-id predictions but {len(raw_labels)} labels")
    preds, labels_arr = class_id_array(raw_preds), integer_labels(raw_labels)
    count = class_count(label_names, num_classes, preds, labels_arr)
    check_range(preds, count, "class-id predictions")
    check_range(labels_arr, count, "labels")
    return preds, labels_arr, class_names(label_names, count)


def prediction_kind(predictions: Any) -> str:
    """"probabilities" for an (n, num_classes) matrix, "class_ids" for a flat (n,) list; ValueError otherwise."""
    try:
        arr = np.asarray(predictions)
    except (ValueError, TypeError) as err:  # numpy refuses ragged or mixed nesting, e.g. [[0.2, 0.8], 1]
        raise ValueError(f"{_KINDS}, not a ragged or mixed list ({err})") from err
    if arr.dtype == object:
        raise ValueError(f"{_KINDS}, not a ragged or mixed list")
    if arr.ndim == 2:
        return "probabilities"
    if arr.ndim == 1:
        return "class_ids"
    raise ValueError(f"{_KINDS}, got shape {arr.shape}")


def class_id_array(raw: np.ndarray) -> np.ndarray:
    """1-D predictions as int64 class ids: ints or whole floats (1.0); fractions, NaN, bools, text refused."""
    if raw.dtype.kind not in "iuf":  # "b" (bool) included: True is not a class id
        raise ValueError(f"1-D predictions are read as class ids and must be integers, got dtype {raw.dtype}")
    if raw.dtype.kind == "f":
        if not np.isfinite(raw).all():
            raise ValueError("class-id predictions contain NaN or infinity")
        fractional = raw[raw != np.round(raw)]
        if fractional.size:
            raise ValueError(
                f"1-D predictions are read as class ids, but {fractional[0]:g} is not a whole number: pass "
                "probabilities as an (n, num_classes) matrix (one row per example) or class ids as integers"
            )
    return raw.astype(np.int64)


def class_count(
    label_names: Sequence[str] | None, num_classes: int | None, preds: np.ndarray, labels: np.ndarray
) -> int:
    """From label_names, else num_classes, else the largest id seen + 1 (so a never-seen top class is missed)."""
    if num_classes is not None and (not isinstance(num_classes, (int, np.integer)) or isinstance(num_classes, bool)):
        raise ValueError(f"num_classes must be an integer, got {num_classes!r}")
    if label_names is not None and num_classes is not None and len(label_names) != num_classes:
        raise ValueError(f"num_classes is {num_classes} but there are {len(label_names)} label names")
    count = len(label_names) if label_names is not None else num_classes
    if count is None:
        count = max(2, int(max(preds.max(), labels.max())) + 1)  # negatives are refused by the range check
    if count < 2:
        raise ValueError(f"need at least 2 classes, got {count}")
    return int(count)


def check_range(values: np.ndarray, num_classes: int, what: str) -> None:
    if values.min() < 0 or values.max() >= num_classes:
        bad = sorted(set(values[(values < 0) | (values >= num_classes)].tolist()))
        raise ValueError(f"{what} must be in [0, {num_classes}), got out-of-range values {bad}")


def class_names(label_names: Sequence[str] | None, num_classes: int) -> list[str]:
    names = [str(name) for name in (label_names if label_names is not None else range(num_classes))]
    if len(set(names)) != len(names):
        raise ValueError(f"label_names must be unique, got {names}")
    return names


def integer_labels(raw: np.ndarray) -> np.ndarray:
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

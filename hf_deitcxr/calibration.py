"""Temperature scaling (Guo et al. 2017, "On Calibration of Modern Neural Networks"): one scalar T, fitted on a held-out
split by minimising the negative log-likelihood of softmax(logits / T), stored as the model config's
`calibration_temperature` and applied by the model classes' forward (and hence `pipeline`, the Space and
`hf-deitcxr predict`). The predicted class never changes; only the confidence does.

The expected calibration error after fitting is reported twice: on the fitting split itself (optimistic) and
cross-fitted over two patient-grouped folds of it (each half scored with the T fitted on the other half), the honest
figure when no other split is at hand.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
from scipy.optimize import minimize_scalar
from scipy.special import log_softmax, softmax
from sklearn.model_selection import GroupKFold

from .metrics import expected_calibration_error

CALIBRATION_FILE = "calibration.json"
# Temperatures outside this range mean the logits carry (almost) no information or are degenerate.
TEMPERATURE_BOUNDS = (0.05, 20.0)


def negative_log_likelihood(logits: np.ndarray, labels: np.ndarray, temperature: float = 1.0) -> float:
    """Mean NLL of softmax(logits / temperature) at the true labels."""
    log_probs = log_softmax(np.asarray(logits, dtype=np.float64) / temperature, axis=1)
    return float(-log_probs[np.arange(len(labels)), np.asarray(labels)].mean())


def fit_temperature(logits: Any, labels: Any) -> float:
    """The temperature minimising the NLL of `logits` (N, C, raw: temperature 1) at `labels` (bounded 1-D search on
    log T with scipy)."""
    logits, labels = np.asarray(logits, dtype=np.float64), np.asarray(labels)
    if logits.ndim != 2 or len(logits) != len(labels) or len(labels) == 0:
        raise ValueError(f"logits of shape {logits.shape} do not match {len(labels)} labels")
    low, high = (math.log(bound) for bound in TEMPERATURE_BOUNDS)
    result = minimize_scalar(lambda log_t: negative_log_likelihood(logits, labels, math.exp(log_t)),
                             bounds=(low, high), method="bounded", options={"xatol": 1e-6})
    return float(math.exp(result.x))


def calibration_summary(logits: Any, labels: Any, groups: Any | None = None, num_bins: int = 15) -> dict[str, Any]:
    """The fitted temperature with NLL and ECE before and after, on the fitting data and (with `groups`, e.g. patient
    ids) cross-fitted over two group folds."""
    logits, labels = np.asarray(logits, dtype=np.float64), np.asarray(labels)
    temperature = fit_temperature(logits, labels)
    summary = {
        "temperature": temperature,
        "num_examples": int(len(labels)),
        "nll_before": negative_log_likelihood(logits, labels),
        "nll_after": negative_log_likelihood(logits, labels, temperature),
        "ece_before": expected_calibration_error(softmax(logits, axis=1), labels, num_bins),
        "ece_after": expected_calibration_error(softmax(logits / temperature, axis=1), labels, num_bins),
        "num_bins": num_bins,
    }
    if groups is not None and len(set(groups)) >= 2:
        summary.update(cross_fitted(logits, labels, np.asarray([str(g) for g in groups]), num_bins))
    return summary


def cross_fitted(logits: np.ndarray, labels: np.ndarray, groups: np.ndarray, num_bins: int) -> dict[str, Any]:
    """ECE and NLL of each half scored with the temperature fitted on the other half (GroupKFold, 2 folds)."""
    calibrated = np.empty_like(logits)
    fold_temperatures = []
    for fit_rows, score_rows in GroupKFold(n_splits=2).split(logits, labels, groups):
        fold_temperature = fit_temperature(logits[fit_rows], labels[fit_rows])
        fold_temperatures.append(fold_temperature)
        calibrated[score_rows] = logits[score_rows] / fold_temperature
    return {
        "cross_fitted_temperatures": fold_temperatures,
        "ece_after_cross_fitted": expected_calibration_error(softmax(calibrated, axis=1), labels, num_bins),
        "nll_after_cross_fitted": negative_log_likelihood(calibrated, labels),
    }


def calibrate_model(model_path: str | Path, dataset: str, split: str = "validation", batch_size: int = 32,
                    num_bins: int = 15) -> dict[str, Any]:
    """Fit the temperature of the saved model folder `model_path` on `split` of `dataset`, write it into the folder's
    config.json (`calibration_temperature`) and the summary into `calibration.json`; returns the summary."""
    from .evaluation import load_model_on_split, predict_logits

    folder = Path(model_path)
    if not (folder / "config.json").is_file():
        raise FileNotFoundError(f"{folder} has no config.json: calibrate a saved model folder")
    loaded = load_model_on_split(str(folder), dataset, split)
    loaded.model.config.calibration_temperature = 1.0  # fit on the raw logits, whatever an earlier fit left
    logits = predict_logits(loaded.model, loaded.data, loaded.collator(), batch_size)
    data = loaded.data
    summary = {"model": folder.name, "dataset": Path(str(dataset)).name, "split": split,
               "label_names": loaded.label_names,
               **calibration_summary(logits, data.labels.numpy(), data.extras.get("patient_id"), num_bins)}
    loaded.model.config.calibration_temperature = summary["temperature"]
    loaded.model.config.save_pretrained(folder)  # the config the model was loaded from, with the fitted temperature
    (folder / CALIBRATION_FILE).write_text(json.dumps(summary, indent=2))
    return summary


__all__ = ["CALIBRATION_FILE", "calibrate_model", "calibration_summary", "cross_fitted", "fit_temperature",
           "negative_log_likelihood"]

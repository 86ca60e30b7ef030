"""Evaluation artefacts for a model folder (metrics.json + plots) and a `compute_metrics` for HF `Trainer`."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from sklearn.metrics import roc_curve

from . import compute_classification_metrics, group_rows, per_group_metrics
from .intervals import DEFAULT_NUM_RESAMPLES, bootstrap_intervals, format_entry
from .operating_points import operating_points

METRICS_FILE = "metrics.json"
CONFUSION_MATRIX_FILE = "confusion_matrix.png"
ROC_CURVES_FILE = "roc_curves.png"
RELIABILITY_FILE = "reliability_diagram.png"
RELIABILITY_BINS = 10
# Overall scalars logged by `make_compute_metrics`, besides `sensitivity_<class>`.
_FLAT_KEYS = ("accuracy", "balanced_accuracy", "macro_f1", "macro_auc", "ece")


def write_evaluation_report(
    output_dir: str | Path,
    probabilities: Any,
    labels: Any,
    label_names: Sequence[str],
    sources: Sequence[Any] | None = None,
    extra: dict[str, Any] | None = None,
    *,
    patient_ids: Sequence[Any] | None = None,
    seed: int = 0,
    num_resamples: int = DEFAULT_NUM_RESAMPLES,
) -> dict[str, Any]:
    """Write metrics.json, confusion_matrix.png, roc_curves.png and reliability_diagram.png to `output_dir`; return
    the metrics dict.

    The dict (= metrics.json) has keys `label_names`, `overall`, `per_source` ({} without `sources`), `extra`
    (e.g. a training summary; {} when not given), `intervals`: 95 % bootstrap intervals (`evaluation_intervals`)
    resampling patients by `patient_ids` (one per image), or images when they are not given, and
    `operating_points`: per-class thresholds (`metrics.operating_points`, chosen on these very data).
    """
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    probs = np.asarray(probabilities, dtype=np.float64)
    labels_arr = np.asarray(labels)
    overall = compute_classification_metrics(probs, labels_arr, label_names=label_names)
    report = {
        "label_names": list(overall["label_names"]),
        "overall": overall,
        "per_source": {} if sources is None else per_group_metrics(probs, labels_arr, sources, label_names),
        "extra": _jsonable(dict(extra or {})),
        "intervals": evaluation_intervals(probs, labels_arr, label_names, sources, patient_ids=patient_ids,
                                          seed=seed, num_resamples=num_resamples),
        "operating_points": operating_points(probs, labels_arr, list(overall["label_names"])),
    }
    (output_dir / METRICS_FILE).write_text(json.dumps(report, indent=2, allow_nan=False))
    overall_intervals = report["intervals"]["overall"]
    _save(_confusion_matrix_figure(np.asarray(overall["confusion_matrix"]), report["label_names"], overall_intervals),
          output_dir / CONFUSION_MATRIX_FILE)
    _save(_roc_figure(probs, labels_arr.astype(np.int64), report["label_names"], overall_intervals["per_class"]),
          output_dir / ROC_CURVES_FILE)
    _save(_reliability_figure(probs, labels_arr.astype(np.int64), report["label_names"], overall.get("ece")),
          output_dir / RELIABILITY_FILE)
    return report


def evaluation_intervals(
    probabilities: Any,
    labels: Any,
    label_names: Sequence[str],
    sources: Sequence[Any] | None = None,
    *,
    patient_ids: Sequence[Any] | None = None,
    seed: int = 0,
    num_resamples: int = DEFAULT_NUM_RESAMPLES,
) -> dict[str, Any]:
    """`bootstrap_intervals` overall and, with `sources`, within each source (its own patients resampled).

    Returns {"overall": ..., "per_source": {source: ...}}, keyed like `per_group_metrics`; every group uses `seed`.
    """
    options = dict(seed=seed, num_resamples=num_resamples)
    overall = bootstrap_intervals(probabilities, labels, label_names, patient_ids=patient_ids, **options)
    if sources is None:
        return {"overall": overall, "per_source": {}}
    probs, labels_arr = np.asarray(probabilities), np.asarray(labels)
    all_ids = None if patient_ids is None else list(patient_ids)
    per_source = {}
    for key, rows in group_rows(sources, len(probs), len(labels_arr)).items():
        ids = None if all_ids is None else [all_ids[i] for i in rows]
        per_source[key] = bootstrap_intervals(probs[rows], labels_arr[rows], label_names, patient_ids=ids, **options)
    return {"overall": overall, "per_source": per_source}


def make_compute_metrics(label_names: Sequence[str],
                         sources: Sequence[Any] | None = None) -> Callable[[Any], dict[str, float]]:
    """A `Trainer(compute_metrics=...)` callable: logits -> softmax -> a flat {name: float} dict.

    Undefined values (e.g. AUC when the eval set lacks a class) become NaN rather than disappearing, so the
    logged keys stay the same every evaluation and `metric_for_best_model` never hits a missing key. With the
    evaluation images' `sources` (in the evaluation set's order, which Trainer's predictions keep), it also logs
    `worst_source_accuracy`: the lowest per-source accuracy, for `--metric_for_best_model` to select on.
    """
    names = list(label_names)

    def compute_metrics(eval_prediction: Any) -> dict[str, float]:
        logits, label_ids = _unpack_eval_prediction(eval_prediction)
        keep = label_ids != -100  # HF's ignore index, e.g. padding added when gathering across processes
        probabilities = _softmax(logits[keep])
        metrics = compute_classification_metrics(probabilities, label_ids[keep], label_names=names)
        flat = {key: metrics[key] for key in _FLAT_KEYS}
        for name in names:
            flat[f"sensitivity_{_log_key(name)}"] = metrics["per_class"][name]["sensitivity"]
        if sources is not None:
            flat["worst_source_accuracy"] = worst_source(probabilities, label_ids[keep], sources, names)["accuracy"]
        return {key: (math.nan if value is None else float(value)) for key, value in flat.items()}

    return compute_metrics


def worst_source(probabilities: np.ndarray, labels: np.ndarray, sources: Sequence[Any],
                 label_names: Sequence[str]) -> dict:
    """The evaluation source with the lowest accuracy: {"source", "accuracy", "num_examples"}."""
    if len(sources) != len(labels):
        raise ValueError(f"{len(labels)} evaluated images but {len(sources)} sources: the sources must be those of "
                         "the evaluation set, in its order")
    per_source = per_group_metrics(probabilities, labels, sources, label_names)
    name = min(per_source, key=lambda key: per_source[key]["accuracy"])
    return {"source": name, "accuracy": per_source[name]["accuracy"],
            "num_examples": per_source[name]["num_examples"]}


def _unpack_eval_prediction(eval_prediction: Any) -> tuple[np.ndarray, np.ndarray]:
    """(logits, labels) from an `EvalPrediction` or a (predictions, label_ids) pair; tuples keep element 0."""
    if hasattr(eval_prediction, "predictions"):
        predictions, label_ids = eval_prediction.predictions, eval_prediction.label_ids
    else:
        predictions, label_ids = eval_prediction
    # Models with extra outputs (e.g. separate cls/distillation logits) give a tuple; the first is the logits.
    if isinstance(predictions, (tuple, list)):
        predictions = predictions[0]
    if isinstance(label_ids, tuple):
        label_ids = label_ids[0]
    return np.asarray(predictions, dtype=np.float64), np.asarray(label_ids).reshape(-1)


def _softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=-1, keepdims=True)  # avoids overflow in exp
    exp = np.exp(shifted)
    return exp / exp.sum(axis=-1, keepdims=True)


def _log_key(name: str) -> str:
    # Keys end up in TensorBoard / CSV logs: keep them to word characters.
    return re.sub(r"\W+", "_", name.strip()).strip("_") or "class"


def _jsonable(value: Any) -> Any:
    """Strict-JSON version of `extra`: numpy -> Python, NaN/inf -> None, anything else unknown -> str."""
    if isinstance(value, (np.generic, np.ndarray)):
        value = value.tolist()
    if isinstance(value, dict):
        return {str(key): _jsonable(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(item) for item in value]
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if value is None or isinstance(value, (bool, int, str)):
        return value
    return str(value)  # e.g. Path, dataclass or enum values in a training summary


def _save(figure: Figure, path: Path) -> None:
    # An explicit Agg canvas: no pyplot, no display and no change to the process-wide backend.
    FigureCanvasAgg(figure).print_png(str(path))


def _confusion_matrix_figure(counts: np.ndarray, label_names: list[str], intervals: dict[str, Any]) -> Figure:
    support = counts.sum(axis=1, keepdims=True)
    normalised = np.divide(counts, support, out=np.zeros(counts.shape, dtype=np.float64), where=support > 0)
    figure = Figure(figsize=(11, 5.6), layout="constrained")
    figure.suptitle(headline_with_intervals(intervals), fontsize="medium")
    axes = figure.subplots(1, 2)
    _draw_matrix(axes[0], counts, label_names, "Confusion matrix (counts)", "{:d}", max(1, counts.max()))
    _draw_matrix(axes[1], normalised, label_names, "Row-normalised (recall per true class)", "{:.2f}", 1.0)
    return figure


def _draw_matrix(ax, values: np.ndarray, label_names: list[str], title: str, fmt: str, vmax: float) -> None:
    image = ax.imshow(values, cmap="Blues", vmin=0, vmax=vmax)
    ax.figure.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    ticks = np.arange(len(label_names))
    ax.set_xticks(ticks, labels=label_names, rotation=45, ha="right")
    ax.set_yticks(ticks, labels=label_names)
    ax.set_xlabel("Predicted label")
    ax.set_ylabel("True label")
    ax.set_title(title)
    for (row, col), value in np.ndenumerate(values):
        text = fmt.format(int(value) if fmt == "{:d}" else float(value))
        # White text on dark cells stays readable.
        ax.text(col, row, text, ha="center", va="center", color="white" if value > 0.5 * vmax else "black")


def headline_with_intervals(intervals: dict[str, Any]) -> str:
    """A figure title: accuracy, balanced accuracy, macro-F1 and macro AUC with their intervals, then how many."""
    named = (("accuracy", "accuracy"), ("balanced accuracy", "balanced_accuracy"), ("macro-F1", "macro_f1"),
             ("macro AUC", "macro_auc"))
    unit = "patients" if intervals["resampled"] == "patient" else "images"
    parts = [f"{label} {format_entry(intervals[key])}" for label, key in named]
    return (" · ".join(parts[:2]) + "\n" + " · ".join(parts[2:])  # two lines: one is wider than the figure
            + f"\n({intervals['confidence']:.0%} bootstrap intervals over {intervals['num_clusters']} {unit}, "
            f"n = {intervals['num_examples']})")


def _roc_figure(
    probs: np.ndarray, labels: np.ndarray, label_names: list[str], per_class: dict[str, dict[str, Any]]
) -> Figure:
    figure = Figure(figsize=(6, 5.5), layout="constrained")
    ax = figure.subplots()
    for k, name in enumerate(label_names):
        auc = per_class[name]["auc"]
        if auc["estimate"] is None:  # one-vs-rest curve undefined: the class is absent or is every example
            ax.plot([], [], linestyle="none", label=f"{name} (AUC n/a)")
            continue
        fpr, tpr, _ = roc_curve(labels == k, probs[:, k])
        ax.plot(fpr, tpr, linewidth=2, label=f"{name}: AUC {format_entry(auc)}")
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey", linewidth=1, label="chance")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("False positive rate (1 - specificity)")
    ax.set_ylabel("True positive rate (sensitivity)")
    ax.set_title("One-vs-rest ROC curves")
    ax.legend(loc="lower right")
    return figure


def _reliability_figure(probs: np.ndarray, labels: np.ndarray, label_names: list[str], ece: float | None) -> Figure:
    """sklearn's `CalibrationDisplay`, one-vs-rest per class and for the top label (the predicted class's
    probability against whether it was right), equal-width bins."""
    from sklearn.calibration import CalibrationDisplay

    figure = Figure(figsize=(6, 5.5), layout="constrained")
    ax = figure.subplots()
    predicted = probs.argmax(axis=1)
    curves = [(name, labels == k, probs[:, k]) for k, name in enumerate(label_names)]
    curves.append(("top label", predicted == labels, probs.max(axis=1)))
    for name, outcome, score in curves:
        if outcome.all() or not outcome.any():  # one outcome only: no curve to draw
            ax.plot([], [], linestyle="none", label=f"{name} (n/a)")
            continue
        CalibrationDisplay.from_predictions(outcome, score, n_bins=RELIABILITY_BINS, name=name, ax=ax,
                                            ref_line=False)
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey", linewidth=1, label="perfectly calibrated")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("Mean predicted probability (in each bin)")
    ax.set_ylabel("Observed frequency of the outcome")
    ece_text = "n/a" if ece is None else f"{ece:.3f}"
    ax.set_title(f"Reliability diagram ({RELIABILITY_BINS} bins; ECE {ece_text})")
    ax.legend(loc="upper left", fontsize="small")
    return figure

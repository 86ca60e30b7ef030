"""The results half of a model card: model-index entries (`EvalResult`s the Hub parses) and the markdown tables of
overall, per-class and per-source metrics with their 95 % intervals, all from a folder's `metrics.json`."""

from __future__ import annotations

from huggingface_hub import EvalResult

from .metrics.intervals import format_interval, interval_bounds
from .metrics.operating_points import operating_points_markdown


def eval_results(metrics: dict, dataset_name: str, split: str) -> list[EvalResult]:
    """model-index entries: overall metrics, per-class metrics and, per source, its own (dataset config) result."""
    overall = metrics["overall"]
    common = dict(task_type="image-classification", task_name="Image Classification", dataset_type=dataset_name,
                  dataset_name=dataset_name, dataset_split=split)
    results = _summary_results(overall, common, "")
    for name, values in overall.get("per_class", {}).items():
        for key, metric_type, pretty in PER_CLASS_METRICS:
            if values.get(key) is not None:
                results.append(EvalResult(metric_type=metric_type, metric_name=f"{pretty} ({name})",
                                          metric_value=values[key], **common))
    for source, values in sorted((metrics.get("per_source") or {}).items()):
        source_common = {**common, "dataset_name": f"{dataset_name} (source: {source})", "dataset_config": source}
        results.extend(_summary_results(values, source_common, f" ({source})"))
    return results


# (metrics.json key, model-index metric type, display name)
SUMMARY_METRICS = (("accuracy", "accuracy", "accuracy"), ("balanced_accuracy", "balanced_accuracy",
                   "balanced accuracy"), ("macro_f1", "f1", "macro F1"), ("macro_auc", "roc_auc",
                   "macro ROC-AUC (one-vs-rest)"), ("ece", "ece", "expected calibration error"))
PER_CLASS_METRICS = (("sensitivity", "recall", "sensitivity"), ("specificity", "specificity", "specificity"),
                     ("ppv", "precision", "PPV"), ("npv", "npv", "NPV"), ("f1", "f1", "F1"),
                     ("auc", "roc_auc", "ROC-AUC"))


def _summary_results(values: dict, common: dict, suffix: str) -> list[EvalResult]:
    return [EvalResult(metric_type=metric_type, metric_name=pretty + suffix, metric_value=values[key], **common)
            for key, metric_type, pretty in SUMMARY_METRICS if values.get(key) is not None]


def results_table(overall: dict, labels: list[str], intervals: dict | None = None) -> str:
    """Headline metrics and the per-class table; with `intervals` (metrics.json's), each with its 95 % interval."""
    def shown(key: str) -> str:
        return with_interval(overall.get(key), intervals, key)

    rows = [f"Accuracy {shown('accuracy')} · balanced accuracy {shown('balanced_accuracy')} · "
            f"macro-F1 {shown('macro_f1')} · macro ROC-AUC {shown('macro_auc')} · "
            f"ECE {fmt(overall.get('ece'))} (n = {overall.get('num_examples')})", "",
            "| class | n | sensitivity | specificity | PPV | NPV | F1 | ROC-AUC |", "|---|---|---|---|---|---|---|---|"]
    per_class = overall.get("per_class", {})
    for name in labels:
        values = per_class.get(name, {})
        auc = with_interval(values.get("auc"), ((intervals or {}).get("per_class") or {}).get(name), "auc")
        rows.append(f"| {name} | {values.get('support', 'n/a')} | "
                    + " | ".join(fmt(values.get(key)) for key in ("sensitivity", "specificity", "ppv", "npv", "f1"))
                    + f" | {auc} |")
    return "\n".join(rows)


def per_source_table(per_source: dict, intervals: dict | None = None) -> str:
    if not per_source:
        return ""
    rows = ["Per source (images from one hospital/population; AUC is n/a where a source holds a single class):", "",
            "| source | n | classes present | accuracy | balanced accuracy | macro ROC-AUC |",
            "|---|---|---|---|---|---|"]
    for source, values in sorted(per_source.items()):
        present = ", ".join(name for name, v in values.get("per_class", {}).items() if v.get("support"))
        own = (intervals or {}).get(source)
        cells = [with_interval(values.get(key), own, key) for key in ("accuracy", "balanced_accuracy", "macro_auc")]
        rows.append(f"| {source} | {values.get('num_examples')} | {present} | " + " | ".join(cells) + " |")
    return "\n".join(rows)


def operating_points_section(points: dict | None, split: str) -> str:
    """The per-class operating points of metrics.json as a card section (empty when it has none)."""
    if not points:
        return ""
    return ("Operating points, each class against the rest (predict the class when its probability ≥ threshold; "
            f"`reliability_diagram.png` shows calibration). They were chosen on the {split} split itself, so their "
            "sensitivity and specificity are optimistic there: fix a threshold on validation data and measure it on "
            "data the choice never saw.\n\n" + operating_points_markdown(points))


def calibration_section(config: dict, calibration: dict | None) -> str:
    """What the card says about the served probabilities: calibrated by temperature scaling or not."""
    temperature = config.get("calibration_temperature", 1.0)
    if not calibration or temperature == 1.0:
        return ("Probabilities are the softmax of the raw logits (not calibrated; `hf-deitcxr calibrate` fits a "
                "temperature on a held-out split).")
    cross = calibration.get("ece_after_cross_fitted")
    return (f"Calibration: temperature scaling, T = {temperature:.3f}, fitted on the {calibration.get('split')} split "
            f"({calibration.get('num_examples')} images): ECE {fmt(calibration.get('ece_before'))} → "
            f"{fmt(calibration.get('ece_after'))} on that split"
            + (f" ({fmt(cross)} cross-fitted over two patient folds)" if cross is not None else "")
            + ". The model classes of this repository divide the served logits by T (the predicted class is "
            "unchanged); the metrics above were measured before calibration, and a stock DeiT class ignores T.")


def with_interval(value: float | None, intervals: dict | None, key: str) -> str:
    """`value` with the 95 % interval of `intervals[key]`; the bare value when metrics.json has no intervals."""
    if intervals is None:
        return fmt(value)
    return format_interval(value, interval_bounds(intervals.get(key)))


def interval_description(intervals: dict | None, split: str) -> str:
    """How the card's intervals were computed (empty when metrics.json has none)."""
    if not intervals:
        return ""
    by_patient = intervals["resampled"] == "patient"
    unit = "patients" if by_patient else "images"
    text = (f"In brackets: {intervals['confidence']:.0%} intervals, percentile bootstrap with "
            f"{intervals['num_resamples']} resamples (seed {intervals['seed']}) of the {split} split's "
            f"{intervals['num_clusters']} {unit}, per source of that source's {unit}. ")
    text += ("All images of a drawn patient come along. " if by_patient else
             "The data had no patient ids, so images of one patient count as independent and the intervals may be "
             "too narrow. ")
    return text + f'"CI n/a": too few {unit}, or too few resamples holding every class.'


def fmt(value) -> str:
    return "n/a" if value is None else f"{value:.3f}"


__all__ = ["calibration_section", "eval_results", "fmt", "interval_description", "operating_points_section",
           "per_source_table", "results_table", "with_interval"]

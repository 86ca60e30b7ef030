"""Metrics: hand-checked values, undefined cases, the offline evaluate module, reports and Trainer hook."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from PIL import Image
from sklearn.metrics import roc_auc_score
from transformers import EvalPrediction

from hf_deitcxr.metrics import (
    METRIC_PATH,
    bootstrap_intervals,
    compute_classification_metrics,
    load_cxr_metric,
    per_group_metrics,
)
from hf_deitcxr.metrics.report import headline_with_intervals, make_compute_metrics, write_evaluation_report
from tests.helpers.tiny_models import LABELS as LABELS_IN_ORDER

NAMES = LABELS_IN_ORDER

# 8 examples, 3 classes. Dyadic probabilities are exact in float32, so the evaluate path (Arrow float32) gives
# bit-identical results. argmax / confidence / correct:
PROBS = [
    [0.75, 0.125, 0.125],  # y=0 -> 0  conf .75   correct
    [0.5, 0.25, 0.25],  # y=0 -> 0  conf .5    correct
    [0.25, 0.625, 0.125],  # y=0 -> 1  conf .625  wrong
    [0.125, 0.75, 0.125],  # y=1 -> 1  conf .75   correct
    [0.25, 0.5, 0.25],  # y=1 -> 1  conf .5    correct
    [0.125, 0.125, 0.75],  # y=1 -> 2  conf .75   wrong
    [0.0625, 0.0625, 0.875],  # y=2 -> 2  conf .875  correct
    [0.5, 0.125, 0.375],  # y=2 -> 0  conf .5    wrong
]
LABELS = [0, 0, 0, 1, 1, 1, 2, 2]


def test_hand_computed_values():
    m = compute_classification_metrics(PROBS, LABELS, label_names=NAMES)
    # Confusion matrix (rows true): [[2,1,0],[0,2,1],[1,0,1]]; 5 of 8 correct.
    assert m["confusion_matrix"] == [[2, 1, 0], [0, 2, 1], [1, 0, 1]]
    assert m["num_examples"] == 8 and m["accuracy"] == pytest.approx(5 / 8)
    covid, pneumonia = m["per_class"]["covid"], m["per_class"]["pneumonia"]
    # covid: TP=2 FN=1 FP=1 (a pneumonia case) TN=4 -> sens 2/3, spec 4/5, PPV 2/3, NPV 4/5.
    assert covid["sensitivity"] == pytest.approx(2 / 3)
    assert covid["specificity"] == pytest.approx(4 / 5)
    assert covid["ppv"] == pytest.approx(2 / 3)
    assert covid["npv"] == pytest.approx(4 / 5)
    assert covid["support"] == 3
    # pneumonia: TP=1 FN=1 FP=1 (a normal case) TN=5 -> sens 1/2, spec 5/6, PPV 1/2, NPV 5/6, F1 1/2.
    assert pneumonia["sensitivity"] == pytest.approx(1 / 2)
    assert pneumonia["specificity"] == pytest.approx(5 / 6)
    assert pneumonia["ppv"] == pytest.approx(1 / 2)
    assert pneumonia["npv"] == pytest.approx(5 / 6)
    assert pneumonia["f1"] == pytest.approx(1 / 2)
    # normal mirrors covid, so macro F1 = balanced accuracy = (2/3 + 2/3 + 1/2) / 3 = 11/18.
    assert m["macro_f1"] == pytest.approx(11 / 18)
    assert m["balanced_accuracy"] == pytest.approx(11 / 18)
    # pneumonia AUC: positive .875 beats all 6 negatives (.125,.25,.125,.125,.25,.75); .375 beats 5 -> 11/12.
    assert pneumonia["auc"] == pytest.approx(11 / 12)
    # covid AUC: .75 beats 5; .5 beats 4 + ties 1 (4.5); .25 beats 3 + ties 1 (3.5) -> 13/15.
    assert covid["auc"] == pytest.approx(13 / 15)
    assert m["macro_auc"] == pytest.approx(roc_auc_score(LABELS, PROBS, multi_class="ovr", average="macro"))


def test_ece_by_hand():
    # 15 bins of width 1/15. Bin (7/15, 8/15] holds the three .5's: acc 2/3 -> 3/8 * |2/3 - .5| = 1/16.
    # Bin (.6, 2/3]: .625 wrong -> 1/8 * .625. Bin (11/15, .8]: three .75's, acc 2/3 -> 3/8 * 1/12 = 1/32.
    # Bin (13/15, 14/15]: .875 correct -> 1/8 * .125. Total 0.0625 + 0.078125 + 0.03125 + 0.015625 = 0.1875.
    assert compute_classification_metrics(PROBS, LABELS)["ece"] == pytest.approx(0.1875)
    # One bin: |accuracy - mean confidence| = |0.625 - 5.25/8| = 0.03125.
    assert compute_classification_metrics(PROBS, LABELS, num_bins=1)["ece"] == pytest.approx(0.03125)


def test_perfect_predictions():
    labels = [0, 1, 2, 0, 1, 2]
    probs = np.eye(3)[labels] * 0.9 + 0.1 / 3
    m = compute_classification_metrics(probs, labels, label_names=NAMES)
    assert m["accuracy"] == 1.0 and m["macro_f1"] == 1.0 and m["macro_auc"] == 1.0
    assert all(c["auc"] == 1.0 and c["sensitivity"] == 1.0 for c in m["per_class"].values())
    assert m["ece"] == pytest.approx(1 - (0.9 + 0.1 / 3))  # always right, confidence 0.9333


def test_class_absent_from_references_gives_none():
    probs = [[0.7, 0.2, 0.1], [0.2, 0.7, 0.1], [0.1, 0.4, 0.5], [0.6, 0.3, 0.1]]
    m = compute_classification_metrics(probs, [0, 1, 1, 0], label_names=NAMES)
    pneumonia = m["per_class"]["pneumonia"]
    assert pneumonia["auc"] is None and pneumonia["sensitivity"] is None and pneumonia["support"] == 0
    assert pneumonia["ppv"] == 0.0  # predicted once, never right
    assert m["per_class"]["covid"]["auc"] == 1.0
    # normal: positives .7, .4 vs negatives .2, .3 -> 1; macro = mean over classes with a defined AUC.
    assert m["macro_auc"] == pytest.approx(1.0)
    json.dumps(m, allow_nan=False)  # None, never NaN


def test_single_class_references_all_aucs_none():
    m = compute_classification_metrics([[0.8, 0.1, 0.1], [0.4, 0.5, 0.1]], [0, 0], label_names=NAMES)
    assert m["macro_auc"] is None
    assert all(c["auc"] is None for c in m["per_class"].values())
    assert m["per_class"]["covid"]["sensitivity"] == 0.5
    assert m["per_class"]["covid"]["specificity"] is None  # no negatives


def test_evaluate_load_by_path_offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    metric = load_cxr_metric()
    assert metric.name == "cxr_metrics"
    result = metric.compute(predictions=PROBS, references=LABELS, label_names=NAMES, num_bins=15)
    assert result == compute_classification_metrics(PROBS, LABELS, label_names=NAMES)
    # Incremental use, as in an evaluation loop.
    for start in range(0, 8, 3):
        metric.add_batch(predictions=PROBS[start : start + 3], references=LABELS[start : start + 3])
    assert metric.compute(label_names=NAMES)["accuracy"] == pytest.approx(5 / 8)
    assert METRIC_PATH.endswith("cxr_metrics")


def test_per_group_metrics():
    groups = ["a", "a", "a", "b", "b", "b", "b", "b"]
    out = per_group_metrics(PROBS, LABELS, groups, NAMES)
    assert list(out) == ["a", "b"]
    a = out["a"]  # only "covid" cases: 2 of 3 right
    assert a["num_examples"] == 3 and a["accuracy"] == pytest.approx(2 / 3)
    assert a["per_class"]["covid"]["sensitivity"] == pytest.approx(2 / 3)
    assert a["per_class"]["covid"]["auc"] is None and a["macro_auc"] is None
    assert out["b"]["confusion_matrix"] == [[0, 0, 0], [0, 2, 1], [1, 0, 1]]
    with pytest.raises(ValueError, match="groups"):
        per_group_metrics(PROBS, LABELS, groups[:-1], NAMES)


def test_report_writes_files(tmp_path):
    sources = ["siteA"] * 4 + ["siteB"] * 4
    report = write_evaluation_report(
        tmp_path / "out", PROBS, np.array(LABELS), NAMES, sources=sources,
        extra={"stage": "distill", "steps": np.int64(3), "loss": float("nan")},
    )
    out = tmp_path / "out"
    on_disk = json.loads((out / "metrics.json").read_text())
    assert on_disk == report
    assert set(on_disk) == {"overall", "per_source", "label_names", "extra", "intervals", "operating_points"}
    assert on_disk["label_names"] == NAMES and set(on_disk["per_source"]) == {"siteA", "siteB"}
    assert set(on_disk["operating_points"]) == set(NAMES)
    assert on_disk["extra"] == {"stage": "distill", "steps": 3, "loss": None}
    assert on_disk["overall"]["accuracy"] == pytest.approx(5 / 8)
    for name in ("confusion_matrix.png", "roc_curves.png", "reliability_diagram.png"):
        with Image.open(out / name) as image:
            image.verify()
            assert image.format == "PNG" and min(image.size) > 100
    no_sources = write_evaluation_report(tmp_path / "plain", PROBS, LABELS, NAMES)
    assert no_sources["per_source"] == {} and no_sources["extra"] == {}
    # 8 images are too few to resample: the intervals say so instead of failing
    assert no_sources["intervals"]["per_source"] == {}
    assert "only 8 image(s)" in no_sources["intervals"]["overall"]["accuracy"]["reason"]


def test_report_intervals_resample_each_sources_own_patients(tmp_path):
    rng = np.random.default_rng(0)
    labels = np.arange(120) % 3
    logits = rng.normal(size=(120, 3)) + 1.5 * np.eye(3)[labels]
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    sources = np.where(np.arange(120) < 60, "siteA", "siteB")
    patients = [f"p{i // 4}" for i in range(120)]
    report = write_evaluation_report(tmp_path, probs, labels, NAMES, sources=list(sources), patient_ids=patients,
                                     seed=3, num_resamples=300)
    assert report["overall"] == compute_classification_metrics(probs, labels, label_names=NAMES)  # unchanged
    intervals = json.loads((tmp_path / "metrics.json").read_text())["intervals"]
    assert intervals == report["intervals"] and set(intervals["per_source"]) == {"siteA", "siteB"}
    overall = intervals["overall"]
    assert overall == bootstrap_intervals(probs, labels, NAMES, patient_ids=patients, seed=3, num_resamples=300)
    assert overall["resampled"] == "patient" and overall["num_clusters"] == 30
    site_b = sources == "siteB"
    assert intervals["per_source"]["siteB"] == bootstrap_intervals(
        probs[site_b], labels[site_b], NAMES, patient_ids=list(np.asarray(patients)[site_b]), seed=3,
        num_resamples=300)
    assert intervals["per_source"]["siteA"]["accuracy"]["estimate"] == report["per_source"]["siteA"]["accuracy"]
    assert overall["accuracy"]["low"] < overall["accuracy"]["estimate"] < overall["accuracy"]["high"]
    assert "accuracy 0." in headline_with_intervals(overall) and "over 30 patients" in headline_with_intervals(overall)


def test_compute_metrics_for_trainer():
    logits = np.log(np.asarray(PROBS))  # softmax(log p) == p
    compute = make_compute_metrics(NAMES)
    out = compute(EvalPrediction(predictions=(logits, np.zeros((8, 4))), label_ids=np.array(LABELS)))
    assert set(out) == {
        "accuracy", "balanced_accuracy", "macro_f1", "macro_auc", "ece",
        "sensitivity_covid", "sensitivity_normal", "sensitivity_pneumonia",
    }
    assert all(type(v) is float for v in out.values())
    assert out["accuracy"] == pytest.approx(5 / 8) and out["ece"] == pytest.approx(0.1875)
    assert out["sensitivity_pneumonia"] == pytest.approx(0.5)
    # Undefined values become NaN (keys stay stable across evaluations) instead of None.
    two = compute(EvalPrediction(predictions=logits[:2], label_ids=np.array([0, 0])))
    assert math.isnan(two["macro_auc"]) and math.isnan(two["sensitivity_pneumonia"])


def test_compute_metrics_logs_the_worst_sources_accuracy_when_given_the_sources():
    logits, labels = np.log(np.asarray(PROBS)), np.array(LABELS)
    sources = ["a", "b", "a", "b", "a", "b", "c", "c"]
    out = make_compute_metrics(NAMES, sources)(EvalPrediction(predictions=logits, label_ids=labels))
    correct = np.asarray(PROBS).argmax(axis=1) == labels
    per_source = {s: correct[np.asarray(sources) == s].mean() for s in set(sources)}
    assert len(set(per_source.values())) > 1  # the minimum is not every source's accuracy
    assert out["worst_source_accuracy"] == pytest.approx(min(per_source.values()))
    assert "worst_source_accuracy" not in make_compute_metrics(NAMES)(EvalPrediction(logits, labels))
    with pytest.raises(ValueError, match="8 evaluated images but 7 sources"):
        make_compute_metrics(NAMES, sources[:7])(EvalPrediction(predictions=logits, label_ids=labels))


@pytest.mark.parametrize(
    ("probs", "labels", "kwargs", "match"),
    [
        ([], [], {}, "empty"),
        (PROBS, LABELS[:-1], {}, "8 probability rows but 7 labels"),
        ([row[:2] for row in PROBS], LABELS, {"label_names": NAMES}, "width 2"),
        ([[0.5, 0.5], [0.2, 0.3, 0.5]], [0, 1], {}, "ragged"),
        (PROBS, [0, 0, 0, 1, 1, 1, 2, 3], {}, "out-of-range"),
        (PROBS, [0, 0, 0, 1, 1, 1, 2, -1], {}, "out-of-range"),
        ([[float("nan"), 0.5, 0.5]], [0], {}, "NaN"),
        ([[3.0, -1.0, -1.0]], [0], {}, "softmax"),
        ([[0.5, 0.5, 0.5]], [0], {}, "sum to 1"),
        (PROBS, LABELS, {"num_bins": 0}, "num_bins"),
        (PROBS, [0.5] * 8, {}, "integer"),
    ],
)
def test_bad_input_raises(probs, labels, kwargs, match):
    with pytest.raises(ValueError, match=match):
        compute_classification_metrics(probs, labels, **kwargs)

"""The offline `evaluate` module with predicted class ids (as `evaluate` users call it), checked against sklearn."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import (
    accuracy_score,
    balanced_accuracy_score,
    confusion_matrix,
    f1_score,
    precision_score,
    recall_score,
)

from hf_deitcxr.metrics import compute_class_id_metrics, compute_classification_metrics, load_cxr_metric
from hf_deitcxr.metrics.cxr_metrics.cxr_metrics import _KWARGS_DESCRIPTION
from tests.helpers.tiny_models import LABELS as NAMES

RNG = np.random.default_rng(7)
REFERENCES = RNG.integers(0, 3, 60).tolist()
# Mostly right, so every class is predicted and every ratio is defined.
PREDICTIONS = [label if RNG.random() < 0.7 else int(RNG.integers(0, 3)) for label in REFERENCES]
NEEDS_PROBABILITIES = ("macro_auc", "ece", "num_bins")


@pytest.fixture(scope="module")
def metric():
    return load_cxr_metric()


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")


def sklearn_specificity_and_npv(labels: list[int], preds: list[int], k: int) -> tuple[float, float]:
    """Class k against the rest: specificity = recall of "not k", NPV = precision of "not k"."""
    not_true = [int(y != k) for y in labels]
    not_pred = [int(p != k) for p in preds]
    return recall_score(not_true, not_pred), precision_score(not_true, not_pred)


def test_class_ids_match_sklearn(metric):
    out = metric.compute(predictions=PREDICTIONS, references=REFERENCES, label_names=NAMES)
    assert out["num_examples"] == 60 and out["num_classes"] == 3 and out["label_names"] == NAMES
    assert out["accuracy"] == pytest.approx(accuracy_score(REFERENCES, PREDICTIONS))
    assert out["balanced_accuracy"] == pytest.approx(balanced_accuracy_score(REFERENCES, PREDICTIONS))
    assert out["macro_f1"] == pytest.approx(f1_score(REFERENCES, PREDICTIONS, average="macro"))
    assert out["confusion_matrix"] == confusion_matrix(REFERENCES, PREDICTIONS, labels=[0, 1, 2]).tolist()
    sensitivity = recall_score(REFERENCES, PREDICTIONS, average=None)
    ppv = precision_score(REFERENCES, PREDICTIONS, average=None)
    f1 = f1_score(REFERENCES, PREDICTIONS, average=None)
    for k, name in enumerate(NAMES):
        row = out["per_class"][name]
        specificity, npv = sklearn_specificity_and_npv(REFERENCES, PREDICTIONS, k)
        assert row["sensitivity"] == pytest.approx(sensitivity[k]) and row["ppv"] == pytest.approx(ppv[k])
        assert row["specificity"] == pytest.approx(specificity) and row["npv"] == pytest.approx(npv)
        assert row["f1"] == pytest.approx(f1[k]) and row["support"] == REFERENCES.count(k)
        assert row["auc"] is None
    assert all(out[key] is None for key in NEEDS_PROBABILITIES)


def test_class_ids_agree_with_the_probability_path_on_everything_but_auc_and_ece(metric):
    # One-hot-ish rows whose argmax is the predicted id: every label-only metric must come out the same.
    probs = (np.eye(3)[PREDICTIONS] * 0.5 + 0.5 / 3).tolist()
    from_probs = compute_classification_metrics(probs, REFERENCES, label_names=NAMES)
    from_ids = metric.compute(predictions=PREDICTIONS, references=REFERENCES, label_names=NAMES)
    assert from_ids == compute_class_id_metrics(PREDICTIONS, REFERENCES, label_names=NAMES)
    for per_class in (*from_probs["per_class"].values(), *from_ids["per_class"].values()):
        per_class.pop("auc")
    for key in NEEDS_PROBABILITIES:
        from_probs.pop(key), from_ids.pop(key)
    assert from_ids == from_probs


def test_class_ids_in_batches_numpy_and_one_at_a_time(metric):
    for start in range(0, 60, 25):
        batch = slice(start, start + 25)
        metric.add_batch(predictions=np.asarray(PREDICTIONS[batch]), references=REFERENCES[batch])
    batched = metric.compute(label_names=NAMES)
    for prediction, reference in zip(PREDICTIONS, REFERENCES, strict=True):
        metric.add(prediction=float(prediction), reference=reference)  # a whole float is an id
    assert metric.compute(label_names=NAMES) == batched
    assert batched["accuracy"] == pytest.approx(accuracy_score(REFERENCES, PREDICTIONS))


def test_class_count_from_num_classes_or_the_largest_id(metric):
    # class 2 never appears: only num_classes (or label_names) can tell the metric it exists
    inferred = metric.compute(predictions=[0, 1, 1], references=[0, 1, 0])
    assert inferred["num_classes"] == 2 and inferred["label_names"] == ["0", "1"]
    declared = metric.compute(predictions=[0, 1, 1], references=[0, 1, 0], num_classes=3)
    assert declared["num_classes"] == 3 and declared["per_class"]["2"]["sensitivity"] is None
    assert declared["confusion_matrix"] == [[1, 1, 0], [0, 1, 0], [0, 0, 0]]


def test_probability_path_unchanged_through_the_module(metric):
    probs = [[0.75, 0.125, 0.125], [0.125, 0.75, 0.125], [0.5, 0.25, 0.25]]
    out = metric.compute(predictions=probs, references=[0, 1, 2], label_names=NAMES)
    assert out == compute_classification_metrics(probs, [0, 1, 2], label_names=NAMES)
    assert out["ece"] is not None and out["num_bins"] == 15


def test_description_says_which_outputs_need_probabilities(metric):
    for text in (_KWARGS_DESCRIPTION, metric.inputs_description):
        assert "class ids" in text
        assert "need probabilities are None for class-id predictions: macro_auc, every per-class auc, ece" in text
    assert "None for class-id predictions" in metric.description


@pytest.mark.parametrize(
    ("predictions", "references", "kwargs", "match"),
    [
        ([0, 3, 1], [0, 1, 2], {"label_names": NAMES}, r"class-id predictions must be in \[0, 3\).*\[3\]"),
        ([0, -1, 1], [0, 1, 2], {}, r"out-of-range values \[-1\]"),
        ([0, 1, 1], [0, 1, 4], {"num_classes": 3}, r"labels must be in \[0, 3\)"),
        ([0.2, 0.8, 0.5], [0, 1, 1], {}, "0.2 is not a whole number: pass probabilities as an \\(n, num_classes\\)"),
        ([0.0, float("nan")], [0, 1], {}, "NaN"),
        ([[0.5, 0.5], 1], [0, 1], {}, "ragged or mixed"),
        ([[[0.5, 0.5]], [[0.5, 0.5]]], [0, 1], {}, r"got shape \(2, 1, 2\)"),
        ([True, False], [0, 1], {}, "must be integers, got dtype bool"),
        (["normal", "covid"], [0, 1], {}, "must be integers"),
        ([0, 1], [0, 1, 1], {}, r"Mismatch in the number of predictions \(2\) and references \(3\)"),  # evaluate's
        ([0, 1], [0, 1], {"num_classes": 3, "label_names": ["a", "b"]}, "num_classes is 3 but there are 2"),
        ([0, 0], [0, 0], {"num_classes": 1}, "at least 2 classes"),
        ([0, 1], [0.5, 1], {}, "integer"),
        ([[0.5, 0.5], [0.5, 0.5]], [0, 1], {"num_classes": 3}, "num_classes is 3 but probability rows have width 2"),
    ],
)
def test_bad_class_id_input_raises(metric, predictions, references, kwargs, match):
    with pytest.raises(ValueError, match=match):
        metric.compute(predictions=predictions, references=references, **kwargs)


@pytest.mark.parametrize(
    ("predictions", "references", "match"),
    [
        ([0, 1], [0, 1, 1], "2 class-id predictions but 3 labels"),
        ([], [], "empty"),
        ([[0, 1]], [0], r"must be 1-D \(n,\), got shape \(1, 2\)"),
        ([0, 1], [[0, 1]], r"labels must be 1-D"),
    ],
)
def test_bad_input_to_the_plain_function(predictions, references, match):
    with pytest.raises(ValueError, match=match):
        compute_class_id_metrics(predictions, references)


def test_kinds_cannot_be_mixed_across_batches(metric):
    metric.add_batch(predictions=[0, 1], references=[0, 1])
    with pytest.raises(ValueError, match="already holds class_ids predictions .* cannot take probabilities"):
        metric.add_batch(predictions=[[0.5, 0.5]], references=[0])
    with pytest.raises(ValueError, match="not a whole number"):
        metric.add(prediction=0.5, reference=0)
    assert metric.compute()["accuracy"] == 1.0  # what was added before the refusals is kept
    metric.add_batch(predictions=[[0.25, 0.75]], references=[1])  # a new compute may take the other kind
    with pytest.raises(ValueError, match="already holds probabilities predictions"):
        metric.add(prediction=1, reference=1)
    assert metric.compute()["ece"] == pytest.approx(0.25)


def test_references_are_not_truncated_by_the_int64_column(metric):
    # evaluate would store int(0.5) = 0 silently; the module refuses instead, for either kind of prediction
    with pytest.raises(ValueError, match="fractional"):
        metric.compute(predictions=[[0.5, 0.5], [0.5, 0.5]], references=[0.5, 1])
    with pytest.raises(ValueError, match="fractional"):
        metric.add(prediction=1, reference=0.5)

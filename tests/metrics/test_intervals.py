"""Bootstrap intervals: point estimates, seeding, clusters really resampled, sklearn on the resample, edge cases."""

from __future__ import annotations

import time

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, balanced_accuracy_score, f1_score, roc_auc_score

from hf_deitcxr.metrics import compute_classification_metrics
from hf_deitcxr.metrics.intervals import SUMMARY_KEYS, bootstrap_intervals, format_entry, format_interval
from tests.helpers.tiny_models import LABELS as NAMES


def predictions(num_images: int, seed: int = 0, signal: float = 1.5, decimals: int | None = None):
    """Probabilities that beat chance (rounded logits when `decimals`, so scores tie), labels cycling 0, 1, 2."""
    rng = np.random.default_rng(seed)
    labels = np.arange(num_images) % 3
    logits = rng.normal(size=(num_images, 3)) + signal * np.eye(3)[labels]
    if decimals is not None:
        logits = np.round(logits, decimals)
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    return probs, labels


def all_entries(result: dict) -> dict[str, dict]:
    entries = {key: result[key] for key in SUMMARY_KEYS}
    entries.update({f"auc {name}": values["auc"] for name, values in result["per_class"].items()})
    return entries


def test_estimates_are_the_full_data_metrics_and_lie_inside_their_intervals():
    probs, labels = predictions(300)
    patients = [f"p{i // 3}" for i in range(300)]
    result = bootstrap_intervals(probs, labels, NAMES, patient_ids=patients, num_resamples=500)
    point = compute_classification_metrics(probs, labels, label_names=NAMES)
    assert result["resampled"] == "patient" and result["num_clusters"] == 100 and result["num_examples"] == 300
    for key in SUMMARY_KEYS:
        assert result[key]["estimate"] == point[key]
    for name in NAMES:
        assert result["per_class"][name]["auc"]["estimate"] == point["per_class"][name]["auc"]
    for name, entry in all_entries(result).items():
        assert entry["low"] < entry["estimate"] < entry["high"], name
        assert entry["high"] - entry["low"] < 0.25 and entry["usable_resamples"] == 500 and entry["reason"] is None


def test_same_seed_gives_identical_intervals_and_another_seed_different_ones():
    probs, labels = predictions(200)
    first = bootstrap_intervals(probs, labels, NAMES, num_resamples=300, seed=7)
    assert bootstrap_intervals(probs, labels, NAMES, num_resamples=300, seed=7) == first
    other = bootstrap_intervals(probs, labels, NAMES, num_resamples=300, seed=8)
    assert other["seed"] == 8
    assert all(other[key]["low"] != first[key]["low"] for key in SUMMARY_KEYS)


def reference_intervals(probs, labels, patients, num_resamples, seed, confidence=0.95):
    """The same draws, each replicate materialised (patients' images repeated) and scored by sklearn."""
    names = sorted(set(patients))
    images_of = [np.flatnonzero(np.asarray(patients) == name) for name in names]
    draws = np.random.default_rng(seed).integers(0, len(names), size=(num_resamples, len(names)))
    scores = {"accuracy": [], "balanced_accuracy": [], "macro_f1": [], "macro_auc": []}
    for row in draws:
        rows = np.concatenate([images_of[c] for c in row])
        y, p = labels[rows], probs[rows]
        assert set(y.tolist()) == set(labels.tolist())  # every replicate usable: the comparison covers them all
        scores["accuracy"].append(accuracy_score(y, p.argmax(1)))
        scores["balanced_accuracy"].append(balanced_accuracy_score(y, p.argmax(1)))
        scores["macro_f1"].append(f1_score(y, p.argmax(1), average="macro"))
        present = sorted(set(labels.tolist()))
        scores["macro_auc"].append(np.mean([roc_auc_score(y == k, p[:, k]) for k in present]))
    tail = 100 * (1 - confidence) / 2
    return {key: np.percentile(values, [tail, 100 - tail]) for key, values in scores.items()}


def test_each_replicate_is_what_sklearn_computes_on_the_resampled_images():
    # Patient ids in sorted order, so cluster k is the k-th sorted name, as in the reference.
    probs, labels = predictions(90, seed=3, signal=0.8, decimals=1)  # ties in the scores, errors in every class
    patients = [f"p{i // 3:02d}" for i in range(90)]
    result = bootstrap_intervals(probs, labels, NAMES, patient_ids=patients, num_resamples=200, seed=5)
    reference = reference_intervals(probs, labels, patients, 200, seed=5)
    for key in SUMMARY_KEYS:
        assert [result[key]["low"], result[key]["high"]] == pytest.approx(reference[key], abs=1e-12), key


@pytest.mark.filterwarnings("ignore:y_pred contains classes not in y_true")  # the absent class is predicted
def test_replicates_of_a_source_holding_two_of_three_classes_match_sklearn_too():
    # Balanced accuracy and macro-F1 are taken over the classes present (sklearn's definitions), not all three.
    probs, labels = predictions(90, seed=4, signal=0.8, decimals=1)
    keep = labels < 2
    probs, labels = probs[keep], labels[keep]
    patients = [f"p{i // 2:02d}" for i in range(len(labels))]
    result = bootstrap_intervals(probs, labels, NAMES, patient_ids=patients, num_resamples=200, seed=1)
    reference = reference_intervals(probs, labels, patients, 200, seed=1)
    assert result["per_class"][NAMES[2]]["auc"]["estimate"] is None
    for key in SUMMARY_KEYS:
        assert [result[key]["low"], result[key]["high"]] == pytest.approx(reference[key], abs=1e-12), key


def test_patients_whose_images_are_all_right_or_all_wrong_widen_the_interval_as_one_image_each():
    # 20 patients x 5 images; 12 patients entirely right, 8 entirely wrong. Resampling patients must behave
    # exactly like resampling 20 single images (same draws), and far wider than resampling the 100 images.
    right = np.array([[0.9, 0.05, 0.05]])
    wrong = np.array([[0.05, 0.9, 0.05]])
    per_patient = np.array([0, 0] * 10)  # all true class 0
    outcome = np.array([1] * 12 + [0] * 8)
    probs5 = np.repeat(np.where(outcome[:, None] == 1, right, wrong), 5, axis=0)
    patients = np.repeat([f"p{i:02d}" for i in range(20)], 5)
    labels5 = np.repeat(per_patient, 5)
    clustered = bootstrap_intervals(probs5, labels5, NAMES, patient_ids=patients, num_resamples=4000)
    by_image = bootstrap_intervals(probs5, labels5, NAMES, num_resamples=4000)
    one_each = bootstrap_intervals(probs5[::5], labels5[::5], NAMES, num_resamples=4000)
    assert clustered["accuracy"]["estimate"] == 0.6
    assert clustered["accuracy"] == one_each["accuracy"]
    # Binomial(20, 0.6) / 20 has 2.5 % / 97.5 % quantiles 0.40 / 0.80; Binomial(100, 0.6) / 100: 0.50 / 0.70.
    assert [clustered["accuracy"]["low"], clustered["accuracy"]["high"]] == pytest.approx([0.4, 0.8], abs=1e-9)
    assert [by_image["accuracy"]["low"], by_image["accuracy"]["high"]] == pytest.approx([0.5, 0.7], abs=0.021)


def test_missing_patient_ids_count_as_their_own_patient():
    probs, labels = predictions(60)
    ids = [None if i % 2 else f"p{i // 4}" for i in range(60)]
    result = bootstrap_intervals(probs, labels, NAMES, patient_ids=ids, num_resamples=50)
    assert result["num_clusters"] == 30 + 15


def test_too_few_patients_give_no_interval_and_say_why():
    probs, labels = predictions(30)
    result = bootstrap_intervals(probs, labels, NAMES, patient_ids=["a"] * 15 + ["b"] * 15, num_resamples=50)
    for name, entry in all_entries(result).items():
        assert entry["low"] is None and entry["high"] is None, name
        assert "only 2 patient(s)" in entry["reason"] or "undefined" in entry["reason"]
    assert result["accuracy"]["estimate"] == pytest.approx(compute_classification_metrics(probs, labels)["accuracy"])
    tiny = bootstrap_intervals(probs[:3], labels[:3], NAMES, num_resamples=50)
    assert tiny["accuracy"]["low"] is None and "only 3 image(s)" in tiny["accuracy"]["reason"]


def test_one_class_gives_accuracy_but_no_auc():
    probs, labels = predictions(60)
    only_zero = labels == 0
    result = bootstrap_intervals(probs[only_zero], labels[only_zero], NAMES, num_resamples=200)
    assert result["accuracy"]["low"] is not None and result["balanced_accuracy"]["low"] is not None
    for entry in [result["macro_auc"]] + [values["auc"] for values in result["per_class"].values()]:
        assert entry["estimate"] is None and entry["low"] is None and "undefined" in entry["reason"]


def test_a_class_missing_from_many_replicates_gives_no_class_averaged_interval():
    # One patient of 20 holds the only class-2 images: about (19/20)^20 = 36 % of the replicates miss it.
    probs, labels = predictions(60)
    labels = np.where(np.arange(60) < 3, 2, labels % 2)
    probs = np.asarray(probs)
    patients = [f"p{i // 3}" for i in range(60)]
    result = bootstrap_intervals(probs, labels, NAMES, patient_ids=patients, num_resamples=1000)
    assert result["accuracy"]["low"] is not None and result["accuracy"]["usable_resamples"] == 1000
    for key in ("balanced_accuracy", "macro_f1", "macro_auc"):
        entry = result[key]
        assert entry["low"] is None and 550 < entry["usable_resamples"] < 750, key
        assert entry["reason"].startswith(f"only {entry['usable_resamples']} of 1000 resamples hold every class")
    lenient = bootstrap_intervals(probs, labels, NAMES, patient_ids=patients, num_resamples=1000,
                                  min_usable_fraction=0.5)
    assert lenient["macro_auc"]["low"] is not None


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (dict(patient_ids=["a"] * 5), "patient_ids has 5 entries but there are 30 labels"),
        (dict(labels=[0, 1, 2] * 9 + [0, 1, 3]), "out-of-range"),
        (dict(labels=[0, 1, 2] * 9), "30 probability rows but 27 labels"),
        (dict(label_names=["a", "b"]), "width 3"),
        (dict(num_resamples=0), "num_resamples"),
        (dict(confidence=95), "confidence"),
    ],
)
def test_bad_input_is_refused_clearly(kwargs, match):
    probs, labels = predictions(30)
    arguments = dict(probabilities=probs, labels=labels, label_names=NAMES) | kwargs
    with pytest.raises(ValueError, match=match):
        bootstrap_intervals(**arguments)


def test_two_thousand_resamples_of_a_thousand_patients_take_well_under_a_second_or_two():
    probs, labels = predictions(1000)
    patients = [f"p{i}" for i in range(1000)]
    bootstrap_intervals(probs[:50], labels[:50], NAMES, num_resamples=10)  # imports and first-call costs
    start = time.perf_counter()
    bootstrap_intervals(probs, labels, NAMES, patient_ids=patients, num_resamples=2000)
    assert time.perf_counter() - start < 2.0


def test_formatting():
    entry = {"estimate": 0.8716, "low": 0.8512, "high": 0.8904}
    assert format_entry(entry) == "0.872 (0.851–0.890)"
    assert format_entry({"estimate": 0.5, "low": None, "high": None}) == "0.500 (CI n/a)"
    assert format_entry(None) == "n/a" and format_interval(None, [0.1, 0.2]) == "n/a"

"""Patient-grouped k-fold cross-validation: disjoint, covering, stratified, reproducible folds; argument checks."""

import json
import logging

import datasets
import numpy as np
import pytest

from hf_deitcxr.data import LeakageError, load_radiograph_dataset, validate_dataset
from hf_deitcxr.data.cross_validation import (
    check_fold_arguments,
    check_teacher_fold,
    cross_validation_split,
    link_groups,
    patient_folds,
)
from hf_deitcxr.data.validation import DataReport, DuplicateImage
from hf_deitcxr.training.arguments import parse_training_arguments
from tests.helpers.synthetic import write_imagefolder

FEATURES = datasets.Features({"label": datasets.ClassLabel(names=["a", "b", "c"]),
                              "patient_id": datasets.Value("string")})


def table(num_patients: int = 30, seed: int = 0) -> datasets.Dataset:
    """`num_patients` patients of 1-4 images, each patient one label (about a third each)."""
    rng = np.random.default_rng(seed)
    labels, patients = [], []
    for patient in range(num_patients):
        count = int(rng.integers(1, 5))
        labels += [patient % 3] * count
        patients += [f"p{patient:02d}"] * count
    return datasets.Dataset.from_dict({"label": labels, "patient_id": patients}, features=FEATURES)


def test_folds_are_disjoint_by_patient_cover_every_patient_once_and_are_stratified():
    data = table()
    folds = patient_folds(data, 4, seed=0)
    patients = np.asarray(data["patient_id"])
    labels = np.asarray(data["label"])
    assert sorted(np.concatenate(folds).tolist()) == list(range(len(data)))  # every image in exactly one fold
    per_fold = [set(patients[rows].tolist()) for rows in folds]
    assert all(not per_fold[i] & per_fold[j] for i in range(4) for j in range(i + 1, 4))
    assert set().union(*per_fold) == set(patients.tolist())
    assert all(set(labels[rows].tolist()) == {0, 1, 2} for rows in folds)  # every class in every fold


def test_folds_are_reproducible_and_independent_of_row_order():
    data = table()
    first, again = patient_folds(data, 3, seed=7), patient_folds(data, 3, seed=7)
    assert all(np.array_equal(a, b) for a, b in zip(first, again, strict=True))
    patients = np.asarray(data["patient_id"])
    order = np.random.default_rng(1).permutation(len(data))
    shuffled = patient_folds(data.select(order), 3, seed=7)
    as_patients = [sorted(set(patients[rows].tolist())) for rows in first]
    assert [sorted(set(patients[order][rows].tolist())) for rows in shuffled] == as_patients
    other_seed = patient_folds(data, 3, seed=8)
    assert [sorted(set(patients[rows].tolist())) for rows in other_seed] != as_patients


def test_images_without_patient_ids_are_each_their_own_group(caplog):
    data = datasets.Dataset.from_dict({"label": [0, 1, 2] * 4, "patient_id": [None, ""] * 6}, features=FEATURES)
    with caplog.at_level(logging.WARNING):
        folds = patient_folds(data, 3, seed=0)
    assert "12 of 12 image(s) have no patient id" in caplog.text
    assert sorted(np.concatenate(folds).tolist()) == list(range(12))
    no_column = data.remove_columns("patient_id")
    with caplog.at_level(logging.WARNING):
        assert len(patient_folds(no_column, 2, seed=0)) == 2
    assert "no 'patient_id' column" in caplog.text


def test_identical_images_of_different_patients_share_a_fold():
    groups = np.asarray(["p1", "p2", "p3", "p4"])
    assert link_groups(groups, [[0, 2], [2, 3]]).tolist() == ["p1", "p2", "p1", "p1"]
    data = table()
    rows = [0, len(data) - 1]  # two patients of different labels holding the same image
    report = DataReport({}, [], {}, {}, within_split_duplicates=[DuplicateImage("d", [("train", r) for r in rows])])
    for fold in range(3):
        split, _ = cross_validation_split(datasets.DatasetDict({"train": data}), 3, fold, report=report)
        held_out = set(split["validation"]["patient_id"])
        assert (data[0]["patient_id"] in held_out) == (data[len(data) - 1]["patient_id"] in held_out)


def test_split_pools_train_and_validation_and_keeps_the_test_split(tmp_path):
    data = write_imagefolder(tmp_path / "data", {"train": 8, "validation": 4, "test": 2})
    loaded = load_radiograph_dataset(data)
    report = validate_dataset(loaded)
    pooled_patients = set(loaded["train"]["patient_id"]) | set(loaded["validation"]["patient_id"])
    held_out = []
    for fold in range(3):
        split, summary = cross_validation_split(loaded, 3, fold, seed=0, report=report)
        train, evaluation = set(split["train"]["patient_id"]), set(split["validation"]["patient_id"])
        assert not train & evaluation and train | evaluation == pooled_patients
        assert split["test"]["patient_id"] == loaded["test"]["patient_id"]  # the held-out test split untouched
        assert summary.pooled_splits == ["train", "validation"] and summary.fold == fold
        assert summary.eval_images == len(split["validation"]) and summary.eval_patients == len(evaluation)
        assert summary.train_images + summary.eval_images == 36
        assert all(count > 0 for count in summary.eval_class_counts.values())
        held_out.append(evaluation)
    assert sorted(p for fold in held_out for p in fold) == sorted(pooled_patients)  # each patient held out once
    split, summary = cross_validation_split(loaded, 3, 0, pool="train")
    assert summary.pooled_splits == ["train"] and summary.train_images + summary.eval_images == 24
    assert set(split["validation"]["patient_id"]) <= set(loaded["train"]["patient_id"])


@pytest.mark.parametrize("n_splits, fold, message", [
    (1, 0, "at least 2"), (3, 3, r"0\.\.2"), (3, -1, r"0\.\.2"), (None, 1, "needs --cv_folds"),
    (3, None, "give --fold"),
])
def test_bad_fold_arguments_are_refused(n_splits, fold, message):
    with pytest.raises(ValueError, match=message):
        check_fold_arguments(n_splits, fold)


def test_training_arguments_check_the_fold_flags():
    base = ["--stage", "baseline", "--dataset", "d", "--output_dir", "o"]
    data_args = parse_training_arguments([*base, "--cv_folds", "5", "--fold", "4"])[1]
    assert (data_args.cv_folds, data_args.fold, data_args.cv_pool) == (5, 4, "train+validation")
    for bad, message in [(["--fold", "0"], "needs --cv_folds"), (["--cv_folds", "3", "--fold", "3"], r"0\.\.2"),
                         (["--cv_folds", "1", "--fold", "0"], "at least 2"),
                         (["--cv_folds", "3", "--fold", "0", "--eval_split", "test"], "--eval_split test")]:
        with pytest.raises(ValueError, match=message):
            parse_training_arguments([*base, *bad])


def test_too_few_patients_for_the_folds_is_a_clear_error():
    with pytest.raises(ValueError, match="3 patient"):
        patient_folds(table(3), 4)


def test_a_teacher_from_another_fold_is_refused(tmp_path, caplog):
    data = datasets.DatasetDict({"train": table()})
    _, fold1 = cross_validation_split(data, 3, 1)
    _, fold2 = cross_validation_split(data, 3, 2)
    teacher = tmp_path / "teacher"
    teacher.mkdir()
    record = teacher / "training_args.json"
    record.write_text(json.dumps({"cross_validation": fold1.to_dict()}))
    check_teacher_fold(str(teacher), fold1)  # trained on this fold's training part: fine
    with pytest.raises(LeakageError, match="trained fold 1 of 3"):
        check_teacher_fold(str(teacher), fold2)
    record.write_text(json.dumps({"data": {}}))  # trained on the whole train split: it saw every fold
    with pytest.raises(LeakageError, match="without cross-validation"):
        check_teacher_fold(str(teacher), fold1)
    with caplog.at_level(logging.WARNING):
        check_teacher_fold(str(teacher), fold1, allow_leakage=True)
        check_teacher_fold("some/hub-teacher", fold1)
    assert "going on: --allow_leakage" in caplog.text and "cannot tell which data" in caplog.text

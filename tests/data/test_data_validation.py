"""Patient-level splits/subsets, the data report, and leakage detection on small generated datasets."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import datasets
import numpy as np
import pytest
from PIL import Image

from hf_deitcxr.data import LeakageError, ensure_no_leakage, patient_level_split, patient_subset, validate_dataset

NAMES = ["covid", "normal", "pneumonia"]
FEATURES = datasets.Features({
    "image": datasets.Image(),
    "label": datasets.ClassLabel(names=NAMES),
    "patient_id": datasets.Value("string"),
    "source": datasets.Value("string"),
})  # fmt: skip


def make_split(root: Path, rows: list[tuple[int, str, int]], name: str) -> datasets.Dataset:
    """rows of (label, patient_id, pixel value); pixel value decides image identity."""
    paths = []
    for i, (_, _, value) in enumerate(rows):
        path = root / name / f"{i}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.full((6, 6), value, dtype=np.uint8)).save(path)
        paths.append(str(path))
    return datasets.Dataset.from_dict(
        {
            "image": paths,
            "label": [label for label, _, _ in rows],
            "patient_id": [pid for _, pid, _ in rows],
            "source": ["a" if i % 3 else "b" for i in range(len(rows))],
        },
        features=FEATURES,
    )


def patient_table(n_patients: int = 60, seed: int = 0) -> datasets.Dataset:
    """Metadata only (no images): 1-4 images per patient, unbalanced labels."""
    rng = np.random.default_rng(seed)
    labels, pids = [], []
    for p in range(n_patients):
        label = int(rng.choice(3, p=[0.2, 0.3, 0.5]))
        for _ in range(int(rng.integers(1, 5))):
            labels.append(label)
            pids.append(f"P{p:03d}")
    features = datasets.Features({"label": FEATURES["label"], "patient_id": datasets.Value("string")})
    return datasets.Dataset.from_dict({"label": labels, "patient_id": pids}, features=features)


# --- splits -------------------------------------------------------------------------------------------------


def test_patient_level_split_has_no_overlap_and_is_deterministic():
    data = patient_table()
    split = patient_level_split(data, {"validation": 0.2, "test": 0.1}, seed=3)
    assert list(split) == ["train", "validation", "test"]
    assert sum(len(s) for s in split.values()) == len(data)
    ids = {name: set(s["patient_id"]) for name, s in split.items()}
    assert not (ids["train"] & ids["validation"]) and not (ids["train"] & ids["test"])
    assert not (ids["validation"] & ids["test"])
    assert abs(len(split["validation"]) / len(data) - 0.2) < 0.06
    assert set(split["validation"]["label"]) == {0, 1, 2}  # stratified: every class held out

    again = patient_level_split(data, {"validation": 0.2, "test": 0.1}, seed=3)
    assert again["validation"]["patient_id"] == split["validation"]["patient_id"]
    other_seed = patient_level_split(data, {"validation": 0.2, "test": 0.1}, seed=4)
    assert set(other_seed["validation"]["patient_id"]) != ids["validation"]
    shuffled = patient_level_split(data.shuffle(seed=1), {"validation": 0.2, "test": 0.1}, seed=3)
    assert set(shuffled["validation"]["patient_id"]) == ids["validation"]  # row order does not matter


def test_patient_level_split_rejects_bad_fractions():
    with pytest.raises(ValueError, match="leave something"):
        patient_level_split(patient_table(), {"validation": 0.6, "test": 0.5})
    with pytest.raises(ValueError, match="patient"):
        patient_level_split(patient_table(1), {"validation": 0.2})


def test_patient_subset_takes_whole_patients_stratified_and_nested():
    data = patient_table(200)
    small, large = patient_subset(data, 60, seed=0), patient_subset(data, 150, seed=0)
    assert abs(len(small) - 60) <= 6 and abs(len(large) - 150) <= 8
    counts = Counter(data["patient_id"])
    for subset in (small, large):
        assert Counter(subset["patient_id"]) == {pid: counts[pid] for pid in set(subset["patient_id"])}
        assert set(subset["label"]) == {0, 1, 2}
    assert set(small["patient_id"]) <= set(large["patient_id"])
    assert set(patient_subset(data, 60, seed=1)["patient_id"]) != set(small["patient_id"])
    assert patient_subset(data, 10_000) is data


# --- report and leakage -------------------------------------------------------------------------------------


def clean_dict(root: Path) -> datasets.DatasetDict:
    train = make_split(root, [(0, "A", 10), (1, "B", 20), (2, "C", 30), (2, "C", 40)], "train")
    validation = make_split(root, [(1, "D", 50), (2, "E", 60)], "validation")
    return datasets.DatasetDict({"train": train, "validation": validation})


def test_clean_data_report(tmp_path):
    report = validate_dataset(clean_dict(tmp_path))
    assert report.ok and not report.has_leakage
    assert report.class_counts == {
        "train": {"covid": 1, "normal": 1, "pneumonia": 2},
        "validation": {"covid": 0, "normal": 1, "pneumonia": 1},
    }
    assert report.source_counts["train"] == {"a": 2, "b": 2}
    assert report.num_images == {"train": 4, "validation": 2}
    text = report.format()
    assert "pneumonia" in text and "OK" in text.splitlines()[-1]
    json.dumps(report.to_dict())
    assert ensure_no_leakage(report) is report


def test_patient_in_two_splits_is_leakage(tmp_path):
    data = clean_dict(tmp_path)
    data["validation"] = make_split(tmp_path, [(1, "B", 50), (2, "E", 60)], "validation")
    report = validate_dataset(data)
    assert report.leaked_patients == {"B": ["train", "validation"]}
    assert not report.ok
    with pytest.raises(LeakageError, match="B \\(train, validation\\)"):
        ensure_no_leakage(report)
    with pytest.warns(UserWarning, match="leakage"):
        assert ensure_no_leakage(report, allow_leakage=True) is report


def test_identical_image_in_two_splits_is_leakage(tmp_path):
    data = clean_dict(tmp_path)
    # same pixels as train[1] under another patient id, re-encoded as BMP: only the pixel hash sees it
    copy = tmp_path / "copy.bmp"
    Image.open(data["train"][1]["image"].filename).save(copy)
    extra = datasets.Dataset.from_dict(
        {"image": [str(copy)], "label": [1], "patient_id": ["Z"], "source": ["a"]}, features=FEATURES
    )
    data["validation"] = datasets.concatenate_datasets([data["validation"], extra])
    report = validate_dataset(data)
    assert not report.leaked_patients
    assert [d.occurrences for d in report.cross_split_duplicates] == [[("train", 1), ("validation", 2)]]
    with pytest.raises(LeakageError, match="identical image"):
        ensure_no_leakage(report)
    assert not validate_dataset(data, check_files=False).cross_split_duplicates  # bytes differ


def test_within_split_duplicate_is_reported_but_not_leakage(tmp_path):
    train = make_split(tmp_path, [(0, "A", 10), (0, "B", 10)], "train")
    report = validate_dataset(datasets.DatasetDict({"train": train}), check_files=False)
    assert len(report.within_split_duplicates) == 1 and not report.has_leakage and report.ok


def test_unreadable_files_and_missing_labels(tmp_path):
    data = clean_dict(tmp_path)
    Path(data["train"][2]["image"].filename).write_bytes(b"")  # zero-byte file
    (tmp_path / "train" / "3.png").write_text("not a png")
    validation = data["validation"].cast_column("label", datasets.Value("int64"))
    validation = validation.map(lambda row, i: {"label": -1 if i == 0 else row["label"]}, with_indices=True)
    data["validation"] = validation.cast_column("label", FEATURES["label"])
    report = validate_dataset(data)
    assert [(u.split, u.index) for u in report.unreadable] == [("train", 2), ("train", 3)]
    assert "empty" in report.unreadable[0].reason
    assert report.missing_labels == {"validation": [0]}
    assert not report.ok and not report.has_leakage
    assert "unreadable images: 2" in report.format()

"""load_radiograph_dataset on generated imagefolders, CSV manifests, DICOM folders and a faked Hub dataset."""

from __future__ import annotations

import csv
import warnings
from pathlib import Path

import datasets
import numpy as np
import pytest
from PIL import Image

from hf_deitcxr.data import MissingFilesError, load_radiograph_dataset
from hf_deitcxr.data import sources as sources_module
from tests.helpers.dicom_files import write_dicom

COLUMNS = ["image", "label", "patient_id", "source"]


def save_image(path: Path, value: int, size: int = 8) -> Path:
    """A tiny greyscale image; `value` makes each one's pixels distinct."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((size, size), value % 256, dtype=np.uint8)).save(path)
    return path


def write_csv(path: Path, rows: list[dict]) -> Path:
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


def make_imagefolder(root: Path, with_metadata: bool = True) -> Path:
    """train/ and validation/ with <label>/ subfolders and per-split metadata.csv (imagefolder convention)."""
    value = 0
    for split, patients in (("train", range(6)), ("validation", range(6, 8))):
        rows = []
        for patient in patients:
            label = ["normal", "pneumonia"][patient % 2]
            for k in range(2):
                value += 7
                file_name = f"{label}/p{patient}_{k}.png"
                save_image(root / split / file_name, value)
                rows.append({"file_name": file_name, "label": label, "patient_id": f"P{patient}", "source": "siteA"})
        if with_metadata:
            write_csv(root / split / "metadata.csv", rows)
    return root


def test_imagefolder_with_metadata(tmp_path):
    data = load_radiograph_dataset(make_imagefolder(tmp_path / "cxr"))
    assert list(data) == ["train", "validation"]
    assert len(data["train"]) == 12 and len(data["validation"]) == 4
    for split in data.values():
        assert split.column_names == COLUMNS
        assert isinstance(split.features["image"], datasets.Image)
        assert split.features["label"].names == ["normal", "pneumonia"]
    row = data["train"][0]
    assert isinstance(row["image"], Image.Image) and row["image"].size == (8, 8)
    assert data["train"].features["label"].int2str(row["label"]) == "normal"
    assert row["patient_id"] == "P0" and row["source"] == "siteA"


def test_imagefolder_without_metadata_labels_from_folders_and_carves_validation(tmp_path):
    for i in range(20):
        save_image(tmp_path / "flat" / ["covid", "normal"][i % 2] / f"{i}.png", i * 5)
    with pytest.warns(UserWarning, match="no patient_id"):
        data = load_radiograph_dataset(tmp_path / "flat", validation_fraction=0.2, test_fraction=0.1)
    assert list(data) == ["train", "validation", "test"]
    assert sum(len(s) for s in data.values()) == 20
    assert data["train"].features["label"].names == ["covid", "normal"]
    assert set(data["train"]["source"]) == {"unknown"}
    ids = [set(split["patient_id"]) for split in data.values()]
    assert all(not (a & b) for i, a in enumerate(ids) for b in ids[i + 1 :])
    assert len(set().union(*ids)) == 20  # each image its own patient


def test_split_folder_aliases(tmp_path):
    save_image(tmp_path / "d" / "training" / "a" / "1.png", 1)
    save_image(tmp_path / "d" / "val" / "a" / "2.png", 2)
    save_image(tmp_path / "d" / "holdout" / "a" / "3.png", 3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        data = load_radiograph_dataset(tmp_path / "d", split_names={"holdout": "test"})
    assert {name: len(split) for name, split in data.items()} == {"train": 1, "validation": 1, "test": 1}


def test_class_names_order_is_respected(tmp_path):
    root = make_imagefolder(tmp_path / "cxr")
    with pytest.warns(UserWarning, match="covid"):  # a class without images is allowed but flagged
        data = load_radiograph_dataset(root, class_names=["pneumonia", "normal", "covid"])
    label = data["train"].features["label"]
    assert label.names == ["pneumonia", "normal", "covid"]
    first = data["train"][0]
    assert label.int2str(first["label"]) == "normal" and first["label"] == 1


def test_unknown_class_raises(tmp_path):
    with pytest.raises(ValueError, match=r"\['pneumonia'\] that are not in class_names"):
        load_radiograph_dataset(make_imagefolder(tmp_path / "cxr"), class_names=["normal"])


def test_manifest_with_relative_and_absolute_paths(tmp_path):
    rows = []
    for i in range(8):
        path = save_image(tmp_path / "imgs" / f"{i}.png", 10 * i)
        rows.append({
            "path": f"imgs/{i}.png" if i % 2 else str(path),
            "label": str([2, 10][i % 2]),
            "patient_id": f"P{i // 2}",
            "split": "train" if i < 6 else "val",
        })  # fmt: skip
    data = load_radiograph_dataset(write_csv(tmp_path / "manifest.csv", rows))
    assert {name: len(split) for name, split in data.items()} == {"train": 6, "validation": 2}
    assert data["train"].features["label"].names == ["2", "10"]  # integer labels sort numerically
    assert data["validation"]["patient_id"] == ["P3", "P3"]
    assert set(data["train"]["source"]) == {"unknown"}
    assert np.asarray(data["validation"][1]["image"]).max() == 70


def test_manifest_reports_every_missing_file(tmp_path):
    save_image(tmp_path / "ok.png", 1)
    rows = [{"path": name, "label": "a"} for name in ("ok.png", "gone1.png", "sub/gone2.png")]
    with pytest.raises(MissingFilesError) as info:
        load_radiograph_dataset(write_csv(tmp_path / "m.csv", rows))
    assert sorted(Path(p).name for p in info.value.paths) == ["gone1.png", "gone2.png"]
    assert "gone1.png" in str(info.value) and "gone2.png" in str(info.value)


def test_manifest_without_label_column_raises(tmp_path):
    save_image(tmp_path / "a.png", 1)
    with pytest.raises(ValueError, match="no label column 'label'"):
        load_radiograph_dataset(write_csv(tmp_path / "m.csv", [{"path": "a.png", "finding": "x"}]))
    with pytest.warns(UserWarning, match="no patient_id"):
        data = load_radiograph_dataset(
            write_csv(tmp_path / "m2.csv", [{"path": "a.png", "finding": "x"}]),
            label_column="finding",
            validation_fraction=0,
        )
    assert data["train"].features["label"].names == ["x"]


def test_empty_and_unsupported_sources(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no images found"):
        load_radiograph_dataset(tmp_path / "empty")
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(ValueError, match="unsupported source"):
        load_radiograph_dataset(tmp_path / "notes.txt")
    with pytest.raises(FileNotFoundError):
        load_radiograph_dataset(str(tmp_path / "missing" / "data.csv"))


def test_dicom_folder(tmp_path):
    root = tmp_path / "dicoms"
    for i, label in enumerate(["normal", "normal", "pneumonia", "pneumonia"]):
        stored = np.full((6, 6), 20, dtype=np.uint8)
        stored[0, 0] = 240
        write_dicom(root / label / f"im{i}.dcm", stored, photometric="MONOCHROME1", PatientID=f"PID{i // 2}")
    cache = tmp_path / "cache"
    data = load_radiograph_dataset(root, cache_dir=cache, validation_fraction=0)
    train = data["train"]
    assert train.features["label"].names == ["normal", "pneumonia"]
    assert train["patient_id"] == ["PID0", "PID0", "PID1", "PID1"]  # from the DICOM header
    image = train[0]["image"]
    assert image.mode == "L" and np.asarray(image)[0, 0] == 15  # MONOCHROME1 inverted at conversion
    assert len(list(cache.glob("*.png"))) == 4
    again = load_radiograph_dataset(root, cache_dir=cache, validation_fraction=0)  # served from the cache
    assert again["train"]["image"][0].size == (6, 6)


def test_manifest_of_dicoms_with_bad_file(tmp_path):
    write_dicom(tmp_path / "good.dcm", np.zeros((4, 4), np.uint8))
    write_dicom(tmp_path / "nopixels.dcm", np.zeros((4, 4), np.uint8), with_pixel_data=False)
    rows = [{"path": "good.dcm", "label": "a"}, {"path": "nopixels.dcm", "label": "b"}]
    with pytest.raises(ValueError, match="nopixels.dcm.*no pixel data"):
        load_radiograph_dataset(write_csv(tmp_path / "m.csv", rows), cache_dir=tmp_path / "cache")


def test_hub_path_is_standardised(monkeypatch, tmp_path):
    """The Hub branch, with `datasets.load_dataset` replaced by an in-memory dataset (no network in tests)."""
    paths = [str(save_image(tmp_path / f"{i}.png", i)) for i in range(6)]
    features = datasets.Features({"img": datasets.Image(), "finding": datasets.ClassLabel(names=["z", "a"])})
    fake = datasets.DatasetDict({
        "train": datasets.Dataset.from_dict({"img": paths[:4], "finding": [0, 1, 0, 1]}, features=features),
        "val": datasets.Dataset.from_dict({"img": paths[4:], "finding": [1, 0]}, features=features),
    })  # fmt: skip
    calls = []
    monkeypatch.setattr(sources_module.datasets, "load_dataset", lambda *a, **k: calls.append((a, k)) or fake)
    with pytest.warns(UserWarning, match="no patient_id"):
        data = load_radiograph_dataset("someone/cxr", image_column="img", label_column="finding", revision="v1")
    assert calls == [(("someone/cxr",), {"revision": "v1"})]
    assert list(data) == ["train", "validation"]
    assert data["train"].column_names == COLUMNS
    assert data["train"].features["label"].names == ["z", "a"]  # the dataset's own order is kept
    assert data["validation"]["label"] == [1, 0] and data["train"]["source"] == ["unknown"] * 4
    with pytest.warns(UserWarning, match="no patient_id"):
        reordered = load_radiograph_dataset(
            "someone/cxr", image_column="img", label_column="finding", class_names=["a", "z"]
        )
    assert reordered["validation"]["label"] == [0, 1]
    with pytest.raises(ValueError, match="no column"):
        load_radiograph_dataset("someone/cxr", label_column="nope", image_column="img")


def test_empty_labels_are_listed(tmp_path):
    for name in ("a.png", "b.png", "c.png"):
        save_image(tmp_path / name, len(name))
    rows = [{"path": "a.png", "label": "x"}, {"path": "b.png", "label": ""}, {"path": "c.png", "label": " "}]
    with pytest.raises(ValueError, match=r"2 row\(s\) with an empty 'label' \(lines 3, 4\)"):
        load_radiograph_dataset(write_csv(tmp_path / "m.csv", rows))


def test_imagefolder_metadata_listing_missing_files(tmp_path):
    root = make_imagefolder(tmp_path / "cxr")
    (root / "train" / "normal" / "p0_0.png").unlink()
    (root / "validation" / "pneumonia" / "p7_1.png").unlink()
    with pytest.raises(MissingFilesError) as info:
        load_radiograph_dataset(root)
    assert sorted(Path(p).name for p in info.value.paths) == ["p0_0.png", "p7_1.png"]


def test_identical_anonymised_patient_ids_are_ignored(tmp_path):
    for i in range(3):
        write_dicom(tmp_path / "d" / "a" / f"{i}.dcm", np.full((4, 4), i, np.uint8), PatientID="ANON")
    with pytest.warns(UserWarning) as caught:
        data = load_radiograph_dataset(tmp_path / "d", cache_dir=tmp_path / "c", validation_fraction=0)
    messages = " ".join(str(w.message) for w in caught)
    assert "'ANON'" in messages and "no patient_id" in messages
    assert len(set(data["train"]["patient_id"])) == 3


def test_unknown_name_that_is_not_on_the_hub(monkeypatch):
    def offline(*args, **kwargs):
        raise ConnectionError("offline")

    monkeypatch.setattr(sources_module.datasets, "load_dataset", offline)
    with pytest.raises(ValueError, match="not an existing local path.*offline"):
        load_radiograph_dataset("cxr3-typo")


def test_imagefolder_with_metadata_through_a_relative_path(tmp_path, monkeypatch):
    """Regression: `../shared/data/cxr3`-style relative roots found no images (metadata paths were resolved)."""
    root = make_imagefolder(tmp_path / "data")
    (tmp_path / "work").mkdir()
    monkeypatch.chdir(tmp_path / "work")
    relative = load_radiograph_dataset("../data")
    absolute = load_radiograph_dataset(root)
    assert {split: len(ds) for split, ds in relative.items()} == {split: len(ds) for split, ds in absolute.items()}
    assert len(relative["train"]) > 0

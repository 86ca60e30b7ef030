"""Mammography data layer: manifests, DICOM tags, validation errors, orientation, missing views, splits."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from hf_deitcxr.data import LeakageError, MissingFilesError
from hf_deitcxr.data.augmentation import RadiographAugmentation
from hf_deitcxr.data.collate import RadiographCollator
from hf_deitcxr.mammo.arguments import mammography_augmentation
from hf_deitcxr.mammo.dataset import MammoExamDataset, MultiViewCollator, UnreadableMammogramError, orient
from hf_deitcxr.mammo.evaluation import aggregate_views
from hf_deitcxr.mammo.manifest import VIEW_SLOTS, ManifestError, load_mammo_manifest, read_manifest
from hf_deitcxr.mammo.synthetic import SyntheticMammoConfig, write_synthetic_mammo
from tests.helpers.dicom_files import write_dicom

COLUMNS = ["exam_id", "patient_id", "laterality", "view", "path", "label"]


def half_bright(size: int = 16, bright_left: bool = True) -> np.ndarray:
    """An image bright on one half: where the chest wall (the breast) is."""
    pixels = np.full((size, size), 20, dtype=np.uint8)
    if bright_left:
        pixels[:, : size // 2] = 200
    else:
        pixels[:, size // 2 :] = 200
    return pixels


def write_manifest(root: Path, rows: list[dict], columns=COLUMNS) -> Path:
    path = root / "manifest.csv"
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    return path


def exam_rows(root: Path, exam_id: str, patient_id: str, views=VIEW_SLOTS, label="benign", **extra) -> list[dict]:
    """PNG files in stored orientation (left breasts bright left, right breasts bright right) + manifest rows."""
    rows = []
    for slot in views:
        side, view = slot.split("-")
        name = f"{exam_id}_{side}{view}.png"
        Image.fromarray(half_bright(bright_left=side == "L")).save(root / name)
        rows.append({"exam_id": exam_id, "patient_id": patient_id, "laterality": side, "view": view,
                     "path": name, "label": label, **extra})
    return rows


def test_manifest_groups_views_and_takes_the_most_severe_label(tmp_path):
    rows = exam_rows(tmp_path, "e1", "p1") + exam_rows(tmp_path, "e2", "p2", views=("L-CC", "R-MLO"))
    rows[5]["label"] = "malignant"  # e2's R-MLO
    manifest = read_manifest(write_manifest(tmp_path, rows))
    assert manifest.class_names == ["benign", "malignant"]
    assert [len(exam.views) for exam in manifest.exams] == [4, 2]
    assert manifest.exam_labels.tolist() == [0, 1]
    assert manifest.num_images == 6
    assert Path(manifest.exams[1].views["R-MLO"].path).is_absolute()  # resolved against the manifest folder


def test_class_order_sets_severity(tmp_path):
    rows = exam_rows(tmp_path, "e1", "p1", views=("L-CC", "L-MLO"))
    rows[0]["label"], rows[1]["label"] = "normal", "benign"
    manifest = read_manifest(write_manifest(tmp_path, rows), class_names=["normal", "benign", "malignant"])
    assert manifest.exam_labels.tolist() == [1]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda rows: rows[0].update(view="ML"), "unknown view 'ML'"),
        (lambda rows: rows[0].update(laterality="B"), "unknown laterality 'B'"),
        (lambda rows: rows[1].update(path=rows[0]["path"]), r"e1_LCC.png is listed twice \(also manifest.csv line 2\)"),
        (lambda rows: rows[2].update(patient_id="p9"), "has patient_id 'p9'"),
        (lambda rows: rows[3].update(label=""), "empty label"),
        (lambda rows: rows[0].update(split="holdout"), "unknown split 'holdout'"),
    ],
)
def test_bad_rows_are_reported_with_their_line(tmp_path, change, message):
    rows = exam_rows(tmp_path, "e1", "p1")
    change(rows)
    with pytest.raises(ManifestError, match=message) as error:
        read_manifest(write_manifest(tmp_path, rows, COLUMNS + ["split"]))
    assert "manifest.csv line" in str(error.value)


def test_missing_columns_unknown_labels_and_missing_files(tmp_path):
    rows = exam_rows(tmp_path, "e1", "p1")
    with pytest.raises(ManifestError, match=r"missing column\(s\) \['laterality'\]"):
        read_manifest(write_manifest(tmp_path, rows, [c for c in COLUMNS if c != "laterality"]))
    rows[0]["label"] = "suspicious"
    with pytest.raises(ManifestError, match=r"unknown label\(s\) \['suspicious'\]"):
        read_manifest(write_manifest(tmp_path, rows), class_names=["benign", "malignant"])
    rows[0]["label"], rows[0]["path"] = "benign", "nowhere.png"
    with pytest.raises(MissingFilesError, match="nowhere.png"):
        read_manifest(write_manifest(tmp_path, rows))


def test_unreadable_image_names_exam_view_and_file(tmp_path):
    rows = exam_rows(tmp_path, "e1", "p1")
    (tmp_path / rows[2]["path"]).write_bytes(b"not an image at all")
    manifest = read_manifest(write_manifest(tmp_path, rows))
    with pytest.raises(UnreadableMammogramError, match=r"exam 'e1' view R-CC: cannot read .*e1_RCC.png"):
        MammoExamDataset.from_manifest(manifest, size=16)


def test_right_views_are_mirrored_to_the_common_orientation_and_missing_views_masked(tmp_path):
    rows = exam_rows(tmp_path, "e1", "p1", views=("L-CC", "R-CC", "R-MLO"))
    data = MammoExamDataset.from_manifest(read_manifest(write_manifest(tmp_path, rows)), size=8)
    assert data.view_mask.tolist() == [[True, False, True, True]]
    present = data.pixels[0, data.view_mask[0], 0].float()
    assert bool((present[:, :, :4].mean(dim=(1, 2)) > 150).all())  # chest wall (bright) on the left everywhere
    assert bool((present[:, :, 4:].mean(dim=(1, 2)) < 60).all())
    assert int(data.pixels[0, 1].abs().sum()) == 0  # the missing L-MLO is not invented
    assert data.view_labels[0].tolist() == [0, -100, 0, 0]
    views = data.single_view()
    assert len(views) == 3 and views.extras["view"] == ["L-CC", "R-CC", "R-MLO"]

    stored_right = Image.fromarray(half_bright(bright_left=False))
    assert np.asarray(orient(stored_right, "R", "none"))[:, 0].mean() < 60
    assert np.asarray(orient(stored_right, "L", "auto"))[:, 0].mean() > 150  # content decides in "auto"


def test_patient_level_split_and_split_column_leakage(tmp_path):
    root = tmp_path / "synthetic"
    manifest = read_manifest(write_synthetic_mammo(root, 40, seed=1, config=SyntheticMammoConfig(size=16)))
    splits = manifest.split(validation_fraction=0.25, seed=0)
    patients = {name: {exam.patient_id for exam in part.exams} for name, part in splits.items()}
    assert set(splits) == {"train", "validation"}
    assert not patients["train"] & patients["validation"]
    assert sum(len(part) for part in splits.values()) == 40

    rows = exam_rows(tmp_path, "e1", "p1", split="train") + exam_rows(tmp_path, "e2", "p1", split="validation")
    with_split = read_manifest(write_manifest(tmp_path, rows, COLUMNS + ["split"]))
    with pytest.raises(LeakageError, match="p1"):
        with_split.split()
    assert {name: len(part) for name, part in with_split.split(allow_leakage=True).items()} == {
        "train": 1, "validation": 1}


def test_dicom_folder_views_from_tags(tmp_path):
    folder = tmp_path / "dicom"
    for index, (side, view) in enumerate([("L", "CC"), ("L", "MLO"), ("R", "CC")]):
        write_dicom(folder / f"img{index}.dcm", half_bright(bright_left=side == "L"), ImageLaterality=side,
                    ViewPosition=view, StudyInstanceUID="1.2.3", PatientID="p7")
    labels = tmp_path / "labels.csv"
    labels.write_text("exam_id,laterality,label\n1.2.3,L,malignant\n1.2.3,R,benign\n")
    manifest = load_mammo_manifest(folder, dicom_labels=labels)
    (exam,) = manifest.exams
    assert exam.patient_id == "p7" and sorted(exam.views) == ["L-CC", "L-MLO", "R-CC"]
    assert exam.views["L-CC"].label == "malignant" and exam.views["R-CC"].label == "benign"
    data = MammoExamDataset.from_manifest(manifest, size=8)
    assert float(data.pixels[0, 2, 0, :, :4].float().mean()) > 150  # R-CC mirrored too

    write_dicom(folder / "img9.dcm", half_bright(), ImageLaterality="L", ViewPosition="XCCL",
                StudyInstanceUID="1.2.3", PatientID="p7")
    with pytest.raises(ManifestError, match="unknown view 'XCCL'"):
        load_mammo_manifest(folder, dicom_labels=labels)
    with pytest.raises(ManifestError, match="labels CSV"):
        load_mammo_manifest(folder)


def test_multiview_collator_transforms_present_views_only():
    pixels = torch.randint(0, 255, (2, 4, 1, 16, 16), dtype=torch.uint8)
    mask = torch.tensor([[True, False, True, True], [False, False, False, True]])
    pixels[~mask] = 0
    features = [{"pixels": pixels[i], "view_mask": mask[i], "labels": i} for i in range(2)]
    plain = MultiViewCollator(RadiographCollator(16, [0.5], [0.25], num_channels=3))
    batch = plain(features)
    assert batch["pixel_values"].shape == (2, 4, 3, 16, 16)
    assert batch["labels"].tolist() == [0, 1] and torch.equal(batch["view_mask"], mask)
    expected = (pixels[0, 0].float() / 255 - 0.5) / 0.25
    assert torch.allclose(batch["pixel_values"][0, 0], expected.expand(3, -1, -1))
    assert int(batch["pixel_values"][~mask].abs().sum()) == 0

    torch.manual_seed(0)
    augmented = MultiViewCollator(RadiographCollator(16, [0.5], [0.25], 3,
                                                     RadiographAugmentation(mammography_augmentation())))(features)
    assert not torch.allclose(augmented["pixel_values"][mask], batch["pixel_values"][mask])
    assert int(augmented["pixel_values"][~mask].abs().sum()) == 0


def test_aggregate_views_max_and_mean():
    probabilities = np.array([[0.9, 0.1], [0.3, 0.7], [0.6, 0.4], [0.8, 0.2]])
    exam_index = [0, 0, 1, 1]
    np.testing.assert_allclose(aggregate_views(probabilities, exam_index, 2, "max"), [[0.3, 0.7], [0.6, 0.4]])
    np.testing.assert_allclose(aggregate_views(probabilities, exam_index, 2, "mean"), [[0.6, 0.4], [0.7, 0.3]])
    with pytest.raises(ValueError, match="no view prediction"):
        aggregate_views(probabilities, exam_index, 3)

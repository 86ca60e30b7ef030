"""Reading a CBIS-DDSM mass-crop folder as it is (shared/data/cbis_mass layout): the manifest's columns, several
crops per (breast, view), the exam units, lesion labels, the patient-level split and `validate-data --task mammo`.

Everything runs on a generated folder of the same shape (tests/helpers/cbis_mass.py); the last test checks the
real folder's manifest (its CSV only) when the shared data is present."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from transformers import ViTConfig, ViTForImageClassification

from hf_deitcxr.cli import main
from hf_deitcxr.mammo.manifest import ManifestError, find_mammo_manifest, load_mammo_manifest
from hf_deitcxr.mammo.validation import manifest_counts, validate_mammo_data
from tests.helpers.cbis_mass import CBIS_COLUMNS, EXPECTED_COUNTS, SIZE, write_cbis_like_folder

REAL_FOLDER = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "cbis_mass"


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    return write_cbis_like_folder(tmp_path_factory.mktemp("cbis_like"))


def by_id(manifest) -> dict:
    return {exam.exam_id: exam for exam in manifest.exams}


def crop_number(view) -> int:
    return int(Path(view.path).stem.split("__m")[1])


def test_breast_unit_pairs_the_crops_of_a_breast_by_severity(folder):
    manifest = load_mammo_manifest(folder, exam_unit="breast")  # the folder: its manifest.csv is read
    exams = by_id(manifest)
    assert list(exams) == ["CBIS_P1_L#1", "CBIS_P1_L#2", "CBIS_P2_L#1", "CBIS_P2_L#2", "CBIS_P3_R", "CBIS_P4_L",
                           "CBIS_P4_R", *(f"CBIS_P{n}_{'L' if n % 2 else 'R'}" for n in range(5, 13))]
    # P1: two CC crops, one MLO: the first CC (tie: manifest order) with the MLO, the second CC alone.
    assert {slot: crop_number(v) for slot, v in exams["CBIS_P1_L#1"].views.items()} == {"L-CC": 0, "L-MLO": 2}
    assert {slot: crop_number(v) for slot, v in exams["CBIS_P1_L#2"].views.items()} == {"L-CC": 1}
    # P2 (mixed labels, benign listed first): the malignant crops pair with each other, the benign ones too.
    assert {slot: v.label for slot, v in exams["CBIS_P2_L#1"].views.items()} == {"L-CC": "malignant",
                                                                                "L-MLO": "malignant"}
    assert {slot: v.label for slot, v in exams["CBIS_P2_L#2"].views.items()} == {"L-CC": "benign", "L-MLO": "benign"}
    assert list(exams["CBIS_P3_R"].views) == ["R-CC"]  # a single-view breast stays single view
    assert {exam.unit_id for exam in manifest.exams} >= {"CBIS_P1_L", "CBIS_P2_L"}
    assert manifest.num_images == 28 and manifest.num_left_out == 0  # every crop used once
    labels = dict(zip(exams, manifest.exam_labels.tolist(), strict=True))
    assert labels["CBIS_P2_L#1"] == 1 and labels["CBIS_P2_L#2"] == 0 and labels["CBIS_P4_R"] == 1


def test_most_severe_keeps_one_crop_per_view(folder):
    manifest = load_mammo_manifest(folder, exam_unit="breast", multi_crop="most_severe")
    exams = by_id(manifest)
    assert len(exams) == 13 and manifest.num_left_out == 3 and manifest.num_images == 25
    assert {slot: crop_number(v) for slot, v in exams["CBIS_P1_L"].views.items()} == {"L-CC": 0, "L-MLO": 2}
    assert {slot: crop_number(v) for slot, v in exams["CBIS_P2_L"].views.items()} == {"L-CC": 4, "L-MLO": 5}
    # the exam label is the breast's: malignant as one of its crops is
    assert manifest.exam_labels[list(exams).index("CBIS_P2_L")] == 1


def test_patient_unit_and_the_default_exam_unit(folder):
    patients = by_id(load_mammo_manifest(folder, exam_unit="patient"))
    assert sorted(patients["P4"].views) == ["L-CC", "L-MLO", "R-CC", "R-MLO"]  # both breasts: a four-view exam
    assert patients["P4"].label_index(["benign", "malignant"]) == 1  # malignant if any crop is
    assert set(patients) >= {"P1#1", "P1#2", "P2#1", "P2#2", "P3"} and len(patients) == 14
    # exam (the exam_id column) is the default; CBIS has one exam per patient, so it groups as the patient does
    exams = load_mammo_manifest(folder)
    assert exams.exam_unit == "exam" and len(exams) == 14 and "CBIS_P4" in by_id(exams)


def test_breast_key_without_a_breast_id_column(tmp_path, folder):
    lines = (folder / "manifest.csv").read_text().splitlines()
    column = CBIS_COLUMNS.index("breast_id")
    stripped = [",".join(cell for i, cell in enumerate(line.split(",")) if i != column) for line in lines]
    (tmp_path / "manifest.csv").write_text("\n".join(stripped) + "\n")
    (tmp_path / "images").symlink_to(folder / "images")
    without = load_mammo_manifest(tmp_path, exam_unit="breast")
    assert list(by_id(without)) == list(by_id(load_mammo_manifest(folder, exam_unit="breast")))  # exam_id + side


def test_rows_of_one_unit_must_agree(tmp_path):
    root = write_cbis_like_folder(tmp_path / "split", with_split={"CBIS_P4_R": "validation"})
    load_mammo_manifest(root, exam_unit="breast")  # per breast the split column is consistent
    with pytest.raises(ManifestError, match="patient 'P4' has split 'validation', earlier 'train'"):
        load_mammo_manifest(root, exam_unit="patient")
    manifest = root / "manifest.csv"
    manifest.write_text(manifest.read_text().replace("CBIS_P4_R,", "CBIS_P4_L,"))
    with pytest.raises(ManifestError, match="breast 'CBIS_P4_L' has laterality R, earlier L"):
        load_mammo_manifest(root, exam_unit="breast")
    with pytest.raises(ValueError, match="exam_unit must be one of"):
        load_mammo_manifest(root, exam_unit="lesion")
    with pytest.raises(ValueError, match="multi_crop must be one of"):
        load_mammo_manifest(root, multi_crop="first")


@pytest.mark.parametrize("exam_unit", ["exam", "breast", "patient"])
@pytest.mark.parametrize("multi_crop", ["pair", "most_severe"])
def test_split_keeps_every_patient_on_one_side(folder, exam_unit, multi_crop):
    manifest = load_mammo_manifest(folder, exam_unit=exam_unit, multi_crop=multi_crop)
    for seed in range(4):
        splits = manifest.split(0.3, seed=seed)
        patients = {name: {exam.patient_id for exam in part.exams} for name, part in splits.items()}
        assert set(splits) == {"train", "validation"} and not patients["train"] & patients["validation"]
        assert sorted(e.exam_id for part in splits.values() for e in part.exams) == sorted(by_id(manifest))
        assert sum(len(part.images) for part in splits.values()) == 28  # each crop goes with its exam's patient
        again = manifest.split(0.3, seed=seed)
        assert [e.exam_id for e in again["validation"].exams] == [e.exam_id for e in splits["validation"].exams]


def test_validate_data_counts_duplicates_and_split(folder):
    report = validate_mammo_data(folder, exam_unit="breast", validation_fraction=0.3)
    counts = dict(report.counts)
    assert {key: counts.pop(key) for key in ("exams", "images_left_out", "mixed_label_exams")} == {
        "exams": 15, "images_left_out": 0, "mixed_label_exams": 0}
    assert counts == EXPECTED_COUNTS
    (duplicate,) = report.duplicates  # P4's R-CC and R-MLO: same pixels, different PNG bytes
    assert [entry.split(" (")[1].split(",")[0] for entry in duplicate] == ["P4 R-CC malignant", "P4 R-MLO malignant"]
    assert report.checks.hash_method.startswith("decoded pixels")
    assert report.ok and not report.has_leakage and not report.checks.leaked_patients
    assert sum(part["exams"] for part in report.splits.values()) == 15
    assert sum(part["patients"] for part in report.splits.values()) == 12  # no patient on both sides
    text = report.format()
    assert "exams per unit: exam 12, breast 13, patient 12" in text
    assert "(breast, view) pairs with several crops: 3" in text and "units with mixed labels: exam 2, breast 1" in text
    assert "exact duplicate images (by decoded pixels (8-bit greyscale)): 1" in text and text.endswith("OK")
    assert manifest_counts(load_mammo_manifest(folder, multi_crop="most_severe"))["images_left_out"] == 3


def test_validate_data_command(folder, tmp_path, capsys):
    assert find_mammo_manifest(folder) == folder / "manifest.csv"
    assert main(["validate-data", "--dataset", str(folder), "--exam_unit", "patient", "--json"]) == 0  # auto: mammo
    printed = json.loads(capsys.readouterr().out)
    assert printed["counts"]["exams"] == 14 and printed["counts"]["mixed_label_exams"] == 1 and printed["ok"]
    # a split column that puts one patient's breasts on both sides: reported, exit status 1
    leaky = write_cbis_like_folder(tmp_path / "leaky", with_split={"CBIS_P4_R": "validation"})
    assert main(["validate-data", "--dataset", str(leaky), "--task", "mammo", "--exam_unit", "breast"]) == 1
    assert "patients in more than one split: 1\n  P4 in train, validation" in capsys.readouterr().out
    with pytest.raises(SystemExit, match="--exam_unit only apply to mammography"):
        main(["validate-data", "--dataset", str(folder), "--task", "cxr", "--exam_unit", "breast"])


@pytest.mark.parametrize(("architecture", "exam_unit"), [("single_view", "breast"), ("multi_view", "patient")])
def test_training_reads_the_folder(folder, tmp_path, architecture, exam_unit):
    torch.manual_seed(0)
    config = ViTConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
                       image_size=SIZE, patch_size=8, num_labels=1000)
    ViTForImageClassification(config).save_pretrained(tmp_path / "vit")
    argv = ["train", "--task", "mammo", "--dataset", str(folder), "--architecture", architecture,
            "--model_name_or_path", str(tmp_path / "vit"), "--exam_unit", exam_unit, "--image_size", str(SIZE),
            "--validation_fraction", "0.3", "--max_steps", "2", "--per_device_train_batch_size", "4",
            "--augment", "false", "--output_dir", str(tmp_path / "run"), "--eval_strategy", "no",
            "--save_strategy", "no", "--use_cpu", "true", "--disable_tqdm", "true", "--report_to", "none"]
    assert main(argv) == 0
    extra = json.loads((tmp_path / "run" / "metrics.json").read_text())["extra"]
    assert extra["exam_unit"] == exam_unit and extra["multi_crop"] == "pair"
    manifest = load_mammo_manifest(folder, exam_unit=exam_unit)
    assert extra["num_eval_exams"] == len(manifest.split(0.3)["validation"])


@pytest.mark.skipif(not (REAL_FOLDER / "manifest.csv").is_file(),
                    reason=f"real data absent: {REAL_FOLDER}/manifest.csv (shared/data is not mounted here)")
def test_real_cbis_mass_manifest_parses_with_its_documented_counts():
    """Only the CSV is read (no image), against the folder README's figures. Its README says 5 breasts carry crops
    with different labels; the `label` column gives 3 (P_00419_L, P_00797_L, P_01103_R; 13 patients)."""
    manifest = load_mammo_manifest(REAL_FOLDER, check_files=False, exam_unit="breast")
    counts = manifest_counts(manifest)
    assert (counts["images"], counts["patients"], counts["breasts"]) == (1319, 691, 722)
    assert counts["units"] == {"exam": 691, "breast": 722, "patient": 691}
    assert counts["labels_per_view"] == {"CC": {"benign": 311, "malignant": 296},
                                         "MLO": {"benign": 371, "malignant": 341}}
    assert counts["breasts_with_both_views"] == 509 and counts["breast_views_with_several_crops"] == 59
    assert counts["mixed_label_units"] == {"exam": 13, "breast": 3, "patient": 13}
    assert (counts["exams"], counts["mixed_label_exams"]) == (780, 0)  # pair: every crop once, no mixed pair
    assert len(load_mammo_manifest(REAL_FOLDER, check_files=False, exam_unit="breast",
                                   multi_crop="most_severe")) == 722
    splits = manifest.split(0.15, seed=0)
    patients = {name: {exam.patient_id for exam in part.exams} for name, part in splits.items()}
    assert not patients["train"] & patients["validation"] and len(patients["validation"]) > 50

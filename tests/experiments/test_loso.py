"""Leave-one-source-out (issue 14): the `exclude_sources` filter, the held-out candidates, the present-class
macro-F1, the paired accuracy difference, and tiny `hf-deitcxr loso` runs end to end on synthetic data with two
sources, teachers only and with distilled students (issue 15)."""

import json
import logging
from pathlib import Path

import datasets
import numpy as np
import pytest
from sklearn.metrics import f1_score

from hf_deitcxr.cli import main
from hf_deitcxr.data import load_radiograph_dataset
from hf_deitcxr.experiments.loso import (
    LosoArguments,
    constant_answer,
    holdout_candidates,
    paired_accuracy_difference,
    present_class_macro_f1,
)
from hf_deitcxr.experiments.recipe import CPU_RECIPE
from hf_deitcxr.training.arguments import parse_training_arguments
from hf_deitcxr.training.run import select_sources
from tests.helpers.synthetic import write_imagefolder


@pytest.fixture
def data(tmp_path):
    return write_imagefolder(tmp_path / "data", {"train": 16, "validation": 8}, sources=("site_a", "site_b"))


def records(split) -> list[tuple[str, int, str]]:
    """(file path, label, source) of each image of a split, without decoding the images."""
    plain = split.cast_column("image", datasets.Image(decode=False))
    return [(image["path"], label, source)
            for image, label, source in zip(plain["image"], plain["label"], plain["source"], strict=True)]


def test_exclude_sources_drops_exactly_those_records(data, caplog):
    train = load_radiograph_dataset(data)["train"]
    with caplog.at_level(logging.INFO, logger="hf_deitcxr.training.run"):
        kept = select_sources(train, exclude=["site_b"], split_name="train")
    expected = [row for row in records(train) if row[2] != "site_b"]
    assert records(kept) == expected
    assert set(kept["source"]) == {"site_a"} and len(kept) == 24 == len(train) - 24
    assert "dropped source(s) ['site_b'], 24 of 48 images" in caplog.text
    only = select_sources(train, keep=["site_b"], split_name="validation")
    assert set(only["source"]) == {"site_b"} and len(only) == 24
    with pytest.raises(ValueError, match=r"unknown source\(s\) \['nih'\].*\['site_a', 'site_b'\]"):
        select_sources(train, exclude=["nih"])
    with pytest.raises(ValueError, match="no train images left"):
        select_sources(train, exclude=["site_a", "site_b"])


def test_exclude_sources_is_a_data_argument():
    _, data_args, _ = parse_training_arguments(["--dataset", "d", "--output_dir", "o", "--stage", "teacher",
                                                "--exclude_sources", "nih, kermany", "--eval_sources", "nih",
                                                "--balancing", "source_balanced"])
    assert data_args.exclude_source_list == ["nih", "kermany"] and data_args.eval_source_list == ["nih"]
    assert data_args.balancing == "source_balanced"


def test_holdout_candidates_are_sources_whose_classes_have_another_source():
    labels = ["covid"] * 3 + ["normal"] * 4 + ["pneumonia"] * 4
    sources = ["armiro"] * 3 + ["kermany", "nih"] * 2 + ["kermany", "kermany", "nih", "nih"]
    assert holdout_candidates(labels, sources) == ["kermany", "nih"]
    assert holdout_candidates(["a", "b"], ["x", "y"]) == []


def test_present_class_macro_f1_matches_sklearn_and_ignores_absent_classes():
    rng = np.random.default_rng(0)
    labels = rng.integers(1, 3, 200)  # classes 1 and 2 present, class 0 absent
    predictions = np.where(rng.random(200) < 0.7, labels, rng.integers(0, 3, 200))  # some predict absent class 0
    patients = np.arange(200) // 2
    estimate, bounds = present_class_macro_f1(predictions, labels, patients, seed=0, num_resamples=500)
    assert estimate == pytest.approx(f1_score(labels, predictions, labels=[1, 2], average="macro"))
    assert estimate != pytest.approx(f1_score(labels, predictions, labels=[0, 1, 2], average="macro"))
    assert bounds[0] < estimate < bounds[1] and bounds[1] - bounds[0] < 0.3
    assert present_class_macro_f1(predictions, labels, patients, seed=0, num_resamples=500) == (estimate, bounds)
    assert present_class_macro_f1(predictions[:8], labels[:8], patients[:8])[1] is None  # 4 patients: no CI


def test_constant_answer_is_what_a_one_class_model_scores():
    labels = np.array([2] * 522 + [1] * 163)  # cxr3's validation kermany: pneumonia, normal
    constant = constant_answer(labels, ["covid", "normal", "pneumonia"])
    one_class = np.full(len(labels), 2)
    assert constant["class"] == "pneumonia" and constant["accuracy"] == pytest.approx(522 / 685)
    assert constant["macro_f1"] == pytest.approx(present_class_macro_f1(one_class, labels, np.arange(685))[0])
    assert constant["macro_f1"] == pytest.approx(f1_score(labels, one_class, labels=[1, 2], average="macro"))


def test_bad_loso_arguments_are_refused():
    with pytest.raises(ValueError, match="max_steps"):
        LosoArguments(max_steps=0)
    with pytest.raises(ValueError, match="balancing"):
        LosoArguments(balancing="by_magic")
    for budget in (0, -32):
        with pytest.raises(ValueError, match=f"student_images_seen must be positive, got {budget}"):
            LosoArguments(students=True, student_images_seen=budget)


def test_paired_accuracy_difference_is_the_accuracy_gap_with_a_paired_interval():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, 300)
    patients = np.arange(300) // 3
    better = np.where(rng.random(300) < 0.8, labels, (labels + 1) % 3)
    worse = np.where(rng.random(300) < 0.6, labels, (labels + 1) % 3)
    estimate, bounds = paired_accuracy_difference(better, worse, labels, patients, seed=0, num_resamples=500)
    assert estimate == pytest.approx((better == labels).mean() - (worse == labels).mean())
    assert bounds[0] < estimate < bounds[1] and bounds[0] > 0  # a 20-point gap on 100 patients is clear
    assert paired_accuracy_difference(worse, better, labels, patients, seed=0, num_resamples=500)[0] == -estimate
    # the same predictions: no gap in any resample (unpaired intervals would not show that)
    assert paired_accuracy_difference(worse, worse, labels, patients, seed=0, num_resamples=500) == (0.0, [0.0, 0.0])
    assert paired_accuracy_difference(better[:8], worse[:8], labels[:8], patients[:8])[1] is None  # 3 patients
    with pytest.raises(ValueError, match="same images"):
        paired_accuracy_difference(better, worse[:10], labels, patients)


def test_loso_runs_end_to_end(data, tmp_path, capsys):
    out = tmp_path / "loso"
    argv = ["loso", "--dataset", str(data), "--output_dir", str(out), "--max_steps", "1", "--batch_size", "8",
            "--image_size", "32", "--num_resamples", "200", "--seed", "0"]
    assert main(argv) == 0
    result = json.loads((out / "loso.json").read_text())
    assert result["candidates"] == ["site_a", "site_b"]
    assert list(result["runs"]) == ["all", "site_a", "site_b"]
    assert result["runs"]["all"]["num_train_images"] == 48
    assert result["runs"]["site_b"]["num_train_images"] == 24 and result["runs"]["site_b"]["excluded"] == ["site_b"]
    assert all(run["global_step"] == 1 for run in result["runs"].values())
    assert [row["heldout_source"] for row in result["rows"]] == ["site_a", "site_b"]
    for row in result["rows"]:
        assert row["num_images"] == 12 and row["classes"] == ["covid", "normal", "pneumonia"]
        for side in ("with", "without"):
            held_out, in_distribution = row[side]["heldout"], row[side]["in_distribution"]
            assert held_out["num_images"] == 12 and 0 <= held_out["accuracy"] <= 1
            assert held_out["accuracy_ci"] is not None and 0 <= held_out["macro_f1"] <= 1
            assert in_distribution["num_images"] == (24 if side == "with" else 12)
            # confusion counts: true rows, predicted columns; their diagonal is the accuracy
            confusion = np.asarray(held_out["confusion"])
            assert confusion.shape == (3, 3) and confusion.sum() == 12
            assert np.trace(confusion) / 12 == pytest.approx(held_out["accuracy"])
            assert confusion.sum(axis=1).tolist() == [4, 4, 4]
        # re-predicting the saved model (fp32) gives what the training run measured on the whole split (under bf16
        # autocast where the CPU has it: a near-tie may flip, so one image of 24 is allowed)
        assert row["with"]["in_distribution"]["accuracy"] == pytest.approx(
            result["runs"]["all"]["full_eval_accuracy"], abs=1 / 24 + 1e-9)
    metrics = json.loads((out / "teacher-without-site_b" / "metrics.json").read_text())
    assert metrics["extra"]["worst_source"]["accuracy"] == min(v["accuracy"] for v in metrics["per_source"].values())
    table = (out / "loso.md").read_text()
    assert "| held-out source |" in table and "| site_b | covid, normal, pneumonia | 12 (" in table
    assert "| held-out source |" in capsys.readouterr().out
    # without --students: the teacher-only output of before (no student folders, keys or table)
    assert not list(out.glob("student-*")) and result["arguments"]["students"] is False
    assert all("student" not in run for run in result["runs"].values())
    assert all(set(row) == {"heldout_source", "classes", "num_images", "num_patients", "constant_answer", "with",
                            "without"} for row in result["rows"])
    assert "always '" in table
    assert table.count("| site_a | teacher, trained ") == 2 and "| site_b | teacher, trained without it | " in table
    assert "student" not in table and table.count("| held-out source |") == 1


def keys(tree):
    """The nested keys of a JSON tree (its structure, without the values)."""
    return {key: keys(value) for key, value in tree.items()} if isinstance(tree, dict) else None


def test_loso_distils_a_student_from_each_runs_teacher(data, tmp_path):
    out = tmp_path / "loso"
    argv = ["loso", "--dataset", str(data), "--output_dir", str(out), "--max_steps", "1", "--batch_size", "8",
            "--image_size", "32", "--num_resamples", "200", "--seed", "0", "--holdout_sources", "site_b",
            "--students", "true", "--student_images_seen", "8"]
    assert main(argv) == 0
    result = json.loads((out / "loso.json").read_text())
    assert sorted(path.name for path in out.glob("*-*")) == [
        "student-all", "student-without-site_b", "teacher-all", "teacher-without-site_b"]
    assert list(result["runs"]) == ["all", "site_b"]
    for name, run in result["runs"].items():
        student = run["student"]
        suffix = "all" if name == "all" else f"without-{name}"
        assert (run["dir"], student["dir"]) == (str(out / f"teacher-{suffix}"), str(out / f"student-{suffix}"))
        # distilled from its own run's teacher, at the student's size, for the student budget
        config = json.loads((Path(student["dir"]) / "config.json").read_text())
        assert config["teacher_name_or_path"] == student["teacher_dir"] == run["dir"]
        assert (run["image_size"], student["image_size"]) == (32, CPU_RECIPE.image_size)
        assert student["global_step"] == 1 and student["wall_s"] > 0 and student["train_runtime_s"] > 0
        # trained on what its teacher was trained on
        assert student["excluded"] == run["excluded"] and student["num_train_images"] == run["num_train_images"]
        data_args = {stage: json.loads((Path(folder) / "training_args.json").read_text())["data"]
                     for stage, folder in (("teacher", run["dir"]), ("student", student["dir"]))}
        assert data_args["student"]["exclude_sources"] == data_args["teacher"]["exclude_sources"]
        assert data_args["student"]["eval_split"] == data_args["teacher"]["eval_split"] == "validation"
    assert result["runs"]["site_b"]["student"]["num_train_images"] == 24
    assert result["runs"]["all"]["student"]["num_train_images"] == 48
    metrics = json.loads((out / "student-without-site_b" / "metrics.json").read_text())
    assert metrics["extra"]["num_train_images"] == 24 and metrics["extra"]["stage"] == "distill"
    # the recipe's processed variants are the student's own (the teachers get none by default)
    copies = 1 + CPU_RECIPE.processing_variants
    assert metrics["extra"]["processing_variants"] == CPU_RECIPE.processing_variants
    assert metrics["extra"]["num_train_samples"] == 24 * copies
    assert "num_train_samples" not in json.loads((out / "teacher-without-site_b" / "metrics.json").read_text())["extra"]
    (row,) = result["rows"]
    assert keys(row["student"]) == keys({"with": row["with"], "without": row["without"]})
    for side in ("with", "without"):
        assert row["student"][side]["heldout"]["num_images"] == row[side]["heldout"]["num_images"] == 12
        gap = row["student_minus_teacher"][side]
        assert gap["accuracy"] == pytest.approx(
            row["student"][side]["heldout"]["accuracy"] - row[side]["heldout"]["accuracy"])
        assert gap["accuracy_ci"] is None or gap["accuracy_ci"][0] <= gap["accuracy"] <= gap["accuracy_ci"][1]
    # re-predicting the saved student gives what its training run measured (bf16 near-ties aside)
    assert row["student"]["with"]["in_distribution"]["accuracy"] == pytest.approx(
        result["runs"]["all"]["student"]["full_eval_accuracy"], abs=1 / 24 + 1e-9)
    table = (out / "loso.md").read_text()
    assert table.count("| held-out source |") == 2 and "Distilled DeiT student" in table
    assert f"processed variants 0 (the students': {CPU_RECIPE.processing_variants})," in table
    assert "- site_b held out: trained without it " in table and "| site_b (student) | site_b | 24 | 1 |" in table


def test_heldout_confusion_script_reads_the_stored_counts_as_re_predicting_gives_them(data, tmp_path):
    import importlib.util
    import sys

    script = Path(__file__).resolve().parents[2] / "scripts" / "loso_heldout_confusion.py"
    spec = importlib.util.spec_from_file_location("loso_heldout_confusion", script)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    out = tmp_path / "loso"
    assert main(["loso", "--dataset", str(data), "--output_dir", str(out), "--max_steps", "1", "--batch_size", "8",
                 "--image_size", "32", "--num_resamples", "50", "--seed", "0", "--holdout_sources", "site_b",
                 "--students", "true", "--student_images_seen", "8"]) == 0
    stored = module.confusions(out, None)
    assert len(stored) == 4 and all(line.startswith("| seed 0 | site_b | ") for line in stored)
    assert sum(int(cell.rsplit(" ", 1)[1]) for cell in stored[0].split(" | ")[3].rstrip(" |").split(", ")) == 12
    # an older loso.json, without the counts: the script re-predicts the saved models and finds the same
    result = json.loads((out / "loso.json").read_text())
    for row in result["rows"]:
        for model in (row, row["student"]):
            for side in ("with", "without"):
                del model[side]["heldout"]["confusion"]
    (out / "loso.json").write_text(json.dumps(result))
    assert module.confusions(out, None) == stored

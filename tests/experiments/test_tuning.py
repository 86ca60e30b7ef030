"""Recipe tuning driver (hf_deitcxr/experiments/tuning.py): overrides, learning curve, resumable results, tables."""

import json

import pytest

from hf_deitcxr.experiments.recipe import CPU_RECIPE, stage_arguments
from hf_deitcxr.experiments.tuning import TuneArguments, parse_overrides, summary_markdown, tune_main
from hf_deitcxr.training.run import run_training
from tests.helpers.synthetic import write_imagefolder


def test_overrides_are_cast_to_the_recipe_field_types():
    parsed = parse_overrides("student_learning_rate=1e-3, augment=false,batch_size=16,distillation_type=soft")
    assert parsed == {"student_learning_rate": 1e-3, "augment": False, "batch_size": 16, "distillation_type": "soft"}
    assert CPU_RECIPE.with_overrides(**parsed).batch_size == 16
    assert parse_overrides("") == {}
    # an optional field takes its inner type, or none
    assert parse_overrides("teacher_image_size=96") == {"teacher_image_size": 96}
    assert parse_overrides("teacher_image_size=None") == {"teacher_image_size": None}


@pytest.mark.parametrize("bad", ["lr=1e-3", "augment=maybe", "batch_size=1.5", "drop_path_rate", "image_size=",
                                 "teacher_image_size=big"])
def test_bad_overrides_are_refused(bad):
    with pytest.raises(ValueError):
        parse_overrides(bad)


def test_tuning_arguments_need_a_trained_teacher(tmp_path):
    with pytest.raises(ValueError, match="teacher"):
        TuneArguments(teacher_dir=str(tmp_path))
    with pytest.raises(ValueError, match="unknown recipe field"):
        TuneArguments(stage="baseline", overrides="tau=2")


def test_eval_every_images_sets_step_evaluation(tmp_path):
    _, data_args, training_args = stage_arguments("distill", "data", tmp_path, CPU_RECIPE.with_overrides(augment=False),
                                                  images_seen=320, eval_every_images=100, teacher_dir=tmp_path)
    assert training_args.eval_strategy == "steps" and training_args.eval_steps == 4  # ceil(100 / 32)
    assert data_args.teacher_logit_cache  # no augmentation: the teacher's logits are computed once
    with pytest.raises(ValueError, match="eval_every_images"):
        stage_arguments("baseline", "data", tmp_path, images_seen=320, eval_every_images=0)


def test_student_batch_and_augmentation_leave_the_teacher_stage_alone(tmp_path):
    recipe = CPU_RECIPE.with_overrides(batch_size=16, augment=False, teacher_batch_size=8, teacher_augment=True)
    _, teacher_data, teacher_training = stage_arguments("teacher", "data", tmp_path, recipe, images_seen=80)
    assert teacher_data.augment and teacher_training.per_device_train_batch_size == 8
    assert teacher_training.max_steps == 10
    for stage in ("distill", "baseline"):
        _, data_args, training_args = stage_arguments(stage, "data", tmp_path, recipe, images_seen=80,
                                                      teacher_dir=tmp_path)
        assert not data_args.augment and training_args.per_device_train_batch_size == 16
        assert training_args.max_steps == 5
    assert parse_overrides("teacher_augment=false,teacher_batch_size=64") == {"teacher_augment": False,
                                                                              "teacher_batch_size": 64}


def test_tuning_runs_records_a_curve_and_resumes(tmp_path, capsys):
    data = write_imagefolder(tmp_path / "data", {"train": 8, "validation": 4})
    recipe = CPU_RECIPE.at_size(32).with_overrides(batch_size=8)
    teacher = tmp_path / "teacher"
    run_training(*stage_arguments("teacher", str(data), teacher, recipe, images_seen=8, progress_bars=False))

    argv = ["--teacher_dir", str(teacher), "--dataset", str(data), "--output_dir", str(tmp_path / "tune"),
            "--name", "small", "--overrides", "image_size=32,batch_size=8,augment=false",
            "--images_seen", "20", "--eval_every_images", "8", "--seeds", "0,1"]
    assert tune_main(argv) == 0
    rows = [json.loads(line) for line in (tmp_path / "tune" / "results.jsonl").read_text().splitlines()]
    assert [(r["name"], r["seed"], r["images_seen"]) for r in rows] == [("small", 0, 24), ("small", 1, 24)]
    for row in rows:
        # mid-run evaluations at 8 and 16 images, then the final model at the end of the 3-step schedule
        assert [images for images, _ in row["curve"]] == [8, 16, 24]
        assert row["curve"][-1][1] == round(row["macro_f1"], 4)
        assert row["overrides"]["augment"] is False and row["recipe"]["batch_size"] == 8
        assert set(row["per_source_accuracy"]) == {"site_a", "site_b"} and row["teacher_macro_f1"] is not None
    table = (tmp_path / "tune" / "tuning.md").read_text()
    assert "| small | image_size=32, batch_size=8, augment=False | 0 | 24 |" in table

    capsys.readouterr()
    assert tune_main(argv) == 0
    assert "already in" in capsys.readouterr().out
    assert len((tmp_path / "tune" / "results.jsonl").read_text().splitlines()) == len(rows)


def test_table_cells_carry_each_runs_interval():
    intervals = {"resampled": "image", "confidence": 0.95, "num_resamples": 1000, "accuracy": [0.71, 0.88],
                 "balanced_accuracy": None, "macro_f1": [0.65, 0.84], "macro_auc": None,
                 "per_source_accuracy": {"site_a": None}}
    row = {"name": "lr", "overrides": {"student_learning_rate": 0.001}, "seed": 1, "images_seen": 96,
           "accuracy": 0.8, "macro_f1": 0.75, "sensitivity": {"covid": 0.6}, "per_source_accuracy": {"site_a": 0.7},
           "curve": [[96, 0.75]], "wall_s": 12.0, "teacher_macro_f1": 0.8, "intervals": intervals}
    text = summary_markdown([row])
    assert ("| lr | student_learning_rate=0.001 | 1 | 96 | 0.800 (0.710–0.880) | 0.750 (0.650–0.840) | +0.050 | "
            "0.600 | 0.700 (CI n/a) | 12 |") in text
    assert "resampling the evaluation split's images (1000 resamples" in text

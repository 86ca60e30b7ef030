"""`hf-deitcxr train --cv_folds K --fold i`: a tiny run trains on the other folds, evaluates on fold i, records it."""

import json

from hf_deitcxr.cli import main
from hf_deitcxr.data import load_radiograph_dataset
from tests.helpers.standins import save_cxr_standins
from tests.helpers.synthetic import write_imagefolder


def test_cli_run_on_fold_1_of_3_records_the_fold(tmp_path, capsys):
    data = write_imagefolder(tmp_path / "data", {"train": 8, "validation": 4})
    _, student = save_cxr_standins(tmp_path)
    out = tmp_path / "fold1"
    argv = ["train", "--stage", "baseline", "--model_name_or_path", str(student), "--dataset", str(data),
            "--output_dir", str(out), "--image_size", "32", "--patch_size", "8", "--max_steps", "2",
            "--per_device_train_batch_size", "8", "--eval_strategy", "no", "--save_strategy", "no",
            "--use_cpu", "true", "--cv_folds", "3", "--fold", "1", "--subset_seed", "5"]
    assert main(argv) == 0
    assert "macro_f1" in capsys.readouterr().out

    recorded = json.loads((out / "training_args.json").read_text())
    fold = recorded["cross_validation"]
    assert (fold["n_splits"], fold["fold"], fold["seed"], fold["pool"]) == (3, 1, 5, "train+validation")
    assert recorded["data"]["cv_folds"] == 3 and recorded["data"]["fold"] == 1
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["extra"]["cross_validation"] == fold
    assert metrics["overall"]["num_examples"] == fold["eval_images"]
    assert fold["train_images"] + fold["eval_images"] == 36  # train + validation pooled
    assert metrics["extra"]["num_train_images"] == fold["train_images"]
    # the fold's held-out patients are whole patients of the pool, none of them trained on
    loaded = load_radiograph_dataset(data)
    pooled = set(loaded["train"]["patient_id"]) | set(loaded["validation"]["patient_id"])
    assert fold["eval_patients"] + fold["train_patients"] == len(pooled)
    assert "Cross-validation: evaluated on fold 1 of 3" in (out / "README.md").read_text()

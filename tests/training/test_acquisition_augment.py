"""`--acquisition_augment true`: a training run with acquisition/processing changes runs, and they reach the batches."""

from __future__ import annotations

import json

from hf_deitcxr.cli import main as cli_main
from tests.helpers.standins import save_cxr_standins
from tests.helpers.synthetic import write_imagefolder


def _losses(output) -> list[float]:
    state = json.loads((output / "trainer_state.json").read_text())
    return [entry["loss"] for entry in state["log_history"] if "loss" in entry]


def test_acquisition_augment_trains_and_changes_what_the_model_sees(tmp_path, one_torch_thread):
    data = write_imagefolder(tmp_path / "data", {"train": 8, "validation": 3})
    teacher_init, _ = save_cxr_standins(tmp_path)
    losses = {}
    for flag in ("false", "true"):
        output = tmp_path / f"acquisition-{flag}"
        argv = ["train", "--stage", "teacher", "--dataset", str(data), "--output_dir", str(output),
                "--model_name_or_path", str(teacher_init), "--image_size", "32", "--max_steps", "4",
                "--per_device_train_batch_size", "4", "--eval_strategy", "no", "--save_strategy", "no",
                "--logging_steps", "1", "--augment", "true", "--acquisition_augment", flag, "--seed", "0",
                "--use_cpu", "true", "--bf16", "false", "--report_to", "none", "--disable_tqdm", "true"]
        assert cli_main(argv) == 0
        losses[flag] = _losses(output)
    assert len(losses["true"]) == len(losses["false"]) == 4
    assert losses["true"] != losses["false"]  # same seed and data: only the acquisition changes differ
    args = json.loads((tmp_path / "acquisition-true" / "training_args.json").read_text())
    assert args["data"]["acquisition_augment"] is True  # recorded with the run

"""Resuming as a user meets it: `hf-deitcxr train` killed with SIGKILL after a checkpoint, rerun with `--resume true`,
continues from the checkpoint's weights (no missing/unexpected-key warning) and ends with the weights of an
uninterrupted run with the same seed; for the teacher and the distillation stage. Plus `load_checkpoint_weights` for
every model family and `load_best_model_at_end`.

fp32 on the CPU, one thread (in this process and in the killed one), with random augmentation and stochastic depth:
the collator draws each batch's augmentation from the run seed and the batch's sample indices (not from the global
RNG, whose checkpointed state Trainer's prefetching dataloader has already run past), so the resumed run is
bit-identical.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForImageClassification, TrainingArguments

from hf_deitcxr.cli import main as cli_main
from hf_deitcxr.training.harness import last_complete_checkpoint
from hf_deitcxr.training.trainer import DistillationTrainer
from tests.helpers.standins import save_cxr_standins
from tests.helpers.synthetic import write_imagefolder

REPO = Path(__file__).resolve().parents[2]
STEPS, SAVE_EVERY = 16, 4


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """The killed run has one thread: results must not depend on how a matmul's sums are split over threads."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    root = tmp_path_factory.mktemp("resume")
    data = write_imagefolder(root / "data", {"train": 8, "validation": 3})
    teacher_init, student_init = save_cxr_standins(root)
    return root, data, teacher_init, student_init


def stage_argv(stage: str, output: Path, workspace) -> list[str]:
    root, data, teacher_init, student_init = workspace
    argv = ["--stage", stage, "--dataset", str(data), "--output_dir", str(output), "--image_size", "32",
            "--patch_size", "8", "--per_device_train_batch_size", "4", "--per_device_eval_batch_size", "16",
            "--max_steps", str(STEPS), "--save_strategy", "steps", "--save_steps", str(SAVE_EVERY),
            "--save_total_limit", "10", "--eval_strategy", "no", "--logging_steps", "1", "--augment", "true",
            "--seed", "0", "--use_cpu", "true", "--bf16", "false", "--report_to", "none", "--disable_tqdm", "true"]
    if stage == "teacher":
        return argv + ["--model_name_or_path", str(teacher_init), "--learning_rate", "3e-3"]
    return argv + ["--model_name_or_path", str(student_init), "--teacher_name_or_path", str(root / "ref-teacher"),
                   "--distillation_type", "soft", "--distillation_tau", "2.0", "--learning_rate", "1e-3"]


def start_run(argv: list[str], log: Path) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OMP_WAIT_POLICY": "PASSIVE", "PYTHONPATH": str(REPO)}
    with open(log, "w") as handle:
        return subprocess.Popen([sys.executable, "-m", "hf_deitcxr.cli", "train", *argv], env=env, cwd=REPO,
                                stdout=handle, stderr=subprocess.STDOUT)


def kill_after_first_checkpoint(processes: dict[str, subprocess.Popen], outputs: dict[str, Path],
                                logs: dict[str, Path], timeout: float = 240) -> None:
    """SIGKILL each run as soon as its first checkpoint is complete (all watched at once: they run concurrently)."""
    deadline = time.monotonic() + timeout
    running = dict(processes)
    while running:
        for stage, process in list(running.items()):
            if (outputs[stage] / f"checkpoint-{SAVE_EVERY}" / "trainer_state.json").is_file():
                process.send_signal(signal.SIGKILL)
                process.wait()
                del running[stage]
            elif process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"{stage}: no checkpoint before the run ended:\n{logs[stage].read_text()[-3000:]}")
        time.sleep(0.02)


@pytest.fixture(scope="module")
def runs(workspace):
    """Uninterrupted reference runs (in this process) and the killed runs (their own processes), both stages."""
    root = workspace[0]
    assert cli_main(["train", *stage_argv("teacher", root / "ref-teacher", workspace)]) == 0
    killed = {stage: root / f"killed-{stage}" for stage in ("teacher", "distill")}
    logs = {stage: root / f"killed-{stage}.log" for stage in killed}
    processes = {stage: start_run(stage_argv(stage, killed[stage], workspace), logs[stage]) for stage in killed}
    try:
        kill_after_first_checkpoint(processes, killed, logs)
    finally:
        for process in processes.values():
            process.kill()
    assert cli_main(["train", *stage_argv("distill", root / "ref-distill", workspace)]) == 0
    return root, killed


class Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(f"{record.levelname} {record.getMessage()}")


def weights(folder: Path) -> dict[str, torch.Tensor]:
    """A saved model's weights as the Hub path reads them (`from_pretrained`, with the registered renamings)."""
    return AutoModelForImageClassification.from_pretrained(folder).state_dict()


def assert_same_weights(actual: dict, expected: dict) -> None:
    assert actual.keys() == expected.keys()
    different = [name for name in expected if not torch.equal(actual[name], expected[name])]
    assert not different, f"{len(different)} of {len(expected)} tensors differ, e.g. {different[:3]}"


def losses(folder: Path) -> list[float]:
    return [e["loss"] for e in json.loads((folder / "trainer_state.json").read_text())["log_history"] if "loss" in e]


@pytest.mark.parametrize("stage", ["teacher", "distill"])
def test_killed_run_resumes_to_the_weights_of_an_uninterrupted_run(runs, workspace, stage, monkeypatch):
    root, killed = runs
    output, reference = killed[stage], root / f"ref-{stage}"
    assert not (output / "model.safetensors").exists(), "the killed run must not have finished"
    checkpoint = Path(last_complete_checkpoint(output))
    # Two processes, one seed: the same weights at the checkpoint (the seeding makes this comparison meaningful).
    assert_same_weights(weights(checkpoint), weights(reference / checkpoint.name))

    at_resume = {}
    original_step = DistillationTrainer.training_step

    def record_first_step(self, model, *args, **kwargs):
        if not at_resume:
            at_resume.update({k: v.clone() for k, v in self.accelerator.unwrap_model(model).state_dict().items()})
        return original_step(self, model, *args, **kwargs)

    monkeypatch.setattr(DistillationTrainer, "training_step", record_first_step)
    records = Records()
    loggers = [logging.getLogger(name) for name in ("transformers", "hf_deitcxr")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.addHandler(records)
        logger.setLevel(logging.INFO)
    try:
        assert cli_main(["train", *stage_argv(stage, output, workspace), "--resume", "true"]) == 0
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.removeHandler(records)
            logger.setLevel(level)

    assert any(f"resuming from {checkpoint}" in message for message in records.messages), records.messages
    key_warnings = [m for m in records.messages if "missing keys" in m or "unexpected keys" in m]
    assert not key_warnings, key_warnings[0][:500]
    assert_same_weights(at_resume, weights(checkpoint))
    assert_same_weights(weights(output), weights(reference))
    assert losses(output) == losses(reference)  # the checkpoint's log history, then the resumed steps
    assert json.loads((output / "trainer_state.json").read_text())["global_step"] == STEPS


class TinyImages(torch.utils.data.Dataset):
    def __init__(self, count: int = 12, channels: int = 3, size: int = 32) -> None:
        generator = torch.Generator().manual_seed(0)
        self.pixels = torch.randn(count, channels, size, size, generator=generator)

    def __len__(self) -> int:
        return len(self.pixels)

    def __getitem__(self, index: int) -> dict:
        return {"pixel_values": self.pixels[index], "labels": index % 2}


def test_best_model_at_end_is_loaded_with_every_weight(tmp_path):
    from hf_deitcxr import DeiTCXRConfig, DeiTCXRForImageClassificationWithTeacher
    from tests.helpers.tiny_models import tiny_deit_kwargs

    torch.manual_seed(0)
    model = DeiTCXRForImageClassificationWithTeacher(DeiTCXRConfig(**tiny_deit_kwargs(
        distillation_type="none", id2label={0: "a", 1: "b"}, label2id={"a": 0, "b": 1})))
    scores = iter([1.0, 0.5, 0.2])  # the first evaluation is the best: the last checkpoint is not it
    args = TrainingArguments(str(tmp_path), max_steps=6, per_device_train_batch_size=4, learning_rate=1e-2,
                             eval_strategy="steps", eval_steps=2, save_strategy="steps", save_steps=2,
                             load_best_model_at_end=True, metric_for_best_model="score", greater_is_better=True,
                             use_cpu=True, report_to="none", disable_tqdm=True, remove_unused_columns=False,
                             label_names=["labels"])
    trainer = DistillationTrainer(model=model, args=args, train_dataset=TinyImages(), eval_dataset=TinyImages(4),
                                  compute_metrics=lambda prediction: {"score": next(scores)})
    trainer.train()
    assert trainer.state.best_model_checkpoint.endswith("checkpoint-2")
    assert_same_weights(model.state_dict(), weights(tmp_path / "checkpoint-2"))
    assert not torch.equal(model.state_dict()["cls_classifier.weight"],
                           weights(tmp_path / "checkpoint-6")["cls_classifier.weight"])


def _deit_config(**overrides):
    from transformers import DeiTConfig

    kwargs = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, image_size=32,
                  patch_size=8)
    return DeiTConfig(**{**kwargs, **overrides})


def _family(name: str, num_hidden_layers: int = 2) -> torch.nn.Module:
    from transformers import DeiTForImageClassification, ViTForImageClassification

    from hf_deitcxr import (
        DeiTCXRConfig,
        DeiTCXRForImageClassificationWithTeacher,
        DenseNetConfig,
        DenseNetForImageClassification,
    )
    from hf_deitcxr.mammo import MultiViewMammoConfig, MultiViewMammoForExamClassification
    from tests.helpers.mammo_models import tiny_vit_config
    from tests.helpers.tiny_models import tiny_deit_kwargs

    if name == "deit_cxr_student":
        return DeiTCXRForImageClassificationWithTeacher(DeiTCXRConfig(**tiny_deit_kwargs(
            num_hidden_layers=num_hidden_layers)))
    if name == "densenet_teacher":
        return DenseNetForImageClassification(DenseNetConfig(growth_rate=8, block_config=[2] * num_hidden_layers,
                                                             num_init_features=16, num_labels=3))
    if name == "vit_single_view":
        return ViTForImageClassification(tiny_vit_config(num_labels=2, num_hidden_layers=num_hidden_layers))
    if name == "deit_single_view":
        return DeiTForImageClassification(_deit_config(num_labels=2, num_hidden_layers=num_hidden_layers))
    encoder = (tiny_vit_config(num_hidden_layers=num_hidden_layers) if name == "multiview_vit"
               else _deit_config(num_hidden_layers=num_hidden_layers))
    return MultiViewMammoForExamClassification(MultiViewMammoConfig(encoder=encoder, num_global_layers=1,
                                                                    num_labels=2))


FAMILIES = ["deit_cxr_student", "densenet_teacher", "vit_single_view", "deit_single_view", "multiview_vit",
            "multiview_deit"]


@pytest.mark.parametrize("family", FAMILIES)
def test_checkpoint_weights_load_into_every_model_family(tmp_path, family):
    """The resume path reads what `save_pretrained` wrote (the Hub layout) back into the model being trained."""
    from hf_deitcxr.training.trainer import load_checkpoint_weights

    torch.manual_seed(0)
    trained = _family(family)
    trained.save_pretrained(tmp_path)
    torch.manual_seed(1)
    resumed = _family(family)
    load_checkpoint_weights(resumed, tmp_path)
    assert_same_weights(resumed.state_dict(), trained.state_dict())

    with pytest.raises(ValueError, match="does not match"):
        load_checkpoint_weights(_family(family, num_hidden_layers=3), tmp_path)

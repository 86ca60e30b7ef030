"""`--task mammo` reproducibility, in this process, on one thread, fp32:

- `--seed` decides the initial weights (the new heads and global layers): the same seed twice gives the same ones,
  another seed others;
- runs interrupted after a checkpoint and rerun with `--resume true` continue from the checkpoint's weights and end
  with the weights of an uninterrupted run, for single-view and multi-view models started from a DeiT checkpoint
  (whose Hub layout is renamed on loading, as the resume path must do too); without augmentation (see
  tests/training/test_resume.py for the killed-process version and why).
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch
from transformers import DeiTConfig

from hf_deitcxr.cli import train as train_main
from hf_deitcxr.mammo.synthetic import SyntheticMammoConfig, write_synthetic_mammo
from hf_deitcxr.training.trainer import DistillationTrainer
from tests.helpers.mammo_models import save_standin

SIZE, STEPS, SAVE_EVERY, INTERRUPT_AT = 32, 8, 4, 6


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    root = tmp_path_factory.mktemp("mammo_resume")
    manifest = write_synthetic_mammo(root / "data", 24, seed=0, config=SyntheticMammoConfig(size=SIZE))
    save_standin(DeiTConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                            image_size=SIZE, patch_size=8, num_labels=1000), root / "deit-standin")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield root, manifest
    torch.set_num_threads(threads)


def argv(workspace, architecture: str, output: Path) -> list[str]:
    root, manifest = workspace
    return ["--task", "mammo", "--architecture", architecture, "--model_name_or_path", str(root / "deit-standin"),
            "--dataset", str(manifest), "--image_size", str(SIZE), "--output_dir", str(output),
            "--validation_fraction", "0.3", "--per_device_train_batch_size", "4", "--per_device_eval_batch_size", "32",
            "--num_global_layers", "1", "--max_steps", str(STEPS), "--save_strategy", "steps",
            "--save_steps", str(SAVE_EVERY), "--save_total_limit", "10", "--eval_strategy", "no", "--logging_steps",
            "1", "--augment", "false", "--learning_rate", "1e-3", "--seed", "0", "--use_cpu", "true", "--bf16",
            "false", "--disable_tqdm", "true", "--report_to", "none"]


def saved_weights(model_class, folder: Path) -> dict[str, torch.Tensor]:
    return model_class.from_pretrained(folder).state_dict()


def assert_same_weights(actual: dict, expected: dict) -> None:
    assert actual.keys() == expected.keys()
    different = [name for name in expected if not torch.equal(actual[name], expected[name])]
    assert not different, f"{len(different)} of {len(expected)} tensors differ, e.g. {different[:3]}"


class Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@pytest.mark.parametrize("architecture", ["single_view", "multi_view"])
def test_interrupted_mammo_run_resumes_to_the_uninterrupted_weights(workspace, architecture, monkeypatch):
    root = workspace[0]
    reference, output = root / f"ref-{architecture}", root / f"interrupted-{architecture}"
    assert train_main(argv(workspace, architecture, reference)) == 0

    original_step = DistillationTrainer.training_step

    def interrupted(self, *args, **kwargs):
        if self.state.global_step == INTERRUPT_AT:
            raise KeyboardInterrupt("simulated interruption")
        return original_step(self, *args, **kwargs)

    monkeypatch.setattr(DistillationTrainer, "training_step", interrupted)
    with pytest.raises(KeyboardInterrupt):
        train_main(argv(workspace, architecture, output))
    checkpoint = output / f"checkpoint-{INTERRUPT_AT // SAVE_EVERY * SAVE_EVERY}"
    assert checkpoint.is_dir() and not (output / "model.safetensors").exists()

    at_resume: dict = {}

    def recording(self, model, *args, **kwargs):
        if not at_resume:
            at_resume["class"] = type(model)
            at_resume["weights"] = {k: v.clone() for k, v in model.state_dict().items()}
            at_resume["step"] = self.state.global_step
        return original_step(self, model, *args, **kwargs)

    monkeypatch.setattr(DistillationTrainer, "training_step", recording)
    records = Records()
    transformers_logger = logging.getLogger("transformers")
    transformers_logger.addHandler(records)
    try:
        assert train_main([*argv(workspace, architecture, output), "--resume", "true"]) == 0
    finally:
        transformers_logger.removeHandler(records)

    key_warnings = [m for m in records.messages if "missing keys" in m or "unexpected keys" in m]
    assert not key_warnings, key_warnings[0][:500]
    assert at_resume["step"] == int(checkpoint.name.split("-")[1])
    model_class = at_resume["class"]
    assert_same_weights(at_resume["weights"], saved_weights(model_class, checkpoint))
    assert_same_weights(saved_weights(model_class, output), saved_weights(model_class, reference))


def initial_weights(workspace, monkeypatch, output: Path, seed: int) -> dict[str, torch.Tensor]:
    recorded: dict = {}
    original_step = DistillationTrainer.training_step

    def recording(self, model, *args, **kwargs):
        recorded.setdefault("weights", {k: v.clone() for k, v in model.state_dict().items()})
        return original_step(self, model, *args, **kwargs)

    monkeypatch.setattr(DistillationTrainer, "training_step", recording)
    command = argv(workspace, "multi_view", output)
    command[command.index("--seed") + 1] = str(seed)
    command[command.index("--max_steps") + 1] = "1"
    assert train_main(command) == 0
    return recorded["weights"]


def test_seed_decides_the_initial_weights(workspace, monkeypatch):
    root = workspace[0]
    first = initial_weights(workspace, monkeypatch, root / "seed0-a", seed=0)
    assert_same_weights(initial_weights(workspace, monkeypatch, root / "seed0-b", seed=0), first)
    other = initial_weights(workspace, monkeypatch, root / "seed1", seed=1)
    new_layers = [name for name in first if not name.startswith("multiview.encoder.")]
    assert new_layers and all(not torch.equal(other[name], first[name]) for name in new_layers if "weight" in name
                              and "norm" not in name)

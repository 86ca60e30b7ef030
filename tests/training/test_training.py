"""End to end: teacher -> distilled student on a learnable synthetic task; the CLI (accelerate launch: own file)."""

import json
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForImageClassification

from hf_deitcxr.data.input_spec import InputSpec
from hf_deitcxr.training.arguments import parse_training_arguments
from hf_deitcxr.training.run import run_training
from hf_deitcxr.training.teacher import TeacherInputAdapter
from tests.helpers.standins import save_cxr_standins
from tests.helpers.synthetic import CLASSES, write_imagefolder


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    """Synthetic data plus local stand-ins for the Hub's ImageNet checkpoints (tiny DenseNet and DeiT)."""
    root = tmp_path_factory.mktemp("training")
    data = write_imagefolder(root / "data", {"train": 40, "validation": 12})
    save_cxr_standins(root)  # root/densenet-imagenet-standin, root/deit-distilled-standin
    return root, data


def arguments(*extra: str):
    return parse_training_arguments(["--image_size", "32", "--patch_size", "8", "--per_device_train_batch_size", "16",
                                     "--per_device_eval_batch_size", "32", "--seed", "0", "--use_cpu", "true",
                                     *extra])


def train_teacher(root: Path, data: Path) -> Path:
    output = root / "teacher"
    if not (output / "model.safetensors").exists():
        run_training(*arguments(
            "--stage", "teacher", "--model_name_or_path", str(root / "densenet-imagenet-standin"),
            "--dataset", str(data), "--output_dir", str(output), "--num_train_epochs", "12",
            "--learning_rate", "3e-3", "--eval_strategy", "no", "--save_strategy", "no",
        ))
    return output


def test_teacher_then_distilled_student_learn_the_task(workspace):
    root, data = workspace
    teacher_dir = train_teacher(root, data)
    teacher_metrics = json.loads((teacher_dir / "metrics.json").read_text())
    assert teacher_metrics["overall"]["accuracy"] >= 0.75, teacher_metrics["overall"]
    # The intervals after training resample the validation split's patients (two images each), not images.
    intervals = teacher_metrics["intervals"]["overall"]
    assert intervals["resampled"] == "patient" and intervals["num_clusters"] * 2 == intervals["num_examples"]

    student_dir = root / "student"
    report = run_training(*arguments(
        "--stage", "distill", "--model_name_or_path", str(root / "deit-distilled-standin"),
        "--teacher_name_or_path", str(teacher_dir), "--dataset", str(data), "--output_dir", str(student_dir),
        "--num_train_epochs", "25", "--learning_rate", "1e-3", "--eval_strategy", "epoch",
        "--drop_path_rate", "0.0", "--warmup_steps", "0.1",
        "--save_strategy", "no", "--logging_steps", "2",
    ))
    assert report["overall"]["accuracy"] >= 0.7, report["overall"]  # chance is 1/3
    assert set(report["per_source"]) == {"site_a", "site_b"}
    for name in ("config.json", "model.safetensors", "preprocessor_config.json", "metrics.json",
                 "confusion_matrix.png", "roc_curves.png", "modeling_deit_cxr.py"):
        assert (student_dir / name).exists(), name
    logged = json.loads((student_dir / "trainer_state.json").read_text())["log_history"]
    train_logs = [entry for entry in logged if "loss" in entry]
    assert train_logs and all("loss_ce" in e and "loss_distill" in e for e in train_logs)
    assert any("eval_macro_f1" in entry for entry in logged)
    student = AutoModelForImageClassification.from_pretrained(student_dir)
    assert student.config.distillation_type == "hard"
    assert student.config.teacher_name_or_path == str(teacher_dir)
    assert [student.config.id2label[i] for i in range(3)] == list(CLASSES)


def test_leaked_split_is_refused_unless_allowed(workspace, tmp_path):
    root, _ = workspace
    data = write_imagefolder(tmp_path / "leaky", {"train": 6, "validation": 3})
    metadata = data / "validation" / "metadata.csv"
    metadata.write_text(metadata.read_text().replace("validation-normal-0", "train-normal-0"))
    from hf_deitcxr.data import LeakageError

    with pytest.raises(LeakageError, match="train-normal-0"):
        run_training(*arguments("--stage", "baseline", "--dataset", str(data), "--output_dir", str(tmp_path / "o"),
                                "--max_steps", "1", "--student_preset", "deit-tiny"))


def test_teacher_input_adapter_converts_normalisation_channels_and_size():
    student = InputSpec.create([0.5], [0.25], 1, 16)
    teacher = InputSpec.create([0.485, 0.456, 0.406], [0.229, 0.224, 0.225], 3, 32)
    grey = torch.rand(2, 1, 16, 16)
    adapted = TeacherInputAdapter(student, teacher)((grey - 0.5) / 0.25)
    assert adapted.shape == (2, 3, 32, 32)
    restored = adapted * torch.tensor(teacher.std).view(1, 3, 1, 1) + torch.tensor(teacher.mean).view(1, 3, 1, 1)
    assert torch.allclose(restored[:, 0], restored[:, 2], atol=1e-5)
    assert restored.mean().item() == pytest.approx(grey.mean().item(), abs=0.02)
    assert TeacherInputAdapter(student, student).is_identity


def test_quickstart_runs_on_the_bundled_sample(tmp_path):
    from hf_deitcxr.experiments.quickstart import BUNDLED_SAMPLE, run_quickstart
    from hf_deitcxr.experiments.recipe import CPU_RECIPE

    reports = run_quickstart(str(BUNDLED_SAMPLE), str(tmp_path), image_size=32, epochs=1, seed=3)
    assert set(reports) == {"teacher", "distill"}
    student_dir = tmp_path / "distill"
    card = (student_dir / "README.md").read_text()
    assert "Not a medical device" in card and "model-index" in card
    assert "## Shortcut audit" in card and (student_dir / "audit.json").is_file()  # the quickstart audits
    audit = json.loads((student_dir / "audit.json").read_text())
    assert audit["preprocessing"] == {"intensity_normalization": CPU_RECIPE.intensity_normalization,
                                      "remove_border": CPU_RECIPE.remove_border}
    assert json.loads((tmp_path / "quickstart.json").read_text())["image_size"] == 32
    # a chosen size is both stages', not the CPU recipe's larger teacher input
    assert json.loads((tmp_path / "quickstart.json").read_text())["teacher_image_size"] == 32
    assert AutoModelForImageClassification.from_pretrained(tmp_path / "teacher").config.image_size == 32
    assert json.loads((tmp_path / "quickstart.json").read_text())["seed"] == 3
    for stage in ("teacher", "distill"):  # the seed reached each stage's Trainer
        assert json.loads((tmp_path / stage / "training_args.json").read_text())["training"]["seed"] == 3
    student_config = AutoModelForImageClassification.from_pretrained(student_dir).config
    assert student_config.teacher_name_or_path == str(tmp_path / "teacher")
    # the recipe's student architecture reaches the saved config and the card says what it needs to load
    assert student_config.shifted_patch_tokenization is CPU_RECIPE.shifted_patch_tokenization
    assert student_config.locality_self_attention is CPU_RECIPE.locality_self_attention
    assert ("Shifted Patch Tokenization" in card) is CPU_RECIPE.shifted_patch_tokenization


def test_cli_evaluate_and_validate_data(workspace, tmp_path, capsys):
    from hf_deitcxr.cli import main

    root, data = workspace
    teacher_dir = train_teacher(root, data)
    assert main(["evaluate", "--model", str(teacher_dir), "--dataset", str(data), "--output_dir",
                 str(tmp_path / "eval")]) == 0
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert metrics["overall"]["num_examples"] == 36 and set(metrics["per_source"]) == {"site_a", "site_b"}
    assert (tmp_path / "eval" / "roc_curves.png").exists()
    # the same numbers as the training run's own evaluation of that split
    trained = json.loads((teacher_dir / "metrics.json").read_text())["overall"]
    assert metrics["overall"]["accuracy"] == pytest.approx(trained["accuracy"])
    assert main(["validate-data", "--dataset", str(data)]) == 0
    assert "covid" in capsys.readouterr().out


def test_oversampled_training_set_reports_distinct_images():
    from hf_deitcxr.data.balancing import oversample_indices
    from hf_deitcxr.data.image_cache import CachedImageDataset
    from hf_deitcxr.training.harness import distinct_images

    labels = [0] * 6 + [1] * 2
    data = CachedImageDataset(torch.zeros(8, 1, 4, 4, dtype=torch.uint8), labels)
    oversampled = torch.utils.data.Subset(data, oversample_indices(labels, 2))
    assert len(oversampled) == 12 and len(distinct_images(oversampled)) == 8

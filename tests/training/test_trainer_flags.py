"""Trainer flags of `hf-deitcxr train` that do what they say: label smoothing in our losses, --push_to_hub refused,
early stopping, all_results.json + card + plots in every run, tracking, and the data column / revision flags."""

from __future__ import annotations

import json
import math

import datasets
import pytest
import torch
import torch.nn.functional as F
from transformers import TrainingArguments

from hf_deitcxr import (
    DeiTCXRConfig,
    DeiTCXRForImageClassificationWithTeacher,
    DenseNetConfig,
    DenseNetForImageClassification,
)
from hf_deitcxr.cli import main as cli_main
from hf_deitcxr.data import hub_source, load_radiograph_dataset
from hf_deitcxr.models.deit_cxr.modeling_deit_cxr import deit_distillation_loss
from hf_deitcxr.training.arguments import DataArguments, ModelArguments, parse_training_arguments
from hf_deitcxr.training.run import run_training
from hf_deitcxr.training.trainer import DistillationTrainer
from tests.helpers.standins import save_cxr_standins
from tests.helpers.synthetic import CLASSES, write_imagefolder
from tests.helpers.tiny_models import LABELS, tiny_deit_kwargs

SMOOTHING = 0.1
LOGITS = torch.tensor([[2.0, -1.0, 0.5], [0.0, 1.5, -0.5], [-1.0, 0.2, 3.0], [0.3, 0.3, 0.1]])
LABELS_IDS = torch.tensor([0, 2, 2, 1])


def smoothed_ce_by_hand(logits: torch.Tensor, labels: torch.Tensor, epsilon: float) -> torch.Tensor:
    """(1 - e) * -log p(label) + e * mean over classes of -log p(class), averaged over the batch."""
    log_p = torch.log_softmax(logits.double(), dim=-1)
    per_sample = -(1 - epsilon) * log_p.gather(1, labels[:, None])[:, 0] - epsilon * log_p.mean(dim=-1)
    return per_sample.mean().float()


def test_deit_loss_smooths_the_label_terms_only():
    cls, dist = LOGITS, LOGITS.flip(0)
    teacher = torch.tensor([[0.0, 5.0, 0.0], [4.0, 0.0, 0.0], [0.0, 0.0, 2.0], [0.0, 3.0, 0.0]])
    expected_cls = smoothed_ce_by_hand(cls, LABELS_IDS, SMOOTHING)
    torch.testing.assert_close(expected_cls, F.cross_entropy(cls, LABELS_IDS, label_smoothing=SMOOTHING))

    total, ce, distill = deit_distillation_loss(cls, dist, LABELS_IDS, teacher, "hard", 0.5, 1.0,
                                                label_smoothing=SMOOTHING)
    torch.testing.assert_close(ce, expected_cls)
    # hard distillation: the teacher's argmax is the target as it is (DeiT), not smoothed
    torch.testing.assert_close(distill, F.cross_entropy(dist, teacher.argmax(-1)))
    torch.testing.assert_close(total, 0.5 * expected_cls + 0.5 * distill)

    _, _, soft = deit_distillation_loss(cls, dist, LABELS_IDS, teacher, "soft", 0.5, 2.0, label_smoothing=SMOOTHING)
    _, _, soft_plain = deit_distillation_loss(cls, dist, LABELS_IDS, teacher, "soft", 0.5, 2.0)
    torch.testing.assert_close(soft, soft_plain)
    # without a teacher both heads learn the (smoothed) labels
    _, _, label_distill = deit_distillation_loss(cls, dist, LABELS_IDS, None, "none", 0.5, 1.0,
                                                 label_smoothing=SMOOTHING)
    torch.testing.assert_close(label_distill, smoothed_ce_by_hand(dist, LABELS_IDS, SMOOTHING))


class FixedTeacher(torch.nn.Module):
    """Stands in for a `FrozenTeacher`: the same logits for every batch."""

    def forward(self, pixel_values, sample_index=None, view_index=None):
        return LOGITS.to(pixel_values.device)


def trainer_for(model, tmp_path, teacher=None) -> DistillationTrainer:
    args = TrainingArguments(str(tmp_path), label_smoothing_factor=SMOOTHING, use_cpu=True, report_to="none",
                             remove_unused_columns=False, label_names=["labels"])
    return DistillationTrainer(model=model, args=args, teacher=teacher)


def test_trainer_losses_honour_label_smoothing_factor(tmp_path):
    torch.manual_seed(0)
    pixels = torch.randn(4, 3, 32, 32)
    inputs = {"pixel_values": pixels, "labels": LABELS_IDS}

    student = DeiTCXRForImageClassificationWithTeacher(
        DeiTCXRConfig(**tiny_deit_kwargs(distillation_type="hard", drop_path_rate=0.0))
    ).train()  # training mode: the teacher's logits are used (no dropout or drop path: deterministic)
    loss = trainer_for(student, tmp_path, FixedTeacher()).compute_loss(student, inputs)
    with torch.no_grad():
        out = student(pixel_values=pixels)
    alpha = student.config.distillation_alpha
    expected = ((1 - alpha) * smoothed_ce_by_hand(out.cls_logits, LABELS_IDS, SMOOTHING)
                + alpha * F.cross_entropy(out.distillation_logits, LOGITS.argmax(-1)))
    torch.testing.assert_close(loss, expected)

    teacher = DenseNetForImageClassification(DenseNetConfig(
        growth_rate=8, block_config=[2, 2], num_init_features=16, id2label=dict(enumerate(LABELS)),
        label2id={name: i for i, name in enumerate(LABELS)})).eval()
    loss = trainer_for(teacher, tmp_path).compute_loss(teacher, inputs)
    with torch.no_grad():
        logits = teacher(pixel_values=pixels).logits
    torch.testing.assert_close(loss, smoothed_ce_by_hand(logits, LABELS_IDS, SMOOTHING))


def parse(tmp_path, *flags: str):
    return parse_training_arguments(["--stage", "teacher", "--dataset", "data", "--output_dir", str(tmp_path), *flags])


def test_push_to_hub_is_refused_before_any_data_is_read(tmp_path):
    with pytest.raises(ValueError, match="hf-deitcxr push"):
        parse(tmp_path, "--push_to_hub", "true")
    # arguments built in code too: refused before the (absent) dataset is looked at
    args = TrainingArguments(str(tmp_path), push_to_hub=True, use_cpu=True, report_to="none")
    with pytest.raises(ValueError, match="hf-deitcxr push"):
        run_training(ModelArguments(stage="teacher"), DataArguments(dataset=str(tmp_path / "absent")), args)


def test_label_smoothing_factor_out_of_range_is_refused(tmp_path):
    with pytest.raises(ValueError, match=r"label_smoothing_factor must be in \[0, 1\)"):
        parse(tmp_path, "--label_smoothing_factor", "1")


EARLY_STOPPING = ["--early_stopping_patience", "1", "--load_best_model_at_end", "true",
                  "--metric_for_best_model", "macro_auc"]


@pytest.mark.parametrize(("change", "message"), [
    ({"--load_best_model_at_end": "false"}, "--load_best_model_at_end true"),
    ({"--metric_for_best_model": None}, "--metric_for_best_model, one of"),
    ({"--metric_for_best_model": "auc"}, "'auc' is not a metric the run logs"),
    ({"--early_stopping_patience": "0"}, "a number of evaluations >= 1"),
    ({"--eval_strategy": "no", "--save_strategy": "no"}, "an --eval_strategy other than no"),
    ({"--save_strategy": "steps"}, "save and eval strategy to match"),  # transformers' own check
])
def test_early_stopping_needs_its_flags(tmp_path, change, message):
    flags = dict(zip(EARLY_STOPPING[::2], EARLY_STOPPING[1::2], strict=True))
    flags.update(change)
    with pytest.raises(ValueError, match=message):
        parse(tmp_path, *[item for key, value in flags.items() if value is not None for item in (key, value)])


def test_early_stopping_defaults_lower_is_better_for_ece(tmp_path):
    *_, args = parse(tmp_path, *EARLY_STOPPING[:4], "--metric_for_best_model", "ece")
    assert args.greater_is_better is False and args.early_stopping_patience == 1


def test_the_worst_sources_accuracy_is_a_metric_to_select_on_and_needs_sources(tmp_path):
    from hf_deitcxr.training.harness import eval_sources

    *_, args = parse(tmp_path, *EARLY_STOPPING[:4], "--metric_for_best_model", "worst_source_accuracy")
    assert args.greater_is_better is True
    no_sources = torch.utils.data.TensorDataset(torch.zeros(2, 1))
    with pytest.raises(ValueError, match="needs evaluation images with a `source` column"):
        eval_sources(no_sources, args)
    assert eval_sources(no_sources, TrainingArguments(str(tmp_path), use_cpu=True, report_to="none")) is None


def test_a_run_selects_its_best_checkpoint_by_the_worst_sources_accuracy(tmp_path, one_torch_thread):
    output = tmp_path / "run"
    argv = tiny_teacher_run(tmp_path, "--output_dir", str(output), "--max_steps", "4", "--eval_strategy", "steps",
                            "--eval_steps", "1", "--save_strategy", "steps", "--save_steps", "1",
                            "--load_best_model_at_end", "true", "--metric_for_best_model", "worst_source_accuracy",
                            "--learning_rate", "0.01")
    assert cli_main(argv) == 0
    state = json.loads((output / "trainer_state.json").read_text())
    evals = {entry["step"]: entry["eval_worst_source_accuracy"] for entry in state["log_history"]
             if "eval_worst_source_accuracy" in entry}
    assert list(evals) == [1, 2, 3, 4]
    best_step = max(evals, key=evals.get)  # the first of equals: Trainer only replaces the best on an improvement
    assert state["best_model_checkpoint"].endswith(f"checkpoint-{best_step}")
    # the saved (best) model's evaluation: its worst source is the logged value
    worst = json.loads((output / "metrics.json").read_text())["extra"]["worst_source"]
    assert worst["accuracy"] == pytest.approx(evals[best_step])


def tiny_teacher_run(tmp_path, *extra: str, per_class=None) -> list[str]:
    data = write_imagefolder(tmp_path / "data", per_class or {"train": 4, "validation": 2})
    teacher_init, _ = save_cxr_standins(tmp_path)
    return ["train", "--stage", "teacher", "--dataset", str(data), "--model_name_or_path", str(teacher_init),
            "--image_size", "32", "--per_device_train_batch_size", "4", "--per_device_eval_batch_size", "8",
            "--augment", "false", "--seed", "0", "--use_cpu", "true", "--bf16", "false", "--report_to", "none",
            "--disable_tqdm", "true", *extra]


def test_early_stopping_stops_and_every_run_writes_its_results_card_and_plots(tmp_path, one_torch_thread):
    output = tmp_path / "run"
    # no change can beat the threshold: the second evaluation is the first without improvement -> stop there
    argv = tiny_teacher_run(tmp_path, "--output_dir", str(output), "--max_steps", "6", "--eval_strategy", "steps",
                            "--eval_steps", "1", "--save_strategy", "steps", "--save_steps", "1",
                            "--early_stopping_patience", "1", "--early_stopping_threshold", "1000",
                            "--load_best_model_at_end", "true", "--metric_for_best_model", "loss",
                            "--label_smoothing_factor", str(SMOOTHING))
    assert cli_main(argv) == 0

    state = json.loads((output / "trainer_state.json").read_text())
    assert state["global_step"] == 2 < state["max_steps"] == 6
    assert "EarlyStoppingCallback" in state["stateful_callbacks"]
    evals = {entry["step"]: entry["eval_loss"] for entry in state["log_history"] if "eval_loss" in entry}
    best_step = min(evals, key=evals.get)  # the best model (by loss alone, no threshold) is the one loaded and saved
    assert list(evals) == [1, 2] and state["best_model_checkpoint"].endswith(f"checkpoint-{best_step}")
    results = json.loads((output / "all_results.json").read_text())
    assert {"train_loss", "train_runtime", "train_samples", "eval_loss", "eval_accuracy", "eval_macro_auc",
            "eval_samples"} <= set(results)
    assert results["train_samples"] == 12 and results["eval_samples"] == 6
    assert (output / "train_results.json").is_file() and (output / "eval_results.json").is_file()
    metrics = json.loads((output / "metrics.json").read_text())
    assert results["eval_accuracy"] == pytest.approx(metrics["overall"]["accuracy"])
    assert results["eval_loss"] == pytest.approx(evals[best_step])
    card = (output / "README.md").read_text()
    assert "model-index" in card and "Not a medical device" in card
    for plot in ("confusion_matrix.png", "roc_curves.png"):
        assert (output / plot).stat().st_size > 0, plot
    recorded = json.loads((output / "training_args.json").read_text())["training"]
    assert recorded["label_smoothing_factor"] == SMOOTHING and recorded["early_stopping_patience"] == 1


def test_report_to_tensorboard_writes_event_files(tmp_path, one_torch_thread):
    import tensorboard  # noqa: F401  (in the test extra: CI runs this test)
    output = tmp_path / "run"
    argv = tiny_teacher_run(tmp_path, "--output_dir", str(output), "--max_steps", "2", "--logging_steps", "1",
                            "--eval_strategy", "no", "--save_strategy", "no", per_class={"train": 3, "validation": 1})
    argv[argv.index("--report_to") + 1] = "tensorboard"
    assert cli_main(argv) == 0
    assert list((output / "runs").glob("*/events.out.tfevents.*"))


def renamed_dataset(tmp_path) -> datasets.DatasetDict:
    """The synthetic imagefolder as a `datasets` DatasetDict with other column names (img, finding)."""
    data = load_radiograph_dataset(write_imagefolder(tmp_path / "folder", {"train": 3, "validation": 1}))
    return data.rename_columns({"image": "img", "label": "finding"})


def test_saved_dataset_with_other_column_names(tmp_path):
    folder = tmp_path / "saved"
    renamed_dataset(tmp_path).save_to_disk(str(folder))
    data = load_radiograph_dataset(folder, image_column="img", label_column="finding")
    assert data["train"].column_names == ["image", "label", "patient_id", "source"]
    assert data["train"].features["label"].names == list(CLASSES) and len(data["validation"]) == 3
    assert data["train"][0]["image"].size == (40, 40)
    with pytest.raises(ValueError, match=r"no column\(s\) \['image'\]"):
        load_radiograph_dataset(folder, label_column="finding")
    with pytest.raises(ValueError, match="Hub datasets only"):
        load_radiograph_dataset(folder, image_column="img", label_column="finding", revision="v1")
    with pytest.raises(ValueError, match="not to the imagefolder"):
        load_radiograph_dataset(tmp_path / "folder", image_column="img")


def test_hub_dataset_columns_and_revision_reach_the_loader(tmp_path, monkeypatch, one_torch_thread):
    fake, calls = renamed_dataset(tmp_path), []
    monkeypatch.setattr(hub_source.datasets, "load_dataset", lambda *a, **k: calls.append((a, k)) or fake)
    output = tmp_path / "run"
    argv = tiny_teacher_run(tmp_path, "--output_dir", str(output), "--max_steps", "1", "--eval_strategy", "no",
                            "--save_strategy", "no", per_class={"train": 1})
    argv[argv.index("--dataset") + 1] = "someone/cxr-renamed"
    argv += ["--image_column", "img", "--label_column", "finding", "--dataset_revision", "v1"]
    assert cli_main(argv) == 0
    assert calls == [(("someone/cxr-renamed",), {"revision": "v1"})]
    metrics = json.loads((output / "metrics.json").read_text())
    assert metrics["label_names"] == list(CLASSES) and metrics["overall"]["num_examples"] == 3
    assert not math.isnan(json.loads((output / "all_results.json").read_text())["train_loss"])

"""What every training run shares, chest X-ray stages and mammography alike, written once: seeding, the trainer and
its collators, resuming, and saving + evaluating the final model.

A run reads: `seed_everything` first (before any model, subset or sampler exists), then its own data and model,
then `train_model`, then `save_and_evaluate` with its own report writer.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import TrainingArguments, enable_full_determinism, set_seed
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR, TrainOutput

from ..metrics.report import make_compute_metrics
from .teacher import FrozenTeacher
from .trainer import DistillationTrainer
from .trainer_flags import WORST_SOURCE_METRIC, check_trainer_flags, early_stopping_callbacks, save_run_metrics

logger = logging.getLogger(__name__)

# Trainer writes it last into a checkpoint: a folder without it was cut short (e.g. the process was killed).
CHECKPOINT_COMPLETE_MARKER = "trainer_state.json"


def seed_everything(seed: int, full_determinism: bool = False) -> None:
    """Seed python, numpy and torch (and, with `full_determinism`, make torch deterministic), as Trainer does.

    Trainer seeds only in its `__init__`, after our runs have built the model, drawn the subsets and the
    oversampling: without this, two runs with one seed start from different weights.
    """
    if full_determinism:
        enable_full_determinism(seed)
    else:
        set_seed(seed)


def checkpoint_to_resume(training_args: TrainingArguments, resume: bool) -> str | None:
    """The checkpoint a run continues from: `--resume_from_checkpoint` if given, else with `resume` the newest
    complete checkpoint in `output_dir` (a checkpoint cut short by a kill is skipped), else None."""
    if training_args.resume_from_checkpoint:
        return training_args.resume_from_checkpoint
    if not resume or not os.path.isdir(training_args.output_dir):
        return None
    last = last_complete_checkpoint(training_args.output_dir)
    if last:
        logger.info("resuming from %s", last)
    return last


def last_complete_checkpoint(output_dir: str | Path) -> str | None:
    """The highest-step `checkpoint-N` folder of `output_dir` that Trainer finished writing."""
    steps = {}
    for folder in Path(output_dir).glob(f"{PREFIX_CHECKPOINT_DIR}-*"):
        step = folder.name[len(PREFIX_CHECKPOINT_DIR) + 1:]
        if folder.is_dir() and step.isdigit():
            steps[int(step)] = folder
    for step in sorted(steps, reverse=True):
        if (steps[step] / CHECKPOINT_COMPLETE_MARKER).is_file():
            return str(steps[step])
        logger.warning("skipping %s: it was not completely written", steps[step])
    return None


def eval_sources(eval_data: torch.utils.data.Dataset, training_args: TrainingArguments) -> Sequence[Any] | None:
    """The evaluation images' sources, for the `worst_source_accuracy` metric; refuses to select on that metric
    when the evaluation data has none."""
    sources = (getattr(eval_data, "extras", None) or {}).get("source")
    metric = (training_args.metric_for_best_model or "").removeprefix("eval_")
    if sources is None and metric == WORST_SOURCE_METRIC:
        raise ValueError(f"--metric_for_best_model {WORST_SOURCE_METRIC} needs evaluation images with a `source` "
                         "column (metadata.csv), and this evaluation set has none")
    return sources


def train_model(
    model: torch.nn.Module,
    training_args: TrainingArguments,
    *,
    train_data: torch.utils.data.Dataset,
    eval_data: torch.utils.data.Dataset,
    train_collator: Callable,
    eval_collator: Callable,
    label_names: Sequence[str],
    resume: bool,
    teacher: FrozenTeacher | None = None,
    class_weights: torch.Tensor | None = None,
    train_sampler: torch.utils.data.Sampler | None = None,
    callbacks: list | None = None,
) -> tuple[DistillationTrainer, TrainOutput]:
    """Build the `DistillationTrainer` and train, from the checkpoint `checkpoint_to_resume` finds if any; writes
    `train_results.json` (and `all_results.json`) to `output_dir`."""
    check_trainer_flags(training_args)  # also for arguments not parsed from a command line
    # Our collators build the batches; Trainer must neither drop their keys nor guess the label key.
    training_args.remove_unused_columns = False
    training_args.label_names = ["labels"]
    trainer = DistillationTrainer(
        model=model,
        args=training_args,
        train_dataset=train_data,
        eval_dataset=eval_data,
        data_collator=train_collator,
        eval_data_collator=eval_collator,
        compute_metrics=make_compute_metrics(label_names, eval_sources(eval_data, training_args)),
        teacher=teacher,
        class_weights=class_weights,
        train_sampler=train_sampler,
        callbacks=[*(callbacks or []), *early_stopping_callbacks(training_args)],
    )
    train_result = trainer.train(resume_from_checkpoint=checkpoint_to_resume(training_args, resume))
    save_run_metrics(trainer, "train", train_result.metrics, len(distinct_images(train_data)))
    return trainer, train_result


def training_summary(trainer: DistillationTrainer, train_result: TrainOutput) -> dict[str, Any]:
    """What every run reports about its training: time, speed and steps."""
    return {
        "train_runtime_s": train_result.metrics.get("train_runtime"),
        "train_samples_per_second": train_result.metrics.get("train_samples_per_second"),
        "global_step": trainer.state.global_step,
    }


def predict_probabilities(
    trainer: DistillationTrainer, dataset: torch.utils.data.Dataset, metric_key_prefix: str = "test"
) -> tuple[np.ndarray, dict[str, float]]:
    """Softmax probabilities of the model on `dataset` (with the evaluation collator), one row per item, and
    Trainer's metrics of that pass (`<metric_key_prefix>_loss`, `_accuracy`, ..., `_runtime`)."""
    prediction = trainer.predict(dataset, metric_key_prefix=metric_key_prefix)
    logits = prediction.predictions[0] if isinstance(prediction.predictions, tuple) else prediction.predictions
    return torch.softmax(torch.from_numpy(np.asarray(logits)).float(), dim=-1).numpy(), prediction.metrics


def save_and_evaluate(
    trainer: DistillationTrainer,
    processor,
    eval_data: torch.utils.data.Dataset,
    summary: dict[str, Any],
    arguments: dict[str, Any],
    write_reports: Callable[[Path, np.ndarray, dict[str, Any]], dict],
    *,
    model_card: bool = False,
) -> dict:
    """Save the Hub-ready folder (weights + modeling code, image processor, trainer state), predict `eval_data` and
    write the run's reports with `write_reports(output_dir, probabilities, summary)` (metrics.json and its plots),
    `eval_results.json` + `all_results.json` (Trainer's metrics, as the HF examples write them),
    `training_args.json` (`arguments`) and, with `model_card`, README.md. Returns the report; processes other than
    the main one only predict and return `summary`."""
    output_dir = Path(trainer.args.output_dir)
    trainer.save_model(str(output_dir))
    # every process takes part in prediction; its metrics are those of the saved (best, if so asked) model
    probabilities, eval_metrics = predict_probabilities(trainer, eval_data, metric_key_prefix="eval")
    if not trainer.is_world_process_zero():
        return summary
    processor.save_pretrained(output_dir)
    trainer.state.save_to_json(str(output_dir / "trainer_state.json"))
    save_run_metrics(trainer, "eval", eval_metrics, len(eval_data))
    report = write_reports(output_dir, probabilities, summary)
    (output_dir / "training_args.json").write_text(json.dumps(arguments, indent=2, default=str))
    if model_card:
        write_card(output_dir)
    return report


def write_card(output_dir: Path) -> None:
    """README.md from the folder's files; a card that cannot be built is logged, not raised: the model is saved."""
    from ..model_card import write_model_card  # lazy: huggingface_hub's card machinery is only needed here

    try:
        write_model_card(output_dir)
    except Exception:  # any failure here must not fail a finished run
        logger.exception("could not write the model card of %s (write it later: hf-deitcxr push writes one)",
                         output_dir)


def distinct_images(dataset: torch.utils.data.Dataset) -> torch.utils.data.Dataset:
    """The data set under an oversampling `Subset`: its length counts images, not repeats."""
    return dataset.dataset if isinstance(dataset, torch.utils.data.Subset) else dataset


__all__ = [
    "checkpoint_to_resume",
    "distinct_images",
    "eval_sources",
    "last_complete_checkpoint",
    "predict_probabilities",
    "save_and_evaluate",
    "seed_everything",
    "train_model",
    "training_summary",
    "write_card",
]

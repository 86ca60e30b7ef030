"""The `TrainingArguments` flags of `hf-deitcxr train` that a stock `Trainer` would act on differently in our runs:
each is honoured (label smoothing in our own losses, early stopping) or refused with the command to use instead
(`--push_to_hub`), so no flag is accepted and then silently ignored."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from transformers import EarlyStoppingCallback, Trainer, TrainingArguments
from transformers.trainer_utils import IntervalStrategy

# The evaluation metrics our `compute_metrics` logs (hf_deitcxr.metrics.report), besides `sensitivity_<class>`.
# `worst_source_accuracy` is logged where the evaluation images have a source (the lowest per-source accuracy).
WORST_SOURCE_METRIC = "worst_source_accuracy"
LOGGED_METRICS = ("loss", "accuracy", "balanced_accuracy", "macro_f1", "macro_auc", "ece", WORST_SOURCE_METRIC)
LOWER_IS_BETTER = ("loss", "ece")

PUSH_TO_HUB_REFUSAL = (
    "--push_to_hub is not supported by `hf-deitcxr train`: Trainer would upload raw checkpoints as it saves them, "
    "without the checks a published model needs. Train without it, then publish the output folder with "
    "`hf-deitcxr push --folder OUTPUT_DIR --repo_id NAMESPACE/NAME` (it checks the image processor, metrics and "
    "remote code, writes the model card and refuses pickle files and secrets; --dry_run lists what it would upload)"
)


@dataclass
class RadiographTrainingArguments(TrainingArguments):
    """`TrainingArguments` plus early stopping, checked when parsed (before any data is read)."""

    early_stopping_patience: int | None = field(
        default=None,
        metadata={"help": "Stop when --metric_for_best_model has not improved for N evaluations in a row "
                  "(transformers' EarlyStoppingCallback); needs --load_best_model_at_end true, an explicit "
                  "--metric_for_best_model (e.g. macro_auc or loss) and an --eval_strategy matching --save_strategy"},
    )
    early_stopping_threshold: float = field(
        default=0.0, metadata={"help": "With --early_stopping_patience: the least change that counts as an improvement"}
    )

    def __post_init__(self) -> None:
        # Checked before TrainingArguments fills in metric_for_best_model="loss": an explicit choice is asked for.
        check_early_stopping(self)
        default_greater_is_better(self)
        super().__post_init__()
        check_trainer_flags(self)


def default_greater_is_better(args: TrainingArguments) -> None:
    """Lower is better for `ece` too (TrainingArguments only knows that of names ending in "loss")."""
    metric = args.metric_for_best_model
    if args.greater_is_better is None and metric is not None and metric.removeprefix("eval_") in LOWER_IS_BETTER:
        args.greater_is_better = False


def check_trainer_flags(args: TrainingArguments) -> None:
    """Refuse what our runs cannot do as asked; raises ValueError. Any `TrainingArguments` (subclass or not)."""
    if args.push_to_hub:
        raise ValueError(PUSH_TO_HUB_REFUSAL)
    if not 0.0 <= args.label_smoothing_factor < 1.0:
        raise ValueError(f"--label_smoothing_factor must be in [0, 1), got {args.label_smoothing_factor}")


def check_early_stopping(args: TrainingArguments) -> None:
    """The flags `--early_stopping_patience` needs, each missing one named (raises ValueError)."""
    patience = getattr(args, "early_stopping_patience", None)
    if patience is None:
        return
    if patience < 1:
        raise ValueError(f"--early_stopping_patience must be a number of evaluations >= 1, got {patience}")
    problems = []
    if IntervalStrategy(args.eval_strategy) == IntervalStrategy.NO:
        problems.append("an --eval_strategy other than no (epoch or steps): the metric is read at each evaluation")
    if not args.load_best_model_at_end:
        problems.append("--load_best_model_at_end true: the run should end with the best model, not the last one")
    if args.metric_for_best_model is None:
        problems.append(f"--metric_for_best_model, one of {', '.join(LOGGED_METRICS)} or sensitivity_<class>")
    elif not is_logged_metric(args.metric_for_best_model):
        problems.append(f"--metric_for_best_model {args.metric_for_best_model!r} is not a metric the run logs: use "
                        f"one of {', '.join(LOGGED_METRICS)} or sensitivity_<class>")
    if problems:
        raise ValueError(f"--early_stopping_patience {patience} needs " + "; ".join(problems))


def is_logged_metric(name: str) -> bool:
    name = name.removeprefix("eval_")
    return name in LOGGED_METRICS or re.fullmatch(r"sensitivity_\w+", name) is not None


def early_stopping_callbacks(args: TrainingArguments) -> list[EarlyStoppingCallback]:
    """The callback `--early_stopping_patience` asks for (none without it), its flags checked."""
    check_early_stopping(args)
    patience = getattr(args, "early_stopping_patience", None)
    if patience is None:
        return []
    return [EarlyStoppingCallback(patience, getattr(args, "early_stopping_threshold", 0.0))]


def save_run_metrics(trainer: Trainer, split: str, metrics: dict[str, Any], num_samples: int) -> Path:
    """`<split>_results.json` and the merged `all_results.json` in `output_dir`, as the HF examples write them."""
    trainer.save_metrics(split, {**metrics, f"{split}_samples": num_samples})
    return Path(trainer.args.output_dir) / "all_results.json"


__all__ = [
    "PUSH_TO_HUB_REFUSAL",
    "WORST_SOURCE_METRIC",
    "RadiographTrainingArguments",
    "check_early_stopping",
    "check_trainer_flags",
    "early_stopping_callbacks",
    "save_run_metrics",
]

"""Parse training arguments (HfArgumentParser) and run a stage; shared by scripts/train.py and `hf-deitcxr train`."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from transformers import HfArgumentParser, TrainingArguments

from .arguments import DataArguments, ModelArguments

# Training defaults that differ from TrainingArguments' own: what radiograph classification on small data needs.
DEFAULTS = {
    "learning_rate": 5e-4,
    "weight_decay": 0.05,
    "warmup_steps": 0.05,
    "lr_scheduler_type": "cosine",
    "eval_strategy": "epoch",
    "save_strategy": "epoch",
    "save_total_limit": 2,
    "logging_steps": 10,
    "report_to": "none",
    "dataloader_num_workers": 0,
}


LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def configure_logging() -> None:
    """Timestamped INFO logs: the format of every long-running `hf-deitcxr` command."""
    logging.basicConfig(format=LOG_FORMAT, level=logging.INFO)


def parse_with_training_defaults(dataclass_types: tuple[type, ...], argv: Sequence[str]) -> tuple:
    """Parse a command line (or a single JSON arguments file) into `dataclass_types`, with our `DEFAULTS` applied."""
    parser = HfArgumentParser(dataclass_types)
    parser.set_defaults(**DEFAULTS)
    if len(argv) == 1 and argv[0].endswith(".json"):
        return parser.parse_json_file(argv[0])
    return parser.parse_args_into_dataclasses(args=list(argv))


def parse_training_arguments(argv: Sequence[str]) -> tuple[ModelArguments, DataArguments, TrainingArguments]:
    return parse_with_training_defaults((ModelArguments, DataArguments, TrainingArguments), argv)


def requested_task(argv: Sequence[str]) -> str:
    """The `--task` of a command line or JSON arguments file ("cxr" when absent): each task has its own parser."""
    if len(argv) == 1 and argv[0].endswith(".json"):
        return str(json.loads(Path(argv[0]).read_text()).get("task", "cxr"))
    peek = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    peek.add_argument("--task", default="cxr")
    return peek.parse_known_args(list(argv))[0].task


def train_main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if requested_task(argv) == "mammo":
        from ..mammo.training import mammo_train_main

        return mammo_train_main(argv)
    from .run import run_training  # heavy imports only once arguments parsed

    configure_logging()
    model_args, data_args, training_args = parse_training_arguments(argv)
    report = run_training(model_args, data_args, training_args)
    overall = report.get("overall", report)
    print(json.dumps({k: overall.get(k) for k in ("accuracy", "macro_f1", "macro_auc") if k in overall}))
    return 0

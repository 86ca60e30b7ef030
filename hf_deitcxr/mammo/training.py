"""`--task mammo`: train a single-view or multi-view mammography model with the chest X-ray pipeline's Trainer.

Shared with the chest X-ray stages: the training harness (`training.harness`: seeding, the `DistillationTrainer`
without a teacher, i.e. a Trainer with class-weighted CE and an optional sampler, resume, save-and-evaluate),
`data.balancing.plan_balancing`, the batched augmentation and collator, the metrics and the
evaluation report. What is mammography-specific: exams from a manifest, patient-level exam splits, the multi-view
collator and model, and exam-level scores for single-view models (max / mean over an exam's views).
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from transformers import TrainingArguments

from ..data.augmentation import RadiographAugmentation
from ..data.balancing import plan_balancing
from ..data.collate import RadiographCollator
from ..data.input_spec import normalization_from_image_processor
from ..metrics.report import write_evaluation_report
from ..training.arguments import configure_logging, parse_with_training_defaults
from ..training.harness import save_and_evaluate, seed_everything, train_model, training_summary
from ..training.trainer_flags import RadiographTrainingArguments
from .arguments import MammoDataArguments, MammoModelArguments, mammography_augmentation
from .builders import build_mammo_model, make_mammo_processor
from .dataset import MammoExamDataset, MultiViewCollator
from .evaluation import AGGREGATIONS, aggregate_views, exam_metrics
from .manifest import load_mammo_manifest

logger = logging.getLogger(__name__)


def run_mammo_training(
    model_args: MammoModelArguments, data_args: MammoDataArguments, training_args: TrainingArguments
) -> dict:
    """Train, save a Hub-ready folder and write exam-level `metrics.json` (plus `view_level/` for single view)."""
    seed_everything(training_args.seed, training_args.full_determinism)
    manifest = load_mammo_manifest(data_args.dataset, data_args.class_name_list, data_args.dicom_labels,
                                   exam_unit=data_args.exam_unit, multi_crop=data_args.multi_crop)
    splits = manifest.split(data_args.validation_fraction, seed=data_args.split_seed,
                            allow_leakage=data_args.allow_leakage)
    if data_args.eval_split not in splits:
        raise ValueError(f"evaluation split {data_args.eval_split!r} not found; splits: {list(splits)}")
    label_names = manifest.class_names
    logger.info("mammography: %d images -> %d exams (exam_unit=%s, multi_crop=%s, %d crops left out); exams per "
                "split: %s; classes %s", len(manifest.images), len(manifest), manifest.exam_unit,
                manifest.multi_crop, manifest.num_left_out, {name: len(part) for name, part in splits.items()},
                label_names)

    size = model_args.image_size
    train_exams = MammoExamDataset.from_manifest(splits["train"], size, data_args.orientation)
    eval_exams = MammoExamDataset.from_manifest(splits[data_args.eval_split], size, data_args.orientation)
    single = model_args.architecture == "single_view"
    model = build_mammo_model(
        model_args.architecture, model_args.model_name_or_path, label_names, image_size=size,
        from_scratch=model_args.from_scratch, orientation=data_args.orientation,
        exam_aggregation=model_args.exam_aggregation, num_global_layers=model_args.num_global_layers,
        global_tokens=model_args.global_tokens, global_dropout=model_args.global_dropout,
    )
    processor = make_mammo_processor(None if model_args.from_scratch else model_args.model_name_or_path, size)
    mean, std, _ = normalization_from_image_processor(processor)

    flip = data_args.horizontal_flip_p if data_args.horizontal_flip_p is not None else (0.5 if single else 0.0)
    augmentation = RadiographAugmentation(mammography_augmentation(flip)) if data_args.augment else None
    train_collator = RadiographCollator(size, mean, std, num_channels=3, augmentation=augmentation,
                                       augmentation_seed=training_args.seed)
    eval_collator = RadiographCollator(size, mean, std, num_channels=3)
    if single:
        train_data, eval_data = train_exams.single_view(), eval_exams.single_view()
    else:
        train_data, eval_data = train_exams, eval_exams
        train_collator, eval_collator = MultiViewCollator(train_collator), MultiViewCollator(eval_collator)

    plan = plan_balancing(data_args.balancing, train_data.labels, len(label_names), seed=training_args.seed)
    if plan.indices is not None:
        train_data = torch.utils.data.Subset(train_data, plan.indices)

    trainer, train_result = train_model(
        model, training_args, train_data=train_data, eval_data=eval_data, train_collator=train_collator,
        eval_collator=eval_collator, label_names=label_names, resume=data_args.resume,
        class_weights=plan.class_weights, train_sampler=plan.sampler,
    )
    summary = {
        "task": "mammo",
        "architecture": model_args.architecture,
        **training_summary(trainer, train_result),
        "num_train_items": len(trainer.train_dataset),
        "num_eval_exams": len(eval_exams),
        "exam_unit": data_args.exam_unit,
        "multi_crop": data_args.multi_crop,
        "eval_split": data_args.eval_split,
        "image_size": size,
    }

    def write_reports(output_dir: Path, probabilities: np.ndarray, summary: dict) -> dict:
        return write_exam_reports(output_dir, probabilities, eval_exams, eval_data, summary, model_args)

    arguments = {"model": vars(model_args), "data": vars(data_args), "training": training_args.to_dict()}
    return save_and_evaluate(trainer, processor, eval_data, summary, arguments, write_reports)


def write_exam_reports(output_dir: Path, probabilities: np.ndarray, eval_exams: MammoExamDataset, eval_data,
                       summary: dict, model_args: MammoModelArguments) -> dict:
    """Exam-level metrics.json and plots; for single view also `view_level/` and every exam aggregation rule."""
    label_names = eval_exams.label_names
    exam_labels = eval_exams.labels.numpy()
    if model_args.architecture == "single_view":
        write_evaluation_report(output_dir / "view_level", probabilities, eval_data.labels.numpy(), label_names,
                                extra=summary, patient_ids=eval_data.extras.get("patient_id"))
        index = eval_data.extras["exam_index"]
        per_rule = {how: aggregate_views(probabilities, index, len(eval_exams), how) for how in AGGREGATIONS}
        summary["exam_metrics_by_aggregation"] = {
            how: _headline(exam_metrics(probs, exam_labels, label_names)) for how, probs in per_rule.items()
        }
        summary["exam_aggregation"] = model_args.exam_aggregation
        probabilities = per_rule[model_args.exam_aggregation]
    return write_evaluation_report(output_dir, probabilities, exam_labels, label_names, extra=summary,
                                   patient_ids=eval_exams.patient_ids)


def _headline(metrics: dict) -> dict:
    return {key: metrics[key] for key in ("macro_auc", "accuracy", "balanced_accuracy")}


def parse_mammo_arguments(argv: Sequence[str]) -> tuple[MammoModelArguments, MammoDataArguments, TrainingArguments]:
    return parse_with_training_defaults((MammoModelArguments, MammoDataArguments, RadiographTrainingArguments), argv)


def mammo_train_main(argv: Sequence[str] | None = None) -> int:
    configure_logging()
    model_args, data_args, training_args = parse_mammo_arguments(sys.argv[1:] if argv is None else argv)
    report = run_mammo_training(model_args, data_args, training_args)
    overall = report.get("overall", report)
    print(json.dumps({k: overall.get(k) for k in ("accuracy", "macro_f1", "macro_auc") if k in overall}))
    return 0


__all__ = ["mammo_train_main", "parse_mammo_arguments", "run_mammo_training"]

"""One training stage end to end: data -> checks -> model -> Trainer -> Hub-ready folder with metrics."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path

import torch
from transformers import TrainingArguments
from transformers.trainer_utils import get_last_checkpoint

from ..data import ensure_no_leakage, load_radiograph_dataset, patient_subset, validate_dataset
from ..data.augmentation import AugmentationConfig, RadiographAugmentation
from ..data.balancing import balanced_class_weights, make_weighted_sampler, oversample_indices
from ..data.collate import RadiographCollator
from ..data.image_cache import CachedImageDataset
from ..data.input_spec import input_spec_from_processor
from ..metrics.report import make_compute_metrics, write_evaluation_report
from ..models.deit_cxr.image_processing_deit_cxr import make_image_processor
from .arguments import DataArguments, ModelArguments, configure_logging, parse_training_arguments
from .builders import build_student, build_teacher, load_trained_teacher
from .teacher import TeacherInputAdapter
from .trainer import DistillationTrainer, compute_teacher_logits

logger = logging.getLogger(__name__)


def run_training(model_args: ModelArguments, data_args: DataArguments, training_args: TrainingArguments,
                 callbacks: list | None = None) -> dict:
    """Train one stage and write the final model, image processor, metrics and plots to `output_dir`.

    `callbacks`: extra `TrainerCallback`s (e.g. a step timer).
    """
    datasets = load_radiograph_dataset(
        data_args.dataset, class_names=data_args.class_name_list, validation_fraction=data_args.validation_fraction
    )
    report = validate_dataset(datasets)
    logger.info("data report:\n%s", report.format())
    ensure_no_leakage(report, allow_leakage=data_args.allow_leakage)
    if data_args.eval_split not in datasets:
        raise ValueError(f"evaluation split {data_args.eval_split!r} not found; splits: {list(datasets)}")

    train_split = datasets["train"]
    if data_args.train_subset:
        train_split = patient_subset(train_split, data_args.train_subset, seed=data_args.subset_seed)
    label_names = train_split.features["label"].names

    model = build_teacher(model_args, label_names) if model_args.stage == "teacher" else build_student(
        model_args, label_names
    )
    processor = make_image_processor(model_args.image_size, model_args.num_channels)
    student_spec = input_spec_from_processor(processor, model_args.num_channels)
    if model_args.stage == "teacher" and model_args.channels_last_teacher:
        model = model.to(memory_format=torch.channels_last)

    cache_dir = data_args.pixel_cache_dir
    train_data = CachedImageDataset.from_hf_dataset(train_split, size=model_args.image_size, cache_dir=cache_dir)
    eval_data = CachedImageDataset.from_hf_dataset(
        datasets[data_args.eval_split], size=model_args.image_size, cache_dir=cache_dir
    )
    augmentation = RadiographAugmentation(AugmentationConfig()) if data_args.augment else None
    collator_kwargs = dict(
        size=model_args.image_size, mean=student_spec.mean, std=student_spec.std,
        num_channels=model_args.num_channels,
    )
    train_collator = RadiographCollator(
        **collator_kwargs, augmentation=augmentation, return_indices=data_args.teacher_logit_cache
    )
    eval_collator = RadiographCollator(**collator_kwargs, augmentation=None)

    train_labels = train_data.labels.tolist()
    class_weights = sampler = None
    if data_args.balancing == "class_weighted_loss":
        class_weights = balanced_class_weights(train_labels, len(label_names))
    elif data_args.balancing == "weighted_sampler":
        sampler = make_weighted_sampler(train_labels, len(label_names), seed=training_args.seed)
    elif data_args.balancing == "oversample":
        train_data = torch.utils.data.Subset(train_data, oversample_indices(train_labels, len(label_names),
                                                                            seed=training_args.seed))

    teacher = adapter = logit_cache = None
    if model_args.stage == "distill":
        teacher, teacher_spec = load_trained_teacher(model_args.teacher_name_or_path, label_names)
        if model_args.channels_last_teacher:
            teacher = teacher.to(memory_format=torch.channels_last)
        adapter = TeacherInputAdapter(student_spec, teacher_spec)
        if data_args.teacher_logit_cache:
            logit_cache = build_logit_cache(teacher, train_data, train_collator, adapter, training_args)

    training_args.remove_unused_columns = False
    training_args.label_names = ["labels"]
    trainer = DistillationTrainer(
        model=model,
        args=training_args,
        train_dataset=train_data,
        eval_dataset=eval_data,
        data_collator=train_collator,
        compute_metrics=make_compute_metrics(label_names),
        teacher=teacher,
        teacher_input_adapter=adapter,
        teacher_logit_cache=logit_cache,
        class_weights=class_weights,
        train_sampler=sampler,
        callbacks=callbacks,
    )
    # Evaluation must not augment: Trainer has one collator, so swap it for eval dataloaders.
    trainer.get_eval_dataloader = _with_collator(trainer, trainer.get_eval_dataloader, eval_collator)
    trainer.get_test_dataloader = _with_collator(trainer, trainer.get_test_dataloader, eval_collator)

    train_result = trainer.train(resume_from_checkpoint=_checkpoint_to_resume(training_args, data_args))
    return finish(trainer, processor, eval_data, label_names, train_result, model_args, data_args)


def build_logit_cache(teacher, train_data, collator, adapter, training_args) -> torch.Tensor:
    base = _distinct_images(train_data)
    loader = torch.utils.data.DataLoader(base, batch_size=training_args.per_device_eval_batch_size,
                                         collate_fn=collator)
    return compute_teacher_logits(teacher, loader, len(base), adapter, device=training_args.device)


def _distinct_images(dataset):
    """The data set under an oversampling `Subset`: its length counts images, not repeats."""
    return dataset.dataset if isinstance(dataset, torch.utils.data.Subset) else dataset


def _with_collator(trainer, get_dataloader, collator):
    def wrapped(*args, **kwargs):
        original, trainer.data_collator = trainer.data_collator, collator
        try:
            return get_dataloader(*args, **kwargs)
        finally:
            trainer.data_collator = original

    return wrapped


def _checkpoint_to_resume(training_args: TrainingArguments, data_args: DataArguments):
    if training_args.resume_from_checkpoint:
        return training_args.resume_from_checkpoint
    if data_args.resume and os.path.isdir(training_args.output_dir):
        last = get_last_checkpoint(training_args.output_dir)
        if last:
            logger.info("resuming from %s", last)
        return last
    return None


def finish(trainer, processor, eval_data, label_names, train_result, model_args, data_args) -> dict:
    """Save the Hub-ready folder: weights + code + processor, metrics.json, plots and the training summary."""
    output_dir = Path(trainer.args.output_dir)
    trainer.save_model(str(output_dir))
    if trainer.is_world_process_zero():
        processor.save_pretrained(output_dir)
        trainer.state.save_to_json(str(output_dir / "trainer_state.json"))
    prediction = trainer.predict(eval_data)
    logits = prediction.predictions[0] if isinstance(prediction.predictions, tuple) else prediction.predictions
    probabilities = torch.softmax(torch.from_numpy(logits).float(), dim=-1).numpy()
    summary = {
        "stage": model_args.stage,
        "train_runtime_s": train_result.metrics.get("train_runtime"),
        "train_samples_per_second": train_result.metrics.get("train_samples_per_second"),
        "global_step": trainer.state.global_step,
        "num_train_images": len(_distinct_images(trainer.train_dataset)),
        "eval_split": data_args.eval_split,
        "image_size": model_args.image_size,
    }
    if not trainer.is_world_process_zero():
        return summary
    report = write_evaluation_report(
        output_dir, probabilities, eval_data.labels.numpy(), label_names,
        sources=eval_data.extras.get("source"), extra=summary,
    )
    (output_dir / "training_args.json").write_text(
        json.dumps({"model": vars(model_args), "data": vars(data_args)}, indent=2, default=str)
    )
    return report


def train_main(argv: Sequence[str]) -> int:
    """`hf-deitcxr train --task cxr ...`: parse, train one stage, print its headline metrics."""
    configure_logging()
    model_args, data_args, training_args = parse_training_arguments(argv)
    report = run_training(model_args, data_args, training_args)
    overall = report.get("overall", report)
    print(json.dumps({k: overall.get(k) for k in ("accuracy", "macro_f1", "macro_auc") if k in overall}))
    return 0

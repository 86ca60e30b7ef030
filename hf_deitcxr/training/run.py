"""One training stage end to end: data -> checks -> model -> Trainer -> Hub-ready folder with metrics."""

from __future__ import annotations

import json
import logging
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from transformers import TrainingArguments

from ..data import ensure_no_leakage, load_radiograph_dataset, patient_subset, validate_dataset
from ..data.augmentation import (
    AugmentationConfig,
    RadiographAugmentation,
    acquisition_augmentation,
    augmentation_preset,
    framing_augmentation,
)
from ..data.balancing import plan_balancing
from ..data.collate import RadiographCollator
from ..data.cross_validation import check_teacher_fold, cross_validation_split
from ..data.image_cache import CachedImageDataset
from ..data.input_spec import InputSpec
from ..data.processing_augmentation import with_processing_variants
from ..data.view_bank import AugmentedViewBank, ViewBankCollator
from ..metrics.report import worst_source, write_evaluation_report
from ..models.deit_cxr.image_processing_deit_cxr import make_image_processor
from .arguments import DataArguments, ModelArguments, configure_logging, parse_training_arguments
from .builders import build_student, build_teacher, load_trained_teacher
from .harness import distinct_images, save_and_evaluate, seed_everything, train_model, training_summary
from .teacher import FrozenTeacher, TeacherInputAdapter, mixed_precision_dtype
from .teacher_ensemble import teacher_paths
from .trainer_flags import check_trainer_flags

logger = logging.getLogger(__name__)


def run_training(model_args: ModelArguments, data_args: DataArguments, training_args: TrainingArguments,
                 callbacks: list | None = None) -> dict:
    """Train one stage and write the final model, image processor, metrics and plots to `output_dir`.

    `callbacks`: extra `TrainerCallback`s (e.g. a step timer).
    """
    if data_args.teacher_views and model_args.stage != "distill":
        raise ValueError(f"--teacher_views caches a teacher's logits: it needs --stage distill, not {model_args.stage}")
    check_trainer_flags(training_args)  # before any data is read
    seed_everything(training_args.seed, training_args.full_determinism)
    datasets = load_radiograph_dataset(
        data_args.dataset, class_names=data_args.class_name_list, validation_fraction=data_args.validation_fraction,
        image_column=data_args.image_column, label_column=data_args.label_column, revision=data_args.dataset_revision,
    )
    report = validate_dataset(datasets)
    logger.info("data report:\n%s", report.format())
    ensure_no_leakage(report, allow_leakage=data_args.allow_leakage)
    fold = None
    if data_args.cv_folds:  # the fold's train and evaluation parts replace the train and validation splits
        datasets, fold = cross_validation_split(datasets, data_args.cv_folds, data_args.fold,
                                                seed=data_args.subset_seed, pool=data_args.cv_pool, report=report)
        if model_args.stage == "distill":  # a teacher that saw the held-out fold would leak it
            for teacher in teacher_paths(model_args.teacher_name_or_path):  # every member of an ensemble
                check_teacher_fold(teacher, fold, allow_leakage=data_args.allow_leakage)
    if data_args.eval_split not in datasets:
        raise ValueError(f"evaluation split {data_args.eval_split!r} not found; splits: {list(datasets)}")

    train_split = datasets["train"]
    if data_args.exclude_source_list:
        train_split = select_sources(train_split, exclude=data_args.exclude_source_list, split_name="train")
    eval_split = datasets[data_args.eval_split]
    if data_args.eval_source_list:
        eval_split = select_sources(eval_split, keep=data_args.eval_source_list, split_name=data_args.eval_split)
    if data_args.train_subset:
        train_split = patient_subset(train_split, data_args.train_subset, seed=data_args.subset_seed)
    label_names = train_split.features["label"].names

    model = build_model(model_args, label_names)
    processor = make_image_processor(model_args.image_size, model_args.num_channels, model_args.preprocessing)
    student_spec = InputSpec.from_processor(processor, model_args.num_channels)

    cache = dict(size=model_args.image_size, cache_dir=data_args.pixel_cache_dir,
                 preprocessing=student_spec.preprocessing)
    train_data = CachedImageDataset.from_hf_dataset(train_split, **cache)
    if data_args.processing_variants:
        train_data = with_processing_variants(train_data, train_split, data_args.processing_variants,
                                              seed=training_args.seed, **cache)
    eval_data = CachedImageDataset.from_hf_dataset(eval_split, **cache)
    augmentation = RadiographAugmentation(augmentation_config(data_args)) if data_args.augment else None
    collator_kwargs = dict(
        size=model_args.image_size, mean=student_spec.mean, std=student_spec.std,
        num_channels=model_args.num_channels,
    )
    train_collator = RadiographCollator(
        **collator_kwargs, augmentation=augmentation, return_indices=data_args.teacher_logit_cache,
        augmentation_seed=training_args.seed,
    )
    eval_collator = RadiographCollator(**collator_kwargs, augmentation=None)

    plan = plan_balancing(data_args.balancing, train_data.labels.tolist(), len(label_names), seed=training_args.seed,
                          sources=train_data.extras.get("source"))
    if plan.indices is not None:
        train_data = torch.utils.data.Subset(train_data, plan.indices)

    teacher, view_bank, timings = None, None, {}
    if model_args.stage == "distill":
        teacher = load_frozen_teacher(model_args, label_names, student_spec, training_args)
        if data_args.teacher_logit_cache:
            start = time.perf_counter()
            cache_teacher_logits(teacher, distinct_images(train_data), train_collator, data_args,
                                 training_args.per_device_eval_batch_size)
            timings["teacher_logit_cache_s"] = time.perf_counter() - start  # part of the student's cost
        elif data_args.teacher_views:
            # FKD: the student trains on K fixed augmented views whose teacher logits are computed once.
            start = time.perf_counter()
            view_bank = AugmentedViewBank.build(
                distinct_images(train_data), data_args.teacher_views, size=model_args.image_size,
                augmentation=augmentation, seed=training_args.seed, mean=student_spec.mean, std=student_spec.std,
                num_channels=model_args.num_channels,
            )
            timings["view_bank_build_s"] = time.perf_counter() - start
            start = time.perf_counter()
            teacher.cache_view_logits(view_bank, batch_size=training_args.per_device_eval_batch_size)
            timings["teacher_view_logits_s"] = time.perf_counter() - start
            logger.info("view bank of %d x %d views at %d px (seed %d): built in %.1f s, their teacher logits "
                        "cached in %.1f s", view_bank.num_views, view_bank.num_images, view_bank.size, view_bank.seed,
                        timings["view_bank_build_s"], timings["teacher_view_logits_s"])
            train_collator = ViewBankCollator(view_bank, seed=training_args.seed)

    trainer, train_result = train_model(
        model, training_args, train_data=train_data, eval_data=eval_data, train_collator=train_collator,
        eval_collator=eval_collator, label_names=label_names, resume=data_args.resume, teacher=teacher,
        class_weights=plan.class_weights, train_sampler=plan.sampler, callbacks=callbacks,
    )
    summary = {
        "stage": model_args.stage,
        **training_summary(trainer, train_result),
        **train_set_size(len(distinct_images(trainer.train_dataset)), data_args.processing_variants),
        "eval_split": data_args.eval_split,
        "image_size": model_args.image_size,
        "preprocessing": student_spec.preprocessing.to_dict(),
        "processing_variants": data_args.processing_variants,
        **({"teacher_views": view_bank.num_views} if view_bank is not None else {}),
        **({"cross_validation": fold.to_dict()} if fold is not None else {}),
        **timings,
    }

    def write_reports(output_dir: Path, probabilities: np.ndarray, summary: dict) -> dict:
        sources = eval_data.extras.get("source")
        if sources is not None:
            summary = {**summary, "worst_source": worst_source(probabilities, eval_data.labels.numpy(), sources,
                                                               label_names)}
        return write_evaluation_report(output_dir, probabilities, eval_data.labels.numpy(), label_names,
                                       sources=sources, extra=summary,
                                       patient_ids=eval_data.extras.get("patient_id"))

    arguments = {"model": vars(model_args), "data": vars(data_args), "training": training_args.to_dict()}
    if view_bank is not None:
        arguments["view_bank"] = view_bank.describe()
    if fold is not None:
        arguments["cross_validation"] = fold.to_dict()
    return save_and_evaluate(trainer, processor, eval_data, summary, arguments, write_reports, model_card=True)



def train_set_size(num_samples: int, processing_variants: int) -> dict[str, int]:
    """`num_train_images`: the distinct training images (what a data-efficiency axis counts); with processed variants
    also `num_train_samples`, the images and their variants together."""
    if not processing_variants:
        return {"num_train_images": num_samples}
    return {"num_train_images": num_samples // (1 + processing_variants), "num_train_samples": num_samples}

def cache_teacher_logits(teacher: FrozenTeacher, images: CachedImageDataset, collator, data_args: DataArguments,
                         batch_size: int) -> None:
    """The teacher's logits of every training image, once. With `--variant_targets original` only the originals
    (the first 1 / (1 + processing_variants) of `images`) go through the teacher and their variants share them: the
    target does not move under a processing change, which is what the student should learn."""
    share = data_args.processing_variants and data_args.variant_targets == "original"
    copies = 1 + data_args.processing_variants if share else 1
    originals = torch.utils.data.Subset(images, range(len(images) // copies)) if share else images
    loader = torch.utils.data.DataLoader(originals, batch_size=batch_size, collate_fn=collator)
    teacher.cache_logits(loader, len(originals))
    if share:
        teacher.repeat_logit_cache(copies)


def select_sources(split, *, exclude: Sequence[str] = (), keep: Sequence[str] = (), split_name: str = "train"):
    """`split` without the images whose `source` is in `exclude` (or with only those in `keep`).

    Every name must be a source of `split` (a typo would otherwise silently drop nothing); what is dropped is
    logged per class. Raises ValueError on an unknown name or when nothing would be left.
    """
    if "source" not in split.column_names:
        raise ValueError(f"the {split_name} split has no 'source' column to select sources from")
    sources = split["source"]
    present = sorted(set(sources))
    unknown = sorted(set(exclude) - set(present)) + sorted(set(keep) - set(present))
    if unknown:
        raise ValueError(f"unknown source(s) {unknown} for the {split_name} split; its sources are {present}")
    dropped_sources = set(exclude) | (set(present) - set(keep) if keep else set())
    kept = [i for i, source in enumerate(sources) if source not in dropped_sources]
    if not kept:
        raise ValueError(f"no {split_name} images left after dropping source(s) {sorted(dropped_sources)}")
    names = split.features["label"].names
    labels = split["label"]
    dropped = Counter(names[labels[i]] for i, source in enumerate(sources) if source in dropped_sources)
    logger.info("%s split: dropped source(s) %s, %d of %d images (%s); kept source(s) %s", split_name,
                sorted(dropped_sources), sum(dropped.values()), len(sources),
                ", ".join(f"{name} {count}" for name, count in sorted(dropped.items())) or "none",
                sorted(set(present) - dropped_sources))
    return split.select(kept)


def build_model(model_args: ModelArguments, label_names: Sequence[str]) -> torch.nn.Module:
    """The model `model_args.stage` trains: the DenseNet teacher, or the DeiT student (distilled or baseline)."""
    if model_args.stage == "teacher":
        teacher = build_teacher(
            label_names, model_name_or_path=model_args.model_name_or_path, variant=model_args.teacher_variant,
            image_size=model_args.image_size, num_channels=model_args.num_channels,
        )
        return teacher.to(memory_format=torch.channels_last) if model_args.channels_last_teacher else teacher
    distilled = model_args.stage == "distill"
    return build_student(
        label_names,
        model_name_or_path=model_args.model_name_or_path,
        preset=model_args.student_preset,
        image_size=model_args.image_size,
        patch_size=model_args.patch_size,
        num_channels=model_args.num_channels,
        distillation_type=model_args.distillation_type if distilled else "none",
        distillation_alpha=model_args.distillation_alpha,
        distillation_tau=model_args.distillation_tau,
        teacher_name_or_path=model_args.teacher_name_or_path if distilled else None,
        inference_head=model_args.inference_head,
        drop_path_rate=model_args.drop_path_rate,
        shifted_patch_tokenization=model_args.shifted_patch_tokenization,
        locality_self_attention=model_args.locality_self_attention,
    )


def augmentation_config(data_args: DataArguments) -> AugmentationConfig:
    """The run's augmentation: `--augmentation_preset`, then `--acquisition_augment` and `--framing_augment` on top."""
    config = augmentation_preset(data_args.augmentation_preset)
    if data_args.acquisition_augment:
        config = acquisition_augmentation(base=config)
    if data_args.framing_augment:
        config = framing_augmentation(config)
    return config


def load_frozen_teacher(model_args: ModelArguments, label_names: Sequence[str], student_spec,
                        training_args: TrainingArguments) -> FrozenTeacher:
    """The trained teacher of the distill stage, fed the student's batches and run in the student's precision."""
    model, teacher_spec = load_trained_teacher(model_args.teacher_name_or_path, label_names)
    if model_args.channels_last_teacher:
        model = model.to(memory_format=torch.channels_last)
    teacher = FrozenTeacher(model, TeacherInputAdapter(student_spec, teacher_spec),
                            autocast_dtype=mixed_precision_dtype(training_args.bf16, training_args.fp16))
    return teacher.to(training_args.device)


def train_main(argv: Sequence[str]) -> int:
    """`hf-deitcxr train --task cxr ...`: parse, train one stage, print its headline metrics."""
    configure_logging()
    model_args, data_args, training_args = parse_training_arguments(argv)
    report = run_training(model_args, data_args, training_args)
    overall = report.get("overall", report)
    print(json.dumps({k: overall.get(k) for k in ("accuracy", "macro_f1", "macro_auc") if k in overall}))
    return 0

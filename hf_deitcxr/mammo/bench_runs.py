"""One run of the real-data mammography benchmark: the data decoded once, a method trained with the shared harness
(`training.harness.train_model`, the same Trainer, balancing, augmentation and collators as `--task mammo`) and its
validation predictions as a JSON-ready row.

Methods are a base model plus optional suffixes: `vit`, `deit`, `swin`, `pvt_v2` (HF backbones), `densenet` (the
seed's CNN teacher), `deit_student` (the seed's DeiT student without a teacher), `deit_distilled` (that student with
soft distillation from this seed's `densenet`), `multi_view` (the multi-view transformer on CC+MLO breasts, its
encoder from a trained single-view ViT/DeiT, as `build_multiview_model` does for a checkpoint folder); suffixes
`_noaug` (no mammography augmentation) and `_unbalanced` / `_oversample` / `_sampler` (balancing none, oversample,
weighted_sampler instead of the class-weighted loss), e.g. `deit_noaug`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..data.augmentation import RadiographAugmentation
from ..data.balancing import plan_balancing
from ..data.collate import RadiographCollator
from ..data.input_spec import normalization_from_image_processor
from ..training.builders import load_trained_teacher
from ..training.harness import predict_probabilities, seed_everything, train_model
from ..training.teacher import FrozenTeacher
from ..training.trainer_flags import RadiographTrainingArguments
from .arguments import mammography_augmentation
from .bench_models import BACKBONES, ModelSize, build_backbone, build_deit_student, build_densenet
from .builders import build_multiview_model, make_mammo_processor
from .dataset import MammoExamDataset, MultiViewCollator
from .evaluation import AGGREGATIONS, aggregate_views
from .manifest import load_mammo_manifest

BASES = (*BACKBONES, "densenet", "deit_student", "deit_distilled", "multi_view")
SUFFIXES = {"_noaug": ("augment", False), "_unbalanced": ("balancing", "none"),
            "_oversample": ("balancing", "oversample"), "_sampler": ("balancing", "weighted_sampler"),
            "_half": ("train_fraction", 0.5)}
TEACHER_METHOD = "densenet"


@dataclass(frozen=True)
class MethodSpec:
    name: str
    base: str
    augment: bool = True
    balancing: str = "class_weighted_loss"
    train_fraction: float = 1.0  # of the training patients (the data-size axis of the analysis)

    @property
    def is_multi_view(self) -> bool:
        return self.base == "multi_view"


def parse_method(name: str) -> MethodSpec:
    """`deit_noaug_unbalanced` -> base deit, no augmentation, no balancing."""
    rest, changes = name, {}
    while rest not in BASES:
        suffix = next((s for s in SUFFIXES if rest.endswith(s)), None)
        if suffix is None:
            raise ValueError(f"unknown method {name!r}: a base of {BASES} plus optional suffixes {list(SUFFIXES)}")
        field_name, value = SUFFIXES[suffix]
        changes[field_name] = value
        rest = rest[: -len(suffix)]
    return replace(MethodSpec(name, rest), **changes)


@dataclass
class BenchData:
    """The breasts of the folder (exam_unit breast, every crop used once), split by patient, decoded once."""

    train: MammoExamDataset
    eval: MammoExamDataset
    label_names: list[str]
    image_size: int


def load_bench_data(dataset: str, image_size: int, validation_fraction: float = 0.15, split_seed: int = 0,
                    orientation: str = "laterality") -> BenchData:
    manifest = load_mammo_manifest(dataset, exam_unit="breast", multi_crop="pair")
    splits = manifest.split(validation_fraction, seed=split_seed)
    decode = {name: MammoExamDataset.from_manifest(splits[name], image_size, orientation)
              for name in ("train", "validation")}
    return BenchData(decode["train"], decode["validation"], manifest.class_names, image_size)


@dataclass(frozen=True)
class Budget:
    """What every run of one benchmark shares (the CPU budget flags)."""

    epochs: float = 30
    multi_view_epochs: float = 20
    batch_size: int = 64
    multi_view_batch_size: int = 32
    learning_rate: float = 5e-4
    multi_view_learning_rate: float = 2e-4
    num_global_layers: int = 2
    global_tokens: str = "cls"
    distillation_alpha: float = 0.7
    distillation_tau: float = 2.0
    size: ModelSize = ModelSize()


def training_arguments(output_dir: Path, spec: MethodSpec, budget: Budget, seed: int) -> RadiographTrainingArguments:
    multi = spec.is_multi_view
    return RadiographTrainingArguments(
        output_dir=str(output_dir), seed=seed, use_cpu=True, report_to="none", disable_tqdm=True,
        num_train_epochs=budget.multi_view_epochs if multi else budget.epochs,
        learning_rate=budget.multi_view_learning_rate if multi else budget.learning_rate,
        per_device_train_batch_size=budget.multi_view_batch_size if multi else budget.batch_size,
        per_device_eval_batch_size=256, weight_decay=0.05, warmup_steps=0.05, lr_scheduler_type="cosine",
        eval_strategy="no", save_strategy="no", logging_steps=50, dataloader_num_workers=0,
        # a last training batch of one crop would fail the DenseNet's batch norm; unset again before predicting
        dataloader_drop_last=True,
    )


def build_model(spec: MethodSpec, data: BenchData, budget: Budget, encoder_dir: Path | None):
    if spec.is_multi_view and encoder_dir is None:
        raise ValueError("multi_view needs the folder of a trained single-view ViT/DeiT (its encoder)")
    size, names, pixels = budget.size, data.label_names, data.image_size
    if spec.base in BACKBONES:
        return build_backbone(spec.base, names, size, pixels)
    if spec.base == "densenet":
        return build_densenet(names, size, pixels)
    if spec.base in ("deit_student", "deit_distilled"):
        kind = "soft" if spec.base == "deit_distilled" else "none"
        return build_deit_student(names, size, pixels, kind, budget.distillation_alpha, budget.distillation_tau)
    return build_multiview_model(str(encoder_dir), names, pixels, num_global_layers=budget.num_global_layers,
                                 global_tokens=budget.global_tokens)


def run_method(spec: MethodSpec, data: BenchData, budget: Budget, seed: int, run_dir: Path,
               teacher_dir: Path | None = None, encoder_dir: Path | None = None) -> dict[str, Any]:
    """Train one method at one seed; save the model to `run_dir/model`; return its validation row."""
    started, start = datetime.now(timezone.utc), time.perf_counter()
    seed_everything(seed)
    model = build_model(spec, data, budget, encoder_dir)
    args = training_arguments(run_dir / "model", spec, budget, seed)
    processor = make_mammo_processor(None, data.image_size)
    mean, std, _ = normalization_from_image_processor(processor)
    flip = 0.0 if spec.is_multi_view else 0.5  # independent flips would break the cross-view geometry
    augmentation = RadiographAugmentation(mammography_augmentation(flip)) if spec.augment else None
    cached = spec.base == "deit_distilled" and not spec.augment  # fixed inputs: the teacher's logits once
    train_collator = RadiographCollator(data.image_size, mean, std, 3, augmentation, return_indices=cached,
                                        augmentation_seed=seed)
    eval_collator = RadiographCollator(data.image_size, mean, std, 3)
    train_exams = patient_subset(data.train, spec.train_fraction, seed)
    if spec.is_multi_view:
        train_data, eval_data = train_exams, data.eval
        train_collator, eval_collator = MultiViewCollator(train_collator), MultiViewCollator(eval_collator)
    else:
        train_data, eval_data = train_exams.single_view(), data.eval.single_view()
    teacher = None
    if spec.base == "deit_distilled":
        indexed = RadiographCollator(data.image_size, mean, std, 3, return_indices=True)
        teacher = load_teacher(teacher_dir, data, train_data if cached else None, indexed)
    plan = plan_balancing(spec.balancing, train_data.labels, len(data.label_names), seed=seed)
    fitted = torch.utils.data.Subset(train_data, plan.indices) if plan.indices is not None else train_data
    trainer, _ = train_model(model, args, train_data=fitted, eval_data=eval_data, train_collator=train_collator,
                             eval_collator=eval_collator, label_names=data.label_names, resume=False,
                             teacher=teacher, class_weights=plan.class_weights, train_sampler=plan.sampler)
    trainer.args.dataloader_drop_last = False  # every validation crop is predicted
    trainer.save_model(args.output_dir)
    processor.save_pretrained(args.output_dir)
    probabilities, _ = predict_probabilities(trainer, eval_data, metric_key_prefix="eval")
    row = prediction_row(spec, data, probabilities, eval_data)
    row.update(method=spec.name, seed=seed, label_names=data.label_names, wall_s=round(time.perf_counter() - start, 1),
               started_utc=started.strftime("%Y-%m-%d %H:%M:%S"),
               finished_utc=datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%S"),
               num_train_items=len(fitted), global_step=trainer.state.global_step,
               teacher_logits="cached" if cached else ("online" if teacher is not None else None))
    return row


def patient_subset(exams: MammoExamDataset, fraction: float, seed: int) -> MammoExamDataset:
    """The exams of a random `fraction` of the patients (all of a patient's exams together)."""
    if fraction >= 1.0:
        return exams
    patients = sorted(set(exams.patient_ids))
    rng = np.random.default_rng(seed)
    kept = set(rng.choice(patients, size=max(1, round(fraction * len(patients))), replace=False).tolist())
    index = torch.tensor([i for i, patient in enumerate(exams.patient_ids) if patient in kept])
    return MammoExamDataset(exams.pixels[index], exams.view_mask[index], exams.labels[index],
                            exams.view_labels[index], [exams.exam_ids[i] for i in index.tolist()],
                            [exams.patient_ids[i] for i in index.tolist()], exams.label_names, exams.view_slots)


def load_teacher(teacher_dir: Path | None, data: BenchData, cache_data, collator: RadiographCollator) -> FrozenTeacher:
    """This seed's trained DenseNet, frozen; given `cache_data`, its logits on every (unaugmented) training crop
    computed once (`collator`: the evaluation collator with sample indices)."""
    if teacher_dir is None:
        raise ValueError(f"deit_distilled needs this seed's {TEACHER_METHOD} run (the teacher)")
    model, _ = load_trained_teacher(str(teacher_dir), data.label_names)  # same processor: no input adapter
    teacher = FrozenTeacher(model)
    if cache_data is not None:
        loader = torch.utils.data.DataLoader(cache_data, batch_size=256, collate_fn=collator)
        teacher.cache_logits(loader, len(cache_data))
    return teacher


def prediction_row(spec: MethodSpec, data: BenchData, probabilities: np.ndarray, eval_data) -> dict[str, Any]:
    """P(most severe class) per breast (each aggregation of a single-view run; the multi-view model's own) and, for
    single view, per crop; with the labels, patients and view counts the summary's intervals need."""
    positive = len(data.label_names) - 1  # the most severe class (malignant)
    breasts = {"exam_labels": data.eval.labels.tolist(), "exam_patients": list(data.eval.patient_ids),
               "exam_num_views": data.eval.view_mask.sum(dim=1).tolist()}
    if spec.is_multi_view:
        return {**breasts, "exam_scores": {"multi_view": probabilities[:, positive].tolist()}}
    index = eval_data.extras["exam_index"]
    scores = {how: aggregate_views(probabilities, index, len(data.eval), how)[:, positive].tolist()
              for how in AGGREGATIONS}
    return {**breasts, "exam_scores": scores, "view_scores": probabilities[:, positive].tolist(),
            "view_labels": eval_data.labels.tolist(), "view_patients": list(eval_data.extras["patient_id"])}


__all__ = ["BASES", "BenchData", "Budget", "MethodSpec", "TEACHER_METHOD", "load_bench_data", "parse_method",
           "patient_subset", "run_method"]

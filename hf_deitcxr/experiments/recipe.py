"""The CPU training recipe shared by `quickstart` and the benchmark, and the stage arguments it expands to.

One place for the hyper-parameters, so the quickstart runs what the benchmark measured (docs/RESULTS.md).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch
from transformers import TrainingArguments

from ..data.cross_validation import DEFAULT_CV_POOL
from ..hardware import bf16_training_device
from ..training.arguments import DEFAULTS, DataArguments, ModelArguments


@dataclass(frozen=True)
class Recipe:
    """Hyper-parameters of one teacher -> student run; `image_size` is reduced from 224 for CPU budgets.

    `batch_size` and `augment` are the student's (the distill and baseline stages); the teacher stage has its own
    `teacher_batch_size` and `teacher_augment`, because what suits the CNN does not suit the ViT (docs/RESULTS.md).
    """

    # 64 px with 8-px patches: the student sees an 8x8 token grid, and the teacher's forward stays cheap next to a
    # student step (scripts/bench_training_speed.py); 224 / 16 on a GPU.
    image_size: int = 64
    patch_size: int = 8
    # The teacher's own input size (None: `image_size`); a distilled student's pixels reach a larger teacher resized by
    # `TeacherInputAdapter`. At the quickstart's budget a 96-px teacher taught the 64-px student more at the same
    # teacher macro-F1, and fits its 10 minutes where 128 px did not (docs/RESULTS.md "A 96-px teacher for the
    # quickstart").
    teacher_image_size: int | None = 96
    batch_size: int = 32
    teacher_learning_rate: float = 1e-3
    student_learning_rate: float = 5e-4
    # Tuned on the validation split (`hf-deitcxr tune`; the figures are in docs/RESULTS.md "Recipe tuning"): soft
    # distillation without student augmentation beat the DeiT-style defaults (hard, alpha 0.5, augmented).
    distillation_type: str = "soft"
    distillation_alpha: float = 0.7
    distillation_tau: float = 2.0
    drop_path_rate: float = 0.1
    # Every (class, source) cell drawn equally often within its class, for the worst source (NIH); "oversample" had
    # the best balanced accuracy in scripts/bench_balancing.py, which did not look at sources (docs/RESULTS.md).
    balancing: str = "source_balanced"
    augment: bool = False  # the student's; also lets a distillation run cache the teacher's logits once
    teacher_batch_size: int = 32
    teacher_augment: bool = True  # the CNN teacher is trained with augmentation, as before the tuning
    # Shortcut remedies (docs/RESULTS.md "Source-robust recipe"): the grey preprocessing saved in both stages' image
    # processors (a student must share its teacher's), and the augmentations wherever a stage augments (the teacher:
    # the student trains without augmentation). Acquisition augmentation and CLAHE were measured and not adopted.
    intensity_normalization: str = "equalize"
    remove_border: bool = True
    acquisition_augment: bool = False
    framing_augment: bool = True
    # Processed variants of every training image (`data.processing_augmentation`): acquisition and processing changes
    # applied before the preprocessing, which the batch augmentation cannot imitate; 0 = off. `processing_variants`
    # is the student stages', `teacher_processing_variants` the teacher's: for the student, 2 variants distilled
    # towards the original's logits raised probe agreement at no macro-F1 cost over 3 seeds; for the teacher they
    # cost macro-F1 (docs/RESULTS.md "Student-only processing variants" and "Processing augmentation").
    processing_variants: int = 2
    teacher_processing_variants: int = 0
    # The distillation target of a variant under a cached-logit student: "own" (the teacher's logits of the variant)
    # or "original" (the unchanged image's, so the target does not move under processing).
    variant_targets: str = "original"
    # Augmented distillation from cached logits (FKD): K augmented views per training image, built once with their
    # teacher logits; 0 = off. Needs `augment` (the views are augmentations) and replaces the plain logit cache.
    teacher_views: int = 0
    # The student's base augmentation (`DataArguments.augmentation_preset`): "default" or "low_resolution".
    student_augmentation_preset: str = "default"
    # Small-data ViT changes for the student (Lee et al. 2021); the checkpoint then needs the package's remote code.
    # Shifted patch tokens won for the 64-px student at about the same cost, LSA did not (docs/RESULTS.md "Small-data
    # ViT"); the teacher stage ignores both.
    shifted_patch_tokenization: bool = True
    locality_self_attention: bool = False

    def image_size_for(self, stage: str) -> int:
        if stage == "teacher" and self.teacher_image_size is not None:
            return self.teacher_image_size
        return self.image_size

    def at_size(self, image_size: int, teacher_image_size: int | None = None) -> Recipe:
        """This recipe with the student at `image_size`: the teacher keeps its own larger input only at the recipe's
        own student size (where it was measured), else it takes the student's, unless `teacher_image_size` is
        given."""
        if teacher_image_size is None and image_size == self.image_size:
            teacher_image_size = self.teacher_image_size
        return replace(self, image_size=image_size, teacher_image_size=teacher_image_size)

    def batch_size_for(self, stage: str) -> int:
        return self.teacher_batch_size if stage == "teacher" else self.batch_size

    def augment_for(self, stage: str) -> bool:
        return self.teacher_augment if stage == "teacher" else self.augment

    def processing_variants_for(self, stage: str) -> int:
        return self.teacher_processing_variants if stage == "teacher" else self.processing_variants

    def with_overrides(self, **overrides) -> Recipe:
        unknown = set(overrides) - set(asdict(self))
        if unknown:
            raise ValueError(f"unknown recipe fields {sorted(unknown)}; fields: {sorted(asdict(self))}")
        return replace(self, **overrides)


CPU_RECIPE = Recipe()


def stage_arguments(
    stage: str,
    dataset: str,
    output_dir: str | Path,
    recipe: Recipe = CPU_RECIPE,
    *,
    epochs: float | None = None,
    images_seen: int | None = None,
    train_subset: int | None = None,
    subset_seed: int = 0,
    seed: int = 0,
    teacher_dir: str | Path | None = None,
    pixel_cache_dir: str | None = None,
    progress_bars: bool = True,
    eval_every_images: int | None = None,
    cv_folds: int | None = None,
    fold: int | None = None,
    cv_pool: str = DEFAULT_CV_POOL,
) -> tuple[ModelArguments, DataArguments, TrainingArguments]:
    """Arguments of `run_training` for `stage` (teacher / distill / baseline) under `recipe`.

    The budget is either `epochs` or `images_seen` (a fixed number of optimiser steps, whatever the data size:
    what a data-efficiency comparison needs). No checkpoints; by default no mid-run evaluation (the final model
    is evaluated once by `run_training`). `eval_every_images` adds an evaluation on the eval split every that many
    training images (a learning curve in `trainer_state.json`; mid-schedule points are taken before the cosine
    decay has finished, so they are not what a run of that length would reach).

    Without augmentation a distillation run precomputes the teacher's logits once (same targets, no teacher
    forward per step); with augmentation and `recipe.teacher_views` K > 0, it caches the teacher's logits of K
    augmented views of each image instead (`hf_deitcxr.data.view_bank`). The student's augmentation preset and
    `teacher_views` reach the student stages only (views: the distill stage only); the teacher stage keeps the
    default augmentation. Processed variants are per stage (`Recipe.processing_variants_for`); a variant's
    distillation target (`recipe.variant_targets`) applies where the teacher's logits are cached. `cv_folds` /
    `fold` / `cv_pool`: train on the other folds and evaluate on fold `fold` of the patient-grouped cross-validation
    seeded by `subset_seed` (`hf_deitcxr.data.cross_validation`).
    """
    if (epochs is None) == (images_seen is None):
        raise ValueError("give exactly one training budget: epochs or images_seen")
    if eval_every_images is not None and eval_every_images <= 0:
        raise ValueError(f"eval_every_images must be positive, got {eval_every_images}")
    student = stage != "teacher"  # the distill and baseline stages train the DeiT student
    model_args = ModelArguments(
        stage=stage, image_size=recipe.image_size_for(stage), patch_size=recipe.patch_size, student_preset="deit-tiny",
        distillation_type=recipe.distillation_type, distillation_alpha=recipe.distillation_alpha,
        distillation_tau=recipe.distillation_tau, drop_path_rate=recipe.drop_path_rate,
        teacher_name_or_path=str(teacher_dir) if stage == "distill" and teacher_dir else None,
        intensity_normalization=recipe.intensity_normalization, remove_border=recipe.remove_border,
        shifted_patch_tokenization=recipe.shifted_patch_tokenization and student,
        locality_self_attention=recipe.locality_self_attention and student,
    )
    augment, batch_size = recipe.augment_for(stage), recipe.batch_size_for(stage)
    # Only a distillation has teacher logits to cache per view; a baseline student just augments online.
    teacher_views = recipe.teacher_views if stage == "distill" else 0
    logit_cache, variants = stage == "distill" and not augment, recipe.processing_variants_for(stage)
    data_args = DataArguments(dataset=dataset, train_subset=train_subset, subset_seed=subset_seed,
                              balancing=recipe.balancing, augment=augment, pixel_cache_dir=pixel_cache_dir,
                              augmentation_preset=recipe.student_augmentation_preset if student else "default",
                              acquisition_augment=recipe.acquisition_augment and augment,
                              framing_augment=recipe.framing_augment and augment,
                              processing_variants=variants,
                              variant_targets=recipe.variant_targets if logit_cache and variants else "own",
                              teacher_views=teacher_views,
                              teacher_logit_cache=logit_cache, resume=False,
                              cv_folds=cv_folds, fold=fold, cv_pool=cv_pool)
    budget = {"num_train_epochs": epochs} if epochs is not None else {"max_steps": math.ceil(images_seen / batch_size)}
    on_gpu = torch.cuda.is_available()
    training = {**DEFAULTS, "save_strategy": "no", "save_total_limit": None, "eval_strategy": "no",
                "learning_rate": recipe.teacher_learning_rate if stage == "teacher" else recipe.student_learning_rate}
    if eval_every_images:
        training.update(eval_strategy="steps", eval_steps=max(1, math.ceil(eval_every_images / batch_size)))
    training_args = TrainingArguments(
        output_dir=str(Path(output_dir)),
        per_device_train_batch_size=batch_size,
        per_device_eval_batch_size=64,
        bf16=bf16_training_device(),
        use_cpu=not on_gpu,
        seed=seed,
        disable_tqdm=not progress_bars,
        **budget,
        **training,
    )
    return model_args, data_args, training_args

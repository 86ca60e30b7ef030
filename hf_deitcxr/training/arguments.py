"""Command-line arguments of `scripts/train.py` / `hf-deitcxr train`, in the HF-examples style."""

from __future__ import annotations

import argparse
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from transformers import HfArgumentParser

from ..data.augmentation import AUGMENTATION_PRESETS
from ..data.cross_validation import CV_EVAL_SPLIT, CV_POOLS, DEFAULT_CV_POOL, check_fold_arguments
from ..models.deit_cxr.image_processing_deit_cxr import INTENSITY_NORMALIZATIONS, GreyPreprocessing
from .trainer_flags import RadiographTrainingArguments

STAGES = ("teacher", "distill", "baseline")
TASKS = ("cxr", "mammo")  # mammo has its own arguments: hf_deitcxr.mammo.arguments
VARIANT_TARGETS = ("own", "original")  # the teacher logits a processed variant is distilled towards
BALANCING = ("none", "weighted_sampler", "class_weighted_loss", "oversample", "source_balanced")
STUDENT_PRESETS = {
    # DeiT paper sizes (patch 16): hidden, layers, heads, MLP.
    "deit-tiny": dict(hidden_size=192, num_hidden_layers=12, num_attention_heads=3, intermediate_size=768),
    "deit-small": dict(hidden_size=384, num_hidden_layers=12, num_attention_heads=6, intermediate_size=1536),
    "deit-base": dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072),
}


@dataclass
class ModelArguments:
    task: str = field(
        default="cxr",
        metadata={"help": "cxr: the chest X-ray stages below; mammo: mammography, single- or multi-view, with its "
                  "own arguments (see --task mammo --help)", "choices": list(TASKS)},
    )
    stage: str = field(
        default="distill",
        metadata={"help": "teacher: fine-tune the CNN teacher; distill: DeiT student with the teacher; "
                  "baseline: DeiT student without a teacher", "choices": list(STAGES)},
    )
    model_name_or_path: str | None = field(
        default=None,
        metadata={"help": "Pretrained checkpoint to start from (Hub id or folder): a DeiT (e.g. "
                  "facebook/deit-tiny-distilled-patch16-224) for distill/baseline, a DenseNet folder converted by "
                  "scripts/convert_densenet_weights.py for teacher. Default: train from scratch."},
    )
    student_preset: str = field(
        default="deit-tiny", metadata={"help": "Student size when training from scratch",
                                       "choices": list(STUDENT_PRESETS)}
    )
    patch_size: int = field(default=16, metadata={"help": "Student patch size when training from scratch"})
    teacher_variant: str = field(
        default="densenet121", metadata={"help": "Teacher architecture when training it from scratch",
                                         "choices": ["densenet121", "densenet169", "densenet201"]}
    )
    teacher_name_or_path: str | None = field(
        default=None, metadata={"help": "Trained teacher (folder or Hub id) for the distill stage; several separated "
                                         "by commas: their ensemble (mean logits)"}
    )
    image_size: int = field(default=224, metadata={"help": "Model input resolution (square)"})
    num_channels: int = field(default=3, metadata={"help": "3: grey replicated to RGB (default); 1: grey"})
    distillation_type: str = field(default="hard", metadata={"choices": ["soft", "hard"]})
    distillation_alpha: float = field(default=0.5)
    distillation_tau: float = field(default=1.0)
    drop_path_rate: float = field(default=0.1, metadata={"help": "Stochastic depth of the student"})
    inference_head: str = field(default="average", metadata={"choices": ["average", "cls", "distillation"]})
    channels_last_teacher: bool = field(default=True, metadata={"help": "channels_last memory format for the CNN"})
    intensity_normalization: str = field(
        default="none",
        metadata={"help": "Normalise each grey image's intensities at the model's input size: equalize (histogram "
                  "equalisation) or clahe; saved in the image processor (non-stock), so every user of the model "
                  "applies it. A distilled student must use its teacher's setting.",
                  "choices": list(INTENSITY_NORMALIZATIONS)},
    )
    remove_border: bool = field(
        default=False,
        metadata={"help": "Cut uniform bands (letterbox, padding) off each image's edges before the resize; saved "
                  "in the image processor (non-stock)"},
    )
    shifted_patch_tokenization: bool = field(
        default=False,
        metadata={"help": "Shifted Patch Tokenization (Lee et al. 2021) for the student; the checkpoint then needs "
                  "the package's remote code, not the stock DeiT class"},
    )
    locality_self_attention: bool = field(
        default=False,
        metadata={"help": "Locality Self-Attention (Lee et al. 2021): diagonal-masked attention with a learnable "
                  "temperature per head; same remark"},
    )

    def __post_init__(self) -> None:
        if self.task != "cxr":
            raise ValueError(f"--task {self.task} is parsed by its own parser (hf_deitcxr.cli)")
        if self.stage not in STAGES:
            raise ValueError(f"stage must be one of {STAGES}, got {self.stage!r}")
        if self.stage == "distill" and not self.teacher_name_or_path:
            raise ValueError("stage 'distill' needs --teacher_name_or_path (train one with --stage teacher)")
        if self.num_channels not in (1, 3):
            raise ValueError(f"num_channels must be 1 or 3, got {self.num_channels}")
        if self.image_size % self.patch_size:
            raise ValueError(f"image_size {self.image_size} is not a multiple of patch_size {self.patch_size}")
        if self.intensity_normalization not in INTENSITY_NORMALIZATIONS:
            raise ValueError(f"intensity_normalization must be one of {INTENSITY_NORMALIZATIONS}, got "
                             f"{self.intensity_normalization!r}")

    @property
    def preprocessing(self) -> GreyPreprocessing:
        return GreyPreprocessing(self.intensity_normalization, self.remove_border)


@dataclass
class DataArguments:
    dataset: str = field(
        default=None,
        metadata={"help": "Hub dataset id, imagefolder directory (optional metadata.csv), CSV manifest "
                  "(path,label[,patient_id][,source][,split]), folder of DICOM files or a `datasets` save_to_disk "
                  "folder"},
    )
    image_column: str = field(
        default="image",
        metadata={"help": "Image column of a Hub or `save_to_disk` dataset (a CSV manifest's path column is `path` or "
                  "`file_name`, else this one)"},
    )
    label_column: str = field(
        default="label", metadata={"help": "Label column of a Hub or saved dataset, a manifest or metadata.csv"}
    )
    dataset_revision: str | None = field(
        default=None, metadata={"help": "Branch, tag or commit of a Hub dataset (Hub datasets only)"}
    )
    class_names: str | None = field(
        default=None, metadata={"help": "Comma-separated class order (default: sorted label names)"}
    )
    validation_fraction: float = field(
        default=0.15, metadata={"help": "Patient-level validation split made when the data has only train"}
    )
    eval_split: str = field(default="validation")
    train_subset: int | None = field(
        default=None, metadata={"help": "Use ~N training images (whole patients, stratified) for data-efficiency runs"}
    )
    subset_seed: int = field(
        default=0, metadata={"help": "Seed of the data draws: the --train_subset patients and the --cv_folds folds"}
    )
    cv_folds: int | None = field(
        default=None,
        metadata={"help": "K-fold cross-validation: cut the --cv_pool into K patient-grouped, class-stratified folds "
                  "(sklearn StratifiedGroupKFold seeded by --subset_seed), train on K-1 and evaluate on --fold"},
    )
    fold: int | None = field(default=None, metadata={"help": "The evaluation fold (0..K-1) of --cv_folds K"})
    cv_pool: str = field(
        default=DEFAULT_CV_POOL,
        metadata={"help": "The splits pooled before folding: train+validation (the validation split is folded in; "
                  "a test split stays held out) or train (the validation split is left unused)",
                  "choices": list(CV_POOLS)},
    )
    balancing: str = field(
        default="oversample",
        metadata={"help": "Class balancing; default chosen by scripts/bench_balancing.py (docs/RESULTS.md)",
                  "choices": list(BALANCING)},
    )
    exclude_sources: str | None = field(
        default=None,
        metadata={"help": "Comma-separated values of the `source` column whose images are dropped from the training "
                  "split (leave-one-source-out); the evaluation split is kept whole unless --eval_sources"},
    )
    eval_sources: str | None = field(
        default=None,
        metadata={"help": "Comma-separated sources to keep in the evaluation split (default: all of them)"},
    )
    augment: bool = field(default=True, metadata={"help": "Random radiograph augmentation while training"})
    augmentation_preset: str = field(
        default="default",
        metadata={"help": "Base augmentation: default, or low_resolution (milder geometry, no noise: sized for 64 px "
                  "inputs); --acquisition_augment / --framing_augment compose on top",
                  "choices": list(AUGMENTATION_PRESETS)},
    )
    acquisition_augment: bool = field(
        default=False,
        metadata={"help": "Also vary the acquisition/processing (resampling history, blur, gamma, histogram "
                  "equalisation strength), each with probability 0.3: a shortcut remedy (docs/RESULTS.md)"},
    )
    framing_augment: bool = field(
        default=False,
        metadata={"help": "Wider random crops (down to 60 %% of the area, probability 0.5): imitates tighter "
                  "collimation or export framing, a shortcut remedy (docs/RESULTS.md)"},
    )
    processing_variants: int = field(
        default=0,
        metadata={"help": "Add N processed variants of every training image, each the original image after a random "
                  "acquisition/processing history (framing, resampling, blur, gamma, clipped contrast/brightness, "
                  "global or CLAHE equalisation, JPEG) and then the saved preprocessing; seeded by --seed, decoded "
                  "once, and with --augment false still seen by a cached-logit student. 0: off (a shortcut remedy, "
                  "docs/RESULTS.md)"},
    )
    variant_targets: str = field(
        default="own",
        metadata={"help": "Distillation targets of the processed variants: own (the teacher's logits of each variant) "
                  "or original (those of the unchanged image, so the student is taught not to move under a "
                  "processing change; needs --teacher_logit_cache)", "choices": list(VARIANT_TARGETS)},
    )
    teacher_logit_cache: bool = field(
        default=False,
        metadata={"help": "Precompute teacher logits once (only allowed with --augment false)"},
    )
    teacher_views: int = field(
        default=0,
        metadata={"help": "Augmented distillation from cached logits (FKD): build K seeded augmented views of each "
                  "training image once, cache the teacher's logits of every view, and train the student on a "
                  "random one of the K views per sample. 0: off (online teacher). Needs --stage distill and "
                  "--augment true; memory K x N x image_size^2 bytes"},
    )
    pixel_cache_dir: str | None = field(
        default=None,
        metadata={"help": "Keep the decoded, resized pixels of each split here and reuse them in later runs"},
    )
    allow_leakage: bool = field(
        default=False, metadata={"help": "Train even if patients or identical images appear in two splits"}
    )
    resume: bool = field(
        default=True, metadata={"help": "Resume from the last checkpoint in output_dir when there is one"}
    )

    def __post_init__(self) -> None:
        if not self.dataset:
            raise ValueError("--dataset is required")
        if self.balancing not in BALANCING:
            raise ValueError(f"balancing must be one of {BALANCING}, got {self.balancing!r}")
        if self.augmentation_preset not in AUGMENTATION_PRESETS:
            raise ValueError(f"augmentation_preset must be one of {sorted(AUGMENTATION_PRESETS)}, got "
                             f"{self.augmentation_preset!r}")
        if self.processing_variants < 0:
            raise ValueError(f"--processing_variants must be 0 (off) or a number of variants >= 1, got "
                             f"{self.processing_variants}")
        if self.variant_targets not in VARIANT_TARGETS:
            raise ValueError(f"--variant_targets must be one of {VARIANT_TARGETS}, got {self.variant_targets!r}")
        if self.variant_targets == "original" and not (self.processing_variants and self.teacher_logit_cache):
            raise ValueError("--variant_targets original shares the originals' cached teacher logits with their "
                             "variants: it needs --processing_variants >= 1 and --teacher_logit_cache true")
        check_fold_arguments(self.cv_folds, self.fold, self.cv_pool)
        if self.cv_folds and self.eval_split != CV_EVAL_SPLIT:
            raise ValueError(f"--cv_folds evaluates on fold --fold of the pool: --eval_split {self.eval_split} does "
                             "not apply (leave it at validation)")
        if self.teacher_views < 0:
            raise ValueError(f"--teacher_views must be 0 (off) or a number of views >= 1, got {self.teacher_views}")
        if self.teacher_views and not self.augment:
            raise ValueError("--teacher_views needs --augment true: the views are augmentations (without augmentation "
                             "use --teacher_logit_cache)")
        if self.teacher_views and self.teacher_logit_cache:
            raise ValueError("--teacher_views caches the teacher's logits of every view: give --teacher_logit_cache "
                             "false")
        if self.teacher_logit_cache and self.augment:
            raise ValueError(
                "--teacher_logit_cache needs --augment false: with random augmentation the teacher must see each "
                "step's augmented image, which a cache cannot provide"
            )

    @property
    def class_name_list(self) -> list[str] | None:
        if not self.class_names:
            return None
        return [name.strip() for name in self.class_names.split(",") if name.strip()]

    @property
    def exclude_source_list(self) -> list[str]:
        return _comma_list(self.exclude_sources)

    @property
    def eval_source_list(self) -> list[str]:
        return _comma_list(self.eval_sources)


def _comma_list(value: str | None) -> list[str]:
    return [item.strip() for item in (value or "").split(",") if item.strip()]


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


def parse_training_arguments(
    argv: Sequence[str],
) -> tuple[ModelArguments, DataArguments, RadiographTrainingArguments]:
    return parse_with_training_defaults((ModelArguments, DataArguments, RadiographTrainingArguments), argv)


def requested_task(argv: Sequence[str]) -> str:
    """The `--task` of a command line or JSON arguments file ("cxr" when absent): each task has its own parser."""
    if len(argv) == 1 and argv[0].endswith(".json"):
        return str(json.loads(Path(argv[0]).read_text()).get("task", "cxr"))
    peek = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    peek.add_argument("--task", default="cxr")
    return peek.parse_known_args(list(argv))[0].task

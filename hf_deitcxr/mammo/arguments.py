"""Arguments of `scripts/train.py --task mammo` / `hf-deitcxr train --task mammo` (HF-examples style)."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..data.augmentation import AugmentationConfig
from ..models.multiview_mammo.configuration_multiview import GLOBAL_TOKENS
from ..training.arguments import BALANCING
from .dataset import ORIENTATIONS
from .evaluation import AGGREGATIONS
from .exams import EXAM_UNITS, MULTI_CROP_RULES

ARCHITECTURES = ("single_view", "multi_view")


@dataclass
class MammoModelArguments:
    task: str = field(default="mammo", metadata={"help": "mammo: this parser; cxr: the chest X-ray stages",
                                                 "choices": ["cxr", "mammo"]})
    architecture: str = field(
        default="multi_view",
        metadata={"help": "single_view: one image -> one prediction (ViT/DeiT/Swin/PVT/PVT-v2), exam score = "
                  "--exam_aggregation over views; multi_view: the four-view transformer (ViT/DeiT encoder)",
                  "choices": list(ARCHITECTURES)},
    )
    model_name_or_path: str = field(
        default=None,
        metadata={"help": "Checkpoint to start from (Hub id or folder), e.g. google/vit-base-patch16-224, "
                  "facebook/deit-small-patch16-224, microsoft/swin-tiny-patch4-window7-224, Zetatech/pvt-tiny-224, "
                  "OpenGVLab/pvt_v2_b0; for multi_view a ViT/DeiT (or a saved multi-view model)"},
    )
    from_scratch: bool = field(
        default=False, metadata={"help": "Use only the checkpoint's configuration, with random weights"}
    )
    image_size: int = field(default=224, metadata={"help": "Every view is resized whole to this square size"})
    num_global_layers: int = field(default=2, metadata={"help": "multi_view: transformer layers across the views"})
    global_tokens: str = field(
        default="all", metadata={"help": "multi_view: what each view gives the global layers: all its tokens or "
                                 "its class token", "choices": list(GLOBAL_TOKENS)}
    )
    global_dropout: float = field(default=0.0, metadata={"help": "multi_view: dropout of the global layers"})
    exam_aggregation: str = field(
        default="max", metadata={"help": "single_view: exam score from its views (most suspicious view, or mean)",
                                 "choices": list(AGGREGATIONS)}
    )

    def __post_init__(self) -> None:
        if self.task != "mammo":
            raise ValueError(f"these are the mammography arguments (--task mammo), got --task {self.task}")
        if not self.model_name_or_path:
            raise ValueError("--model_name_or_path is required for --task mammo (a checkpoint or a config folder "
                             "with --from_scratch true)")
        if self.architecture not in ARCHITECTURES:
            raise ValueError(f"architecture must be one of {ARCHITECTURES}, got {self.architecture!r}")
        if self.global_tokens not in GLOBAL_TOKENS:
            raise ValueError(f"global_tokens must be one of {GLOBAL_TOKENS}, got {self.global_tokens!r}")
        if self.exam_aggregation not in AGGREGATIONS:
            raise ValueError(f"exam_aggregation must be one of {AGGREGATIONS}, got {self.exam_aggregation!r}")
        if self.image_size <= 0:
            raise ValueError(f"image_size must be positive, got {self.image_size}")


@dataclass
class MammoDataArguments:
    dataset: str = field(
        default=None,
        metadata={"help": "CSV manifest (exam_id,patient_id,laterality,view,path,label[,split][,breast_id]), a "
                  "folder holding one as manifest.csv (e.g. cbis_mass), or a folder of DICOM mammograms (views from "
                  "ImageLaterality/ViewPosition; needs --dicom_labels)"},
    )
    exam_unit: str = field(
        default="exam", metadata={"help": "What one exam (one prediction) is: exam (the exam_id column, up to four "
                                  "views), breast (one breast's CC+MLO: breast_id, else exam_id + laterality) or "
                                  "patient (all of a patient's views)", "choices": list(EXAM_UNITS)}
    )
    multi_crop: str = field(
        default="pair", metadata={"help": "Several images (lesion crops) in one view of an exam: pair (each used "
                                  "once; the k-th most severe crops of the views form the exam's k-th item) or "
                                  "most_severe (one crop per view, the others left out)",
                                  "choices": list(MULTI_CROP_RULES)}
    )
    dicom_labels: str | None = field(
        default=None, metadata={"help": "For a DICOM folder: CSV exam_id[,laterality],label (exam_id = "
                                "StudyInstanceUID)"}
    )
    class_names: str | None = field(
        default=None, metadata={"help": "Comma-separated classes in increasing severity (default: sorted names, "
                                "e.g. benign,malignant); the exam label is its most severe view label"}
    )
    validation_fraction: float = field(
        default=0.15, metadata={"help": "Patient-level validation split made when the manifest has no split column"}
    )
    split_seed: int = field(
        default=0, metadata={"help": "Seed of that patient-level split (stratified by exam label; kept apart from "
                             "--seed so the split stays the same across training seeds)"}
    )
    eval_split: str = field(default="validation")
    orientation: str = field(
        default="laterality", metadata={"help": "Common orientation (chest wall left): mirror right views "
                                        "(laterality), by image content (auto, for film scans), or none",
                                        "choices": list(ORIENTATIONS)}
    )
    balancing: str = field(
        default="class_weighted_loss", metadata={"help": "Class balancing (hf_deitcxr.data.balancing)",
                                                 "choices": list(BALANCING)}
    )
    augment: bool = field(default=True, metadata={"help": "Heavy random augmentation while training"})
    horizontal_flip_p: float | None = field(
        default=None, metadata={"help": "Random horizontal flips (default: 0.5 single_view; 0 multi_view, where "
                                "independent flips would break the cross-view geometry)"}
    )
    allow_leakage: bool = field(
        default=False, metadata={"help": "Train even if a patient has exams in two splits"}
    )
    resume: bool = field(
        default=True, metadata={"help": "Resume from the last checkpoint in output_dir when there is one"}
    )

    def __post_init__(self) -> None:
        if not self.dataset:
            raise ValueError("--dataset is required")
        if self.balancing not in BALANCING:
            raise ValueError(f"balancing must be one of {BALANCING}, got {self.balancing!r}")
        if self.orientation not in ORIENTATIONS:
            raise ValueError(f"orientation must be one of {ORIENTATIONS}, got {self.orientation!r}")
        if self.exam_unit not in EXAM_UNITS:
            raise ValueError(f"exam_unit must be one of {EXAM_UNITS}, got {self.exam_unit!r}")
        if self.multi_crop not in MULTI_CROP_RULES:
            raise ValueError(f"multi_crop must be one of {MULTI_CROP_RULES}, got {self.multi_crop!r}")

    @property
    def class_name_list(self) -> list[str] | None:
        if not self.class_names:
            return None
        return [name.strip() for name in self.class_names.split(",") if name.strip()]


def mammography_augmentation(horizontal_flip_p: float = 0.0) -> AugmentationConfig:
    """Heavier than the chest X-ray default, as in whole-mammogram transfer learning on small data sets: larger
    rotations, shifts, zooms and crops, stronger brightness/contrast changes. The crop keeps >= 75% of the area so a
    lesion is rarely cut out (which would silently turn a malignant image benign)."""
    return AugmentationConfig(
        affine_p=0.8, rotation_degrees=15.0, translate=0.08, scale=(0.85, 1.15),
        random_resized_crop_p=0.5, random_resized_crop_scale=(0.75, 1.0), random_resized_crop_ratio=(0.8, 1.25),
        brightness=0.15, brightness_p=0.6, contrast=0.25, contrast_p=0.6,
        gaussian_noise_std=0.02, gaussian_noise_p=0.3, horizontal_flip_p=horizontal_flip_p,
    )


__all__ = ["ARCHITECTURES", "MammoDataArguments", "MammoModelArguments", "mammography_augmentation"]

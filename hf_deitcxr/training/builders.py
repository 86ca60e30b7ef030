"""Build the model each training stage trains, and load the teacher for distillation."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from torch import nn
from transformers import AutoImageProcessor, AutoModelForImageClassification

from ..data.input_spec import InputSpec
from ..models.deit_cxr.configuration_deit_cxr import DeiTCXRConfig
from ..models.deit_cxr.image_processing_deit_cxr import make_image_processor
from ..models.deit_cxr.modeling_deit_cxr import DeiTCXRForImageClassificationWithTeacher
from ..models.deit_cxr.pretrained import load_student
from ..models.densenet import DenseNetConfig, DenseNetForImageClassification
from .arguments import STUDENT_PRESETS
from .teacher_ensemble import TeacherEnsemble, teacher_paths

logger = logging.getLogger(__name__)


def label_maps(label_names: Sequence[str]) -> dict:
    return {"id2label": dict(enumerate(label_names)), "label2id": {n: i for i, n in enumerate(label_names)}}


def build_student(
    label_names: Sequence[str],
    *,
    model_name_or_path: str | None = None,
    preset: str = "deit-tiny",
    image_size: int = 224,
    patch_size: int = 16,
    num_channels: int = 3,
    distillation_type: str = "none",
    distillation_alpha: float = 0.5,
    distillation_tau: float = 1.0,
    teacher_name_or_path: str | None = None,
    inference_head: str = "average",
    drop_path_rate: float = 0.1,
    shifted_patch_tokenization: bool = False,
    locality_self_attention: bool = False,
) -> DeiTCXRForImageClassificationWithTeacher:
    """The DeiT student: from a pretrained DeiT checkpoint (new heads, adapted size/channels) or, without one, a
    from-scratch `preset` size with `patch_size`. `distillation_type` "none" trains both heads on the labels (the
    baseline); `teacher_name_or_path` is recorded in the config as the student's provenance.
    `shifted_patch_tokenization` / `locality_self_attention`: the small-data ViT changes of Lee et al. (2021), see
    `DeiTCXRConfig`."""
    student_options = {
        "distillation_type": distillation_type,
        "distillation_alpha": distillation_alpha,
        "distillation_tau": distillation_tau,
        "teacher_name_or_path": teacher_name_or_path,
        "inference_head": inference_head,
        "drop_path_rate": drop_path_rate,
        "shifted_patch_tokenization": shifted_patch_tokenization,
        "locality_self_attention": locality_self_attention,
    }
    if model_name_or_path:
        return load_student(
            model_name_or_path, label_names, image_size=image_size, num_channels=num_channels, **student_options
        )
    if preset not in STUDENT_PRESETS:
        raise ValueError(f"unknown student preset {preset!r}; choose one of {list(STUDENT_PRESETS)}")
    config = DeiTCXRConfig(
        **STUDENT_PRESETS[preset],
        image_size=image_size,
        patch_size=patch_size,
        num_channels=num_channels,
        **label_maps(label_names),
        **student_options,
    )
    return DeiTCXRForImageClassificationWithTeacher(config)


def build_teacher(
    label_names: Sequence[str],
    *,
    model_name_or_path: str | None = None,
    variant: str = "densenet121",
    image_size: int = 224,
    num_channels: int = 3,
) -> DenseNetForImageClassification:
    """The CNN teacher to fine-tune: from a converted ImageNet checkpoint (new head) or a from-scratch `variant`."""
    if model_name_or_path:
        return DenseNetForImageClassification.from_pretrained(
            model_name_or_path,
            num_labels=len(label_names),
            ignore_mismatched_sizes=True,
            num_channels=num_channels,
            **label_maps(label_names),
        )
    config = DenseNetConfig.from_variant(
        variant, num_channels=num_channels, image_size=image_size, **label_maps(label_names)
    )
    return DenseNetForImageClassification(config)


def load_trained_teacher(path: str, label_names: Sequence[str]) -> tuple[nn.Module, InputSpec]:
    """A trained teacher for distillation plus its input convention (from its saved image processor); several paths
    separated by commas: their ensemble (`teacher_ensemble.py`), which must share classes and input convention."""
    paths = teacher_paths(path)
    if len(paths) == 1:
        return _load_one_teacher(paths[0], label_names)
    members = [_load_one_teacher(member, label_names) for member in paths]
    spec = members[0][1]
    if any(other != spec for _, other in members[1:]):
        raise ValueError(f"the teachers {paths} take different inputs ({[str(s) for _, s in members]}): an ensemble "
                         "needs one input convention (size, channels, normalisation, preprocessing)")
    return TeacherEnsemble([model for model, _ in members]), members[0][1]


def _load_one_teacher(path: str, label_names: Sequence[str]) -> tuple[nn.Module, InputSpec]:
    teacher = AutoModelForImageClassification.from_pretrained(path)
    if getattr(teacher.config, "calibration_temperature", 1.0) != 1.0:
        # Distillation (tau, alpha) is defined on the teacher's raw logits; a calibrated teacher serves scaled ones.
        logger.info("distilling from the teacher's raw logits (ignoring its calibration temperature %g)",
                    teacher.config.calibration_temperature)
        teacher.config.calibration_temperature = 1.0
    teacher_labels = [teacher.config.id2label[i] for i in range(teacher.config.num_labels)]
    if teacher_labels != list(label_names):
        raise ValueError(
            f"the teacher at {path} predicts {teacher_labels} but the data has classes {list(label_names)}; "
            "pass --class_names in the teacher's order or retrain the teacher on these classes"
        )
    try:
        processor = AutoImageProcessor.from_pretrained(path)
        spec = InputSpec.from_processor(processor, teacher.config.num_channels)
    except OSError:
        size = getattr(teacher.config, "image_size", 224)
        spec = InputSpec.from_processor(make_image_processor(size, teacher.config.num_channels),
                                        teacher.config.num_channels)
    return teacher, spec


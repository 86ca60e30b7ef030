"""Build the model each training stage trains, and load the teacher for distillation."""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn
from transformers import AutoImageProcessor, AutoModelForImageClassification

from ..data.input_spec import InputSpec, normalization_from_image_processor
from ..models.deit_cxr.configuration_deit_cxr import DeiTCXRConfig
from ..models.deit_cxr.image_processing_deit_cxr import make_image_processor
from ..models.deit_cxr.modeling_deit_cxr import DeiTCXRForImageClassificationWithTeacher
from ..models.deit_cxr.pretrained import load_student
from ..models.densenet import DenseNetConfig, DenseNetForImageClassification
from .arguments import STUDENT_PRESETS, ModelArguments


def label_maps(label_names: Sequence[str]) -> dict:
    return {"id2label": dict(enumerate(label_names)), "label2id": {n: i for i, n in enumerate(label_names)}}


def build_student(args: ModelArguments, label_names: Sequence[str]) -> DeiTCXRForImageClassificationWithTeacher:
    distillation = {
        "distillation_type": args.distillation_type if args.stage == "distill" else "none",
        "distillation_alpha": args.distillation_alpha,
        "distillation_tau": args.distillation_tau,
        "teacher_name_or_path": args.teacher_name_or_path if args.stage == "distill" else None,
        "inference_head": args.inference_head,
        "drop_path_rate": args.drop_path_rate,
    }
    if args.model_name_or_path:
        return load_student(
            args.model_name_or_path, label_names, image_size=args.image_size, num_channels=args.num_channels,
            **distillation,
        )
    config = DeiTCXRConfig(
        **STUDENT_PRESETS[args.student_preset],
        image_size=args.image_size,
        patch_size=args.patch_size,
        num_channels=args.num_channels,
        **label_maps(label_names),
        **distillation,
    )
    return DeiTCXRForImageClassificationWithTeacher(config)


def build_teacher(args: ModelArguments, label_names: Sequence[str]) -> DenseNetForImageClassification:
    """The CNN teacher to fine-tune: from a converted ImageNet checkpoint (new head) or from scratch."""
    if args.model_name_or_path:
        return DenseNetForImageClassification.from_pretrained(
            args.model_name_or_path,
            num_labels=len(label_names),
            ignore_mismatched_sizes=True,
            num_channels=args.num_channels,
            **label_maps(label_names),
        )
    config = DenseNetConfig.from_variant(
        args.teacher_variant, num_channels=args.num_channels, image_size=args.image_size, **label_maps(label_names)
    )
    return DenseNetForImageClassification(config)


def load_trained_teacher(path: str, label_names: Sequence[str]) -> tuple[nn.Module, InputSpec]:
    """A trained teacher for distillation plus its input convention (from its saved image processor)."""
    teacher = AutoModelForImageClassification.from_pretrained(path)
    teacher_labels = [teacher.config.id2label[i] for i in range(teacher.config.num_labels)]
    if teacher_labels != list(label_names):
        raise ValueError(
            f"the teacher at {path} predicts {teacher_labels} but the data has classes {list(label_names)}; "
            "pass --class_names in the teacher's order or retrain the teacher on these classes"
        )
    try:
        processor = AutoImageProcessor.from_pretrained(path)
        spec = input_spec_from_processor(processor, teacher.config.num_channels)
    except OSError:
        size = getattr(teacher.config, "image_size", 224)
        spec = input_spec_from_processor(make_image_processor(size, teacher.config.num_channels),
                                         teacher.config.num_channels)
    return teacher, spec


def input_spec_from_processor(processor, num_channels: int) -> InputSpec:
    mean, std, size = normalization_from_image_processor(processor)
    return InputSpec.create(mean, std, num_channels, size)

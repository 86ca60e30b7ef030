"""Local stand-ins for the Hub's ImageNet checkpoints that the chest X-ray stages start from (tiny DenseNet, DeiT)."""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import DeiTConfig, DeiTForImageClassificationWithTeacher

from hf_deitcxr import DenseNetConfig, DenseNetForImageClassification


def save_cxr_standins(root: Path) -> tuple[Path, Path]:
    """(teacher, student) checkpoint folders: a 2-block DenseNet and a 2-layer distilled DeiT at 32 px, both with an
    ImageNet-sized head and trained-looking (non-zero) tokens and position embeddings, as Hub checkpoints have."""
    torch.manual_seed(0)
    teacher = DenseNetForImageClassification(
        DenseNetConfig(growth_rate=8, block_config=[2, 2], num_init_features=16, num_labels=1000)
    )
    student = DeiTForImageClassificationWithTeacher(
        DeiTConfig(hidden_size=48, num_hidden_layers=2, num_attention_heads=3, intermediate_size=96,
                   image_size=32, patch_size=8, num_labels=1000)
    )
    for tensor in (student.deit.embeddings.position_embeddings, student.deit.embeddings.cls_token,
                   student.deit.embeddings.distillation_token):
        torch.nn.init.trunc_normal_(tensor.data, std=0.02)
    teacher_dir, student_dir = root / "densenet-imagenet-standin", root / "deit-distilled-standin"
    teacher.save_pretrained(teacher_dir)
    student.save_pretrained(student_dir)
    return teacher_dir, student_dir

"""Tiny student + teacher folders saved as the Space loads them, the bundled sample radiographs, a colour photo."""

from __future__ import annotations

from pathlib import Path

import torch
from PIL import Image, ImageDraw

from hf_deitcxr import DeiTCXRConfig, DeiTCXRForImageClassificationWithTeacher, DenseNetConfig, make_image_processor
from hf_deitcxr.models.densenet import DenseNetForImageClassification

from .tiny_models import LABELS, tiny_deit_kwargs

SAMPLE = Path(__file__).resolve().parents[2] / "hf_deitcxr" / "sample_data" / "cxr3_sample" / "train"
RADIOGRAPHS = sorted(SAMPLE.glob("*/*.jpg"))


def save_tiny_models(root: Path) -> tuple[Path, Path]:
    """A 2-layer DeiT student (32 px, 4x4 patches grid) and a small DenseNet teacher, saved as the Space loads them."""
    torch.manual_seed(0)
    student = root / "student"
    DeiTCXRForImageClassificationWithTeacher(DeiTCXRConfig(**tiny_deit_kwargs())).save_pretrained(student)
    make_image_processor(32).save_pretrained(student)
    teacher = root / "teacher"
    config = DenseNetConfig(growth_rate=8, block_config=[2, 2], num_init_features=16, image_size=32,
                            id2label=dict(enumerate(LABELS)), label2id={n: i for i, n in enumerate(LABELS)})
    DenseNetForImageClassification(config).save_pretrained(teacher)
    make_image_processor(32).save_pretrained(teacher)
    return student, teacher


def colour_shapes(size=(300, 240)) -> Image.Image:
    image = Image.new("RGB", size, (30, 120, 200))
    draw = ImageDraw.Draw(image)
    draw.ellipse([40, 30, 200, 190], fill=(250, 200, 0), outline=(0, 0, 0), width=4)
    draw.rectangle([150, 120, 290, 230], fill=(200, 30, 40))
    return image

"""The models of the real-data mammography benchmark (`hf-deitcxr benchmark --task mammo`), built from configs with
random weights (nothing can be downloaded here, and the issue asks for training from scratch on CPU).

Every transformer is sized for a CPU budget at the benchmark's `image_size` (64 px by default): ViT / DeiT with
8x8 patch tokens, Swin and PVT-v2 with four-pixel stems, the seed's DenseNet teacher (DenseNet-121's block layout)
and the seed's DeiT student (`DeiTCXRForImageClassificationWithTeacher`, with or without a teacher). The HF
backbones go through `build_single_view_model` like any `--task mammo --architecture single_view` run.
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from dataclasses import dataclass

from transformers import DeiTConfig, PretrainedConfig, PvtV2Config, SwinConfig, ViTConfig

from ..models.deit_cxr.configuration_deit_cxr import DeiTCXRConfig
from ..models.deit_cxr.modeling_deit_cxr import DeiTCXRForImageClassificationWithTeacher
from ..models.densenet import DenseNetConfig, DenseNetForImageClassification
from ..training.builders import label_maps
from .builders import build_single_view_model

BACKBONES = ("vit", "deit", "swin", "pvt_v2")


@dataclass(frozen=True)
class ModelSize:
    """Widths of the benchmark's models (the defaults fit ~2-3 CPU minutes a run at 64 px on 1,100 crops)."""

    hidden_size: int = 192
    num_layers: int = 6
    num_heads: int = 3
    densenet_growth_rate: int = 12  # DenseNet-121 has 32; 12 keeps its block layout at a CPU cost like the ViT's

    def patch_size(self, image_size: int) -> int:
        # an 8x8 token grid at any size (64 px -> 8-px patches), as the chest X-ray CPU recipe
        return max(image_size // 8, 1)


def vit_like_fields(size: ModelSize, image_size: int) -> dict:
    return dict(hidden_size=size.hidden_size, num_hidden_layers=size.num_layers, num_attention_heads=size.num_heads,
                intermediate_size=4 * size.hidden_size, image_size=image_size,
                patch_size=size.patch_size(image_size))


def backbone_config(name: str, size: ModelSize, image_size: int) -> PretrainedConfig:
    """The from-scratch config of one HF backbone at `image_size`."""
    if name == "vit":
        return ViTConfig(**vit_like_fields(size, image_size))
    if name == "deit":
        return DeiTConfig(**vit_like_fields(size, image_size))
    width = size.hidden_size // 4
    if name == "swin":
        # stride-4 stem, three stages (64 px: 16 -> 8 -> 4 tokens a side); the window divides the last stage's grid
        # (HF Swin's own clamp fails under SDPA when it does not)
        window = max(1, min(4, image_size // 16))
        return SwinConfig(image_size=image_size, patch_size=4, embed_dim=width, depths=[2, 2, 2],
                          num_heads=[1, 2, 4], window_size=window, drop_path_rate=0.1)
    if name == "pvt_v2":
        return PvtV2Config(image_size=image_size, hidden_sizes=[width, 2 * width, 4 * width, 8 * width],
                           depths=[1, 1, 2, 1], num_attention_heads=[1, 2, 4, 8], sr_ratios=[8, 4, 2, 1],
                           drop_path_rate=0.1)
    raise ValueError(f"unknown backbone {name!r}; choose from {BACKBONES}")


def build_backbone(name: str, label_names: Sequence[str], size: ModelSize, image_size: int):
    """The single-view classifier, through the same builder as `--task mammo` (from a saved config folder)."""
    config = backbone_config(name, size, image_size)
    with tempfile.TemporaryDirectory() as folder:
        config.save_pretrained(folder)
        return build_single_view_model(folder, label_names, image_size, from_scratch=True)


def build_densenet(label_names: Sequence[str], size: ModelSize, image_size: int) -> DenseNetForImageClassification:
    config = DenseNetConfig(growth_rate=size.densenet_growth_rate, block_config=(6, 12, 24, 16),
                            num_init_features=2 * size.densenet_growth_rate, num_channels=3, image_size=image_size,
                            **label_maps(label_names))
    return DenseNetForImageClassification(config)


def build_deit_student(
    label_names: Sequence[str], size: ModelSize, image_size: int, distillation_type: str = "none",
    alpha: float = 0.7, tau: float = 2.0,
) -> DeiTCXRForImageClassificationWithTeacher:
    """The seed's DeiT student (class + distillation tokens); `distillation_type="none"` trains both heads on the
    labels (the same DeiT without a teacher)."""
    config = DeiTCXRConfig(**vit_like_fields(size, image_size), num_channels=3, distillation_type=distillation_type,
                           distillation_alpha=alpha, distillation_tau=tau, drop_path_rate=0.1,
                           **label_maps(label_names))
    return DeiTCXRForImageClassificationWithTeacher(config)


__all__ = ["BACKBONES", "ModelSize", "backbone_config", "build_backbone", "build_deit_student", "build_densenet"]

"""Tiny ViT encoders, local "ImageNet checkpoint" stand-ins and a tiny multi-view model for the mammography tests."""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import AutoModelForImageClassification, ViTConfig

from hf_deitcxr.mammo import MultiViewMammoConfig, MultiViewMammoForExamClassification
from hf_deitcxr.mammo.builders import make_mammo_processor

# The mammography label order of every mammography test.
LABELS = ["benign", "malignant"]
IMAGENET = 1000  # stand-ins carry an ImageNet-sized head, as Hub checkpoints do


def tiny_vit_config(**overrides) -> ViTConfig:
    kwargs = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, image_size=32,
                  patch_size=8, num_labels=IMAGENET)
    return ViTConfig(**{**kwargs, **overrides})


def save_standin(config, path) -> dict[str, torch.Tensor]:
    """An "ImageNet checkpoint" saved locally, its every tensor random (non-zero), as a Hub one would be."""
    torch.manual_seed(0)
    config.architectures = config.architectures or []
    model = AutoModelForImageClassification.from_config(config)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.normal_(0, 0.02)
    model.save_pretrained(path)
    return model.state_dict()


def multiview_model(**overrides) -> MultiViewMammoForExamClassification:
    torch.manual_seed(0)
    config = MultiViewMammoConfig(encoder=tiny_vit_config(), num_global_layers=2, id2label=dict(enumerate(LABELS)),
                                  label2id={n: i for i, n in enumerate(LABELS)}, **overrides)
    return MultiViewMammoForExamClassification(config).eval()


def save_with_processors(models: dict, root: Path, size: int) -> dict[str, Path]:
    """Save each model, with the mammography processor for `size`, to root/<name>; returns the folders."""
    for name, model in models.items():
        model.save_pretrained(root / name)
        make_mammo_processor(None, size).save_pretrained(root / name)
    return {name: root / name for name in models}

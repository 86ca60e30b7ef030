"""Build the mammography models from pretrained checkpoints (Hub ids or folders), as a user fine-tuning would.

- Single view: any ViT, DeiT, Swin, PVT or PVT-v2 image classifier through `AutoModelForImageClassification`, with a
  new head for the mammography labels (`ignore_mismatched_sizes=True`) and the input size changed where the
  architecture allows it (ViT/DeiT position embeddings interpolated; Swin and PVT-v2 take any size).
- Multi view: `MultiViewMammoForExamClassification` whose shared local encoder starts from a ViT/DeiT checkpoint
  (the encoder weights of an image classifier, its head dropped), plus new global layers and exam head.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import torch
from transformers import (
    AutoConfig,
    AutoImageProcessor,
    AutoModelForImageClassification,
    DeiTConfig,
    DeiTModel,
    PreTrainedModel,
    ViTModel,
)

from ..data.input_spec import normalization_from_image_processor
from ..models.deit_cxr.image_processing_deit_cxr import make_image_processor
from ..models.deit_cxr.pretrained import interpolate_position_embeddings
from ..models.multiview_mammo.configuration_multiview import MultiViewMammoConfig
from ..models.multiview_mammo.modeling_multiview import MultiViewMammoForExamClassification
from ..training.builders import label_maps

logger = logging.getLogger(__name__)

SINGLE_VIEW_TYPES = ("vit", "deit", "deit_cxr", "swin", "pvt", "pvt_v2")
_VIT_LIKE = ("vit", "deit", "deit_cxr")
# DeiT's Auto class maps to two classes; the fine-tunable one (the other is inference-only, without a loss).
_ARCHITECTURE = {"deit": "DeiTForImageClassification"}
_POSITIONS_SUFFIX = "embeddings.position_embeddings"


def build_single_view_model(
    name_or_path: str, label_names: Sequence[str], image_size: int = 224, from_scratch: bool = False
) -> PreTrainedModel:
    """A ViT/DeiT/Swin/PVT/PVT-v2 classifier for `label_names` at `image_size`, from a checkpoint.

    `from_scratch=True` uses only the checkpoint's configuration (random weights), e.g. for synthetic benchmarks.
    """
    config = AutoConfig.from_pretrained(name_or_path)
    if config.model_type not in SINGLE_VIEW_TYPES:
        raise ValueError(f"{name_or_path} is a {config.model_type!r} model; single-view mammography supports "
                         f"{SINGLE_VIEW_TYPES} (ViT, DeiT, Swin, PVT, PVT-v2)")
    labels = label_maps(label_names)
    if config.model_type in _ARCHITECTURE:
        config.architectures = [_ARCHITECTURE[config.model_type]]
    # num_labels first (PvtConfig keeps it as its own field; elsewhere setting it resets id2label), then the names.
    config.num_labels = len(label_names)
    config.id2label, config.label2id = labels["id2label"], labels["label2id"]
    if from_scratch:
        config.architectures = config.architectures or []  # Auto's class choice iterates it
        model = AutoModelForImageClassification.from_config(config)
    else:
        model = AutoModelForImageClassification.from_pretrained(
            name_or_path, config=config, ignore_mismatched_sizes=True
        )
    return resize_model_input(model, image_size)


def resize_model_input(model: PreTrainedModel, image_size: int) -> PreTrainedModel:
    """The same model for square inputs of `image_size` (a new instance when anything changes)."""
    config = model.config
    current = _as_int(config.image_size)
    if current == image_size:
        return model
    if config.model_type == "pvt":
        raise ValueError(f"PVT (v1) position embeddings are fixed to its image_size {current}; use "
                         f"--image_size {current} or a PVT-v2 checkpoint (any size)")
    state = model.state_dict()
    if config.model_type in _VIT_LIKE:
        patch = _as_int(config.patch_size)
        if image_size % patch:
            raise ValueError(f"image_size {image_size} is not a multiple of the patch size {patch}")
        key = next(k for k in state if k.endswith(_POSITIONS_SUFFIX))
        special = state[key].shape[1] - (current // patch) ** 2
        state[key] = interpolate_position_embeddings(state[key], image_size // patch, num_special_tokens=special)
    new_config = config.__class__.from_dict(config.to_dict())
    new_config.image_size = image_size
    resized = _same_class(model, new_config)
    resized.load_state_dict(state)
    logger.info("adapted %s from %d to %d px input", type(model).__name__, current, image_size)
    return resized


def build_multiview_model(
    name_or_path: str,
    label_names: Sequence[str],
    image_size: int = 224,
    from_scratch: bool = False,
    **multiview_kwargs: Any,
) -> MultiViewMammoForExamClassification:
    """The multi-view model with its local encoder from a ViT/DeiT checkpoint (or a saved multi-view model).

    `multiview_kwargs` are `MultiViewMammoConfig` fields (num_global_layers, global_tokens, ...).
    """
    labels = label_maps(label_names)
    config = AutoConfig.from_pretrained(name_or_path)
    if config.model_type == MultiViewMammoConfig.model_type:  # continue from a multi-view model
        if _as_int(config.image_size) != image_size:
            raise ValueError(f"{name_or_path} works on {config.image_size} px views, not {image_size}")
        return MultiViewMammoForExamClassification.from_pretrained(
            name_or_path, ignore_mismatched_sizes=True, **labels, **multiview_kwargs
        )
    encoder = load_encoder(name_or_path, image_size, from_scratch)
    model = MultiViewMammoForExamClassification(
        MultiViewMammoConfig(encoder=encoder.config, **labels, **multiview_kwargs)
    )
    if not from_scratch:
        model.multiview.encoder.load_state_dict(encoder.state_dict())
    return model


def build_mammo_model(
    architecture: str,
    name_or_path: str,
    label_names: Sequence[str],
    *,
    image_size: int = 224,
    from_scratch: bool = False,
    orientation: str = "laterality",
    exam_aggregation: str = "max",
    **multiview_kwargs: Any,
) -> PreTrainedModel:
    """The model of `--architecture`: single view (its orientation and exam aggregation recorded in config.json, so
    inference prepares and combines views as training did) or multi view (`multiview_kwargs`: num_global_layers,
    global_tokens, global_dropout; the orientation is a config field)."""
    if architecture == "single_view":
        model = build_single_view_model(name_or_path, label_names, image_size, from_scratch=from_scratch)
        model.config.mammography = {"orientation": orientation, "exam_aggregation": exam_aggregation}
        return model
    if architecture != "multi_view":
        raise ValueError(f"architecture must be single_view or multi_view, got {architecture!r}")
    return build_multiview_model(name_or_path, label_names, image_size, from_scratch=from_scratch,
                                 orientation=orientation, **multiview_kwargs)


def load_encoder(name_or_path: str, image_size: int, from_scratch: bool = False) -> ViTModel | DeiTModel:
    """The ViT/DeiT encoder of a checkpoint (an image classifier's body; our DeiT students become plain DeiT)."""
    config = AutoConfig.from_pretrained(name_or_path)
    if config.model_type not in _VIT_LIKE:
        raise ValueError(f"the multi-view encoder must be a ViT or DeiT checkpoint, {name_or_path} is a "
                         f"{config.model_type!r} model")
    encoder_class = ViTModel if config.model_type == "vit" else DeiTModel
    if config.model_type == "deit_cxr":  # same parameter names as DeiTModel: keep only the DeiT fields
        fields = DeiTConfig.default_config_fields()
        config = DeiTConfig(**{k: v for k, v in config.to_dict().items() if k in fields})
    if from_scratch:
        encoder = encoder_class(config, add_pooling_layer=False)
    else:
        encoder = encoder_class.from_pretrained(name_or_path, config=config, add_pooling_layer=False)
    return resize_model_input(encoder, image_size)


def make_mammo_processor(name_or_path: str | None, image_size: int):
    """The image processor saved with a mammography model: whole image resized to `image_size`, no crop, 3
    channels, normalised with the checkpoint's own mean/std when it has a processor (else ImageNet's)."""
    processor = make_image_processor(image_size, 3)
    if name_or_path:
        try:
            source = AutoImageProcessor.from_pretrained(name_or_path)
            mean, std, _ = normalization_from_image_processor(source)
            processor.image_mean, processor.image_std = list(mean), list(std)
        except (OSError, ValueError):
            logger.info("no image processor at %s: ImageNet mean/std", name_or_path)
    return processor


def _same_class(model: PreTrainedModel, config) -> PreTrainedModel:
    if isinstance(model, (ViTModel, DeiTModel)):
        return type(model)(config, add_pooling_layer=model.pooler is not None)
    return type(model)(config)


def _as_int(size) -> int:
    if isinstance(size, (list, tuple)):
        if len(set(size)) != 1:
            raise ValueError(f"only square inputs are supported, got {size}")
        size = size[0]
    if not isinstance(size, int) or size <= 0:
        raise ValueError(f"invalid image size {size!r}")
    return int(size)


def count_parameters(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


__all__ = [
    "SINGLE_VIEW_TYPES",
    "build_mammo_model",
    "build_multiview_model",
    "build_single_view_model",
    "count_parameters",
    "load_encoder",
    "make_mammo_processor",
    "resize_model_input",
]

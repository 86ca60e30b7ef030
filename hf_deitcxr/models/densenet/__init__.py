"""DenseNet-121/169/201 as a transformers model, with torchvision's architecture and names (the teacher)."""

from .configuration_densenet import DENSENET_VARIANTS, DenseNetConfig
from .convert import convert_checkpoint, convert_state_dict, infer_config_from_state_dict
from .modeling_densenet import DenseNetForImageClassification, DenseNetModel, DenseNetPreTrainedModel

__all__ = [
    "DENSENET_VARIANTS",
    "DenseNetConfig",
    "DenseNetForImageClassification",
    "DenseNetModel",
    "DenseNetPreTrainedModel",
    "convert_checkpoint",
    "convert_state_dict",
    "infer_config_from_state_dict",
]

"""hf_deitcxr: data-efficient vision transformers for radiographs, trained by distillation from a CNN teacher."""

from transformers import AutoConfig, AutoImageProcessor, AutoModel, AutoModelForImageClassification

from .models import (
    DeiTCXRConfig,
    DeiTCXRForImageClassificationWithTeacher,
    DeiTCXRModel,
    DenseNetConfig,
    DenseNetForImageClassification,
    DenseNetModel,
    MultiViewMammoConfig,
    MultiViewMammoForExamClassification,
    MultiViewMammoModel,
    RadiographImageProcessor,
    make_image_processor,
)
from .models.deit_cxr import fold_rgb_conv_to_grey, interpolate_position_embeddings, load_student

__version__ = "0.1.0"


def _register_auto_classes() -> None:
    """Make our models loadable through the Auto classes, with and without remote code.

    `register` serves processes that import hf_deitcxr; `register_for_auto_class` makes `save_pretrained` write an
    `auto_map` and copy the modeling files, so `trust_remote_code=True` loads a saved folder anywhere.
    """
    for config_class, model_class, base_class in (
        (DeiTCXRConfig, DeiTCXRForImageClassificationWithTeacher, DeiTCXRModel),
        (DenseNetConfig, DenseNetForImageClassification, DenseNetModel),
        (MultiViewMammoConfig, MultiViewMammoForExamClassification, MultiViewMammoModel),
    ):
        AutoConfig.register(config_class.model_type, config_class, exist_ok=True)
        AutoModelForImageClassification.register(config_class, model_class, exist_ok=True)
        AutoModel.register(config_class, base_class, exist_ok=True)
        config_class.register_for_auto_class()
        model_class.register_for_auto_class("AutoModelForImageClassification")
    RadiographImageProcessor.register_for_auto_class("AutoImageProcessor")
    AutoImageProcessor.register(DeiTCXRConfig, slow_image_processor_class=RadiographImageProcessor, exist_ok=True)


_register_auto_classes()

__all__ = [
    "DeiTCXRConfig",
    "DeiTCXRForImageClassificationWithTeacher",
    "DeiTCXRModel",
    "DenseNetConfig",
    "DenseNetForImageClassification",
    "DenseNetModel",
    "MultiViewMammoConfig",
    "MultiViewMammoForExamClassification",
    "MultiViewMammoModel",
    "RadiographImageProcessor",
    "fold_rgb_conv_to_grey",
    "interpolate_position_embeddings",
    "load_student",
    "make_image_processor",
]

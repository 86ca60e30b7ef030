"""The DeiT student with a distillation token: config, trainable model, image processors, pretrained-weight loading."""

from .configuration_deit_cxr import DeiTCXRConfig
from .image_processing_deit_cxr import GREY_MEAN, GREY_STD, RadiographImageProcessor, make_image_processor
from .modeling_deit_cxr import DeiTCXRClassifierOutput, DeiTCXRForImageClassificationWithTeacher, DeiTCXRModel
from .pretrained import fold_rgb_conv_to_grey, interpolate_position_embeddings, load_student

__all__ = [
    "GREY_MEAN",
    "GREY_STD",
    "DeiTCXRClassifierOutput",
    "DeiTCXRConfig",
    "DeiTCXRForImageClassificationWithTeacher",
    "DeiTCXRModel",
    "RadiographImageProcessor",
    "fold_rgb_conv_to_grey",
    "interpolate_position_embeddings",
    "load_student",
    "make_image_processor",
]

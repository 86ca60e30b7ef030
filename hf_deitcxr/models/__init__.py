"""The saved model families, each a folder in the transformers layout (`configuration_*`, `modeling_*`, ...).

The files of a family import only torch, transformers and each other: `save_pretrained` copies them next to a
checkpoint, and `trust_remote_code=True` loads them there without this package.
"""

from .deit_cxr import (
    DeiTCXRConfig,
    DeiTCXRForImageClassificationWithTeacher,
    DeiTCXRModel,
    RadiographImageProcessor,
    make_image_processor,
)
from .densenet import DenseNetConfig, DenseNetForImageClassification, DenseNetModel
from .multiview_mammo import MultiViewMammoConfig, MultiViewMammoForExamClassification, MultiViewMammoModel

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
    "make_image_processor",
]

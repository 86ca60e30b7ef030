"""The multi-view mammography transformer: a shared ViT/DeiT encoder per view, global layers across views."""

from .configuration_multiview import GLOBAL_TOKENS, MultiViewMammoConfig
from .modeling_multiview import MultiViewMammoForExamClassification, MultiViewMammoModel

__all__ = ["GLOBAL_TOKENS", "MultiViewMammoConfig", "MultiViewMammoForExamClassification", "MultiViewMammoModel"]

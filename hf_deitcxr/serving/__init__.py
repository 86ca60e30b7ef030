"""Serving: what the Gradio Space runs (decode an upload, check it is a radiograph, predict, explain)."""

from .chest_predictor import ChestXrayPredictor, ChestXrayResult
from .decode import DecodedUpload, decode_upload
from .input_check import InputCheckConfig, LayoutModel, NotARadiographError, RadiographCheck
from .predictor import Prediction, RadiographClassifier
from .radiograph_gate import RadiographGate

__all__ = [
    "ChestXrayPredictor",
    "ChestXrayResult",
    "DecodedUpload",
    "InputCheckConfig",
    "LayoutModel",
    "NotARadiographError",
    "Prediction",
    "RadiographCheck",
    "RadiographClassifier",
    "RadiographGate",
    "decode_upload",
]

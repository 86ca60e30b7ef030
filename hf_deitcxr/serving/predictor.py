"""The chest X-ray prediction path of the Space, importable without any UI (benchmarked by scripts/bench_space.py).

`RadiographClassifier` wraps one saved model (student or teacher), loaded once:
- preprocessing straight from the decoded 8-bit grey image: one bicubic resize to the model size, then scaling and
  normalisation into a tensor allocated once (the saved image processor's numerics, without converting the grey
  image to RGB first and without the processor's per-call validation and copies);
- for DeiT models, a fused forward (`fast_deit.py`: the same arithmetic in fewer, larger operations), checked
  against the model's own forward on a probe input at load;
- `torch.inference_mode`; the forward that serves (fused PyTorch fp32, ONNX Runtime, or bf16 where the CPU has
  native bf16) checked and timed at start-up by `forward_choice.py` (`scripts/bench_space.py` reports each);
- the heatmap comes from the same forward pass (`explain.py`): the fused forward returns the attention maps (without
  it, DeiT models are loaded with eager attention so that they can); a DenseNet's last feature map is caught by a
  forward hook.

`ChestXrayPredictor` (chest_predictor.py) is what the Space calls.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image
from torch import nn
from transformers import AutoConfig, AutoImageProcessor, AutoModelForImageClassification

from ..data.input_spec import normalization_from_image_processor
from ..models.deit_cxr.image_processing_deit_cxr import GreyPreprocessing, make_image_processor
from .explain import attention_rollout, class_activation_map
from .fast_deit import FusedDeiT
from .forward_choice import ONNX_FP32, choose_forward

logger = logging.getLogger(__name__)

DEIT_MODEL_TYPES = ("deit", "deit_cxr")
PRECISIONS = ("auto", "fp32", "bf16")


@dataclass(frozen=True)
class Prediction:
    probabilities: dict[str, float]  # every class, most probable first
    heatmap: np.ndarray | None  # (h, w) in [0, 1] on the model's patch grid / feature map; None if not computed

    @property
    def label(self) -> str:
        return next(iter(self.probabilities))


def heatmap_kind(model: nn.Module) -> str | None:
    """"rollout" for DeiT models, "cam" for a DenseNet with a linear head, else None."""
    if getattr(model.config, "model_type", None) in DEIT_MODEL_TYPES:
        return "rollout"
    if hasattr(model, "densenet") and isinstance(getattr(model, "classifier", None), nn.Linear):
        return "cam"
    return None


class RadiographClassifier:
    """One image-classification model with its input convention, ready for single and batched predictions on grey
    images.

    forward: "auto" (default, or `$HF_DEITCXR_FORWARD`) times the checked DeiT forwards on this CPU at load and keeps
    the fastest (`forward_choice.py`: fused PyTorch fp32, ONNX Runtime, PyTorch bf16 on CPUs with native bf16);
    "onnx" or "torch" pick one. `forward_name` says which serves.
    """

    def __init__(
        self,
        model: nn.Module,
        mean: tuple[float, ...],
        std: tuple[float, ...],
        size: int,
        *,
        precision: str = "auto",
        explain: bool = True,
        fused: bool = True,
        preprocessing: GreyPreprocessing | None = None,
        forward: str | None = None,
    ) -> None:
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
        self.model = model.eval()
        self.size = size
        self.preprocessing = preprocessing or GreyPreprocessing()
        self.num_channels = int(getattr(model.config, "num_channels", 3))
        if len(mean) not in (1, self.num_channels) or len(std) != len(mean):
            raise ValueError(f"mean/std {mean}/{std} do not fit a model with {self.num_channels} input channels")
        self.labels = [model.config.id2label[i] for i in range(model.config.num_labels)]
        self.heatmap_kind = heatmap_kind(model) if explain else None
        rollout = self.heatmap_kind == "rollout"
        checked = _checked_fused_forward(self.model, size, rollout) if fused else None
        # the fastest checked forward on this CPU (fused torch fp32 / ONNX Runtime / torch bf16), with its dtype
        self.forward_choice = choose_forward(self.model, checked, precision=precision, forward=forward,
                                             with_attentions=rollout)
        self.fused, self.dtype = self.forward_choice.forward, self.forward_choice.dtype
        self.forward_name = self.forward_choice.name  # for the Space's model info
        # the ONNX graph is batch-1 (it runs a batch image by image); batches of several go to the fused PyTorch
        # forward, which takes them in one pass (same fp32 outputs within 1e-4, checked when ONNX was chosen)
        self._batch_forward = checked if self.forward_name == ONNX_FP32 else self.fused
        self.model.to(self.dtype)
        # x -> (x / 255 - mean) / std == x * scale + shift, per channel; the input buffer is allocated once
        std_t = torch.tensor(std, dtype=torch.float32).expand(self.num_channels)
        mean_t = torch.tensor(mean, dtype=torch.float32).expand(self.num_channels)
        self._scale = (1.0 / (255.0 * std_t)).view(self.num_channels, 1, 1)
        self._shift = (-mean_t / std_t).view(self.num_channels, 1, 1)
        self._normalised = torch.empty(self.num_channels, size, size, dtype=torch.float32)
        self._pixels = torch.empty(1, self.num_channels, size, size, dtype=self.dtype)
        self._lock = threading.Lock()  # the buffer and hook state are per instance; Gradio may call from threads
        self._features: torch.Tensor | None = None
        if self.heatmap_kind == "cam":
            model.densenet.register_forward_hook(self._keep_features)

    @classmethod
    def from_pretrained(
        cls, model_id: str | os.PathLike, *, precision: str = "auto", explain: bool = True, fused: bool = True,
        forward: str | None = None, **kwargs,
    ) -> RadiographClassifier:
        """Load a saved model folder or Hub id (and its image processor); DeiT models get eager attention."""
        config = AutoConfig.from_pretrained(model_id, **kwargs)
        model_kwargs = dict(kwargs)
        if explain and getattr(config, "model_type", None) in DEIT_MODEL_TYPES:
            model_kwargs["attn_implementation"] = "eager"  # only eager attention can return attention maps
        model = AutoModelForImageClassification.from_pretrained(model_id, config=config, **model_kwargs)
        try:
            processor = AutoImageProcessor.from_pretrained(model_id, **kwargs)
        except OSError:  # a folder without preprocessor_config.json: our default convention for its size
            processor = make_image_processor(int(getattr(config, "image_size", 224)), config.num_channels)
        mean, std, size = normalization_from_image_processor(processor)
        return cls(model, mean, std, size, precision=precision, explain=explain, fused=fused,
                   preprocessing=GreyPreprocessing.from_processor(processor), forward=forward)

    def resize(self, grey: Image.Image, framed: bool = False) -> Image.Image:
        """Grey image -> model size, bicubic and without crop, with the saved image processor's border removal and
        intensity normalisation if it has them (`GreyPreprocessing.apply`, as training's image cache). `framed`: the
        border was already removed (`model_view`)."""
        if grey.mode != "L":
            grey = grey.convert("L")
        if not self.preprocessing.is_stock:
            pixels = np.asarray(grey) if framed else self.preprocessing.frame(np.asarray(grey))
            return Image.fromarray(self.preprocessing.fit(pixels, self.size))
        if grey.size == (self.size, self.size):
            return grey
        return grey.resize((self.size, self.size), Image.Resampling.BICUBIC)

    def model_view(self, grey: Image.Image) -> Image.Image:
        """The part of `grey` the model sees (without the border it removes, if it does), to lay a heatmap over."""
        if not self.preprocessing.remove_border:
            return grey
        return Image.fromarray(self.preprocessing.frame(np.asarray(grey.convert("L"))))

    def normalise(self, resized: Image.Image, out: torch.Tensor | None = None) -> torch.Tensor:
        """(C, size, size) float32 model input of a `resize`d grey image: (x / 255 - mean) / std per channel."""
        grey = torch.frombuffer(bytearray(resized.tobytes()), dtype=torch.uint8).view(1, self.size, self.size)
        return torch.addcmul(self._shift, grey.to(torch.float32), self._scale, out=out)

    def _fill_pixels(self, resized: Image.Image) -> torch.Tensor:
        self.normalise(resized, out=self._normalised)
        return self._pixels.copy_(self._normalised.unsqueeze(0))  # a cast when the model runs in bf16

    def _keep_features(self, module: nn.Module, args, output) -> None:
        self._features = output.last_hidden_state if hasattr(output, "last_hidden_state") else output[0]

    @torch.inference_mode()
    def predict(self, grey: Image.Image, heatmap: bool = True, framed: bool = False) -> Prediction:
        """Class probabilities (and a heatmap if `heatmap` and the model supports one) for one grey image
        (`framed`: already `model_view`-ed, so its border is not searched for again)."""
        return self.predict_resized(self.resize(grey, framed=framed), heatmap)

    @torch.inference_mode()
    def predict_resized(self, resized: Image.Image, heatmap: bool = True) -> Prediction:
        """`predict` of an image already `resize`d (the model input, which the Space also shows as its preview)."""
        with self._lock:
            probabilities, heat = self._forward(self._fill_pixels(resized), heatmap, self.fused)
        return self._prediction(probabilities[0], None if heat is None else heat[0])

    @torch.inference_mode()
    def predict_batch(
        self, greys: Sequence[Image.Image], heatmap: bool = True, framed: bool = False
    ) -> list[Prediction]:
        """`predict` for several images in one forward pass, on the device the model is on (`hf-deitcxr predict`)."""
        return self.predict_resized_batch([self.resize(grey, framed=framed) for grey in greys], heatmap)

    @torch.inference_mode()
    def predict_resized_batch(
        self, resized: Sequence[Image.Image], heatmap: bool | Sequence[bool] = True
    ) -> list[Prediction]:
        """`predict_resized` for several images in one forward pass (the Space's micro-batches, `hf-deitcxr
        predict`). heatmap: one flag for all, or one per image (computed if any asks, returned only to those)."""
        if not resized:
            return []
        wanted = [heatmap] * len(resized) if isinstance(heatmap, bool) else list(heatmap)
        if len(wanted) != len(resized):
            raise ValueError(f"{len(wanted)} heatmap flags for {len(resized)} images")
        device = next(self.model.parameters()).device
        pixels = torch.stack([self.normalise(image) for image in resized]).to(device, self.dtype)
        fused = None  # off the CPU: the model's own forward (the fused weights stay where the model was loaded)
        if device.type == "cpu":
            fused = self.fused if len(resized) == 1 else self._batch_forward
        with self._lock:
            probabilities, heat = self._forward(pixels, any(wanted), fused)
        return [self._prediction(p, heat[i] if heat is not None and wanted[i] else None)
                for i, p in enumerate(probabilities)]

    def _forward(
        self, pixels: torch.Tensor, heatmap: bool, fused: FusedDeiT | None
    ) -> tuple[torch.Tensor, np.ndarray | None]:
        """((batch, labels) probabilities on the CPU, (batch, h, w) heatmaps or None); the caller holds the lock."""
        want_rollout = heatmap and self.heatmap_kind == "rollout"
        if fused is not None:
            logits, attentions = fused(pixels, output_attentions=want_rollout)
        else:
            extra = {"output_attentions": True} if want_rollout else {}  # not every model takes the argument
            outputs = self.model(pixel_values=pixels, **extra)
            logits, attentions = outputs.logits, getattr(outputs, "attentions", None)
        probabilities = logits.float().softmax(-1)
        heat = None
        if want_rollout:
            grid = self.size // self.model.config.patch_size
            heat = attention_rollout(attentions, (grid, grid))
        elif heatmap and self.heatmap_kind == "cam":
            top = torch.argsort(probabilities, dim=-1, descending=True)[:, 0]
            heat = class_activation_map(self._features, self.model.classifier.weight, top)
        self._features = None
        return probabilities.cpu(), heat

    def _prediction(self, probabilities: torch.Tensor, heat: np.ndarray | None) -> Prediction:
        order = torch.argsort(probabilities, descending=True)
        return Prediction({self.labels[int(i)]: float(probabilities[i]) for i in order}, heat)


def _checked_fused_forward(model: nn.Module, size: int, with_attentions: bool) -> FusedDeiT | None:
    """The fused forward if the model has one and it reproduces the model's own forward on a probe input."""
    fused = FusedDeiT.from_model(model)
    if fused is None:
        return None
    num_channels = int(getattr(model.config, "num_channels", 3))
    probe = torch.randn(1, num_channels, size, size, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        try:
            logits, attentions = fused(probe, output_attentions=with_attentions)
            expected = model(pixel_values=probe, output_attentions=with_attentions)
        except (RuntimeError, ValueError) as err:
            logger.warning("fused DeiT forward unusable (%s): using the model's own forward", err)
            return None
        same = torch.allclose(logits, expected.logits, atol=1e-4, rtol=1e-4)
        if with_attentions and getattr(expected, "attentions", None):  # SDPA models return no maps to compare
            same = same and all(
                torch.allclose(ours, theirs, atol=1e-5, rtol=1e-4)
                for ours, theirs in zip(attentions, expected.attentions, strict=True)
            )
    if not same:
        logger.warning("fused DeiT forward differs from the model's forward: using the model's own forward")
        return None
    return fused


__all__ = [
    "Prediction",
    "RadiographClassifier",
    "heatmap_kind",
]

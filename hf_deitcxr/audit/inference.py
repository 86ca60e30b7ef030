"""A saved classifier run on grey images through its own image processor: probabilities and pooled embeddings.

Importing `hf_deitcxr` (the parent package) registers our classes with the Auto classes. The embedding is read
with a forward hook on the model's base model, so the logits are those of the model's own
`forward`: DeiT models give the final layer-normed class and distillation tokens (concatenated), CNNs (DenseNet)
their global-average-pooled features (`pooler_output`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image
from transformers import AutoImageProcessor, AutoModelForImageClassification

GreyTransform = Callable[[np.ndarray], np.ndarray]


@dataclass
class Predictions:
    """Softmax probabilities (N, C) and, when asked for, the pooled embeddings (N, D)."""

    probabilities: np.ndarray
    embeddings: np.ndarray | None = None

    @property
    def predicted(self) -> np.ndarray:
        return self.probabilities.argmax(axis=1)


def load_classifier(model_path: str):
    """(model in eval mode, its image processor, its label names in class-index order)."""
    model = AutoModelForImageClassification.from_pretrained(model_path).eval()
    processor = AutoImageProcessor.from_pretrained(model_path)
    label_names = [model.config.id2label[i] for i in range(model.config.num_labels)]
    return model, processor, label_names


def prefix_tokens(model) -> int:
    """How many leading tokens make the embedding: 2 for DeiT ([CLS, DIST]), 1 for other transformers."""
    embeddings = getattr(model.base_model, "embeddings", None)
    return 2 if getattr(embeddings, "distillation_token", None) is not None else 1


def embedding_kind(model) -> str:
    """What `predict_grey(..., with_embeddings=True)` returns for this model, in words."""
    if getattr(model.base_model, "embeddings", None) is None:
        return "global-average-pooled final features (pooler_output)"
    if prefix_tokens(model) == 2:
        return "final layer-normed class + distillation tokens, concatenated"
    return "final layer-normed class token"


def pooled_embedding(output, num_tokens: int) -> torch.Tensor:
    """The pooled embedding from a base model's output: the first `num_tokens` tokens of a token sequence,
    else `pooler_output` (a CNN's global-average-pooled features)."""
    hidden = getattr(output, "last_hidden_state", None)
    if hidden is not None and hidden.ndim == 3:
        return hidden[:, :num_tokens].flatten(1)
    pooled = getattr(output, "pooler_output", None)
    if pooled is not None:
        return pooled.flatten(1)
    if hidden is None:
        raise ValueError(f"cannot find a pooled embedding in a {type(output).__name__}")
    return hidden.mean(dim=tuple(range(2, hidden.ndim)))


@torch.inference_mode()
def predict_grey(
    model,
    processor,
    images: Sequence[np.ndarray] | torch.Tensor,
    transform: GreyTransform | None = None,
    batch_size: int = 64,
    with_embeddings: bool = False,
    autocast_dtype: torch.dtype | None = None,
) -> Predictions:
    """Run `model` on uint8 grey images (each optionally changed by `transform` first), in batches.

    Every batch goes through `processor(images=..., return_tensors="pt")`, the preprocessing saved with the model.
    `autocast_dtype` (e.g. torch.bfloat16) runs the forward under autocast, as a mixed-precision run trained and
    evaluated it; probabilities and embeddings come back in float32 either way.
    """
    captured: list[torch.Tensor] = []
    hook = None
    if with_embeddings:
        num_tokens = prefix_tokens(model)

        def keep(_module, _inputs, output) -> None:
            captured.append(pooled_embedding(output, num_tokens).float())

        hook = model.base_model.register_forward_hook(keep)
    chunks = []
    try:
        for start in range(0, len(images), batch_size):
            batch = [_grey_array(image) for image in images[start:start + batch_size]]
            if transform is not None:
                batch = [transform(grey) for grey in batch]
            pixel_values = processor(images=[Image.fromarray(grey, mode="L") for grey in batch],
                                     return_tensors="pt")["pixel_values"]
            with torch.autocast(model.device.type, dtype=autocast_dtype, enabled=autocast_dtype is not None):
                logits = model(pixel_values=pixel_values).logits
            chunks.append(logits.float().softmax(dim=-1))
    finally:
        if hook is not None:
            hook.remove()
    probabilities = torch.cat(chunks).numpy()
    embeddings = torch.cat(captured).numpy() if with_embeddings else None
    return Predictions(probabilities, embeddings)


def _grey_array(image: np.ndarray | torch.Tensor) -> np.ndarray:
    array = image.numpy() if isinstance(image, torch.Tensor) else np.asarray(image)
    array = array.reshape(array.shape[-2:]) if array.ndim == 3 else array
    if array.dtype != np.uint8 or array.ndim != 2:
        raise ValueError(f"expected uint8 grey (H, W) images, got {array.dtype} {array.shape}")
    return np.ascontiguousarray(array)


def autocast_dtype_for(precision: str) -> torch.dtype | None:
    """The forward's autocast dtype for `precision`: "fp32" (None), "bf16", or "auto": bf16 where training would use
    it (a CUDA GPU with bf16, or a CPU with native bf16 instructions, the recipe's rule), else fp32."""
    from .. import hardware

    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if precision == "auto":
        precision = "bf16" if hardware.bf16_training_device() else "fp32"
    return torch.bfloat16 if precision == "bf16" else None


PRECISIONS = ("auto", "fp32", "bf16")

__all__ = ["PRECISIONS", "Predictions", "autocast_dtype_for", "embedding_kind", "load_classifier", "pooled_embedding",
           "predict_grey", "prefix_tokens"]

"""Heatmaps of where a model looked, computed from the same forward pass as the prediction (no extra pass).

- DeiT student: attention rollout (Abnar & Zuidema, 2020) of the class and distillation tokens, averaged, since
  the served logits average both heads. Only the prefix tokens' rows are propagated (a vector times each layer's
  attention matrix), so it costs O(layers x tokens^2), far below the forward pass.
- DenseNet teacher: class activation map (Zhou et al., 2016), exact for its global-average-pool + linear head:
  the head's weights for the predicted class applied to the last feature map. No gradients needed.
- `overlay`: the heatmap coloured and blended over the grey image.
"""

from __future__ import annotations

import numpy as np
import torch
from matplotlib import colormaps
from PIL import Image

# 256-entry colour table built once, as a PIL palette: colouring is a palette lookup in C per request.
_PALETTE = (colormaps["jet"](np.linspace(0.0, 1.0, 256))[:, :3] * 255).round().astype(np.uint8).tobytes()


def attention_rollout(
    attentions: tuple[torch.Tensor, ...] | list[torch.Tensor],
    grid: tuple[int, int],
    num_prefix_tokens: int = 2,
    residual_weight: float = 0.5,
) -> np.ndarray:
    """(batch, grid_h, grid_w) rollout of the prefix tokens' attention to the patches, each map scaled to [0, 1].

    attentions: one (batch, heads, tokens, tokens) tensor per layer (`output_attentions=True`). Each layer's
    head-averaged attention is mixed with the identity for the residual path and renormalised.
    """
    if not attentions:
        raise ValueError("no attention maps: load the model with attn_implementation='eager' and output_attentions")
    first = attentions[0]
    batch, _, tokens, _ = first.shape
    if tokens != num_prefix_tokens + grid[0] * grid[1]:
        raise ValueError(f"{tokens} tokens do not match {num_prefix_tokens} prefix tokens + a {grid} patch grid")
    # numpy, not torch: each of torch's small operations here woke the intra-op thread pool, which cost several
    # times the arithmetic (same values within float rounding; docs/RESULTS.md, "The Space under load")
    maps = np.stack([layer.detach().to("cpu", torch.float32).numpy().mean(axis=1) for layer in attentions])
    identity = np.eye(tokens, dtype=np.float32)
    # all layers' head-averaged, residual-mixed, renormalised maps at once: (layers, batch, tokens, tokens)
    mixed = residual_weight * identity + (1.0 - residual_weight) * maps
    mixed /= mixed.sum(axis=-1, keepdims=True)
    # rows: the prefix tokens' current attribution over all tokens, propagated from the last layer down
    rows = np.broadcast_to(identity[:num_prefix_tokens], (batch, num_prefix_tokens, tokens))
    for layer in mixed[::-1]:
        rows = rows @ layer
    patches = rows[:, :, num_prefix_tokens:].mean(axis=1).reshape(batch, *grid)
    return _unit_range(patches)


def class_activation_map(features: torch.Tensor, weight: torch.Tensor, class_index: torch.Tensor) -> np.ndarray:
    """(batch, h, w) CAM in [0, 1]: ReLU(sum_c weight[class, c] * features[:, c]) for each sample's class."""
    maps = torch.einsum("bchw,bc->bhw", features.float(), weight.float()[class_index])
    return _unit_range(torch.relu(maps).cpu().numpy())


def overlay(grey: Image.Image, heatmap: np.ndarray, alpha: float = 0.45, max_side: int = 512) -> np.ndarray:
    """(H, W, 3) uint8: the jet-coloured heatmap (values in [0, 1]) blended over the grey image.

    The heatmap covers the whole image (the model input is the whole image resized, not cropped). The output keeps
    the image's aspect ratio, downsized so its longer side is at most `max_side`.
    """
    scale = min(1.0, max_side / max(grey.size))
    size = (max(1, round(grey.width * scale)), max(1, round(grey.height * scale)))
    base = grey if grey.size == size else grey.resize(size, Image.Resampling.BILINEAR)
    heat = Image.fromarray(np.asarray(heatmap, dtype=np.float32)).resize(size, Image.Resampling.BILINEAR)
    index = Image.fromarray(np.clip(np.asarray(heat) * 255.0, 0, 255).astype(np.uint8))
    index.putpalette(_PALETTE)  # "L" -> "P": the jet colour of each heat level
    return np.asarray(Image.blend(base.convert("RGB"), index.convert("RGB"), alpha))


def _unit_range(maps: np.ndarray) -> np.ndarray:
    low = maps.min(axis=(1, 2), keepdims=True)
    span = maps.max(axis=(1, 2), keepdims=True) - low
    return ((maps - low) / np.where(span > 0, span, 1.0)).astype(np.float32)


__all__ = ["attention_rollout", "class_activation_map", "overlay"]

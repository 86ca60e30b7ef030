"""The small-data ViT changes of Lee, Lee & Song (2021), "Vision Transformer for Small-Size Datasets", as modules the
DeiT student swaps in when its config asks (`shifted_patch_tokenization`, `locality_self_attention`):

- Shifted Patch Tokenization: each patch token also sees the image shifted by half a patch in the four diagonal
  directions (a wider receptive field for a from-scratch ViT);
- Locality Self-Attention: a token's attention to itself masked out, a learnable softmax temperature per head.

Copied next to saved checkpoints with `modeling_deit_cxr.py` (its relative import) for `trust_remote_code` loading: it
may import only torch, transformers and its sibling configuration file.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS
from transformers.models.deit.modeling_deit import DeiTAttention, DeiTEmbeddings, eager_attention_forward

from .configuration_deit_cxr import DeiTCXRConfig


def shift_diagonally(pixel_values: torch.Tensor, shift: int) -> torch.Tensor:
    """(B, C, H, W) -> (B, 5C, H, W): the image and its four diagonal shifts by `shift` pixels (zero-filled), in
    the reference code's order (up-left, up-right, down-left, down-right of the padded image)."""
    height, width = pixel_values.shape[-2:]
    padded = F.pad(pixel_values, (shift, shift, shift, shift))
    offsets = ((0, 0), (0, 2 * shift), (2 * shift, 0), (2 * shift, 2 * shift))
    shifted = [padded[..., top:top + height, left:left + width] for top, left in offsets]
    return torch.cat([pixel_values, *shifted], dim=1)


class ShiftedPatchEmbeddings(nn.Module):
    """Shifted Patch Tokenization: image + 4 half-patch diagonal shifts -> patches -> LayerNorm -> linear.

    A drop-in for `DeiTPatchEmbeddings` (same attributes, same output); with 8-px patches each token sees a 16-px
    neighbourhood, the wider receptive field a from-scratch ViT lacks on small data. Patches are flattened in the
    reference code's (row, column, channel) order.
    """

    def __init__(self, config: DeiTCXRConfig) -> None:
        super().__init__()
        image_size, patch_size = _pair(config.image_size), _pair(config.patch_size)
        if patch_size[0] != patch_size[1] or patch_size[0] < 2:
            raise ValueError(f"shifted patch tokenization needs square patches of at least 2 px, got {patch_size}")
        self.image_size, self.patch_size = image_size, patch_size
        self.num_patches = (image_size[0] // patch_size[0]) * (image_size[1] // patch_size[1])
        self.num_channels = config.num_channels
        self.shift = patch_size[0] // 2
        patch_dim = 5 * config.num_channels * patch_size[0] * patch_size[1]
        self.layernorm = nn.LayerNorm(patch_dim, eps=config.layer_norm_eps)
        self.projection = nn.Linear(patch_dim, config.hidden_size)

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        batch, channels, height, width = pixel_values.shape
        if channels != self.num_channels:
            raise ValueError(f"expected {self.num_channels} channels (the configuration's), got {channels}")
        patch = self.patch_size[0]
        if height % patch or width % patch:
            raise ValueError(f"image size {height}x{width} is not a multiple of the patch size {patch}")
        stacked = shift_diagonally(pixel_values, self.shift)
        grid_h, grid_w = height // patch, width // patch
        patches = stacked.reshape(batch, 5 * channels, grid_h, patch, grid_w, patch).permute(0, 2, 4, 3, 5, 1)
        return self.projection(self.layernorm(patches.reshape(batch, grid_h * grid_w, -1)))


class DeiTCXREmbeddings(DeiTEmbeddings):
    """`DeiTEmbeddings` whose patch embedding is Shifted Patch Tokenization when the config asks for it."""

    def __init__(self, config: DeiTCXRConfig) -> None:
        super().__init__(config)
        if config.shifted_patch_tokenization:
            self.patch_embeddings = ShiftedPatchEmbeddings(config)


class LocalitySelfAttention(DeiTAttention):
    """Locality Self-Attention: `DeiTAttention` with the diagonal of the attention masked out (a token attends to
    the others, not to itself) and a learnable softmax temperature per head.

    The temperature is stored as its inverse, `attention_scale` (multiplying QK^T, initialised at 1/sqrt(head_dim)),
    as in the reference code. It is folded into the queries, so the eager and SDPA attention functions both apply;
    flash attention cannot take the mask and is refused.
    """

    def __init__(self, config: DeiTCXRConfig) -> None:
        super().__init__(config)
        self.attention_scale = nn.Parameter(torch.full((self.num_attention_heads,), self.head_dim**-0.5))

    def forward(self, hidden_states: torch.Tensor, attention_mask: torch.Tensor | None = None, **kwargs):
        implementation = self.config._attn_implementation or "eager"
        if implementation.startswith("flash"):
            raise ValueError("locality self-attention needs attn_implementation 'eager' or 'sdpa' (a diagonal mask)")
        input_shape = hidden_states.shape[:-1]
        hidden_shape = (*input_shape, -1, self.head_dim)
        scale = self.attention_scale.to(hidden_states.dtype).view(1, -1, 1, 1)
        query = self.q_proj(hidden_states).view(hidden_shape).transpose(1, 2) * scale
        key = self.k_proj(hidden_states).view(hidden_shape).transpose(1, 2)
        value = self.v_proj(hidden_states).view(hidden_shape).transpose(1, 2)
        mask = diagonal_mask(query.shape[-2], query.dtype, query.device)
        if attention_mask is not None:
            mask = mask + attention_mask
        attention_interface = ALL_ATTENTION_FUNCTIONS.get_interface(implementation, eager_attention_forward)
        output, weights = attention_interface(
            self, query, key, value, mask, dropout=self.attention_dropout if self.training else 0.0, scaling=1.0,
            **kwargs,
        )
        return self.o_proj(output.reshape(*input_shape, -1).contiguous()), weights


def diagonal_mask(tokens: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """(1, 1, tokens, tokens) additive mask: the dtype's lowest value on the diagonal, 0 elsewhere."""
    mask = torch.zeros(tokens, tokens, dtype=dtype, device=device)
    return mask.fill_diagonal_(torch.finfo(dtype).min)[None, None]


def _pair(size) -> tuple[int, int]:
    return (int(size[0]), int(size[1])) if isinstance(size, (list, tuple)) else (int(size), int(size))



__all__ = ["DeiTCXREmbeddings", "LocalitySelfAttention", "ShiftedPatchEmbeddings", "diagonal_mask", "shift_diagonally"]

"""A fused forward of a DeiT classifier for serving: the same weights and outputs as the transformers forward.

At batch 1 the student is tiny (66 tokens at 64 px with 8 px patches), so the transformers forward spends its time
on many small operations rather than arithmetic; on a busy 2-core CPU each of them can also wait for a thread
wake-up. This forward does the same arithmetic with fewer, larger operations, prepared once at load:
- the patch embedding (a convolution with stride = kernel) as one matrix product on the reshaped image, with the
  convolution bias folded into the position embeddings, and the class/distillation tokens + their positions
  precomputed;
- Q, K and V as one matrix product, with the attention scale 1/sqrt(d) folded into the Q weights;
- the attention probabilities materialised only when the heatmap needs them (SDPA otherwise);
- the served logits (class head, distillation head or their average) as one linear layer on both tokens.
Shifted Patch Tokenization (the image and its four diagonal shifts, LayerNorm, linear) and Locality Self-Attention
(per-head learnable scale folded into the Q weights, diagonal masked) are supported too.

`FusedDeiT.from_model` returns None for models it does not know. `RadiographClassifier` checks the fused forward
against the model's own forward on a probe input at load and keeps the model's forward if they differ.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..models.deit_cxr.modeling_small_data_vit import shift_diagonally

# (class-token weight, distillation-token weight) of the served logits, by `config.inference_head`.
_HEAD_MIX = {"cls": (1.0, 0.0), "distillation": (0.0, 1.0)}


class FusedDeiT:
    """Callable `(pixel_values (batch, C, H, W), output_attentions) -> (logits (batch, labels), attentions or None)`."""

    def __init__(self, model: nn.Module) -> None:
        deit, config = model.deit, model.config
        embeddings = deit.embeddings
        patch_embeddings = embeddings.patch_embeddings
        projection = patch_embeddings.projection
        self.num_channels = patch_embeddings.num_channels
        self.patch = patch_embeddings.patch_size[0]
        self.grid = patch_embeddings.image_size[0] // self.patch, patch_embeddings.image_size[1] // self.patch
        # SPT: (shift in pixels, LayerNorm weight, bias) of the shifted tokenizer; None for a patch convolution
        self.shifted = _shifted_tokenizer(patch_embeddings, config)
        self.locality = bool(getattr(config, "locality_self_attention", False))
        # LSA: a token attends to every token but itself; the token count is fixed, so the mask is built once here
        tokens = 2 + self.grid[0] * self.grid[1]
        self.itself = torch.eye(tokens, dtype=torch.bool, device=projection.weight.device) if self.locality else None
        self.attend = ~self.itself if self.locality else None
        self.hidden = config.hidden_size
        self.heads = config.num_attention_heads
        self.head_dim = self.hidden // self.heads
        self.eps = config.layer_norm_eps
        with torch.no_grad():
            position = embeddings.position_embeddings[0]
            self.prefix = torch.cat([embeddings.cls_token[0], embeddings.distillation_token[0]]) + position[:2]
            self.patch_position = position[2:] + projection.bias
            self.patch_weight = projection.weight.reshape(self.hidden, -1).t().contiguous()
            self.layers = [self._layer(layer) for layer in deit.layers]
            self.final_norm = (deit.layernorm.weight.detach(), deit.layernorm.bias.detach())
            self.head_weight, self.head_bias = _fused_head(model)

    @classmethod
    def from_model(cls, model: nn.Module) -> FusedDeiT | None:
        """A fused forward for a DeiT image classifier, or None when the model is not one this class knows."""
        try:
            if not _is_supported(model):
                return None
            return cls(model)
        except (AttributeError, TypeError, ValueError, RuntimeError):
            return None

    def _layer(self, layer: nn.Module) -> tuple[torch.Tensor, ...]:
        attention = layer.attention
        if self.locality:  # LSA: a learnable scale per head, one value for each of the head's query rows
            scale = attention.attention_scale.detach().repeat_interleave(self.head_dim)
        else:
            scale = torch.full((self.hidden,), self.head_dim**-0.5)
        scale = scale.to(attention.q_proj.weight.dtype)
        qkv_weight = torch.cat([attention.q_proj.weight * scale[:, None], attention.k_proj.weight,
                                attention.v_proj.weight])
        qkv_bias = torch.cat([attention.q_proj.bias * scale, attention.k_proj.bias, attention.v_proj.bias])
        return tuple(
            tensor.detach().contiguous()
            for tensor in (
                layer.layernorm_before.weight, layer.layernorm_before.bias, qkv_weight, qkv_bias,
                attention.o_proj.weight, attention.o_proj.bias, layer.layernorm_after.weight,
                layer.layernorm_after.bias, layer.mlp.fc1.weight, layer.mlp.fc1.bias, layer.mlp.fc2.weight,
                layer.mlp.fc2.bias,
            )
        )

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """(channels, height, width) of one image at the model size."""
        return self.num_channels, self.grid[0] * self.patch, self.grid[1] * self.patch

    def to(self, dtype: torch.dtype) -> FusedDeiT:
        self.prefix, self.patch_position, self.patch_weight = (
            t.to(dtype) for t in (self.prefix, self.patch_position, self.patch_weight)
        )
        self.layers = [tuple(t.to(dtype) for t in layer) for layer in self.layers]
        self.final_norm = tuple(t.to(dtype) for t in self.final_norm)
        if self.shifted is not None:
            self.shifted = (self.shifted[0], *(t.to(dtype) for t in self.shifted[1:]))
        self.head_weight, self.head_bias = self.head_weight.to(dtype), self.head_bias.to(dtype)
        return self

    def __call__(
        self, pixel_values: torch.Tensor, output_attentions: bool = False
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, ...] | None]:
        expected = self.input_shape
        if pixel_values.dim() != 4 or tuple(pixel_values.shape[1:]) != expected or not len(pixel_values):
            raise ValueError(f"expected pixel_values of shape (batch, {', '.join(map(str, expected))}) at the model "
                             f"size, got {tuple(pixel_values.shape)}")
        batch = pixel_values.shape[0]
        patches = (self._patches(pixel_values) @ self.patch_weight).add_(self.patch_position)
        tokens = torch.cat([self.prefix.expand(batch, -1, -1), patches], dim=1)
        count, width = tokens.shape[1:]
        attentions = []
        for norm1_w, norm1_b, qkv_w, qkv_b, out_w, out_b, norm2_w, norm2_b, fc1_w, fc1_b, fc2_w, fc2_b in self.layers:
            hidden = F.layer_norm(tokens, (width,), norm1_w, norm1_b, self.eps)
            qkv = F.linear(hidden, qkv_w, qkv_b).view(batch, count, 3, self.heads, self.head_dim)
            query, key, value = qkv.permute(2, 0, 3, 1, 4)  # each (batch, heads, tokens, head_dim)
            if output_attentions:
                scores = query @ key.transpose(-2, -1)
                if self.itself is not None:
                    scores = scores.masked_fill(self.itself, float("-inf"))
                probabilities = torch.softmax(scores, dim=-1)
                attentions.append(probabilities)
                context = probabilities @ value
            else:  # the scale is in the Q weights
                context = F.scaled_dot_product_attention(query, key, value, attn_mask=self.attend, scale=1.0)
            tokens = tokens + F.linear(context.transpose(1, 2).reshape(batch, count, width), out_w, out_b)
            hidden = F.layer_norm(tokens, (width,), norm2_w, norm2_b, self.eps)
            tokens = tokens + F.linear(F.gelu(F.linear(hidden, fc1_w, fc1_b)), fc2_w, fc2_b)
        prefix = F.layer_norm(tokens[:, :2], (width,), *self.final_norm, self.eps)
        logits = F.linear(prefix.reshape(batch, 2 * width), self.head_weight, self.head_bias)
        return logits, (tuple(attentions) if output_attentions else None)

    def _patches(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """(batch, C, H, W) -> (batch, patches, patch features) in the order of the model's patch embedding."""
        p, (gh, gw) = self.patch, self.grid
        batch = pixel_values.shape[0]
        if self.shifted is None:  # a convolution's (channel, row, column) order
            return (pixel_values.reshape(batch, self.num_channels, gh, p, gw, p).permute(0, 2, 4, 1, 3, 5)
                    .reshape(batch, gh * gw, -1))
        shift, norm_weight, norm_bias = self.shifted
        stacked = shift_diagonally(pixel_values, shift)
        patches = (stacked.reshape(batch, 5 * self.num_channels, gh, p, gw, p).permute(0, 2, 4, 3, 5, 1)
                   .reshape(batch, gh * gw, -1))
        return F.layer_norm(patches, (patches.shape[-1],), norm_weight, norm_bias, self.eps)


# SPT and LSA modules are recognised by their attributes, not their classes: a model loaded as remote code has its
# own copies of the classes.
def _shifted_tokenizer(patch_embeddings: nn.Module, config) -> tuple[int, torch.Tensor, torch.Tensor] | None:
    if not getattr(config, "shifted_patch_tokenization", False):
        return None
    norm = patch_embeddings.layernorm
    return patch_embeddings.shift, norm.weight.detach().contiguous(), norm.bias.detach().contiguous()


def _is_supported(model: nn.Module) -> bool:
    config = model.config
    embeddings = model.deit.embeddings
    patch_embeddings = embeddings.patch_embeddings
    projection = patch_embeddings.projection
    if getattr(config, "shifted_patch_tokenization", False):
        known_patches = (isinstance(projection, nn.Linear) and projection.bias is not None
                         and isinstance(getattr(patch_embeddings, "layernorm", None), nn.LayerNorm))
    else:  # a plain ViT patch convolution
        known_patches = (
            isinstance(projection, nn.Conv2d) and projection.kernel_size == projection.stride
            and projection.padding == (0, 0) and projection.bias is not None
        )
    # every layer's attention is the kind the config names (LSA or the stock one)
    locality = bool(getattr(config, "locality_self_attention", False))
    known_attention = all(hasattr(layer.attention, "attention_scale") == locality for layer in model.deit.layers)
    return (
        getattr(config, "model_type", None) in ("deit", "deit_cxr")
        and getattr(config, "hidden_act", None) == "gelu"  # the exact (erf) GELU that F.gelu computes
        and getattr(embeddings, "distillation_token", None) is not None
        and known_patches
        and known_attention
        and embeddings.position_embeddings.shape[1] == 2 + _grid_tokens(embeddings)
        and getattr(model.deit, "pooler", None) is None
    )


def _grid_tokens(embeddings: nn.Module) -> int:
    patches = embeddings.patch_embeddings
    size, patch = patches.image_size, patches.patch_size
    return (size[0] // patch[0]) * (size[1] // patch[1])


def _fused_head(model: nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
    """One linear layer on [class token, distillation token] that computes the model's served logits."""
    if hasattr(model, "cls_classifier") and hasattr(model, "distillation_classifier"):
        heads = (model.cls_classifier, model.distillation_classifier)
        mix = _HEAD_MIX.get(getattr(model.config, "inference_head", None) or "average", (0.5, 0.5))
    elif isinstance(getattr(model, "classifier", None), nn.Linear):  # DeiTForImageClassification: class token only
        heads, mix = (model.classifier, model.classifier), (1.0, 0.0)
    else:
        raise TypeError(f"{type(model).__name__} has no DeiT classification head")
    if not all(isinstance(head, nn.Linear) and head.bias is not None for head in heads):
        raise TypeError("the classification heads are not linear layers with bias")
    # The calibration temperature folds into the head: served logits = (mixed heads) / T, as the model's forward.
    temperature = float(getattr(model.config, "calibration_temperature", 1.0) or 1.0)
    weight = torch.cat([mix[0] * heads[0].weight, mix[1] * heads[1].weight], dim=1) / temperature
    bias = (mix[0] * heads[0].bias + mix[1] * heads[1].bias) / temperature
    return weight.detach().contiguous(), bias.detach().contiguous()


__all__ = ["FusedDeiT"]

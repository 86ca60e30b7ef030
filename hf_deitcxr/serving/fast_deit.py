"""A fused batch-1 forward of a DeiT classifier for serving: the same weights and outputs as the transformers forward.

At batch 1 the student is tiny (66 tokens at 64 px with 8 px patches), so the transformers forward spends its time
on many small operations rather than arithmetic; on a busy 2-core CPU each of them can also wait for a thread
wake-up. This forward does the same arithmetic with fewer, larger operations, prepared once at load:
- the patch embedding (a convolution with stride = kernel) as one matrix product on the reshaped image, with the
  convolution bias folded into the position embeddings, and the class/distillation tokens + their positions
  precomputed;
- Q, K and V as one matrix product, with the attention scale 1/sqrt(d) folded into the Q weights;
- the attention probabilities materialised only when the heatmap needs them (SDPA otherwise);
- the served logits (class head, distillation head or their average) as one linear layer on both tokens.

`FusedDeiT.from_model` returns None for models it does not know. `RadiographClassifier` checks the fused forward
against the model's own forward on a probe input at load and keeps the model's forward if they differ.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

# (class-token weight, distillation-token weight) of the served logits, by `config.inference_head`.
_HEAD_MIX = {"cls": (1.0, 0.0), "distillation": (0.0, 1.0)}


class FusedDeiT:
    """Callable `(pixel_values (1, C, H, W), output_attentions) -> (logits (1, labels), attentions or None)`."""

    def __init__(self, model: nn.Module) -> None:
        deit, config = model.deit, model.config
        embeddings = deit.embeddings
        projection = embeddings.patch_embeddings.projection
        self.num_channels = projection.in_channels
        self.patch = projection.kernel_size[0]
        self.grid = embeddings.patch_embeddings.image_size[0] // self.patch, (
            embeddings.patch_embeddings.image_size[1] // self.patch
        )
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
        attention, scale = layer.attention, self.head_dim**-0.5
        qkv_weight = torch.cat([attention.q_proj.weight * scale, attention.k_proj.weight, attention.v_proj.weight])
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

    def to(self, dtype: torch.dtype) -> FusedDeiT:
        self.prefix, self.patch_position, self.patch_weight = (
            t.to(dtype) for t in (self.prefix, self.patch_position, self.patch_weight)
        )
        self.layers = [tuple(t.to(dtype) for t in layer) for layer in self.layers]
        self.final_norm = tuple(t.to(dtype) for t in self.final_norm)
        self.head_weight, self.head_bias = self.head_weight.to(dtype), self.head_bias.to(dtype)
        return self

    def __call__(
        self, pixel_values: torch.Tensor, output_attentions: bool = False
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, ...] | None]:
        if pixel_values.shape != (1, self.num_channels, self.grid[0] * self.patch, self.grid[1] * self.patch):
            raise ValueError(f"expected pixel_values of shape (1, {self.num_channels}, H, W) at the model size, "
                             f"got {tuple(pixel_values.shape)}")
        p, (gh, gw) = self.patch, self.grid
        patches = pixel_values.reshape(self.num_channels, gh, p, gw, p).permute(1, 3, 0, 2, 4).reshape(gh * gw, -1)
        tokens = torch.cat([self.prefix, torch.addmm(self.patch_position, patches, self.patch_weight)])
        count, width = tokens.shape
        attentions = []
        for norm1_w, norm1_b, qkv_w, qkv_b, out_w, out_b, norm2_w, norm2_b, fc1_w, fc1_b, fc2_w, fc2_b in self.layers:
            hidden = F.layer_norm(tokens, (width,), norm1_w, norm1_b, self.eps)
            qkv = F.linear(hidden, qkv_w, qkv_b).view(count, 3, self.heads, self.head_dim).permute(1, 2, 0, 3)
            query, key, value = qkv[0], qkv[1], qkv[2]
            if output_attentions:
                probabilities = torch.softmax(query @ key.transpose(1, 2), dim=-1)
                attentions.append(probabilities.unsqueeze(0))
                context = probabilities @ value
            else:
                context = F.scaled_dot_product_attention(query, key, value, scale=1.0)  # scale is in the Q weights
            tokens = tokens + F.linear(context.transpose(0, 1).reshape(count, width), out_w, out_b)
            hidden = F.layer_norm(tokens, (width,), norm2_w, norm2_b, self.eps)
            tokens = tokens + F.linear(F.gelu(F.linear(hidden, fc1_w, fc1_b)), fc2_w, fc2_b)
        prefix = F.layer_norm(tokens[:2], (width,), *self.final_norm, self.eps)
        logits = F.linear(prefix.reshape(1, 2 * width), self.head_weight, self.head_bias)
        return logits, (tuple(attentions) if output_attentions else None)


def _is_supported(model: nn.Module) -> bool:
    config = model.config
    embeddings = model.deit.embeddings
    projection = embeddings.patch_embeddings.projection
    plain_vit_patches = (
        projection.kernel_size == projection.stride and projection.padding == (0, 0) and projection.bias is not None
    )
    return (
        getattr(config, "model_type", None) in ("deit", "deit_cxr")
        and getattr(config, "hidden_act", None) == "gelu"  # the exact (erf) GELU that F.gelu computes
        and getattr(embeddings, "distillation_token", None) is not None
        and plain_vit_patches
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
    weight = torch.cat([mix[0] * heads[0].weight, mix[1] * heads[1].weight], dim=1)
    bias = mix[0] * heads[0].bias + mix[1] * heads[1].bias
    return weight.detach().contiguous(), bias.detach().contiguous()


__all__ = ["FusedDeiT"]

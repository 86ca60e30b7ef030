"""A trainable DeiT student with a distillation token.

Upstream `DeiTForImageClassificationWithTeacher` is inference-only: its forward takes no labels and computes no loss.
This model keeps exactly its modules and parameter names (so stock `*-distilled-*` checkpoints load as the student
and our checkpoints load into the stock class), and adds the DeiT training objective and stochastic depth. Two
opt-in changes for small data (Lee, Lee & Song 2021, "Vision Transformer for Small-Size Datasets") replace modules:
Shifted Patch Tokenization (`ShiftedPatchEmbeddings`) and Locality Self-Attention (`LocalitySelfAttention`); with
either on, a checkpoint needs these classes (or this file as remote code).

This file is copied next to saved checkpoints for `trust_remote_code` loading: it may import only torch,
transformers and its sibling configuration file.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from transformers import initialization as init
from transformers.conversion_mapping import get_checkpoint_conversion_mapping, register_checkpoint_conversion_mapping
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS
from transformers.models.deit.modeling_deit import (
    DeiTAttention,
    DeiTEmbeddings,
    DeiTForImageClassificationWithTeacher,
    DeiTLayer,
    DeiTModel,
    DeiTPooler,
    DeiTPreTrainedModel,
    eager_attention_forward,
)
from transformers.utils import ModelOutput

from .configuration_deit_cxr import DeiTCXRConfig


@dataclass
class DeiTCXRClassifierOutput(ModelOutput):
    r"""
    loss (`torch.Tensor` of shape `()`, *optional*, returned when `labels` is given):
        (1 - alpha) * classification_loss + alpha * distillation_loss.
    logits (`torch.Tensor` of shape `(batch_size, num_labels)`):
        The scores selected by `config.inference_head` (average of both heads by default).
    cls_logits, distillation_logits (`torch.Tensor` of shape `(batch_size, num_labels)`):
        Scores of the class-token head and of the distillation-token head.
    classification_loss, distillation_loss (`torch.Tensor` of shape `()`, *optional*):
        The two parts of `loss`, detached, for logging.
    """

    loss: torch.Tensor | None = None
    logits: torch.Tensor | None = None
    cls_logits: torch.Tensor | None = None
    distillation_logits: torch.Tensor | None = None
    classification_loss: torch.Tensor | None = None
    distillation_loss: torch.Tensor | None = None
    hidden_states: tuple[torch.Tensor, ...] | None = None
    attentions: tuple[torch.Tensor, ...] | None = None


def drop_path(hidden_states: torch.Tensor, drop_prob: float, training: bool) -> torch.Tensor:
    """Stochastic depth per sample (drops a whole residual branch), as used to train DeiT."""
    if drop_prob == 0.0 or not training:
        return hidden_states
    keep_prob = 1.0 - drop_prob
    shape = (hidden_states.shape[0],) + (1,) * (hidden_states.ndim - 1)
    mask = hidden_states.new_empty(shape).bernoulli_(keep_prob)
    return hidden_states * mask / keep_prob


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


class DeiTCXRLayer(DeiTLayer):
    """`DeiTLayer` with stochastic depth on both residual branches (and locality self-attention when the config asks
    for it); otherwise the same submodules and parameter names."""

    def __init__(self, config: DeiTCXRConfig, drop_path_prob: float = 0.0) -> None:
        super().__init__(config)
        self.drop_path_prob = drop_path_prob
        if config.locality_self_attention:
            self.attention = LocalitySelfAttention(config)

    def forward(self, hidden_states: torch.Tensor, attention_mask: torch.Tensor | None = None, **kwargs):
        residual = hidden_states
        attention_output, _ = self.attention(self.layernorm_before(hidden_states), attention_mask, **kwargs)
        hidden_states = residual + drop_path(self.dropout(attention_output), self.drop_path_prob, self.training)

        residual = hidden_states
        mlp_output = self.mlp(self.layernorm_after(hidden_states))
        return residual + drop_path(self.dropout(mlp_output), self.drop_path_prob, self.training)


@torch.no_grad()
def init_deit_tokens(module: nn.Module, std: float) -> None:
    """DeiT's initialisation of the class/distillation tokens and position embeddings (truncated normal, std 0.02),
    and LSA's temperature (1/sqrt(head_dim), the stock scale).

    Upstream zero-initialises the tokens, which makes both identical at step 0. `init.*` skips tensors already
    loaded from a checkpoint.
    """
    if isinstance(module, DeiTEmbeddings):
        init.trunc_normal_(module.cls_token, std=std)
        init.trunc_normal_(module.distillation_token, std=std)
        init.trunc_normal_(module.position_embeddings, std=std)
    if isinstance(module, LocalitySelfAttention):
        init.constant_(module.attention_scale, module.head_dim**-0.5)


def _register_weight_renaming() -> None:
    """Use DeiTModel's checkpoint renaming (Hub layout `deit.encoder.layer.*` <-> `deit.layers.*`) for our model too.

    transformers looks the renaming up by class name; without it stock Hub checkpoints would not load into the
    student, and our checkpoints would be saved in a layout other tools do not expect. Done here, at import, so the
    remote-code copy of this file does it as well.
    """
    register_checkpoint_conversion_mapping(
        "DeiTCXRModel", get_checkpoint_conversion_mapping("DeiTModel"), overwrite=True
    )


_register_weight_renaming()


class DeiTCXRModel(DeiTModel):
    """`DeiTModel` whose layers carry linearly increasing stochastic-depth rates."""

    config_class = DeiTCXRConfig

    def __init__(self, config: DeiTCXRConfig, add_pooling_layer: bool = False) -> None:
        # Same modules as DeiTModel.__init__, built once (calling it would build and initialise the layers twice).
        DeiTPreTrainedModel.__init__(self, config)
        self.config = config
        self.embeddings = DeiTCXREmbeddings(config)
        num_layers = config.num_hidden_layers
        rates = [config.drop_path_rate * i / max(num_layers - 1, 1) for i in range(num_layers)]
        self.layers = nn.ModuleList([DeiTCXRLayer(config, rate) for rate in rates])
        self.layernorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.pooler = DeiTPooler(config) if add_pooling_layer else None
        self.post_init()

    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        super()._init_weights(module)
        init_deit_tokens(module, self.config.initializer_range)


def deit_distillation_loss(
    cls_logits: torch.Tensor,
    distillation_logits: torch.Tensor,
    labels: torch.Tensor,
    teacher_logits: torch.Tensor | None,
    distillation_type: str,
    alpha: float,
    tau: float,
    class_weights: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The DeiT objective; returns (total, classification part, distillation part).

    - class head: cross-entropy to the labels (optionally class-weighted);
    - distillation head: with `teacher_logits`, "hard" = cross-entropy to the teacher's argmax, "soft" = KL divergence
      between temperature-softened distributions times tau², normalised by the number of logits exactly as in the
      DeiT reference code (facebookresearch/deit `losses.py`); without a teacher (`distillation_type="none"`, or
      evaluation batches that carry no teacher logits) the distillation head also learns the labels, so both tokens
      stay trained and the "average" inference head remains meaningful.
    - total = (1 - alpha) * classification + alpha * distillation.
    """
    if labels.ndim != 1 or labels.shape[0] != cls_logits.shape[0]:
        raise ValueError(f"labels must have shape ({cls_logits.shape[0]},), got {tuple(labels.shape)}")
    # Losses in fp32: bf16/fp16 log-softmax loses too much precision for the small KL values involved.
    cls_logits, distillation_logits = cls_logits.float(), distillation_logits.float()
    weight = class_weights.to(cls_logits.device, torch.float32) if class_weights is not None else None
    classification = F.cross_entropy(cls_logits, labels, weight=weight)

    if teacher_logits is not None and distillation_type == "none":
        raise ValueError("teacher_logits were given but config.distillation_type is 'none'")
    if teacher_logits is None or distillation_type == "none":
        distillation = F.cross_entropy(distillation_logits, labels, weight=weight)
    else:
        teacher_logits = teacher_logits.detach().float()
        if teacher_logits.shape != distillation_logits.shape:
            raise ValueError(
                f"teacher_logits shape {tuple(teacher_logits.shape)} does not match the student's "
                f"{tuple(distillation_logits.shape)}: teacher and student need the same label set"
            )
        if distillation_type == "hard":
            distillation = F.cross_entropy(distillation_logits, teacher_logits.argmax(dim=-1))
        else:
            distillation = F.kl_div(
                F.log_softmax(distillation_logits / tau, dim=-1),
                F.log_softmax(teacher_logits / tau, dim=-1),
                reduction="sum",
                log_target=True,
            ) * (tau * tau) / distillation_logits.numel()
    total = (1.0 - alpha) * classification + alpha * distillation
    return total, classification.detach(), distillation.detach()


class DeiTCXRForImageClassificationWithTeacher(DeiTForImageClassificationWithTeacher):
    """DeiT with class and distillation heads, trainable against a teacher's logits.

    Parameter names and shapes are those of `DeiTForImageClassificationWithTeacher`.
    """

    config_class = DeiTCXRConfig
    config: DeiTCXRConfig

    def __init__(self, config: DeiTCXRConfig) -> None:
        # Build the same modules as the stock class, but with stochastic-depth layers.
        DeiTPreTrainedModel.__init__(self, config)
        self.num_labels = config.num_labels
        self.deit = DeiTCXRModel(config, add_pooling_layer=False)
        self.cls_classifier = self._head(config)
        self.distillation_classifier = self._head(config)
        self.post_init()

    @staticmethod
    def _head(config: DeiTCXRConfig) -> nn.Module:
        return nn.Linear(config.hidden_size, config.num_labels) if config.num_labels > 0 else nn.Identity()

    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        super()._init_weights(module)
        init_deit_tokens(module, self.config.initializer_range)

    def select_inference_logits(self, cls_logits: torch.Tensor, distillation_logits: torch.Tensor) -> torch.Tensor:
        head = self.config.inference_head
        if head == "cls":
            return cls_logits
        if head == "distillation":
            return distillation_logits
        return (cls_logits + distillation_logits) / 2

    def forward(
        self,
        pixel_values: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        teacher_logits: torch.Tensor | None = None,
        class_weights: torch.Tensor | None = None,
        interpolate_pos_encoding: bool = False,
        output_hidden_states: bool | None = None,
        output_attentions: bool | None = None,
        return_dict: bool | None = None,
        **kwargs,
    ) -> DeiTCXRClassifierOutput | tuple:
        r"""
        labels (`torch.LongTensor` of shape `(batch_size,)`, *optional*):
            Class indices; when given, the DeiT loss is returned (see `deit_distillation_loss`).
        teacher_logits (`torch.Tensor` of shape `(batch_size, num_labels)`, *optional*):
            The teacher's logits on the same (augmented) batch; used by the distillation head.
        class_weights (`torch.Tensor` of shape `(num_labels,)`, *optional*):
            Per-class weights of the label cross-entropy (class-balanced training).
        """
        if pixel_values is None:
            raise ValueError("pixel_values is required")
        if pixel_values.ndim != 4:
            raise ValueError(
                f"pixel_values must be 4-D (batch, channels, height, width), got {tuple(pixel_values.shape)}"
            )
        outputs = self.deit(
            pixel_values,
            interpolate_pos_encoding=interpolate_pos_encoding,
            output_hidden_states=output_hidden_states,
            output_attentions=output_attentions,
            **kwargs,
        )
        sequence_output = outputs.last_hidden_state
        cls_logits = self.cls_classifier(sequence_output[:, 0, :])
        distillation_logits = self.distillation_classifier(sequence_output[:, 1, :])

        loss = classification_loss = distillation_loss = None
        if labels is not None:
            loss, classification_loss, distillation_loss = deit_distillation_loss(
                cls_logits,
                distillation_logits,
                labels.to(cls_logits.device),
                teacher_logits,
                self.config.distillation_type,
                self.config.distillation_alpha,
                self.config.distillation_tau,
                class_weights,
            )
        output = DeiTCXRClassifierOutput(
            loss=loss,
            logits=self.select_inference_logits(cls_logits, distillation_logits),
            cls_logits=cls_logits,
            distillation_logits=distillation_logits,
            classification_loss=classification_loss,
            distillation_loss=distillation_loss,
            hidden_states=outputs.hidden_states,
            attentions=outputs.attentions,
        )
        return output.to_tuple() if return_dict is False else output


__all__ = [
    "DeiTCXRClassifierOutput",
    "DeiTCXREmbeddings",
    "DeiTCXRForImageClassificationWithTeacher",
    "DeiTCXRLayer",
    "DeiTCXRModel",
    "LocalitySelfAttention",
    "ShiftedPatchEmbeddings",
    "deit_distillation_loss",
    "diagonal_mask",
    "shift_diagonally",
]

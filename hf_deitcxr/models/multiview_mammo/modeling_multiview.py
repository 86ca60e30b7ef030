"""Multi-view mammography transformer: a shared local ViT/DeiT per view, a global transformer across the views.

For an exam of up to four views (L-CC, L-MLO, R-CC, R-MLO):
1. every present view goes through the same local encoder (a `ViTModel` / `DeiTModel`, which can start from an
   ImageNet checkpoint), giving its tokens;
2. each view's tokens get a learned laterality embedding (L/R) and view-position embedding (CC/MLO), so the
   global layers know which breast and which projection a token comes from;
3. an exam token followed by the tokens of all views goes through global transformer layers (`ViTLayer`s) with
   an attention mask that removes missing views: a missing view is never encoded and no token attends to it, so
   its pixels cannot change the output;
4. the exam token's final state is classified.

This file is copied next to saved checkpoints for `trust_remote_code` loading: it may import only torch,
transformers and its sibling configuration file.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from transformers import AutoModel, PreTrainedModel, ViTConfig
from transformers import initialization as init
from transformers.masking_utils import create_bidirectional_mask
from transformers.models.vit.modeling_vit import ViTLayer
from transformers.utils import ModelOutput

from .configuration_multiview import MultiViewMammoConfig


@dataclass
class MultiViewMammoModelOutput(ModelOutput):
    r"""
    exam_embedding (`torch.Tensor` of shape `(batch_size, hidden_size)`):
        The exam token after the global layers and the final layer norm.
    last_hidden_state (`torch.Tensor` of shape `(batch_size, 1 + num_tokens, hidden_size)`):
        The global sequence (exam token, then the tokens of every view slot; missing views' tokens are zeros in,
        and meaningless out).
    token_mask (`torch.BoolTensor` of shape `(batch_size, 1 + num_tokens)`):
        Which positions of `last_hidden_state` belong to present views (and the exam token).
    """

    exam_embedding: torch.Tensor | None = None
    last_hidden_state: torch.Tensor | None = None
    token_mask: torch.Tensor | None = None


@dataclass
class MultiViewMammoClassifierOutput(ModelOutput):
    r"""
    loss (`torch.Tensor` of shape `()`, *optional*, returned when `labels` is given):
        Cross-entropy of the exam-level logits (class-weighted when `class_weights` is given).
    logits (`torch.Tensor` of shape `(batch_size, num_labels)`):
        Exam-level scores.
    exam_embedding (`torch.Tensor` of shape `(batch_size, hidden_size)`):
        The exam token's final state.
    """

    loss: torch.Tensor | None = None
    logits: torch.Tensor | None = None
    exam_embedding: torch.Tensor | None = None


class MultiViewMammoPreTrainedModel(PreTrainedModel):
    config_class = MultiViewMammoConfig
    config: MultiViewMammoConfig
    base_model_prefix = "multiview"
    main_input_name = "pixel_values"
    input_modalities = ("image",)
    supports_gradient_checkpointing = True
    _no_split_modules = ["ViTEmbeddings", "ViTLayer", "DeiTEmbeddings", "DeiTLayer"]
    _supports_sdpa = True

    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        super()._init_weights(module)
        if isinstance(module, MultiViewMammoModel):
            init.trunc_normal_(module.exam_token, std=self.config.initializer_range)
            # At the scale of the encoder's layer-normed tokens (see MultiViewMammoConfig.view_embedding_init_std).
            std = self.config.view_embedding_init_std
            init.trunc_normal_(module.laterality_embeddings, std=std, a=-2 * std, b=2 * std)
            init.trunc_normal_(module.view_position_embeddings, std=std, a=-2 * std, b=2 * std)


class MultiViewMammoModel(MultiViewMammoPreTrainedModel):
    """Local encoder + view embeddings + global transformer; returns the exam embedding (no head)."""

    def __init__(self, config: MultiViewMammoConfig) -> None:
        super().__init__(config)
        hidden = config.hidden_size
        self.encoder = AutoModel.from_config(config.encoder, add_pooling_layer=False)
        self.exam_token = nn.Parameter(torch.zeros(1, 1, hidden))
        self.laterality_embeddings = nn.Parameter(torch.zeros(2, hidden))
        self.view_position_embeddings = nn.Parameter(torch.zeros(2, hidden))
        self.global_config = ViTConfig(
            hidden_size=hidden,
            num_attention_heads=config.num_global_attention_heads,
            intermediate_size=config.global_intermediate_size,
            hidden_act=config.encoder.hidden_act,
            hidden_dropout_prob=config.global_dropout,
            attention_probs_dropout_prob=config.global_dropout,
            layer_norm_eps=config.encoder.layer_norm_eps,
            qkv_bias=getattr(config.encoder, "qkv_bias", True),
        )
        self.global_layers = nn.ModuleList(ViTLayer(self.global_config) for _ in range(config.num_global_layers))
        self.layernorm = nn.LayerNorm(hidden, eps=config.encoder.layer_norm_eps)
        self.post_init()

    def forward(
        self, pixel_values: torch.Tensor, view_mask: torch.Tensor | None = None, **kwargs
    ) -> MultiViewMammoModelOutput:
        """pixel_values: (B, V, C, H, W) in `config.view_names` order; view_mask: (B, V) bool, True = present."""
        view_mask = self._check_inputs(pixel_values, view_mask)
        batch, views = view_mask.shape
        # Encode only the present views: a missing view's pixels (zeros, noise, even NaN) never enter the model.
        encoded = self.encoder(pixel_values=pixel_values[view_mask]).last_hidden_state  # (P, T, D)
        if self.config.global_tokens == "cls":
            encoded = encoded[:, :1]
        tokens_per_view, hidden = encoded.shape[1], encoded.shape[2]
        tokens = encoded.new_zeros((batch, views, tokens_per_view, hidden))
        tokens[view_mask] = encoded
        # Computed here rather than kept as buffers: from_pretrained leaves non-persistent buffers uninitialised.
        parts = torch.tensor(self.config.view_parts(), dtype=torch.long, device=tokens.device)
        slot_embedding = self.laterality_embeddings[parts[:, 0]] + self.view_position_embeddings[parts[:, 1]]  # (V, D)
        tokens = tokens + slot_embedding[None, :, None, :].to(tokens.dtype)
        sequence = torch.cat([self.exam_token.expand(batch, -1, -1).to(tokens.dtype),
                              tokens.reshape(batch, views * tokens_per_view, hidden)], dim=1)
        token_mask = torch.cat([view_mask.new_ones((batch, 1)),
                                view_mask.repeat_interleave(tokens_per_view, dim=1)], dim=1)
        self.global_config._attn_implementation = self.config._attn_implementation or "sdpa"
        attention_mask = create_bidirectional_mask(
            config=self.global_config, inputs_embeds=sequence, attention_mask=token_mask,
            allow_is_bidirectional_skip=False,
        )
        for layer in self.global_layers:
            sequence = layer(sequence, attention_mask, **kwargs)
        sequence = self.layernorm(sequence)
        return MultiViewMammoModelOutput(exam_embedding=sequence[:, 0], last_hidden_state=sequence,
                                         token_mask=token_mask)

    def _check_inputs(self, pixel_values: torch.Tensor, view_mask: torch.Tensor | None) -> torch.Tensor:
        views = len(self.config.view_names)
        if pixel_values.ndim != 5 or pixel_values.shape[1] != views:
            raise ValueError(f"pixel_values must be (batch, {views} views {self.config.view_names}, channels, "
                             f"height, width), got {tuple(pixel_values.shape)}")
        if view_mask is None:
            view_mask = torch.ones(pixel_values.shape[:2], dtype=torch.bool, device=pixel_values.device)
        if view_mask.shape != pixel_values.shape[:2]:
            raise ValueError(f"view_mask must be (batch, {views}), got {tuple(view_mask.shape)}")
        view_mask = view_mask.to(device=pixel_values.device, dtype=torch.bool)
        empty = torch.nonzero(~view_mask.any(dim=1)).flatten().tolist()
        if empty:
            raise ValueError(f"exam(s) at batch position {empty} have no view: every exam needs at least one image")
        return view_mask


class MultiViewMammoForExamClassification(MultiViewMammoPreTrainedModel):
    """`MultiViewMammoModel` with a linear exam-level classifier on the exam token."""

    def __init__(self, config: MultiViewMammoConfig) -> None:
        super().__init__(config)
        self.multiview = MultiViewMammoModel(config)
        self.dropout = nn.Dropout(config.classifier_dropout)
        self.classifier = nn.Linear(config.hidden_size, config.num_labels)
        self.post_init()

    def forward(
        self,
        pixel_values: torch.Tensor,
        view_mask: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        class_weights: torch.Tensor | None = None,
        **kwargs,
    ) -> MultiViewMammoClassifierOutput:
        outputs = self.multiview(pixel_values, view_mask, **kwargs)
        logits = self.classifier(self.dropout(outputs.exam_embedding))
        loss = None
        if labels is not None:
            weight = class_weights.to(device=logits.device, dtype=torch.float32) if class_weights is not None else None
            loss = F.cross_entropy(logits.float(), labels.to(logits.device), weight=weight)
        return MultiViewMammoClassifierOutput(loss=loss, logits=logits, exam_embedding=outputs.exam_embedding)


__all__ = [
    "MultiViewMammoClassifierOutput",
    "MultiViewMammoForExamClassification",
    "MultiViewMammoModel",
    "MultiViewMammoModelOutput",
    "MultiViewMammoPreTrainedModel",
]

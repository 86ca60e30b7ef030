"""A trainable DeiT student with a distillation token.

Upstream `DeiTForImageClassificationWithTeacher` is inference-only: its forward takes no labels and computes no loss.
This model keeps exactly its modules and parameter names (so stock `*-distilled-*` checkpoints load as the student
and our checkpoints load into the stock class), and adds the DeiT training objective and stochastic depth. Two
opt-in changes for small data replace modules (`modeling_small_data_vit`): Shifted Patch Tokenization and Locality
Self-Attention; with either on, a checkpoint needs these classes (or these files as remote code).

This file is copied next to saved checkpoints for `trust_remote_code` loading: it may import only torch,
transformers and its sibling files (configuration, the SPT/LSA modules), which are copied with it.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from transformers import initialization as init
from transformers.conversion_mapping import get_checkpoint_conversion_mapping, register_checkpoint_conversion_mapping
from transformers.models.deit.modeling_deit import (
    DeiTEmbeddings,
    DeiTForImageClassificationWithTeacher,
    DeiTLayer,
    DeiTModel,
    DeiTPooler,
    DeiTPreTrainedModel,
)
from transformers.utils import ModelOutput

from .configuration_deit_cxr import DeiTCXRConfig
from .modeling_small_data_vit import DeiTCXREmbeddings, LocalitySelfAttention


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
    label_smoothing: float = 0.0,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The DeiT objective; returns (total, classification part, distillation part).

    - class head: cross-entropy to the labels (optionally class-weighted, optionally label-smoothed);
    - distillation head: with `teacher_logits`, "hard" = cross-entropy to the teacher's argmax, "soft" = KL divergence
      between temperature-softened distributions times tau², normalised by the number of logits exactly as in the
      DeiT reference code (facebookresearch/deit `losses.py`); without a teacher (`distillation_type="none"`, or
      evaluation batches that carry no teacher logits) the distillation head also learns the labels, so both tokens
      stay trained and the "average" inference head remains meaningful.
    - `label_smoothing` applies to the cross-entropies to the true labels only, as in DeiT (the paper smooths the
      true labels; the reference `DistillationLoss` smooths its base criterion, not the cross-entropy to the
      teacher's argmax): the teacher's hard or soft targets are used as they are.
    - total = (1 - alpha) * classification + alpha * distillation.
    """
    if labels.ndim != 1 or labels.shape[0] != cls_logits.shape[0]:
        raise ValueError(f"labels must have shape ({cls_logits.shape[0]},), got {tuple(labels.shape)}")
    # Losses in fp32: bf16/fp16 log-softmax loses too much precision for the small KL values involved.
    cls_logits, distillation_logits = cls_logits.float(), distillation_logits.float()
    weight = class_weights.to(cls_logits.device, torch.float32) if class_weights is not None else None
    classification = F.cross_entropy(cls_logits, labels, weight=weight, label_smoothing=label_smoothing)

    if teacher_logits is not None and distillation_type == "none":
        raise ValueError("teacher_logits were given but config.distillation_type is 'none'")
    if teacher_logits is None or distillation_type == "none":
        distillation = F.cross_entropy(distillation_logits, labels, weight=weight, label_smoothing=label_smoothing)
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
        label_smoothing: float = 0.0,
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
        label_smoothing (`float`, *optional*, defaults to 0):
            Label smoothing of the cross-entropy to the labels (not of the distillation term).
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
                label_smoothing,
            )
        output = DeiTCXRClassifierOutput(
            loss=loss,
            # Temperature scaling of the served logits only: the losses above used the heads' raw logits.
            logits=self.select_inference_logits(cls_logits, distillation_logits) / self.config.calibration_temperature,
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
    "DeiTCXRForImageClassificationWithTeacher",
    "DeiTCXRLayer",
    "DeiTCXRModel",
    "deit_distillation_loss",
]

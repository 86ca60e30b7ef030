"""DenseNet-BC (Huang et al., 2017) as a transformers model, used as the CNN teacher.

Modules and parameter names under `densenet.features` are exactly torchvision's `DenseNet.features`, so
torchvision and timm ImageNet weights load after a prefix change (see `hf_deitcxr.models.densenet.convert`).

This file is copied next to saved checkpoints for `trust_remote_code` loading: it may import only torch,
transformers and its sibling configuration file.
"""

from __future__ import annotations

import math
from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint
from transformers import PreTrainedModel
from transformers import initialization as init
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.modeling_outputs import (
    BaseModelOutputWithPoolingAndNoAttention,
    ImageClassifierOutputWithNoAttention,
)

from .configuration_densenet import DenseNetConfig


class DenseNetDenseLayer(GradientCheckpointingLayer):
    """BN-ReLU-Conv1x1 bottleneck then BN-ReLU-Conv3x3, producing `growth_rate` new channels.

    `forward` takes the previous feature maps as separate positional tensors (not a list) so that gradient
    checkpointing, reentrant or not, sees every input that needs a gradient.
    """

    def __init__(
        self,
        num_input_features: int,
        growth_rate: int,
        bn_size: int,
        drop_rate: float,
        memory_efficient: bool,
    ) -> None:
        super().__init__()
        self.norm1 = nn.BatchNorm2d(num_input_features)
        self.relu1 = nn.ReLU(inplace=True)
        self.conv1 = nn.Conv2d(num_input_features, bn_size * growth_rate, kernel_size=1, stride=1, bias=False)
        self.norm2 = nn.BatchNorm2d(bn_size * growth_rate)
        self.relu2 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(
            bn_size * growth_rate, growth_rate, kernel_size=3, stride=1, padding=1, bias=False
        )
        self.drop_rate = float(drop_rate)
        self.memory_efficient = memory_efficient

    def bottleneck(self, *prev_features: torch.Tensor) -> torch.Tensor:
        return self.conv1(self.relu1(self.norm1(torch.cat(prev_features, 1))))

    def forward(self, *prev_features: torch.Tensor) -> torch.Tensor:
        # Concatenations grow quadratically with depth; memory_efficient recomputes them in backward instead.
        if self.memory_efficient and self.training and any(t.requires_grad for t in prev_features):
            bottleneck_output = checkpoint(self.bottleneck, *prev_features, use_reentrant=False)
        else:
            bottleneck_output = self.bottleneck(*prev_features)
        new_features = self.conv2(self.relu2(self.norm2(bottleneck_output)))
        if self.drop_rate > 0:
            new_features = F.dropout(new_features, p=self.drop_rate, training=self.training)
        return new_features


class DenseNetDenseBlock(nn.ModuleDict):
    """`num_layers` dense layers (`denselayer1`...), each fed the concatenation of all earlier outputs."""

    def __init__(
        self,
        num_layers: int,
        num_input_features: int,
        bn_size: int,
        growth_rate: int,
        drop_rate: float,
        memory_efficient: bool,
    ) -> None:
        super().__init__()
        for i in range(num_layers):
            layer = DenseNetDenseLayer(
                num_input_features + i * growth_rate, growth_rate, bn_size, drop_rate, memory_efficient
            )
            self.add_module(f"denselayer{i + 1}", layer)

    def forward(self, init_features: torch.Tensor) -> torch.Tensor:
        features = [init_features]
        for layer in self.values():
            features.append(layer(*features))
        return torch.cat(features, 1)


class DenseNetTransition(nn.Sequential):
    """BN-ReLU-Conv1x1 halving the channels, then 2x2 average pooling halving the resolution."""

    def __init__(self, num_input_features: int, num_output_features: int) -> None:
        super().__init__()
        self.norm = nn.BatchNorm2d(num_input_features)
        self.relu = nn.ReLU(inplace=True)
        self.conv = nn.Conv2d(num_input_features, num_output_features, kernel_size=1, stride=1, bias=False)
        self.pool = nn.AvgPool2d(kernel_size=2, stride=2)


def densenet_num_features(config: DenseNetConfig) -> int:
    """Channels of the final feature map (1024 for DenseNet-121, 1664 for 169, 1920 for 201)."""
    num_features = config.num_init_features
    for i, num_layers in enumerate(config.block_config):
        num_features += num_layers * config.growth_rate
        if i != len(config.block_config) - 1:
            num_features //= 2
    return num_features


def build_densenet_features(config: DenseNetConfig) -> nn.Sequential:
    """torchvision's `DenseNet.features`, module for module and name for name."""
    modules = OrderedDict(
        conv0=nn.Conv2d(
            config.num_channels, config.num_init_features, kernel_size=7, stride=2, padding=3, bias=False
        ),
        norm0=nn.BatchNorm2d(config.num_init_features),
        relu0=nn.ReLU(inplace=True),
        pool0=nn.MaxPool2d(kernel_size=3, stride=2, padding=1),
    )
    num_features = config.num_init_features
    for i, num_layers in enumerate(config.block_config):
        modules[f"denseblock{i + 1}"] = DenseNetDenseBlock(
            num_layers=num_layers,
            num_input_features=num_features,
            bn_size=config.bn_size,
            growth_rate=config.growth_rate,
            drop_rate=config.drop_rate,
            memory_efficient=config.memory_efficient,
        )
        num_features += num_layers * config.growth_rate
        if i != len(config.block_config) - 1:
            modules[f"transition{i + 1}"] = DenseNetTransition(num_features, num_features // 2)
            num_features //= 2
    modules["norm5"] = nn.BatchNorm2d(num_features)
    return nn.Sequential(modules)


def check_pixel_values(pixel_values: torch.Tensor | None, num_channels: int) -> None:
    if pixel_values is None:
        raise ValueError("pixel_values must be given")
    if pixel_values.ndim != 4:
        shape = tuple(pixel_values.shape)
        raise ValueError(f"pixel_values must be 4-D (batch, channels, height, width), got shape {shape}")
    if pixel_values.shape[1] != num_channels:
        raise ValueError(
            f"pixel_values has {pixel_values.shape[1]} channels but the model expects {num_channels} "
            f"(config.num_channels); got shape {tuple(pixel_values.shape)}"
        )


class DenseNetPreTrainedModel(PreTrainedModel):
    config_class = DenseNetConfig
    config: DenseNetConfig
    base_model_prefix = "densenet"
    main_input_name = "pixel_values"
    input_modalities = ("image",)
    supports_gradient_checkpointing = True
    # A dense block concatenates all its layers' outputs, so it must live on one device.
    _no_split_modules = ["DenseNetDenseBlock", "DenseNetTransition"]

    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        """torchvision's DenseNet initialisation (the `init` helpers skip weights loaded from checkpoints)."""
        if isinstance(module, nn.Conv2d):
            init.kaiming_normal_(module.weight)
        elif isinstance(module, nn.BatchNorm2d):
            init.ones_(module.weight)
            init.zeros_(module.bias)
            init.zeros_(module.running_mean)
            init.ones_(module.running_var)
            if module.num_batches_tracked is not None:
                init.zeros_(module.num_batches_tracked)
        elif isinstance(module, nn.Linear):
            # torchvision keeps nn.Linear's default weight init and zeroes the bias.
            init.kaiming_uniform_(module.weight, a=math.sqrt(5))
            if module.bias is not None:
                init.zeros_(module.bias)


class DenseNetModel(DenseNetPreTrainedModel):
    """DenseNet features: `last_hidden_state` is the ReLU'd final feature map, `pooler_output` its mean."""

    def __init__(self, config: DenseNetConfig) -> None:
        super().__init__(config)
        self.features = build_densenet_features(config)
        self.num_features = densenet_num_features(config)
        self.post_init()

    def forward(
        self,
        pixel_values: torch.Tensor | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
    ) -> BaseModelOutputWithPoolingAndNoAttention | tuple[torch.Tensor, ...]:
        r"""
        pixel_values (`torch.Tensor` of shape `(batch_size, num_channels, height, width)`):
            Normalised images.
        output_hidden_states (`bool`, *optional*):
            Also return the stem output (after `pool0`) and the output of every dense block (before its
            transition), `1 + len(config.block_config)` feature maps of decreasing resolution.
        """
        check_pixel_values(pixel_values, self.config.num_channels)
        if output_hidden_states is None:
            output_hidden_states = self.config.output_hidden_states
        return_dict = return_dict if return_dict is not None else self.config.return_dict

        hidden_states = () if output_hidden_states else None
        features = pixel_values
        for name, module in self.features.named_children():
            features = module(features)
            if output_hidden_states and (name == "pool0" or name.startswith("denseblock")):
                hidden_states += (features,)

        last_hidden_state = F.relu(features)
        # flatten (not view) so channels_last outputs work.
        pooled_output = F.adaptive_avg_pool2d(last_hidden_state, 1).flatten(1)

        output = BaseModelOutputWithPoolingAndNoAttention(
            last_hidden_state=last_hidden_state, pooler_output=pooled_output, hidden_states=hidden_states
        )
        return output if return_dict else output.to_tuple()


class DenseNetForImageClassification(DenseNetPreTrainedModel):
    """DenseNet with a linear head on the pooled features (torchvision's `classifier`)."""

    def __init__(self, config: DenseNetConfig) -> None:
        super().__init__(config)
        self.num_labels = config.num_labels
        self.densenet = DenseNetModel(config)
        num_features = self.densenet.num_features
        self.classifier = (
            nn.Linear(num_features, config.num_labels) if config.num_labels > 0 else nn.Identity()
        )
        self.post_init()

    def forward(
        self,
        pixel_values: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
    ) -> ImageClassifierOutputWithNoAttention | tuple[torch.Tensor, ...]:
        r"""
        labels (`torch.LongTensor` of shape `(batch_size,)`, *optional*):
            Class indices for a cross-entropy loss; float targets of shape `(batch_size, num_labels)` give a
            multi-label BCE loss, and `num_labels == 1` a regression (MSE) loss, as set by
            `config.problem_type`.
        """
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        outputs = self.densenet(pixel_values, output_hidden_states=output_hidden_states, return_dict=True)
        logits = self.classifier(outputs.pooler_output)

        loss = None
        if labels is not None:
            if self.config.num_labels == 0:
                raise ValueError("labels were given but the model has no classification head (num_labels=0)")
            loss = self.loss_function(labels, logits, self.config)

        # Temperature scaling after the loss: training sees the raw logits, the outputs are calibrated.
        output = ImageClassifierOutputWithNoAttention(
            loss=loss, logits=logits / self.config.calibration_temperature, hidden_states=outputs.hidden_states
        )
        return output if return_dict else output.to_tuple()


__all__ = ["DenseNetForImageClassification", "DenseNetModel", "DenseNetPreTrainedModel"]

"""Configuration of the DenseNet teacher (DenseNet-121/169/201, torchvision architecture).

This file is copied next to saved checkpoints for `trust_remote_code` loading: it may import only
transformers.
"""

from __future__ import annotations

from transformers import PreTrainedConfig

# torchvision's presets: (growth_rate, block_config, num_init_features); bn_size is 4 for all of them.
DENSENET_VARIANTS: dict[str, dict] = {
    "densenet121": {
        "growth_rate": 32,
        "block_config": (6, 12, 24, 16),
        "num_init_features": 64,
        "bn_size": 4,
    },
    "densenet169": {
        "growth_rate": 32,
        "block_config": (6, 12, 32, 32),
        "num_init_features": 64,
        "bn_size": 4,
    },
    "densenet201": {
        "growth_rate": 32,
        "block_config": (6, 12, 48, 32),
        "num_init_features": 64,
        "bn_size": 4,
    },
}


def _is_int(value) -> bool:
    # bool is an int subclass, but `growth_rate=True` is a bug, not a growth rate.
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


class DenseNetConfig(PreTrainedConfig):
    r"""
    Configuration for [`DenseNetModel`] and [`DenseNetForImageClassification`], a DenseNet-BC with exactly
    torchvision's modules and parameter names. Defaults give DenseNet-121; use [`DenseNetConfig.from_variant`]
    for DenseNet-169 and DenseNet-201.

    Args:
        growth_rate (`int`, defaults to 32):
            Channels each dense layer adds (k in the paper).
        block_config (`list[int]`, defaults to `[6, 12, 24, 16]`):
            Number of dense layers in each dense block; a transition halves channels and resolution between
            blocks.
        num_init_features (`int`, defaults to 64):
            Channels of the stem convolution.
        bn_size (`int`, defaults to 4):
            Bottleneck width multiplier: each 1x1 bottleneck has `bn_size * growth_rate` output channels.
        drop_rate (`float`, defaults to 0.0):
            Dropout after each dense layer, in [0, 1).
        num_channels (`int`, defaults to 3):
            Input channels: 3 (ImageNet weights, grey images replicated) or 1 (greyscale).
        image_size (`int`, defaults to 224):
            Training resolution; informational only, the network accepts any size of at least 32 pixels.
        memory_efficient (`bool`, defaults to `False`):
            Recompute each dense layer's concatenation + bottleneck in the backward pass instead of storing it
            (torchvision's `memory_efficient`): much less activation memory, somewhat slower training.
        calibration_temperature (`float`, defaults to 1.0):
            Temperature scaling (Guo et al. 2017): the output `logits` are divided by it (the loss uses the raw
            ones), fitted after training by `hf-deitcxr calibrate`; the predicted class is unchanged.

    Example:

    ```python
    >>> from hf_deitcxr.models.densenet import DenseNetConfig, DenseNetForImageClassification

    >>> config = DenseNetConfig.from_variant("densenet121", num_labels=14)
    >>> model = DenseNetForImageClassification(config)
    ```
    """

    model_type = "deitcxr_densenet"

    growth_rate: int = 32
    block_config: list[int] | tuple[int, ...] = (6, 12, 24, 16)
    num_init_features: int = 64
    bn_size: int = 4
    drop_rate: float = 0.0
    num_channels: int = 3
    image_size: int = 224
    memory_efficient: bool = False
    calibration_temperature: float = 1.0

    def __post_init__(self, **kwargs):
        super().__post_init__(**kwargs)
        self.validate_densenet_fields()
        # A list, so the config round-trips through JSON unchanged.
        self.block_config = list(self.block_config)

    @classmethod
    def from_variant(cls, variant: str, **kwargs) -> DenseNetConfig:
        """Config of a torchvision preset (`"densenet121"`, `"densenet169"` or `"densenet201"`).

        `kwargs` set the other fields (`num_labels`, `num_channels`, `drop_rate`, ...); the architecture
        fields are fixed by the variant, so passing a different value for one of them is an error.
        """
        if variant not in DENSENET_VARIANTS:
            raise ValueError(f"variant must be one of {sorted(DENSENET_VARIANTS)}, got {variant!r}")
        preset = DENSENET_VARIANTS[variant]
        for name, value in preset.items():
            if name in kwargs and _as_comparable(kwargs[name]) != _as_comparable(value):
                raise ValueError(
                    f"{name}={kwargs[name]!r} contradicts {variant} ({name}={value!r}); "
                    "build a DenseNetConfig directly for a custom architecture"
                )
        return cls(**{**kwargs, **preset})

    def matching_variant(self) -> str | None:
        """The torchvision preset this architecture is (e.g. `"densenet121"`), or None for a custom one."""
        for name, preset in DENSENET_VARIANTS.items():
            if all(
                _as_comparable(getattr(self, key)) == _as_comparable(value) for key, value in preset.items()
            ):
                return name
        return None

    def validate_densenet_fields(self) -> None:
        """Raise a `ValueError` naming the first invalid field."""
        for name in ("growth_rate", "num_init_features", "bn_size", "image_size"):
            value = getattr(self, name)
            if not _is_int(value) or value <= 0:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        blocks = self.block_config
        if (
            not isinstance(blocks, (list, tuple))
            or len(blocks) == 0
            or not all(_is_int(n) and n > 0 for n in blocks)
        ):
            raise ValueError(f"block_config must be a non-empty list of positive integers, got {blocks!r}")
        if not _is_number(self.drop_rate) or not 0.0 <= self.drop_rate < 1.0:
            raise ValueError(f"drop_rate must be a number in [0, 1), got {self.drop_rate!r}")
        if self.num_channels not in (1, 3) or not _is_int(self.num_channels):
            raise ValueError(
                f"num_channels must be 1 (greyscale) or 3 (replicated RGB), got {self.num_channels!r}"
            )
        if not isinstance(self.memory_efficient, bool):
            raise ValueError(f"memory_efficient must be a bool, got {self.memory_efficient!r}")
        if not _is_number(self.calibration_temperature) or not 0 < self.calibration_temperature < 1e6:
            raise ValueError(f"calibration_temperature must be a positive number, got {self.calibration_temperature!r}")


def _as_comparable(value):
    # Presets hold tuples, configs loaded from JSON hold lists.
    return tuple(value) if isinstance(value, (list, tuple)) else value


__all__ = ["DENSENET_VARIANTS", "DenseNetConfig"]

"""Configuration of the DeiT chest X-ray student (a DeiT with a distillation token, trainable)."""

from __future__ import annotations

from transformers import DeiTConfig

DISTILLATION_TYPES = ("none", "soft", "hard")
INFERENCE_HEADS = ("average", "cls", "distillation")


class DeiTCXRConfig(DeiTConfig):
    r"""
    Configuration for [`DeiTCXRForImageClassificationWithTeacher`]. All [`DeiTConfig`] fields apply (so a stock
    `facebook/deit-*-distilled-*` config loads into it unchanged); the added fields describe how the student is
    trained against a teacher and which head is used at inference.

    Args:
        distillation_type (`str`, defaults to `"hard"`):
            `"none"` (no teacher: both heads learn from the labels), `"soft"` (KL divergence to the teacher's
            temperature-softened distribution, scaled by tau², as in DeiT) or `"hard"` (cross-entropy to the
            teacher's argmax, the DeiT paper's best setting).
        distillation_alpha (`float`, defaults to 0.5):
            Weight of the distillation term: loss = (1 - alpha) * CE(cls head, labels) + alpha * distillation.
        distillation_tau (`float`, defaults to 1.0):
            Softmax temperature for soft distillation (ignored for hard distillation).
        teacher_name_or_path (`str`, *optional*):
            Hub id or local folder of the teacher used in training (recorded for provenance and model cards).
        inference_head (`str`, defaults to `"average"`):
            What `logits` holds: the mean of both heads (DeiT's default), the class-token head or the
            distillation-token head.
        drop_path_rate (`float`, defaults to 0.0):
            Stochastic-depth rate (linearly increasing over layers, as in DeiT training); adds no parameters.
        shifted_patch_tokenization (`bool`, defaults to `False`):
            Shifted Patch Tokenization (Lee, Lee & Song 2021, "Vision Transformer for Small-Size Datasets"): each
            patch token also sees the image shifted by half a patch in the four diagonal directions (5x the input
            channels), through a LayerNorm and a linear projection. Replaces the patch convolution, so such a
            checkpoint loads only with this package's classes (or its remote code), not the stock DeiT class.
        locality_self_attention (`bool`, defaults to `False`):
            Locality Self-Attention (same paper): a token's attention to itself is masked out and the softmax scale
            is a learnable temperature per head (initialised at 1/sqrt(head_dim)). Adds one parameter per head and
            layer; the checkpoint then needs this package's classes or remote code too.
        calibration_temperature (`float`, defaults to 1.0):
            Temperature scaling (Guo et al. 2017): the served `logits` are divided by it, so the softmax is
            calibrated while the predicted class is unchanged; fitted after training by `hf-deitcxr calibrate`. The
            training losses use the heads' raw logits. A stock DeiT class ignores it (uncalibrated logits).
    """

    model_type = "deit_cxr"

    distillation_type: str = "hard"
    distillation_alpha: float = 0.5
    distillation_tau: float = 1.0
    teacher_name_or_path: str | None = None
    inference_head: str = "average"
    drop_path_rate: float = 0.0
    shifted_patch_tokenization: bool = False
    locality_self_attention: bool = False
    calibration_temperature: float = 1.0

    def __post_init__(self, **kwargs):
        super().__post_init__(**kwargs)
        self.validate_distillation_fields()

    @property
    def uses_small_data_vit(self) -> bool:
        """Whether SPT or LSA changes the architecture away from the stock DeiT's."""
        return self.shifted_patch_tokenization or self.locality_self_attention

    def validate_distillation_fields(self) -> None:
        """Raise a `ValueError` naming the first invalid field."""
        if self.distillation_type not in DISTILLATION_TYPES:
            raise ValueError(
                f"distillation_type must be one of {DISTILLATION_TYPES}, got {self.distillation_type!r}"
            )
        if self.inference_head not in INFERENCE_HEADS:
            raise ValueError(f"inference_head must be one of {INFERENCE_HEADS}, got {self.inference_head!r}")
        if not isinstance(self.distillation_alpha, (int, float)) or not 0.0 <= self.distillation_alpha <= 1.0:
            raise ValueError(f"distillation_alpha must be a number in [0, 1], got {self.distillation_alpha!r}")
        if not isinstance(self.distillation_tau, (int, float)) or self.distillation_tau <= 0:
            raise ValueError(f"distillation_tau must be a positive number, got {self.distillation_tau!r}")
        if not isinstance(self.drop_path_rate, (int, float)) or not 0.0 <= self.drop_path_rate < 1.0:
            raise ValueError(f"drop_path_rate must be a number in [0, 1), got {self.drop_path_rate!r}")
        for name in ("shifted_patch_tokenization", "locality_self_attention"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be true or false, got {getattr(self, name)!r}")
        temperature = self.calibration_temperature
        if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) or not 0 < temperature < 1e6:
            raise ValueError(f"calibration_temperature must be a positive number, got {temperature!r}")
        if self.num_channels not in (1, 3):
            raise ValueError(f"num_channels must be 1 (greyscale) or 3 (replicated RGB), got {self.num_channels!r}")
        if self.id2label is not None and len(self.id2label) != len(set(self.id2label.values())):
            raise ValueError(f"id2label has duplicate class names: {self.id2label}")


__all__ = ["DeiTCXRConfig"]


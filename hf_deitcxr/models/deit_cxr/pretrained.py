"""Start a student from a pretrained checkpoint (e.g. `facebook/deit-tiny-distilled-patch16-224` on the Hub).

Handles what chest X-ray fine-tuning changes relative to ImageNet pre-training, without re-initialising what can be
kept: a new label set (new heads), a different input resolution (position embeddings interpolated, as DeiT does
when fine-tuning at another resolution) and single-channel input (patch embedding folded exactly, see
`fold_rgb_conv_to_grey`). Shifted Patch Tokenization and Locality Self-Attention (`DeiTCXRConfig`) can be switched on
over a stock checkpoint: the shifted tokenizer starts from its initialisation (the patch convolution does not fit
it) and the attention temperature at the stock scale; every other weight is kept.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from transformers.image_utils import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD

from .configuration_deit_cxr import DeiTCXRConfig
from .image_processing_deit_cxr import GREY_MEAN, GREY_STD
from .modeling_deit_cxr import DeiTCXRForImageClassificationWithTeacher

PATCH_WEIGHT = "deit.embeddings.patch_embeddings.projection.weight"
PATCH_BIAS = "deit.embeddings.patch_embeddings.projection.bias"
POSITIONS = "deit.embeddings.position_embeddings"
HEAD_PREFIXES = ("cls_classifier.", "distillation_classifier.")
SHIFTED_PATCH_PREFIX = "deit.embeddings.patch_embeddings."
ATTENTION_SCALE_SUFFIX = ".attention.attention_scale"


@torch.no_grad()
def fold_rgb_conv_to_grey(
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    rgb_mean: Sequence[float] = IMAGENET_DEFAULT_MEAN,
    rgb_std: Sequence[float] = IMAGENET_DEFAULT_STD,
    grey_mean: Sequence[float] = GREY_MEAN,
    grey_std: Sequence[float] = GREY_STD,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Fold a 3-channel first convolution into a 1-channel one that gives identical outputs on grey images.

    With a grey image x fed as three copies normalised per channel, conv = sum_c W_c (x - m_c) / s_c + b. Feeding
    x' = (x - m) / s instead, x = s x' + m, so W' = sum_c W_c s / s_c and b' = b + sum_c sum(W_c) (m - m_c) / s_c.
    (Summing the RGB kernels, the usual shortcut, is exact only when every channel has the same mean and std.)
    """
    if weight.ndim != 4 or weight.shape[1] != 3:
        raise ValueError(f"expected a 3-channel conv weight (out, 3, kh, kw), got {tuple(weight.shape)}")
    rgb_mean_t = torch.tensor(rgb_mean, dtype=torch.float64)
    rgb_std_t = torch.tensor(rgb_std, dtype=torch.float64)
    mean, std = float(grey_mean[0]), float(grey_std[0])
    w = weight.double()
    folded_weight = (w * (std / rgb_std_t).view(1, 3, 1, 1)).sum(dim=1, keepdim=True)
    shift = (w.sum(dim=(2, 3)) * ((mean - rgb_mean_t) / rgb_std_t).view(1, 3)).sum(dim=1)
    base_bias = bias.double() if bias is not None else torch.zeros(weight.shape[0], dtype=torch.float64)
    return folded_weight.to(weight.dtype), (base_bias + shift).to(weight.dtype)


@torch.no_grad()
def interpolate_position_embeddings(
    positions: torch.Tensor, new_grid: int, num_special_tokens: int = 2
) -> torch.Tensor:
    """Resize (1, special + g*g, d) position embeddings to a new_grid x new_grid patch grid (bicubic)."""
    special, patches = positions[:, :num_special_tokens], positions[:, num_special_tokens:]
    old_grid = math.isqrt(patches.shape[1])
    if old_grid * old_grid != patches.shape[1]:
        raise ValueError(f"position embeddings for {patches.shape[1]} patches are not a square grid")
    if old_grid == new_grid:
        return positions
    dim = patches.shape[-1]
    grid = patches.reshape(1, old_grid, old_grid, dim).permute(0, 3, 1, 2).float()
    grid = F.interpolate(grid, size=(new_grid, new_grid), mode="bicubic", align_corners=False)
    resized = grid.permute(0, 2, 3, 1).reshape(1, new_grid * new_grid, dim).to(positions.dtype)
    return torch.cat([special, resized], dim=1)


def load_student(
    pretrained_name_or_path: str,
    label_names: Sequence[str],
    image_size: int | None = None,
    num_channels: int | None = None,
    **config_overrides,
) -> DeiTCXRForImageClassificationWithTeacher:
    """Load a DeiT (distilled) checkpoint as a student for `label_names`, adapting resolution and channels.

    Heads are kept when the checkpoint already has exactly these labels (resuming from one of our models), and
    re-initialised otherwise.
    """
    source = DeiTCXRForImageClassificationWithTeacher.from_pretrained(pretrained_name_or_path)
    source_config = source.config
    target_size = image_size or _as_int(source_config.image_size)
    target_channels = num_channels or source_config.num_channels
    id2label = dict(enumerate(label_names))
    config = DeiTCXRConfig(
        **{
            **_architecture_fields(source_config),
            "image_size": target_size,
            "num_channels": target_channels,
            "id2label": id2label,
            "label2id": {name: i for i, name in id2label.items()},
            **config_overrides,
        }
    )
    student = DeiTCXRForImageClassificationWithTeacher(config)
    state = adapt_state_dict(source.state_dict(), source_config, config)
    missing, unexpected = student.load_state_dict(state, strict=False)
    unexpected_kept = [k for k in unexpected if not k.startswith(HEAD_PREFIXES)]
    missing_body = [k for k in missing
                    if not k.startswith(HEAD_PREFIXES) and not _new_in_target(k, source_config, config)]
    if unexpected_kept or missing_body:
        raise ValueError(f"checkpoint does not fit the student: missing {missing_body}, unexpected {unexpected_kept}")
    return student


def adapt_state_dict(state: dict[str, torch.Tensor], source_config, target_config) -> dict[str, torch.Tensor]:
    """The source weights rewritten for the target's labels, resolution and channel count."""
    state = dict(state)
    if dict(source_config.id2label or {}) != dict(target_config.id2label or {}):
        state = {k: v for k, v in state.items() if not k.startswith(HEAD_PREFIXES)}
    patch = _as_int(target_config.patch_size)
    new_grid = _as_int(target_config.image_size) // patch
    state[POSITIONS] = interpolate_position_embeddings(state[POSITIONS], new_grid)
    if _shifted(target_config) != _shifted(source_config):
        # a patch convolution and a shifted tokenizer do not share weights: the target's keeps its initialisation
        state = {k: v for k, v in state.items() if not k.startswith(SHIFTED_PATCH_PREFIX)}
    elif source_config.num_channels == 3 and target_config.num_channels == 1:
        state[PATCH_WEIGHT], state[PATCH_BIAS] = fold_rgb_conv_to_grey(state[PATCH_WEIGHT], state.get(PATCH_BIAS))
    elif source_config.num_channels != target_config.num_channels:
        raise ValueError(
            f"cannot adapt a {source_config.num_channels}-channel checkpoint to {target_config.num_channels} channels"
        )
    return state


def _shifted(config) -> bool:
    return bool(getattr(config, "shifted_patch_tokenization", False))


def _new_in_target(key: str, source_config, target_config) -> bool:
    """Whether `key` belongs to an SPT/LSA module the target has and the source checkpoint lacks."""
    if key.startswith(SHIFTED_PATCH_PREFIX) and _shifted(target_config) and not _shifted(source_config):
        return True
    return key.endswith(ATTENTION_SCALE_SUFFIX) and not getattr(source_config, "locality_self_attention", False)


def _architecture_fields(config) -> dict:
    names = (
        "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size", "hidden_act",
        "hidden_dropout_prob", "attention_probs_dropout_prob", "initializer_range", "layer_norm_eps",
        "patch_size", "qkv_bias", "encoder_stride",
    )  # fmt: skip
    return {name: getattr(config, name) for name in names}


def _as_int(size) -> int:
    if isinstance(size, (list, tuple)):
        if len(set(size)) != 1:
            raise ValueError(f"only square sizes are supported, got {size}")
        return int(size[0])
    return int(size)


__all__ = ["adapt_state_dict", "fold_rgb_conv_to_grey", "interpolate_position_embeddings", "load_student"]

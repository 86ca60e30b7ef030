"""Turn cached uint8 grey images into normalised model input, for a batch (`RadiographCollator`, the Trainer's
`data_collator`) or for one PIL image at inference (`eval_transform_for_pil`, the same numerics as the saved image
processor: PIL bicubic resize of the grey image, no crop, rescale, normalise)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from ..models.deit_cxr.image_processing_deit_cxr import GreyPreprocessing
from .image_cache import load_grey_resized


class RadiographCollator:
    """`data_collator` for `CachedImageDataset` items: uint8 grey images -> normalised model input.

    Steps, on the whole batch: stack -> float [0, 1] -> resize to `size` if the cache has another size
    (antialiased bicubic) -> augmentation (training collator only) -> normalise with mean/std ->
    `num_channels` channels (the grey channel replicated to 3 for ImageNet-style models; augmenting before
    replication is 3x cheaper and keeps the channels identical). Returns only `pixel_values` and `labels`
    (plus `sample_index` when `return_indices`), since `Trainer` passes every key to the model.

    With `augmentation_seed`, a batch's random augmentation is drawn from a generator seeded by that seed and the
    batch's sample indices, not from the global RNG: the same batch is augmented the same way whenever and in whatever
    process it is collated. That makes a resumed run bit-identical to an uninterrupted one (Trainer's prefetching
    dataloader collates batches ahead of the RNG state it saves in a checkpoint).
    """

    def __init__(
        self,
        size: int,
        mean: Sequence[float],
        std: Sequence[float],
        num_channels: int = 3,
        augmentation: Callable[[torch.Tensor], torch.Tensor] | None = None,
        return_indices: bool = False,
        augmentation_seed: int | None = None,
    ) -> None:
        self.size = int(size)
        self.mean, self.std = normalisation_tensors(mean, std, num_channels)
        self.num_channels = num_channels
        self.augmentation = augmentation
        self.return_indices = return_indices
        self.augmentation_seed = augmentation_seed

    def __call__(self, features: Sequence[Mapping[str, Any]]) -> dict[str, torch.Tensor]:
        if not features:
            raise ValueError("cannot collate an empty batch")
        pixels = torch.stack([_as_grey_tensor(feature["pixels"]) for feature in features])
        batch = {
            "pixel_values": self.transform(pixels, seed=self.batch_seed(features)),
            "labels": torch.tensor([int(label_of(feature)) for feature in features], dtype=torch.int64),
        }
        if self.return_indices:
            if any("index" not in feature for feature in features):
                raise KeyError("return_indices=True needs an 'index' in each item (as CachedImageDataset's)")
            indices = [int(feature["index"]) for feature in features]
            batch["sample_index"] = torch.tensor(indices, dtype=torch.int64)
        return batch

    def batch_seed(self, features: Sequence[Mapping[str, Any]]) -> int | None:
        """The augmentation seed of this batch (from `augmentation_seed` and the items' `index`), else None."""
        if self.augmentation is None or self.augmentation_seed is None:
            return None
        if any("index" not in feature for feature in features):
            raise KeyError("augmentation_seed needs an 'index' in each item (as CachedImageDataset's)")
        return derive_seed([int(self.augmentation_seed), *(int(feature["index"]) for feature in features)])

    def transform(self, pixels: torch.Tensor, seed: int | None = None) -> torch.Tensor:
        """uint8 (B, 1, h, w) -> float32 (B, num_channels, size, size), augmented if the collator augments
        (from a generator seeded with `seed` when given, else from the global RNG)."""
        images = unit_images(pixels, self.size)
        if self.augmentation is not None:
            images = self.augmentation(images) if seed is None else self.augmentation(images, seed=seed)
        return normalise(images, self.mean.to(images.device), self.std.to(images.device))


def derive_seed(entropy: Sequence[int]) -> int:
    """A non-negative int64 seed from a sequence of ints (`numpy.random.SeedSequence`): the seed of a batch's
    augmentation (run seed + sample indices) or of an augmented view (run seed + view + chunk)."""
    return int(np.random.SeedSequence([int(value) for value in entropy]).generate_state(1, dtype=np.uint64)[0]
               >> np.uint64(1))


def unit_images(pixels: torch.Tensor, size: int) -> torch.Tensor:
    """uint8 (B, 1, h, w) -> float32 (B, 1, size, size) in [0, 1]: rescaled, then resized (antialiased bicubic,
    clamped) only when the cache has another size. The first step of every collation, before augmentation."""
    images = pixels.to(torch.float32).div_(255.0)
    if images.shape[-2:] != (size, size):
        images = F.interpolate(images, size=(size, size), mode="bicubic", antialias=True,
                               align_corners=False).clamp_(0.0, 1.0)
    return images


def eval_transform_for_pil(
    image: Image.Image,
    size: int,
    mean: Sequence[float],
    std: Sequence[float],
    num_channels: int = 3,
    preprocessing: GreyPreprocessing | None = None,
) -> torch.Tensor:
    """One PIL image -> float32 (1, num_channels, size, size), a batch of one for `model(pixel_values=...)`.

    Grey conversion, `preprocessing` (PIL bicubic resize to size x size without crop, and any border removal /
    intensity normalisation), rescale and normalisation: the evaluation collator's numerics for images cached at
    `size` with that preprocessing, and the saved image processor's.
    """
    mean_t, std_t = normalisation_tensors(mean, std, num_channels)
    pixels = torch.from_numpy(load_grey_resized(image, size, preprocessing))[None, None]
    return normalise(unit_images(pixels, size), mean_t, std_t)


def normalisation_tensors(
    mean: Sequence[float], std: Sequence[float], num_channels: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Validated (1, num_channels, 1, 1) mean and std (a single value is shared by every channel)."""
    if num_channels not in (1, 3):
        raise ValueError(f"num_channels must be 1 or 3, got {num_channels}")
    mean_t = torch.as_tensor(mean, dtype=torch.float32).flatten()
    std_t = torch.as_tensor(std, dtype=torch.float32).flatten()
    if len(mean_t) != len(std_t) or len(mean_t) not in (1, num_channels):
        raise ValueError(f"mean/std of length {len(mean_t)}/{len(std_t)} do not fit {num_channels} channels")
    if bool((std_t <= 0).any()):
        raise ValueError(f"std must be positive, got {std_t.tolist()}")
    # (1, C, 1, 1) statistics; `normalise` replicates a grey (B, 1, H, W) batch to C channels with them.
    return mean_t.expand(num_channels).reshape(1, -1, 1, 1), std_t.expand(num_channels).reshape(1, -1, 1, 1)


def normalise(images: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """Grey float images (B, 1, H, W) in [0, 1] -> (B, C, H, W) normalised with `normalisation_tensors`' mean/std
    (the grey channel replicated to C)."""
    # Expanding first lets `sub` write the C-channel output at once; the in-place divide avoids another copy.
    expanded = images.expand(-1, mean.shape[1], -1, -1)
    return expanded.sub(mean).div_(std).contiguous()


def _as_grey_tensor(pixels) -> torch.Tensor:
    pixels = torch.as_tensor(pixels)
    if pixels.ndim == 2:
        pixels = pixels[None]
    if pixels.ndim != 3 or pixels.shape[0] != 1 or pixels.dtype != torch.uint8:
        raise ValueError(f"expected uint8 grey pixels (1, H, W), got {pixels.dtype} {tuple(pixels.shape)}")
    return pixels


def label_of(feature: Mapping[str, Any]) -> int:
    """A batch item's class index, from its `labels` (or `label`) key."""
    if "labels" in feature:
        return feature["labels"]
    if "label" in feature:
        return feature["label"]
    raise KeyError(f"batch item has no 'labels' (keys: {sorted(feature)})")


__all__ = ["RadiographCollator", "derive_seed", "eval_transform_for_pil", "label_of", "normalisation_tensors",
           "normalise", "unit_images"]

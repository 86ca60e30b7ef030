"""Augmented distillation at the cost of a logit cache (FKD, Shen & Xing 2022): K seeded augmented views of every
training image, built once, so the teacher's logits of each view can be cached once too.

- `AugmentedViewBank`: the views, uint8 (K, N, 1, S, S) at the model input size S, with the normalisation of the
  student's input; `pixel_values(view_index, sample_index)` is the model input of those views.
- `ViewBankCollator`: the training `data_collator` that draws one of the K views per sample (seeded by the run seed
  and the batch's indices, so a resumed run is bit-identical) and returns its pixels with `sample_index` and
  `view_index`, the keys of the teacher's view-logit cache (`FrozenTeacher.cache_view_logits`).

The student sees exactly the pixels the teacher saw: the augmented views are quantised to uint8 once, and the
teacher's cached logits are computed on the quantised views, not on the float augmentation.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from typing import Any

import torch

from .augmentation import RadiographAugmentation
from .collate import derive_seed, label_of, normalisation_tensors, normalise, unit_images
from .image_cache import CachedImageDataset

logger = logging.getLogger(__name__)

# Images augmented per call: a view is re-created from (seed, view) only if it is cut into the same chunks, since an
# image's random draws depend on its position in the augmented batch.
VIEW_CHUNK_SIZE = 256
# Larger banks are refused: they would take most of a training machine's memory.
MAX_BANK_BYTES = 8 * 2**30


class AugmentedViewBank:
    """K seeded augmented views of N images at the model input size S, held as uint8 (K, N, 1, S, S).

    Memory: K x N x S x S bytes, i.e. 4 KiB a view at 64 px (K = 8 views of 10,000 images: 312 MiB) and 49 KiB at
    224 px (K = 8 of 10,000: 3.7 GiB); `build` refuses a bank above `MAX_BANK_BYTES` (8 GiB).

    View v of image i is `render_view(pixels, v)[i]`: the cached pixels resized to S as `RadiographCollator` does
    (`unit_images`), augmented by `RadiographAugmentation(chunk, seed=...)` over sequential chunks of `chunk_size`
    images, chunk c of view v seeded by `derive_seed([seed, v, c])` (as a collator seeds a batch), then quantised to
    uint8. So every view is re-created bit-identically from (seed, view index), whatever K.
    """

    def __init__(
        self,
        views: torch.Tensor,
        *,
        augmentation: RadiographAugmentation,
        seed: int,
        mean: Sequence[float],
        std: Sequence[float],
        num_channels: int = 3,
        chunk_size: int = VIEW_CHUNK_SIZE,
    ) -> None:
        if views.dtype != torch.uint8 or views.ndim != 5 or views.shape[2] != 1 or views.shape[-1] != views.shape[-2]:
            raise ValueError(f"views must be uint8 (K, N, 1, S, S), got {views.dtype} {tuple(views.shape)}")
        self.views = views
        self.augmentation = augmentation
        self.seed = int(seed)
        self.chunk_size = int(chunk_size)
        self.mean_values, self.std_values = tuple(float(m) for m in mean), tuple(float(s) for s in std)
        self.num_channels = num_channels
        self.mean, self.std = normalisation_tensors(mean, std, num_channels)

    @property
    def num_views(self) -> int:
        return int(self.views.shape[0])

    @property
    def num_images(self) -> int:
        return int(self.views.shape[1])

    @property
    def size(self) -> int:
        return int(self.views.shape[-1])

    @staticmethod
    def estimated_bytes(num_views: int, num_images: int, size: int) -> int:
        return int(num_views) * int(num_images) * int(size) ** 2

    @classmethod
    def build(
        cls,
        dataset: CachedImageDataset,
        num_views: int,
        *,
        size: int,
        augmentation: RadiographAugmentation,
        seed: int,
        mean: Sequence[float],
        std: Sequence[float],
        num_channels: int = 3,
        chunk_size: int = VIEW_CHUNK_SIZE,
        max_bytes: int = MAX_BANK_BYTES,
    ) -> AugmentedViewBank:
        """The bank of `num_views` views of every image of `dataset` (a `CachedImageDataset`, not a `Subset`:
        pass `harness.distinct_images(train_data)`), indexed like it (its items' `index`)."""
        if not isinstance(dataset, CachedImageDataset):
            raise TypeError(f"a view bank is built from a CachedImageDataset, got {type(dataset).__name__} "
                            "(under a balancing Subset, pass harness.distinct_images(train_data))")
        if num_views < 1:
            raise ValueError(f"a view bank needs at least one view, got num_views={num_views}")
        if chunk_size < 1:
            raise ValueError(f"chunk_size must be positive, got {chunk_size}")
        if not augmentation.training or not augmentation.config.enabled:
            # An identity augmentation would give K identical views: the plain logit cache does that once.
            raise ValueError("the views are augmentations: give an enabled augmentation in training mode "
                             "(without augmentation, use the teacher-logit cache instead)")
        needed = cls.estimated_bytes(num_views, len(dataset), size)
        if needed > max_bytes:
            raise ValueError(
                f"a bank of {num_views} views of {len(dataset)} images at {size} px takes {needed / 2**30:.1f} GiB, "
                f"above the limit of {max_bytes / 2**30:.1f} GiB: use fewer views (--teacher_views) or a smaller "
                "image size")
        start = time.perf_counter()
        views = torch.empty((num_views, len(dataset), 1, size, size), dtype=torch.uint8)
        for view in range(num_views):
            views[view] = render_view(dataset.pixels, view, size=size, augmentation=augmentation, seed=seed,
                                      chunk_size=chunk_size)
        logger.info("built %d augmented views of %d images at %d px (%.1f MiB) in %.1f s", num_views, len(dataset),
                    size, needed / 2**20, time.perf_counter() - start)
        return cls(views, augmentation=augmentation, seed=seed, mean=mean, std=std, num_channels=num_channels,
                   chunk_size=chunk_size)

    def pixel_values(self, view_index: torch.Tensor, sample_index: torch.Tensor) -> torch.Tensor:
        """Model input (B, num_channels, S, S) of view `view_index[b]` of image `sample_index[b]`, normalised as
        `RadiographCollator` normalises (the views are already augmented and at size S)."""
        pixels = self.views[view_index.long(), sample_index.long()]
        return normalise(unit_images(pixels, self.size), self.mean, self.std)

    def describe(self) -> dict[str, Any]:
        """What the bank is, for logs and `training_args.json`: enough to rebuild it with the same data."""
        return {
            "num_views": self.num_views, "num_images": self.num_images, "size": self.size, "seed": self.seed,
            "chunk_size": self.chunk_size, "megabytes": round(self.views.numel() / 2**20, 1),
            "mean": list(self.mean_values), "std": list(self.std_values), "num_channels": self.num_channels,
            "augmentation": asdict(self.augmentation.config),
        }


@torch.no_grad()
def render_view(
    pixels: torch.Tensor,
    view: int,
    *,
    size: int,
    augmentation: RadiographAugmentation,
    seed: int,
    chunk_size: int = VIEW_CHUNK_SIZE,
) -> torch.Tensor:
    """View `view` of cached uint8 images (N, 1, h, w) -> uint8 (N, 1, size, size), see `AugmentedViewBank`."""
    out = torch.empty((len(pixels), 1, size, size), dtype=torch.uint8)
    for chunk, start in enumerate(range(0, len(pixels), chunk_size)):
        images = unit_images(pixels[start:start + chunk_size], size)
        augmented = augmentation(images, seed=derive_seed([seed, view, chunk]))
        # Quantised like the cache the images came from; the teacher's logits are computed on these very pixels.
        out[start:start + chunk_size] = augmented.mul(255.0).round_().clamp_(0, 255).to(torch.uint8)
    return out


class ViewBankCollator:
    """`data_collator` of a view-bank run: one of the bank's K views per sample instead of a fresh augmentation.

    The views are drawn from a generator seeded by `seed` and the batch's sample indices (as
    `RadiographCollator.batch_seed` seeds a batch's augmentation), so the same batch gets the same views whenever
    and wherever it is collated: a resumed run is bit-identical. Returns `pixel_values`, `labels`, `sample_index`
    and `view_index` (the last two key the teacher's view-logit cache; `DistillationTrainer` pops them).
    """

    def __init__(self, bank: AugmentedViewBank, seed: int) -> None:
        self.bank = bank
        self.seed = int(seed)

    def __call__(self, features: Sequence[Mapping[str, Any]]) -> dict[str, torch.Tensor]:
        if not features:
            raise ValueError("cannot collate an empty batch")
        if any("index" not in feature for feature in features):
            raise KeyError("a view-bank batch needs an 'index' in each item (as CachedImageDataset's)")
        sample_index = torch.tensor([int(feature["index"]) for feature in features], dtype=torch.int64)
        if int(sample_index.max()) >= self.bank.num_images or int(sample_index.min()) < 0:
            raise IndexError(f"sample index out of the bank's {self.bank.num_images} images")
        view_index = self.draw_views(sample_index)
        return {
            "pixel_values": self.bank.pixel_values(view_index, sample_index),
            "labels": torch.tensor([int(label_of(feature)) for feature in features], dtype=torch.int64),
            "sample_index": sample_index,
            "view_index": view_index,
        }

    def draw_views(self, sample_index: torch.Tensor) -> torch.Tensor:
        """The view of each sample of a batch: uniform over the K views, seeded by `seed` and the indices."""
        generator = torch.Generator().manual_seed(derive_seed([self.seed, *sample_index.tolist()]))
        return torch.randint(self.bank.num_views, (len(sample_index),), generator=generator)


__all__ = ["MAX_BANK_BYTES", "VIEW_CHUNK_SIZE", "AugmentedViewBank", "ViewBankCollator", "render_view"]

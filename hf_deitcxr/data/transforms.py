"""Cheap input pipeline for CPU training: decode each radiograph once, augment and normalise whole batches.

- `preload_images` / `CachedImageDataset`: every image is decoded, converted to grey and resized to the
  training size exactly once (uint8, 224 px: ~50 KB an image), so no epoch re-decodes a JPEG.
- `RadiographAugmentation`: augmentation of the whole float batch at once, on its device (one kornia warp
  for crop + affine, kornia intensity ops).
- `RadiographCollator`: the `data_collator` that turns cached uint8 images into normalised `pixel_values`.
- `eval_transform_for_pil`: the same evaluation numerics for a single PIL image at inference; they equal the
  saved image processor's (PIL bicubic resize of the grey image, no crop, rescale, normalise).

Radiographs are resized to a square without cropping (aspect ratio not kept), as the data sets were prepared.
"""

from __future__ import annotations

import hashlib
import io
import logging
import math
import os
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence, Sized
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from itertools import islice
from pathlib import Path
from typing import Any

import kornia.augmentation as K
import numpy as np
import torch
import torch.nn.functional as F
from kornia.enhance import adjust_contrast_with_mean_subtraction
from kornia.geometry.transform import warp_affine
from PIL import Image
from torch import nn

from ..image_processing_deit_cxr import to_grey_array

logger = logging.getLogger(__name__)

# Columns kept next to the pixels when present (reports per source, patient-level checks).
DEFAULT_EXTRA_COLUMNS = ("source", "patient_id")
_CACHE_FORMAT_VERSION = 1


# ------------------------------------------------------------------------------------------------------------
# Decode once
# ------------------------------------------------------------------------------------------------------------


def load_grey_resized(image: Image.Image | str | os.PathLike | Mapping[str, Any], size: int) -> np.ndarray:
    """One image -> uint8 (size, size) grey array: greyscale first, then a PIL bicubic resize without crop.

    Accepts a PIL image, a file path or a `datasets` undecoded image dict (`{"bytes", "path"}`). 16-bit and
    float images are min-max scaled to 8 bits exactly as the saved image processor does (`to_grey_array`).
    """
    with _open_image(image) as opened:
        grey = Image.fromarray(to_grey_array(opened)[0])
    if grey.size != (size, size):
        grey = grey.resize((size, size), Image.Resampling.BICUBIC)
    return np.array(grey)  # a writable copy: torch.from_numpy warns on PIL's read-only buffer


def preload_images(
    images: Iterable[Image.Image | str | os.PathLike | Mapping[str, Any]],
    size: int,
    num_workers: int | None = None,
    chunk_size: int = 256,
    length: int | None = None,
) -> torch.Tensor:
    """Decode every image once -> uint8 tensor (N, 1, size, size).

    Pillow releases the GIL while decoding and resizing, so a thread pool uses all cores without pickling
    images to processes. Images are consumed in chunks so undecoded bytes of the whole data set are never held
    at once. When the number of images is known (`length`, or `len(images)`), the result is filled in place
    instead of stacked, halving peak memory.
    """
    if size <= 0:
        raise ValueError(f"size must be positive, got {size}")
    if length is None and isinstance(images, Sized):
        length = len(images)
    workers = num_workers if num_workers is not None else default_num_workers()
    start = time.perf_counter()
    chunks: list[np.ndarray] = []
    filled = 0
    pixels = torch.empty((length, 1, size, size), dtype=torch.uint8) if length is not None else None
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        for chunk in _chunks(iter(images), chunk_size):
            decoded = np.stack(list(pool.map(lambda image: load_grey_resized(image, size), chunk)))
            if pixels is None:
                chunks.append(decoded)
            elif filled + len(decoded) > length:
                raise ValueError(f"more than the announced {length} images")
            else:
                pixels[filled : filled + len(decoded), 0] = torch.from_numpy(decoded)
            filled += len(decoded)
    if pixels is None:
        stacked = np.concatenate(chunks) if chunks else np.empty((0, size, size), dtype=np.uint8)
        pixels = torch.from_numpy(stacked)[:, None]
    elif filled != length:
        raise ValueError(f"{filled} images but {length} announced")
    logger.info("decoded %d images to %d px in %.1f s", filled, size, time.perf_counter() - start)
    return pixels


def default_num_workers() -> int:
    return max(1, min(8, os.cpu_count() or 1))


def _chunks(items: Iterator, chunk_size: int) -> Iterator[list]:
    while chunk := list(islice(items, chunk_size)):
        yield chunk


@contextmanager
def _open_image(source: Image.Image | str | os.PathLike | Mapping[str, Any]) -> Iterator[Image.Image]:
    """A PIL image as is, or one opened from a path / undecoded `datasets` dict and closed afterwards."""
    if isinstance(source, Image.Image):
        yield source
        return
    if isinstance(source, (str, os.PathLike)):
        opened = Image.open(source)
    elif isinstance(source, Mapping) and source.get("bytes") is not None:
        opened = Image.open(io.BytesIO(source["bytes"]))
    elif isinstance(source, Mapping) and source.get("path"):
        opened = Image.open(source["path"])
    else:
        raise TypeError(f"cannot read an image from {type(source).__name__}: {str(source)[:80]}")
    with opened:
        yield opened


class CachedImageDataset(torch.utils.data.Dataset):
    """Decoded, resized uint8 grey images with their labels (and optional extra columns) held in memory.

    `__getitem__` returns `{"pixels": uint8 (1, H, W), "labels": int, "index": int}`; `index` is the position
    in this data set (also through a `torch.utils.data.Subset`), which keys the teacher-logit cache.
    """

    def __init__(
        self,
        pixels: torch.Tensor,
        labels: torch.Tensor | Sequence[int],
        extras: Mapping[str, Sequence[Any]] | None = None,
        label_names: Sequence[str] | None = None,
    ) -> None:
        labels = torch.as_tensor(labels, dtype=torch.int64)
        if pixels.dtype != torch.uint8 or pixels.ndim != 4 or pixels.shape[1] != 1:
            raise ValueError(f"pixels must be uint8 (N, 1, H, W), got {pixels.dtype} {tuple(pixels.shape)}")
        if labels.ndim != 1 or len(labels) != len(pixels):
            raise ValueError(f"{len(pixels)} images but labels of shape {tuple(labels.shape)}")
        extras = {name: list(values) for name, values in (extras or {}).items()}
        for name, values in extras.items():
            if len(values) != len(pixels):
                raise ValueError(f"extra column {name!r} has {len(values)} values for {len(pixels)} images")
        self.pixels, self.labels, self.extras = pixels, labels, extras
        self.label_names = list(label_names) if label_names is not None else None

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return {"pixels": self.pixels[index], "labels": int(self.labels[index]), "index": int(index)}

    @property
    def image_size(self) -> int:
        return int(self.pixels.shape[-1])

    @classmethod
    def from_hf_dataset(
        cls,
        ds,
        size: int,
        image_column: str = "image",
        label_column: str = "label",
        extra_columns: Sequence[str] | None = None,
        num_workers: int | None = None,
        cache_dir: str | os.PathLike | None = None,
    ) -> CachedImageDataset:
        """Decode a `datasets.Dataset` once. `extra_columns` default: those of `source`/`patient_id` present.

        With `cache_dir`, the decoded pixels are saved there keyed by the data set's fingerprint (which
        `datasets` derives from its data files and every transform applied), the image column and the size, so
        a second run with the same data loads them instead of decoding.
        """
        for column in (image_column, label_column):
            if column not in ds.column_names:
                raise ValueError(f"column {column!r} not in the dataset; columns: {ds.column_names}")
        if extra_columns is None:
            extra_columns = [name for name in DEFAULT_EXTRA_COLUMNS if name in ds.column_names]
        plain = ds.with_format(None)  # a custom format (set_transform) would decode images to read a label
        labels = plain[label_column][:]
        if not all(isinstance(label, int) for label in labels):
            raise ValueError(f"column {label_column!r} must hold integer class indices (a ClassLabel feature)")
        extras = {name: plain[name][:] for name in extra_columns}

        cache_file = _cache_file(ds, image_column, size, cache_dir) if cache_dir is not None else None
        pixels = _load_cached_pixels(cache_file, len(ds), size)
        if pixels is None:
            images = _undecoded_images(ds, image_column)
            pixels = preload_images(images, size, num_workers=num_workers, length=len(ds))
            if cache_file is not None:
                _save_cached_pixels(cache_file, pixels)
        label_names = getattr(ds.features[label_column], "names", None)
        return cls(pixels, labels, extras=extras, label_names=label_names)


def _undecoded_images(ds, image_column: str) -> Iterator[Any]:
    """The raw `{"bytes", "path"}` values, so decoding happens in the worker threads, not in `datasets`."""
    from datasets import Image as ImageFeature

    column = ds.select_columns([image_column]).with_format(None)
    if isinstance(column.features[image_column], ImageFeature):
        column = column.cast_column(image_column, ImageFeature(decode=False))
    for batch in column.iter(batch_size=256):
        yield from batch[image_column]


def _cache_file(ds, image_column: str, size: int, cache_dir: str | os.PathLike) -> Path:
    fingerprint = getattr(ds, "_fingerprint", None)
    if not fingerprint:
        raise ValueError("this dataset has no fingerprint to key a pixel cache with; pass cache_dir=None")
    key = f"v{_CACHE_FORMAT_VERSION}|{fingerprint}|{image_column}|{len(ds)}|{size}"
    return Path(cache_dir) / f"pixels-{hashlib.sha256(key.encode()).hexdigest()[:20]}-{size}px.pt"


def _load_cached_pixels(cache_file: Path | None, length: int, size: int) -> torch.Tensor | None:
    if cache_file is None or not cache_file.is_file():
        return None
    pixels = torch.load(cache_file, weights_only=True)
    if not isinstance(pixels, torch.Tensor) or tuple(pixels.shape) != (length, 1, size, size):
        logger.warning("ignoring pixel cache %s: unexpected content", cache_file)
        return None
    logger.info("loaded %d decoded images from %s", length, cache_file)
    return pixels


def _save_cached_pixels(cache_file: Path, pixels: torch.Tensor) -> None:
    # Write then rename, so an interrupted run never leaves a truncated cache behind.
    cache_file.parent.mkdir(parents=True, exist_ok=True)
    partial = cache_file.with_suffix(f".partial-{os.getpid()}")
    torch.save(pixels, partial)
    os.replace(partial, cache_file)


# ------------------------------------------------------------------------------------------------------------
# Batched augmentation
# ------------------------------------------------------------------------------------------------------------


@dataclass
class AugmentationConfig:
    """Random augmentation for radiographs; every operation has its own probability.

    Defaults are mild on purpose: findings are small, low-contrast structures, and the image is already the
    whole field of view (resized, not cropped), so strong crops or distortions would remove or fake pathology.

    `horizontal_flip_p` is 0 by default: chest X-rays have laterality (heart on the left, aortic knob, gastric
    bubble, L/R markers), so a mirrored film is an anatomically implausible image (dextrocardia) rather than a
    harmless variant, and left-sided findings would be taught as right-sided. Enable it for mammography, where
    left and right breasts are mirror images of each other.
    """

    enabled: bool = True
    # Crop and affine are composed into one warp per image (a single interpolation).
    affine_p: float = 0.7
    rotation_degrees: float = 10.0
    translate: float = 0.06  # fraction of the width / height
    scale: tuple[float, float] = (0.9, 1.1)
    random_resized_crop_p: float = 0.3
    random_resized_crop_scale: tuple[float, float] = (0.8, 1.0)  # fraction of the area kept
    random_resized_crop_ratio: tuple[float, float] = (0.9, 1 / 0.9)  # near 1: no further aspect distortion
    brightness: float = 0.1  # added offset in [-brightness, brightness] on the [0, 1] scale
    brightness_p: float = 0.5
    contrast: float = 0.15  # contrast factor in [1 - contrast, 1 + contrast] about the image mean
    contrast_p: float = 0.5
    gaussian_noise_std: float = 0.02  # on the [0, 1] scale: ~5 grey levels, like quantum mottle
    gaussian_noise_p: float = 0.3
    horizontal_flip_p: float = 0.0

    def __post_init__(self) -> None:
        for name, value in asdict(self).items():
            if name.endswith("_p") and not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be a probability in [0, 1], got {value}")
        if not 0.0 <= self.brightness < 1.0 or not 0.0 <= self.contrast < 1.0:
            raise ValueError("brightness and contrast must be in [0, 1)")
        if self.gaussian_noise_std < 0 or self.rotation_degrees < 0 or not 0.0 <= self.translate < 1.0:
            raise ValueError(
                "gaussian_noise_std, rotation_degrees and translate must be non-negative (translate < 1)"
            )
        crop_low, crop_high = self.random_resized_crop_scale
        if not 0.0 < crop_low <= crop_high <= 1.0:
            raise ValueError(f"random_resized_crop_scale must satisfy 0 < low <= high <= 1, got {crop_low, crop_high}")
        for name in ("scale", "random_resized_crop_ratio"):
            low, high = getattr(self, name)
            if not 0.0 < low <= high:
                raise ValueError(f"{name} must satisfy 0 < low <= high, got {(low, high)}")


class _ContrastAboutMean(K.RandomContrast):
    """Contrast stretched about each image's mean (as PIL/torchvision do).

    kornia's `RandomContrast` multiplies intensities about 0, which is a gain (a brightness change) rather
    than a contrast change.
    """

    def apply_transform(self, input, params, flags, transform=None) -> torch.Tensor:
        factor = params["contrast_factor"].to(device=input.device, dtype=input.dtype)
        return adjust_contrast_with_mean_subtraction(input, factor)


class RandomRadiographGeometry(nn.Module):
    """Random resized crop, then rotation / translation / scale, composed into ONE warp per image.

    kornia's `RandomResizedCrop` followed by `RandomAffine` would resample an image twice (each bilinear
    interpolation blurs fine detail) and warp the whole batch whatever `p`; here only the selected images are
    warped, once (`kornia.geometry.transform.warp_affine`), with a black border. Parameters are drawn on the CPU
    from the global torch RNG, so the result does not depend on the device.
    """

    def __init__(self, config: AugmentationConfig) -> None:
        super().__init__()
        self.config = config

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        batch, _, height, width = images.shape
        c = self.config
        crop_on = torch.rand(batch) < c.random_resized_crop_p
        affine_on = torch.rand(batch) < c.affine_p
        identity = torch.eye(3).expand(batch, 3, 3)
        crop = torch.where(crop_on[:, None, None], self._crop_matrices(batch, height, width), identity)
        affine = torch.where(affine_on[:, None, None], self._affine_matrices(batch, height, width), identity)
        selected = torch.nonzero(crop_on | affine_on).flatten()
        if len(selected) == 0:
            return images
        matrices = (affine @ crop)[selected, :2].to(device=images.device, dtype=images.dtype)
        selected = selected.to(images.device)
        warped = warp_affine(images[selected], matrices, dsize=(height, width), mode="bilinear",
                             padding_mode="zeros", align_corners=True)
        return images.index_copy(0, selected, warped)

    def _crop_matrices(self, batch: int, height: int, width: int) -> torch.Tensor:
        """Source -> output pixel maps that blow a random box (area fraction, aspect ratio) up to the image."""
        c = self.config
        area = _uniform(batch, *c.random_resized_crop_scale)
        log_ratio = _uniform(batch, *(math.log(r) for r in c.random_resized_crop_ratio))
        box_w = torch.sqrt(area * torch.exp(log_ratio)).clamp(max=1.0)  # fractions of the width / height
        box_h = torch.sqrt(area / torch.exp(log_ratio)).clamp(max=1.0)
        centre = _centre(height, width)
        # The box lies inside the image: its centre moves at most (1 - box size) / 2 from the image centre.
        box_cx = centre[0] + (torch.rand(batch) - 0.5) * (1 - box_w) * (width - 1)
        box_cy = centre[1] + (torch.rand(batch) - 0.5) * (1 - box_h) * (height - 1)
        zoom_x, zoom_y = 1 / box_w, 1 / box_h
        matrices = torch.zeros(batch, 3, 3)
        matrices[:, 0, 0], matrices[:, 1, 1], matrices[:, 2, 2] = zoom_x, zoom_y, 1.0
        matrices[:, 0, 2] = centre[0] - zoom_x * box_cx
        matrices[:, 1, 2] = centre[1] - zoom_y * box_cy
        return matrices

    def _affine_matrices(self, batch: int, height: int, width: int) -> torch.Tensor:
        """Rotation and scale about the image centre, then a translation (fractions of width / height)."""
        c = self.config
        angle = torch.deg2rad(_uniform(batch, -c.rotation_degrees, c.rotation_degrees))
        scale = _uniform(batch, *c.scale)
        shift_x = _uniform(batch, -c.translate, c.translate) * width
        shift_y = _uniform(batch, -c.translate, c.translate) * height
        cos, sin = torch.cos(angle) * scale, torch.sin(angle) * scale
        centre = _centre(height, width)
        matrices = torch.zeros(batch, 3, 3)
        matrices[:, 0, 0], matrices[:, 0, 1], matrices[:, 1, 0], matrices[:, 1, 1] = cos, -sin, sin, cos
        matrices[:, 0, 2] = centre[0] + shift_x - (cos * centre[0] - sin * centre[1])
        matrices[:, 1, 2] = centre[1] + shift_y - (sin * centre[0] + cos * centre[1])
        matrices[:, 2, 2] = 1.0
        return matrices


def _uniform(batch: int, low: float, high: float) -> torch.Tensor:
    return low + (high - low) * torch.rand(batch)


def _centre(height: int, width: int) -> tuple[float, float]:
    # Pixel centres sit at 0 .. size - 1 (align_corners=True), so the image centre is at (size - 1) / 2.
    return (width - 1) / 2, (height - 1) / 2


class RadiographAugmentation(nn.Module):
    """Batched augmentation of float images in [0, 1], (B, 1, H, W) or (B, 3, H, W), on any device.

    Order: geometry (random resized crop + affine, one warp) -> horizontal flip -> brightness -> contrast ->
    Gaussian noise (kornia), then a clamp to [0, 1]. Identity when `config.enabled` is false or the module is
    in eval mode. Randomness comes from the global torch RNG (so `torch.manual_seed` makes it reproducible);
    `forward(images, seed=...)` draws from a private RNG state instead, leaving the global one untouched.
    """

    def __init__(self, config: AugmentationConfig | None = None) -> None:
        super().__init__()
        self.config = config or AugmentationConfig()
        c = self.config
        self.geometry = RandomRadiographGeometry(c)
        self.flip = K.RandomHorizontalFlip(p=c.horizontal_flip_p)
        self.intensity = nn.ModuleList([
            K.RandomBrightness(brightness=(1 - c.brightness, 1 + c.brightness), p=c.brightness_p),
            _ContrastAboutMean(contrast=(1 - c.contrast, 1 + c.contrast), p=c.contrast_p),
            K.RandomGaussianNoise(mean=0.0, std=c.gaussian_noise_std, p=c.gaussian_noise_p),
        ])

    def forward(self, images: torch.Tensor, seed: int | None = None) -> torch.Tensor:
        if images.ndim != 4 or images.shape[1] not in (1, 3) or not images.is_floating_point():
            found = f"{images.dtype} {tuple(images.shape)}"
            raise ValueError(f"expected float images (B, 1|3, H, W), got {found}")
        if not self.config.enabled or not self.training or images.shape[0] == 0:
            return images
        if seed is None:
            return self._augment(images)
        devices = [images.device] if images.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(seed)
            return self._augment(images)

    def _augment(self, images: torch.Tensor) -> torch.Tensor:
        c = self.config
        if c.random_resized_crop_p > 0 or c.affine_p > 0:
            images = self.geometry(images)
        if c.horizontal_flip_p > 0:
            images = self.flip(images)
        probabilities = (c.brightness_p, c.contrast_p, c.gaussian_noise_p)
        for step, probability in zip(self.intensity, probabilities, strict=True):
            if probability > 0:
                images = step(images)
        # Out of place: with every probability at 0 `images` is still the caller's tensor.
        return images.clamp(0.0, 1.0)


# ------------------------------------------------------------------------------------------------------------
# Collation and normalisation
# ------------------------------------------------------------------------------------------------------------


class RadiographCollator:
    """`data_collator` for `CachedImageDataset` items: uint8 grey images -> normalised model input.

    Steps, on the whole batch: stack -> float [0, 1] -> resize to `size` if the cache has another size
    (antialiased bicubic) -> augmentation (training collator only) -> normalise with mean/std ->
    `num_channels` channels (the grey channel replicated to 3 for ImageNet-style models; augmenting before
    replication is 3x cheaper and keeps the channels identical). Returns only `pixel_values` and `labels`
    (plus `sample_index` when `return_indices`), since `Trainer` passes every key to the model.
    """

    def __init__(
        self,
        size: int,
        mean: Sequence[float],
        std: Sequence[float],
        num_channels: int = 3,
        augmentation: Callable[[torch.Tensor], torch.Tensor] | None = None,
        return_indices: bool = False,
    ) -> None:
        self.size = int(size)
        self.mean, self.std = _normalisation_tensors(mean, std, num_channels)
        self.num_channels = num_channels
        self.augmentation = augmentation
        self.return_indices = return_indices

    def __call__(self, features: Sequence[Mapping[str, Any]]) -> dict[str, torch.Tensor]:
        if not features:
            raise ValueError("cannot collate an empty batch")
        pixels = torch.stack([_as_grey_tensor(feature["pixels"]) for feature in features])
        batch = {
            "pixel_values": self.transform(pixels),
            "labels": torch.tensor([int(_label_of(feature)) for feature in features], dtype=torch.int64),
        }
        if self.return_indices:
            if any("index" not in feature for feature in features):
                raise KeyError("return_indices=True needs an 'index' in each item (as CachedImageDataset's)")
            indices = [int(feature["index"]) for feature in features]
            batch["sample_index"] = torch.tensor(indices, dtype=torch.int64)
        return batch

    def transform(self, pixels: torch.Tensor) -> torch.Tensor:
        """uint8 (B, 1, h, w) -> float32 (B, num_channels, size, size), augmented if the collator augments."""
        images = pixels.to(torch.float32).div_(255.0)
        if images.shape[-2:] != (self.size, self.size):
            images = F.interpolate(images, size=(self.size, self.size), mode="bicubic", antialias=True,
                                   align_corners=False).clamp_(0.0, 1.0)
        if self.augmentation is not None:
            images = self.augmentation(images)
        return _normalise(images, self.mean.to(images.device), self.std.to(images.device))


def eval_transform_for_pil(
    image: Image.Image,
    size: int,
    mean: Sequence[float],
    std: Sequence[float],
    num_channels: int = 3,
) -> torch.Tensor:
    """One PIL image -> float32 (1, num_channels, size, size), a batch of one for `model(pixel_values=...)`.

    Grey conversion, PIL bicubic resize to size x size (no crop), rescale and normalisation: the evaluation
    collator's numerics for images cached at `size`, and the saved image processor's.
    """
    mean_t, std_t = _normalisation_tensors(mean, std, num_channels)
    pixels = torch.from_numpy(load_grey_resized(image, size))[None, None]
    return _normalise(pixels.to(torch.float32).div_(255.0), mean_t, std_t)


def normalization_from_image_processor(processor) -> tuple[tuple[float, ...], tuple[float, ...], int]:
    """(mean, std, size) of a transformers image processor; `size` is the model's input size.

    That is `crop_size` when the processor centre-crops (stock DeiT: resize 256, crop 224), else `size`'s
    height (or shortest edge). Works with `size` given as a dict, a `SizeDict` or an int.
    """
    mean, std = getattr(processor, "image_mean", None), getattr(processor, "image_std", None)
    if mean is None or std is None:
        raise ValueError(f"{type(processor).__name__} has no image_mean/image_std")
    mean = (float(mean),) if isinstance(mean, (int, float)) else tuple(float(m) for m in mean)
    std = (float(std),) if isinstance(std, (int, float)) else tuple(float(s) for s in std)
    crops = getattr(processor, "do_center_crop", False) and getattr(processor, "crop_size", None)
    size = _edge_of(processor.crop_size) if crops else _edge_of(getattr(processor, "size", None))
    if size is None:
        name = type(processor).__name__
        raise ValueError(f"cannot read an input size from {name} (size={getattr(processor, 'size', None)!r})")
    return mean, std, size


def _edge_of(size) -> int | None:
    if size is None:
        return None
    if isinstance(size, int):
        return size
    for key in ("height", "shortest_edge"):
        value = size.get(key) if isinstance(size, Mapping) else getattr(size, key, None)
        if value:
            return int(value)
    return None


def _normalisation_tensors(
    mean: Sequence[float], std: Sequence[float], num_channels: int
) -> tuple[torch.Tensor, torch.Tensor]:
    if num_channels not in (1, 3):
        raise ValueError(f"num_channels must be 1 or 3, got {num_channels}")
    mean_t = torch.as_tensor(mean, dtype=torch.float32).flatten()
    std_t = torch.as_tensor(std, dtype=torch.float32).flatten()
    if len(mean_t) != len(std_t) or len(mean_t) not in (1, num_channels):
        raise ValueError(f"mean/std of length {len(mean_t)}/{len(std_t)} do not fit {num_channels} channels")
    if bool((std_t <= 0).any()):
        raise ValueError(f"std must be positive, got {std_t.tolist()}")
    # (1, C, 1, 1) statistics; `_normalise` replicates a grey (B, 1, H, W) batch to C channels with them.
    return mean_t.expand(num_channels).reshape(1, -1, 1, 1), std_t.expand(num_channels).reshape(1, -1, 1, 1)


def _normalise(images: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
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


def _label_of(feature: Mapping[str, Any]) -> int:
    if "labels" in feature:
        return feature["labels"]
    if "label" in feature:
        return feature["label"]
    raise KeyError(f"batch item has no 'labels' (keys: {sorted(feature)})")


__all__ = [
    "AugmentationConfig",
    "CachedImageDataset",
    "RadiographAugmentation",
    "RadiographCollator",
    "eval_transform_for_pil",
    "load_grey_resized",
    "normalization_from_image_processor",
    "preload_images",
]

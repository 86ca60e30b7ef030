"""Processing augmentation: random acquisition/processing histories of the 8-bit radiograph, applied *before* the
saved preprocessing (border removal, resize, intensity normalisation), as other sites' pipelines change an image
before any model sees it.

The batch augmentation (`data.augmentation`) acts on the already preprocessed training pixels, so a CLAHE, a
clipped brightness or a collimation change of the original image never reaches training; the preprocessing then
undoes what it can (a global equalisation undoes gamma) and leaves the rest (local equalisation, saturation, a
different field of view) to the model. Here each training image gets `num_variants` extra versions, each the image
after a random chain of `data.acquisition_ops` changes and then the run's own preprocessing, decoded once like the
original (and cached on disk with it). Variant v of image i is drawn from `numpy.random.default_rng([seed, v, i])`,
so it is the same in every stage, process and run with that seed, whatever the thread order.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass

import numpy as np

from . import acquisition_ops as ops
from .image_cache import CachedImageDataset

# The blur sigma is given in pixels of a 224 px image and scales with the image's side.
REFERENCE_SIDE = 224


@dataclass(frozen=True)
class ProcessingAugmentationConfig:
    """Each change with its own probability and parameter range (uniform; gamma log-uniform).

    Order of a chain: framing (a border crop or a letterbox) -> resampling history -> blur -> gamma -> contrast ->
    brightness -> global or local (CLAHE) equalisation, at most one -> JPEG re-encoding. Contrast and brightness clip
    at 0 and 255 as an exporter does, which no later normalisation can undo. The ranges cover those of the audit's
    probe (`audit.perturbations`), which therefore measures invariance within the trained family, not beyond it.
    """

    border_crop_p: float = 0.25
    border_crop: tuple[float, float] = (0.02, 0.12)  # fraction cut off every side
    letterbox_p: float = 0.1
    letterbox: tuple[float, float] = (0.03, 0.12)  # black band height, fraction of the image height
    resample_p: float = 0.2
    resample: tuple[float, float] = (0.25, 0.8)  # fraction of the side it goes down to
    blur_p: float = 0.2
    blur_sigma: tuple[float, float] = (0.3, 1.5)
    gamma_p: float = 0.3
    gamma: tuple[float, float] = (0.6, 1.6)
    contrast_p: float = 0.3
    contrast: tuple[float, float] = (0.7, 1.4)
    brightness_p: float = 0.3
    brightness: tuple[float, float] = (0.8, 1.2)
    equalise_p: float = 0.15
    clahe_p: float = 0.25
    clahe_clip_limit: tuple[float, float] = (1.0, 4.0)
    clahe_grids: tuple[int, ...] = (4, 8, 16)
    jpeg_p: float = 0.2
    jpeg_quality: tuple[int, int] = (20, 90)

    def __post_init__(self) -> None:
        for name, value in asdict(self).items():
            if name.endswith("_p") and not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be a probability in [0, 1], got {value}")
        if self.border_crop_p + self.letterbox_p > 1.0 or self.equalise_p + self.clahe_p > 1.0:
            raise ValueError("border_crop_p + letterbox_p and equalise_p + clahe_p must each be at most 1 "
                             "(each pair is one choice)")
        for name in ("border_crop", "letterbox"):
            low, high = getattr(self, name)
            if not 0.0 <= low <= high < 0.3:
                raise ValueError(f"{name} must satisfy 0 <= low <= high < 0.3, got {(low, high)}")
        for name in ("resample", "blur_sigma", "gamma", "contrast", "brightness", "clahe_clip_limit"):
            low, high = getattr(self, name)
            if not 0.0 < low <= high:
                raise ValueError(f"{name} must satisfy 0 < low <= high, got {(low, high)}")
        if self.resample[1] > 1.0:
            raise ValueError(f"resample fractions must be at most 1, got {self.resample}")
        low, high = self.jpeg_quality
        if not 1 <= low <= high <= 95:
            raise ValueError(f"jpeg_quality must satisfy 1 <= low <= high <= 95, got {(low, high)}")
        if not self.clahe_grids or any(int(grid) < 1 for grid in self.clahe_grids):
            raise ValueError(f"clahe_grids must be positive tile counts, got {self.clahe_grids}")


def random_processing(grey: np.ndarray, rng: np.random.Generator,
                      config: ProcessingAugmentationConfig | None = None) -> np.ndarray:
    """uint8 (H, W) -> uint8 (H, W): one random processing history (see `ProcessingAugmentationConfig`)."""
    c = config or ProcessingAugmentationConfig()
    grey = np.ascontiguousarray(grey, dtype=np.uint8)
    framing = rng.random()
    if framing < c.border_crop_p:
        grey = ops.on_pil(lambda image: ops.border_crop(image, rng.uniform(*c.border_crop)))(grey)
    elif framing < c.border_crop_p + c.letterbox_p:
        grey = ops.on_pil(lambda image: ops.letterbox(image, rng.uniform(*c.letterbox)))(grey)
    if rng.random() < c.resample_p:
        grey = ops.on_pil(lambda image: ops.resample(image, rng.uniform(*c.resample)))(grey)
    if rng.random() < c.blur_p:
        sigma = rng.uniform(*c.blur_sigma) * min(grey.shape) / REFERENCE_SIDE
        grey = ops.on_pil(lambda image: ops.blur(image, sigma))(grey)
    if rng.random() < c.gamma_p:
        grey = ops.gamma(grey, math.exp(rng.uniform(math.log(c.gamma[0]), math.log(c.gamma[1]))))
    if rng.random() < c.contrast_p:
        grey = ops.on_pil(lambda image: ops.contrast(image, rng.uniform(*c.contrast)))(grey)
    if rng.random() < c.brightness_p:
        grey = ops.on_pil(lambda image: ops.brightness(image, rng.uniform(*c.brightness)))(grey)
    equalisation = rng.random()
    if equalisation < c.equalise_p:
        grey = ops.on_pil(ops.equalise)(grey)
    elif equalisation < c.equalise_p + c.clahe_p:
        grid = int(rng.choice(c.clahe_grids))
        grey = ops.clahe(grey, clip_limit=float(rng.uniform(*c.clahe_clip_limit)), grid=grid)
    if rng.random() < c.jpeg_p:
        quality = int(rng.integers(c.jpeg_quality[0], c.jpeg_quality[1] + 1))
        grey = ops.on_pil(lambda image: ops.jpeg(image, quality))(grey)
    return grey


@dataclass(frozen=True)
class SeededProcessingVariant:
    """Variant `variant` (>= 1; 0 is the unchanged image) of every image: `self(index, grey)` is image `index` after
    its own random history, drawn from `default_rng([seed, variant, index])`."""

    config: ProcessingAugmentationConfig
    seed: int
    variant: int

    def __post_init__(self) -> None:
        if self.seed < 0 or self.variant < 1:
            raise ValueError(f"seed must be >= 0 and variant >= 1, got seed={self.seed}, variant={self.variant}")

    def __call__(self, index: int, grey: np.ndarray) -> np.ndarray:
        return random_processing(grey, np.random.default_rng([self.seed, self.variant, int(index)]), self.config)

    @property
    def cache_key(self) -> str:
        """Identifies the variant's pixels in a pixel cache: the config, the seed and the variant index."""
        text = json.dumps({"config": asdict(self.config), "seed": self.seed, "variant": self.variant}, sort_keys=True)
        return "processing-" + hashlib.sha256(text.encode()).hexdigest()[:16]


def with_processing_variants(dataset: CachedImageDataset, split, num_variants: int, *, seed: int,
                             config: ProcessingAugmentationConfig | None = None, **cache_options) -> CachedImageDataset:
    """`dataset` (the decoded `split`) followed by `num_variants` processed variants of every image of `split`,
    decoded with the same `cache_options` (`size`, `cache_dir`, `preprocessing`, ... of
    `CachedImageDataset.from_hf_dataset`). Labels and extra columns (source, patient) repeat with the images."""
    if num_variants < 0:
        raise ValueError(f"num_variants must be >= 0, got {num_variants}")
    config = config or ProcessingAugmentationConfig()
    variants = [
        CachedImageDataset.from_hf_dataset(split, perturbation=SeededProcessingVariant(config, seed, variant),
                                           **cache_options)
        for variant in range(1, num_variants + 1)
    ]
    return CachedImageDataset.concatenate([dataset, *variants]) if variants else dataset


__all__ = [
    "ProcessingAugmentationConfig", "SeededProcessingVariant", "random_processing",
    "with_processing_variants",
]

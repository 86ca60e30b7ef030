"""Batched radiograph augmentation: the whole float batch at once, on its device (one kornia warp for crop +
affine, kornia intensity ops), plus optional acquisition/processing changes (resampling history, blur, gamma,
histogram-equalisation strength) that imitate other sites' pipelines rather than other poses."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace

import kornia.augmentation as K
import torch
import torch.nn.functional as F
from kornia.enhance import adjust_contrast_with_mean_subtraction, equalize
from kornia.filters import gaussian_blur2d
from kornia.geometry.transform import warp_affine
from torch import nn


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
    # Acquisition/processing changes, off by default (`acquisition_augmentation()` turns them on). Sizes are for
    # the training resolution: the blur sigma is in pixels of a 224 px image and scales with the input size.
    resample_p: float = 0.0
    resample_scale: tuple[float, float] = (0.35, 0.8)  # down to this fraction of the side, then back up
    blur_p: float = 0.0
    blur_sigma: tuple[float, float] = (0.3, 1.5)
    gamma_p: float = 0.0
    gamma: tuple[float, float] = (0.6, 1.6)  # drawn log-uniformly
    equalize_p: float = 0.0
    equalize_strength: tuple[float, float] = (0.3, 1.0)  # blend weight of the histogram-equalised image

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
        for name in ("resample_scale", "equalize_strength"):
            low, high = getattr(self, name)
            if not 0.0 < low <= high <= 1.0:
                raise ValueError(f"{name} must satisfy 0 < low <= high <= 1, got {(low, high)}")
        for name in ("scale", "random_resized_crop_ratio", "blur_sigma", "gamma"):
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


def acquisition_augmentation(probability: float = 0.3, base: AugmentationConfig | None = None,
                             **overrides) -> AugmentationConfig:
    """`base` (default: the default augmentation) plus every acquisition/processing change at `probability` (the
    shortcut remedy of issue 14: intensity and resampling history vary between sites; geometry alone does not teach
    that); `overrides` set any field last."""
    on = {f"{name}_p": probability for name in ("resample", "blur", "gamma", "equalize")}
    return replace(base or AugmentationConfig(), **{**on, **overrides})


def framing_augmentation(config: AugmentationConfig | None = None) -> AugmentationConfig:
    """`config` (default: the default augmentation) with wider random crops, more often: down to 60 % of the area
    (a side of 0.77, a zoom of up to 1.29), with probability 0.5. Imitates tighter collimation or a tighter export
    than the training sites' (the audit's border crop of 8 % a side is a zoom of 1.19, beyond the default range).
    The crop draws the same random numbers at any probability, so the rest of the random stream is unchanged."""
    return replace(config or AugmentationConfig(), random_resized_crop_p=0.5, random_resized_crop_scale=(0.6, 1.0))


def low_resolution_augmentation() -> AugmentationConfig:
    """The default augmentation sized for a 64 px input (the CPU recipe's): geometry about half as strong (rotation
    5 degrees, translation 3 %, i.e. 2 px, scale 0.95-1.05, affine on half the images, crops keeping 85-100 % of the
    area), the same brightness / contrast, and no Gaussian noise: at 64 px a pixel averages ~12 pixels of a 224 px
    image, so the quantum mottle that noise imitates is already averaged away. No flip (chest laterality)."""
    return AugmentationConfig(
        affine_p=0.5, rotation_degrees=5.0, translate=0.03, scale=(0.95, 1.05),
        random_resized_crop_p=0.3, random_resized_crop_scale=(0.85, 1.0),
        brightness=0.1, brightness_p=0.5, contrast=0.15, contrast_p=0.5,
        gaussian_noise_p=0.0, horizontal_flip_p=0.0,
    )


# `--augmentation_preset`: the base augmentation, before `--acquisition_augment` / `--framing_augment` compose on top.
AUGMENTATION_PRESETS = {"default": AugmentationConfig, "low_resolution": low_resolution_augmentation}


def augmentation_preset(name: str) -> AugmentationConfig:
    """The `AugmentationConfig` of a preset name (`AUGMENTATION_PRESETS`); ValueError on an unknown one."""
    if name not in AUGMENTATION_PRESETS:
        raise ValueError(f"unknown augmentation preset {name!r}; presets: {sorted(AUGMENTATION_PRESETS)}")
    return AUGMENTATION_PRESETS[name]()


class RandomAcquisition(nn.Module):
    """Resampling history -> blur -> gamma -> partial histogram equalisation, each on its own random subset of
    the batch. Parameters come from the global torch RNG on the CPU, like the geometry's."""

    def __init__(self, config: AugmentationConfig) -> None:
        super().__init__()
        self.config = config

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        c = self.config
        for probability, step in ((c.resample_p, self._resample), (c.blur_p, self._blur), (c.gamma_p, self._gamma),
                                  (c.equalize_p, self._equalize)):
            if probability > 0:
                selected = torch.nonzero(torch.rand(images.shape[0]) < probability).flatten()
                if len(selected):
                    changed = step(images[selected.to(images.device)])
                    images = images.index_copy(0, selected.to(images.device), changed)
        return images

    def _resample(self, images: torch.Tensor) -> torch.Tensor:
        """Each image down to a random fraction of its side (area filter), then back up (bilinear)."""
        height, width = images.shape[-2:]
        fractions = _uniform(images.shape[0], *self.config.resample_scale)
        out = []
        for image, fraction in zip(images, fractions.tolist(), strict=True):
            small = F.interpolate(image[None], size=(max(2, round(height * fraction)), max(2, round(width * fraction))),
                                  mode="area")
            out.append(F.interpolate(small, size=(height, width), mode="bilinear", align_corners=False))
        return torch.cat(out)

    def _blur(self, images: torch.Tensor) -> torch.Tensor:
        sigma = _uniform(images.shape[0], *self.config.blur_sigma) * images.shape[-1] / 224
        radius = max(1, math.ceil(3 * float(sigma.max())))
        sigmas = sigma.clamp(min=1e-3)[:, None].expand(-1, 2).to(device=images.device, dtype=images.dtype)
        return gaussian_blur2d(images, (2 * radius + 1, 2 * radius + 1), sigmas)

    def _gamma(self, images: torch.Tensor) -> torch.Tensor:
        low, high = (math.log(g) for g in self.config.gamma)
        exponent = torch.exp(_uniform(images.shape[0], low, high)).to(device=images.device, dtype=images.dtype)
        return images.clamp(min=0.0) ** exponent[:, None, None, None]

    def _equalize(self, images: torch.Tensor) -> torch.Tensor:
        weight = _uniform(images.shape[0], *self.config.equalize_strength).to(device=images.device, dtype=images.dtype)
        weight = weight[:, None, None, None]
        return (1 - weight) * images + weight * equalize(images.clamp(0.0, 1.0))


class RadiographAugmentation(nn.Module):
    """Batched augmentation of float images in [0, 1], (B, 1, H, W) or (B, 3, H, W), on any device.

    Order: geometry (random resized crop + affine, one warp) -> horizontal flip -> acquisition changes (if on) ->
    brightness -> contrast -> Gaussian noise (kornia), then a clamp to [0, 1]. Identity when `config.enabled` is
    false or the module is in eval mode. Randomness comes from the global torch RNG (so `torch.manual_seed` makes it
    reproducible);
    `forward(images, seed=...)` draws from a private RNG state instead, leaving the global one untouched.
    """

    def __init__(self, config: AugmentationConfig | None = None) -> None:
        super().__init__()
        self.config = config or AugmentationConfig()
        c = self.config
        self.geometry = RandomRadiographGeometry(c)
        self.flip = K.RandomHorizontalFlip(p=c.horizontal_flip_p)
        self.acquisition = RandomAcquisition(c)
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
        images = self.acquisition(images)  # draws nothing from the RNG when every acquisition probability is 0
        probabilities = (c.brightness_p, c.contrast_p, c.gaussian_noise_p)
        for step, probability in zip(self.intensity, probabilities, strict=True):
            if probability > 0:
                images = step(images)
        # Out of place: with every probability at 0 `images` is still the caller's tensor.
        return images.clamp(0.0, 1.0)


__all__ = [
    "AUGMENTATION_PRESETS", "AugmentationConfig", "RadiographAugmentation", "RandomAcquisition",
    "RandomRadiographGeometry", "acquisition_augmentation", "augmentation_preset", "framing_augmentation",
    "low_resolution_augmentation",
]

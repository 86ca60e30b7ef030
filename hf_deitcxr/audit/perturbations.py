"""Acquisition and processing changes a radiograph can plausibly undergo, applied to the 8-bit grey image.

Each `Perturbation` maps a uint8 (H, W) grey array to another of the same shape; the model's own image processor
runs afterwards, so a perturbation probes the model, not a re-implementation of its preprocessing. Library
operations throughout: PIL (`ImageOps.equalize`, `ImageEnhance`, `ImageFilter.GaussianBlur`, JPEG) and kornia
(`equalize_clahe`).
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import numpy as np
from PIL import Image, ImageEnhance, ImageFilter, ImageOps

# CLAHE as many PACS viewers and exporters apply it: the image processor's own (kornia) implementation, so the probe
# and the `clahe` intensity normalisation remedy are the same operation.
from ..models.deit_cxr.image_processing_deit_cxr import clahe


@dataclass(frozen=True)
class Perturbation:
    """A named change to a uint8 grey image (`apply`), with the one-line description the report shows."""

    name: str
    description: str
    apply: Callable[[np.ndarray], np.ndarray]


def _pil(function: Callable[[Image.Image], Image.Image]) -> Callable[[np.ndarray], np.ndarray]:
    def apply(grey: np.ndarray) -> np.ndarray:
        return np.asarray(function(Image.fromarray(grey, mode="L")), dtype=np.uint8)

    return apply


def equalise(image: Image.Image) -> Image.Image:
    return ImageOps.equalize(image)


def gamma(grey: np.ndarray, value: float) -> np.ndarray:
    table = np.round(255.0 * (np.arange(256) / 255.0) ** value).astype(np.uint8)
    return table[grey]


def contrast(image: Image.Image, factor: float) -> Image.Image:
    return ImageEnhance.Contrast(image).enhance(factor)


def brightness(image: Image.Image, factor: float) -> Image.Image:
    return ImageEnhance.Brightness(image).enhance(factor)


def resample(image: Image.Image, factor: float) -> Image.Image:
    """Down-sample by `factor` (box filter, as a thumbnail export would) and back up (bicubic)."""
    small = (max(1, round(image.width * factor)), max(1, round(image.height * factor)))
    return image.resize(small, Image.Resampling.BOX).resize(image.size, Image.Resampling.BICUBIC)


def blur(image: Image.Image, sigma: float) -> Image.Image:
    return image.filter(ImageFilter.GaussianBlur(sigma))


def jpeg(image: Image.Image, quality: int) -> Image.Image:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=quality)
    buffer.seek(0)
    with Image.open(buffer) as decoded:
        return decoded.convert("L")


def border_crop(image: Image.Image, fraction: float) -> Image.Image:
    """Cut `fraction` of the width/height off every side (collimation, a tighter export) and resize back."""
    dx, dy = round(image.width * fraction), round(image.height * fraction)
    box = (dx, dy, image.width - dx, image.height - dy)
    return image.crop(box).resize(image.size, Image.Resampling.BICUBIC)


def letterbox(image: Image.Image, fraction: float) -> Image.Image:
    """Shrink the image and pad it with black bands of `fraction` of the height at top and bottom."""
    band = round(image.height * fraction)
    canvas = Image.new("L", image.size, 0)
    canvas.paste(image.resize((image.width, image.height - 2 * band), Image.Resampling.BICUBIC), (0, band))
    return canvas


def default_perturbations() -> tuple[Perturbation, ...]:
    """The probe's perturbations, mild to strong, in report order."""
    return (
        Perturbation("hist_equalise", "global histogram equalisation (PIL)", _pil(equalise)),
        Perturbation("clahe", "CLAHE, clip 2, 8x8 tiles (kornia)", partial(clahe, clip_limit=2.0, grid=8)),
        Perturbation("gamma_0.6", "gamma 0.6 (brighter mid-tones)", partial(gamma, value=0.6)),
        Perturbation("gamma_1.6", "gamma 1.6 (darker mid-tones)", partial(gamma, value=1.6)),
        Perturbation("contrast_0.7", "contrast x0.7 about the mean", _pil(partial(contrast, factor=0.7))),
        Perturbation("contrast_1.3", "contrast x1.3 about the mean", _pil(partial(contrast, factor=1.3))),
        Perturbation("brightness_0.85", "brightness x0.85", _pil(partial(brightness, factor=0.85))),
        Perturbation("brightness_1.15", "brightness x1.15", _pil(partial(brightness, factor=1.15))),
        Perturbation("resample_0.25", "down to 1/4 size (box) and back up (bicubic)",
                     _pil(partial(resample, factor=0.25))),
        Perturbation("blur_1.5", "Gaussian blur, sigma 1.5 px", _pil(partial(blur, sigma=1.5))),
        Perturbation("jpeg_q50", "JPEG re-encoding, quality 50", _pil(partial(jpeg, quality=50))),
        Perturbation("jpeg_q20", "JPEG re-encoding, quality 20", _pil(partial(jpeg, quality=20))),
        Perturbation("border_crop_8%", "8 % cut off every border, resized back",
                     _pil(partial(border_crop, fraction=0.08))),
        Perturbation("letterbox_10%", "squeezed between black bands of 10 % of the height",
                     _pil(partial(letterbox, fraction=0.1))),
    )


__all__ = ["Perturbation", "default_perturbations"]

"""Acquisition and processing changes of an 8-bit grey radiograph, each uint8 (H, W) -> uint8 (H, W).

One implementation of each change, shared by the shortcut audit's perturbation probe (`audit.perturbations`, fixed
parameters) and the processing augmentation (`data.processing_augmentation`, random parameters), so that what the
model is trained to ignore and what the probe measures are the same operations. Library operations throughout: PIL
(`ImageOps.equalize`, `ImageEnhance`, `ImageFilter.GaussianBlur`, JPEG) and kornia (`equalize_clahe`, through the
image processor's `clahe`).
"""

from __future__ import annotations

import io
from collections.abc import Callable

import numpy as np
from PIL import Image, ImageEnhance, ImageFilter, ImageOps

# CLAHE as many PACS viewers and exporters apply it: the image processor's own (kornia) implementation, so the probe,
# the augmentation and the `clahe` intensity normalisation remedy are the same operation.
from ..models.deit_cxr.image_processing_deit_cxr import clahe


def on_pil(function: Callable[[Image.Image], Image.Image]) -> Callable[[np.ndarray], np.ndarray]:
    """A PIL image -> image change as a uint8 (H, W) array -> array one."""

    def apply(grey: np.ndarray) -> np.ndarray:
        return np.asarray(function(Image.fromarray(np.ascontiguousarray(grey, dtype=np.uint8), mode="L")),
                          dtype=np.uint8)

    return apply


def equalise(image: Image.Image) -> Image.Image:
    return ImageOps.equalize(image)


def gamma(grey: np.ndarray, value: float) -> np.ndarray:
    table = np.round(255.0 * (np.arange(256) / 255.0) ** value).astype(np.uint8)
    return table[grey]


def contrast(image: Image.Image, factor: float) -> Image.Image:
    """Contrast about the image mean; grey levels pushed past 0 or 255 are clipped, as an exporter would."""
    return ImageEnhance.Contrast(image).enhance(factor)


def brightness(image: Image.Image, factor: float) -> Image.Image:
    """Every grey level times `factor`, clipped at 255 (a brighter export saturates the bright end)."""
    return ImageEnhance.Brightness(image).enhance(factor)


def resample(image: Image.Image, factor: float) -> Image.Image:
    """Down-sample by `factor` (box filter, as a thumbnail export would) and back up (bicubic)."""
    small = (max(1, round(image.width * factor)), max(1, round(image.height * factor)))
    return image.resize(small, Image.Resampling.BOX).resize(image.size, Image.Resampling.BICUBIC)


def blur(image: Image.Image, sigma: float) -> Image.Image:
    return image.filter(ImageFilter.GaussianBlur(sigma))


def jpeg(image: Image.Image, quality: int) -> Image.Image:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=int(quality))
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


__all__ = [
    "blur", "border_crop", "brightness", "clahe", "contrast", "equalise", "gamma", "jpeg", "letterbox", "on_pil",
    "resample",
]

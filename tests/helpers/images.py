"""Small grey test images with structure (so resizes and warps change them measurably) and a data set of them."""

import numpy as np
from PIL import Image

from hf_deitcxr.data.image_cache import CachedImageDataset, preload_images


def radiograph_like(seed: int, size=(48, 40), mode="L") -> Image.Image:
    """A smooth random image (a blurred gradient plus blobs), so resizing and warps change it measurably."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0 : size[1], 0 : size[0]]
    array = 60 + 120 * x / size[0] + 40 * np.sin(y / 5.0) + rng.normal(0, 10, (size[1], size[0]))
    grey = Image.fromarray(np.clip(array, 0, 255).astype(np.uint8))
    return grey.convert(mode)


def half_black_half_white(width=40, height=30) -> Image.Image:
    array = np.zeros((height, width), dtype=np.uint8)
    array[:, width // 2 :] = 255
    return Image.fromarray(array)


def items_from(images, labels=None):
    pixels = preload_images(images, 32)
    labels = labels if labels is not None else [i % 3 for i in range(len(pixels))]
    return CachedImageDataset(pixels, labels)

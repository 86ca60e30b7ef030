"""Image processors saved with every model.

How greyscale radiographs are fed (decision, see README "Greyscale input"):
- default, `num_channels=3`: the grey image is replicated to three identical channels and normalised with the
  ImageNet mean/std. This keeps ImageNet-pretrained patch embeddings usable unchanged, and the saved
  `preprocessor_config.json` is a stock `DeiTImageProcessor` (resize without centre crop, as the radiographs were
  prepared) that `pipeline`, `AutoImageProcessor` and other tools load with no custom code.
- `num_channels=1`: a third of the patch-embedding compute and memory for the input layer; the processor is
  [`RadiographImageProcessor`], which converts any input (RGB, RGBA, 16-bit) to one grey channel. It is saved with
  `auto_map` so `trust_remote_code=True` loads it anywhere.

This file is copied next to saved checkpoints for remote-code loading: it imports only numpy, PIL and transformers.
"""

from __future__ import annotations

import numpy as np
from PIL import Image
from transformers.image_utils import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD, ChannelDimension
from transformers.models.deit.image_processing_pil_deit import DeiTImageProcessorPil

# Single-channel statistics: the mean of the ImageNet per-channel values, so a grey image normalises to the same
# numbers it gets in the replicated-RGB path.
GREY_MEAN = [float(np.mean(IMAGENET_DEFAULT_MEAN))]
GREY_STD = [float(np.mean(IMAGENET_DEFAULT_STD))]


class RadiographImageProcessor(DeiTImageProcessorPil):
    """A DeiT image processor that feeds one grey channel: every input is converted to greyscale first."""

    do_convert_rgb = False
    do_center_crop = False
    image_mean = GREY_MEAN
    image_std = GREY_STD

    def process_image(self, image, do_convert_rgb=None, input_data_format=None, **kwargs) -> np.ndarray:
        grey = to_grey_array(image)
        return super().process_image(grey, do_convert_rgb=False, input_data_format=ChannelDimension.FIRST)


def to_grey_array(image) -> np.ndarray:
    """Any PIL image or array (H, W), (H, W, C), (C, H, W) -> uint8/float (1, H, W) grey array."""
    if isinstance(image, Image.Image):
        if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
            array = np.asarray(image, dtype=np.float32)
            low, high = float(array.min()), float(array.max())
            scaled = (array - low) / (high - low) * 255.0 if high > low else np.zeros_like(array)
            return scaled.astype(np.uint8)[None]
        return np.asarray(image.convert("L"))[None]
    array = np.asarray(image)
    if hasattr(image, "numpy"):
        array = image.numpy()
    if array.ndim == 2:
        return array[None]
    if array.ndim == 3 and array.shape[0] in (1, 3, 4):
        return array[:3].mean(axis=0, keepdims=True).astype(array.dtype)
    if array.ndim == 3 and array.shape[-1] in (1, 3, 4):
        return array[..., :3].mean(axis=-1)[None].astype(array.dtype)
    raise ValueError(f"cannot interpret an array of shape {array.shape} as an image")


def make_image_processor(image_size: int, num_channels: int = 3) -> DeiTImageProcessorPil:
    """The processor to save with a model of this input size and channel count (see module docstring)."""
    size = {"height": image_size, "width": image_size}
    if num_channels == 1:
        return RadiographImageProcessor(size=size, crop_size=size)
    if num_channels != 3:
        raise ValueError(f"num_channels must be 1 or 3, got {num_channels}")
    return DeiTImageProcessorPil(
        size=size,
        crop_size=size,
        do_center_crop=False,
        do_convert_rgb=True,
        image_mean=list(IMAGENET_DEFAULT_MEAN),
        image_std=list(IMAGENET_DEFAULT_STD),
    )


__all__ = ["GREY_MEAN", "GREY_STD", "RadiographImageProcessor", "make_image_processor", "to_grey_array"]

"""Image processors saved with every model.

How greyscale radiographs are fed (decision, see README "Greyscale input"):
- default, `num_channels=3`: the grey image is replicated to three identical channels and normalised with the
  ImageNet mean/std. This keeps ImageNet-pretrained patch embeddings usable unchanged, and the saved
  `preprocessor_config.json` is a stock `DeiTImageProcessor` (resize without centre crop, as the radiographs were
  prepared) that `pipeline`, `AutoImageProcessor` and other tools load with no custom code.
- `num_channels=1`: a third of the patch-embedding compute and memory for the input layer; the processor is
  [`RadiographImageProcessor`], which converts any input (RGB, RGBA, 16-bit) to one grey channel. It is saved with
  `auto_map` so `trust_remote_code=True` loads it anywhere.

How 16-bit and float images become grey levels (`high_depth_to_uint8`, shared with the Space's decoder through
`hf_deitcxr.data.grey_levels`, so training, the saved processor and the Space map a file alike):
- integer pixels within 0..65535 (16-bit PNG/TIFF, or a 32-bit "I" image holding such data): the range the stored
  bit depth can hold, [0, 2**bits - 1], not the image's min-max. The bit depth is the PNG `sBIT` value when the
  caller read it from the file (the Space's decoder does; a decoded PIL image no longer carries it), else the
  smallest of 8/10/12/14/16 bits that holds the brightest pixel. So the same picture saved at 8, 12 or 16 bits
  gives the same grey levels (within rounding), and a low-contrast image stays low-contrast.
- fallback for floats ("F") and integers outside 0..65535: they carry no bit depth, so min-max of the finite values
  (NaN/inf shown black).

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
SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N")
HIGH_DEPTH_MODES = SIXTEEN_BIT_MODES + ("I", "F")  # PIL modes `high_depth_to_uint8` maps (Image.convert would clip)
STORED_BIT_DEPTHS = (8, 10, 12, 14, 16)


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
    """Any PIL image or array (H, W), (H, W, C), (C, H, W) -> uint8/float (1, H, W) grey array.

    16-bit, 32-bit integer and float PIL images go through `high_depth_to_uint8` (see module docstring).
    """
    if isinstance(image, Image.Image):
        if image.mode in HIGH_DEPTH_MODES:
            return high_depth_to_uint8(np.asarray(image))[None]
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


def high_depth_to_uint8(values: np.ndarray, significant_bits: int | None = None) -> np.ndarray:
    """16-bit / 32-bit integer / float grey pixels -> uint8, by the stored bit depth where there is one.

    Integers within 0..65535 are mapped from [0, 2**bits - 1]: `significant_bits` when the file states it (PNG
    sBIT), else `stored_bit_depth` of the brightest pixel. Floats and other integers: min-max of the finite values.
    """
    values = np.asarray(values)
    if values.dtype.kind in "ui" and values.size and values.min() >= 0 and values.max() <= 65535:
        bits = significant_bits or stored_bit_depth(int(values.max()))
        # native-order uint16 (an "I;16B" array is big-endian, an "I" one int32): the table lookup below applies
        return range_to_uint8(values.astype(np.uint16, copy=False), 0, 2**bits - 1)
    return scale_to_uint8(values)


def stored_bit_depth(brightest: int) -> int:
    """The smallest usual stored bit depth (8/10/12/14/16) whose range holds `brightest` (16 above that)."""
    return next((bits for bits in STORED_BIT_DEPTHS if brightest < 2**bits), 16)


def scale_to_uint8(array: np.ndarray, percentiles: tuple[float, float] | None = None) -> np.ndarray:
    """Linearly map [min, max] (or the given percentiles, clipped) of any numeric array to 0..255 uint8."""
    values = np.asarray(array, dtype=np.float64)
    finite = np.isfinite(values)
    # NaN/inf (e.g. a broken float TIFF export) would make min/max NaN and the whole image garbage: the range comes
    # from the finite values only, and non-finite pixels are shown black.
    if not finite.any():
        return np.zeros(values.shape, dtype=np.uint8)
    valid = values[finite] if not finite.all() else values
    if percentiles is None:
        low, high = float(valid.min()), float(valid.max())
    else:
        low, high = (float(v) for v in np.percentile(valid, percentiles))
    if high <= low:  # constant image: keep it black rather than dividing by zero
        return np.zeros(values.shape, dtype=np.uint8)
    return unit_to_uint8(np.where(finite, (values - low) / (high - low), 0.0))


def range_to_uint8(array: np.ndarray, low: float, high: float) -> np.ndarray:
    """Map the fixed range [low, high] (e.g. what the stored bit depth can hold) to 0..255, clipping outside.

    Unlike `scale_to_uint8` the result does not depend on the image's content, so the same picture stored at
    12 or 16 bits gives the same grey values (within rounding), and a low-contrast image stays low-contrast.
    """
    if not high > low:
        return np.zeros(np.shape(array), dtype=np.uint8)
    array = np.asarray(array)
    if array.dtype in (np.uint8, np.uint16) and array.size > 65536:
        # a 65536-entry table instead of float temporaries: a near-budget 16-bit image costs its own size + 1 byte/px
        return range_to_uint8(np.arange(65536, dtype=np.uint16), low, high)[array]
    values = array.astype(np.float32)  # float32: half the memory of float64, ample for 16-bit data
    return unit_to_uint8((values - np.float32(low)) / np.float32(high - low))


def unit_to_uint8(unit: np.ndarray) -> np.ndarray:
    """[0, 1] -> 0..255 uint8 (rounded, clipped; NaN becomes 0)."""
    return np.clip(np.nan_to_num(np.rint(unit * 255.0), nan=0.0), 0, 255).astype(np.uint8)


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


__all__ = [
    "GREY_MEAN",
    "GREY_STD",
    "HIGH_DEPTH_MODES",
    "SIXTEEN_BIT_MODES",
    "STORED_BIT_DEPTHS",
    "RadiographImageProcessor",
    "high_depth_to_uint8",
    "make_image_processor",
    "range_to_uint8",
    "scale_to_uint8",
    "stored_bit_depth",
    "to_grey_array",
    "unit_to_uint8",
]

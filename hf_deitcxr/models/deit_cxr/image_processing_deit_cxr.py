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

Intensity normalisation and border removal (`GreyPreprocessing`, a shortcut remedy: docs/RESULTS.md), off by default:
- `remove_border`: uniform rows/columns at the edges (black letterbox bands, white or grey bars) are cut off the
  grey image at its own resolution, before the resize;
- `intensity_normalization`: "equalize" (global histogram equalisation, PIL `ImageOps.equalize`) or "clahe"
  (contrast-limited adaptive equalisation, kornia `equalize_clahe`, clip 2, 8x8 tiles) of the resized image, at the
  model's input size, so the result does not depend on the resolution a file was stored at.
Either option makes the saved processor non-stock: a `RadiographImageProcessor` (with `auto_map`, loaded with
`trust_remote_code=True` or after `import hf_deitcxr`) that records them in `preprocessor_config.json`. A stock
`DeiTImageProcessor` would silently skip them. Training's image cache and the Space call the same
`GreyPreprocessing.apply`, so every path feeds the model the same pixels.

This file is copied next to saved checkpoints for remote-code loading: it imports only numpy, PIL and transformers
(and kornia, lazily, for CLAHE).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from PIL import Image, ImageOps
from transformers.image_utils import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD, ChannelDimension
from transformers.models.deit.image_processing_pil_deit import DeiTImageProcessorPil
from transformers.processing_utils import ImagesKwargs

# Single-channel statistics: the mean of the ImageNet per-channel values, so a grey image normalises to the same
# numbers it gets in the replicated-RGB path.
GREY_MEAN = [float(np.mean(IMAGENET_DEFAULT_MEAN))]
GREY_STD = [float(np.mean(IMAGENET_DEFAULT_STD))]
SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N")
HIGH_DEPTH_MODES = SIXTEEN_BIT_MODES + ("I", "F")  # PIL modes `high_depth_to_uint8` maps (Image.convert would clip)
STORED_BIT_DEPTHS = (8, 10, 12, 14, 16)
INTENSITY_NORMALIZATIONS = ("none", "equalize", "clahe")
CLAHE_CLIP_LIMIT = 2.0
CLAHE_GRID = 8
# A border line is "uniform" when its grey levels vary less than this (std, 0..255): JPEG ringing next to a black
# band stays below it, anatomy does not.
BORDER_MAX_STD = 4.0
# Never cut more than this fraction of a side away: a mostly uniform image is left as it is, not cropped to a sliver.
BORDER_MAX_FRACTION = 0.3


@dataclass(frozen=True)
class GreyPreprocessing:
    """What happens to the 8-bit grey image before rescaling: border removal, resize, intensity normalisation."""

    intensity_normalization: str = "none"
    remove_border: bool = False

    def __post_init__(self) -> None:
        if self.intensity_normalization not in INTENSITY_NORMALIZATIONS:
            raise ValueError(f"intensity_normalization must be one of {INTENSITY_NORMALIZATIONS}, got "
                             f"{self.intensity_normalization!r}")
        if not isinstance(self.remove_border, bool):
            raise ValueError(f"remove_border must be true or false, got {self.remove_border!r}")

    @property
    def is_stock(self) -> bool:
        """True when a stock DeiT image processor reproduces it (nothing beyond the resize)."""
        return self.intensity_normalization == "none" and not self.remove_border

    def apply(self, grey: np.ndarray, size: int | tuple[int, int]) -> np.ndarray:
        """uint8 (H, W) grey -> uint8 (height, width): border removal, PIL bicubic resize (no crop), normalisation."""
        return self.fit(self.frame(grey), size)

    def frame(self, grey: np.ndarray) -> np.ndarray:
        """The part of the uint8 (H, W) grey image the model sees: without its uniform border if `remove_border`."""
        return crop_uniform_border(grey) if self.remove_border else grey

    def fit(self, framed: np.ndarray, size: int | tuple[int, int]) -> np.ndarray:
        """An already framed uint8 grey image -> uint8 (height, width): PIL bicubic resize (no crop), normalisation."""
        height, width = (size, size) if isinstance(size, int) else size
        image = Image.fromarray(np.ascontiguousarray(framed, dtype=np.uint8))
        if image.size != (width, height):
            image = image.resize((width, height), Image.Resampling.BICUBIC)
        return normalize_intensity(np.array(image), self.intensity_normalization)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_processor(cls, processor) -> GreyPreprocessing:
        """The preprocessing a (possibly stock) image processor applies; stock ones apply none."""
        return cls(str(getattr(processor, "intensity_normalization", None) or "none"),
                   bool(getattr(processor, "remove_border", None) or False))


def crop_uniform_border(grey: np.ndarray) -> np.ndarray:
    """`grey` without the uniform lines at its edges (each side at most `BORDER_MAX_FRACTION` of the image).

    Written by hand: no imaging library we use has it. A line counts as border when its standard deviation is below
    `BORDER_MAX_STD`, whatever its level (black letterbox bands, white bars, flat grey padding). Rows and columns
    are cut in turns until neither edge changes, since a bar along one side keeps the rows across it non-uniform.
    """
    grey = np.asarray(grey)
    if grey.ndim != 2:
        raise ValueError(f"expected a (H, W) grey image, got shape {grey.shape}")
    height, width = grey.shape
    limit_rows, limit_columns = int(height * BORDER_MAX_FRACTION), int(width * BORDER_MAX_FRACTION)
    top = bottom = left = right = 0
    while True:
        window = grey[top:height - bottom, left:width - right].astype(np.float32)
        rows_uniform, columns_uniform = window.std(axis=1) < BORDER_MAX_STD, window.std(axis=0) < BORDER_MAX_STD
        cut = (min(top + _uniform_run(rows_uniform), limit_rows),
               min(bottom + _uniform_run(rows_uniform[::-1]), limit_rows),
               min(left + _uniform_run(columns_uniform), limit_columns),
               min(right + _uniform_run(columns_uniform[::-1]), limit_columns))
        if cut == (top, bottom, left, right):
            return grey[top:height - bottom, left:width - right]
        top, bottom, left, right = cut


def _uniform_run(uniform: np.ndarray) -> int:
    """How many leading entries of a boolean line mask are True."""
    return int(uniform.argmin()) if not uniform.all() else len(uniform)


def normalize_intensity(grey: np.ndarray, method: str) -> np.ndarray:
    """uint8 (H, W) -> uint8 (H, W): "none", "equalize" (PIL histogram equalisation) or "clahe" (kornia)."""
    if method == "none":
        return grey
    if method == "equalize":
        return np.asarray(ImageOps.equalize(Image.fromarray(grey)), dtype=np.uint8)
    if method == "clahe":
        return clahe(grey)
    raise ValueError(f"intensity_normalization must be one of {INTENSITY_NORMALIZATIONS}, got {method!r}")


def clahe(grey: np.ndarray, clip_limit: float = CLAHE_CLIP_LIMIT, grid: int = CLAHE_GRID) -> np.ndarray:
    """Contrast-limited adaptive histogram equalisation of a uint8 grey image (kornia `equalize_clahe`)."""
    try:  # imported here so that loading a processor without CLAHE needs neither
        import kornia
        import torch
    except ImportError as err:
        raise ImportError("intensity_normalization='clahe' needs kornia: pip install kornia") from err
    tensor = torch.from_numpy(np.array(grey, dtype=np.uint8)).float().div(255.0)[None, None]  # a writable copy
    out = kornia.enhance.equalize_clahe(tensor, clip_limit=clip_limit, grid_size=(grid, grid))
    return out[0, 0].mul(255.0).round().clamp(0, 255).to(torch.uint8).numpy()


class RadiographImageProcessorKwargs(ImagesKwargs, total=False):
    intensity_normalization: str
    remove_border: bool


class RadiographImageProcessor(DeiTImageProcessorPil):
    """A DeiT image processor for radiographs: every input is converted to one grey channel first, then (optionally)
    border removal and intensity normalisation (`GreyPreprocessing`) run before rescaling.

    It feeds one grey channel with the default grey mean/std, or the grey image replicated to three channels when
    `image_mean`/`image_std` have three values (ImageNet-style models with a non-stock preprocessing).
    """

    valid_kwargs = RadiographImageProcessorKwargs
    do_convert_rgb = False
    do_center_crop = False
    image_mean = GREY_MEAN
    image_std = GREY_STD
    intensity_normalization = "none"
    remove_border = False

    def process_image(self, image, do_convert_rgb=None, input_data_format=None, **kwargs) -> np.ndarray:
        grey = to_grey_array(image)
        preprocessing = GreyPreprocessing(
            kwargs.get("intensity_normalization") or self.intensity_normalization,
            bool(kwargs.get("remove_border", self.remove_border)),
        )
        if not preprocessing.is_stock:
            size = kwargs.get("size") or self.size
            grey = preprocessing.apply(as_uint8(grey[0]), (int(size["height"]), int(size["width"])))[None]
        mean = kwargs.get("image_mean") or self.image_mean
        if not isinstance(mean, (int, float)) and len(mean) == 3:
            grey = np.repeat(grey, 3, axis=0)
        return super().process_image(grey, do_convert_rgb=False, input_data_format=ChannelDimension.FIRST)


def as_uint8(grey: np.ndarray) -> np.ndarray:
    """A grey array as uint8: unchanged if it is, else by its bit depth or min-max (`high_depth_to_uint8`)."""
    grey = np.asarray(grey)
    return grey if grey.dtype == np.uint8 else high_depth_to_uint8(grey)


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


def make_image_processor(image_size: int, num_channels: int = 3,
                         preprocessing: GreyPreprocessing | None = None) -> DeiTImageProcessorPil:
    """The processor to save with a model of this input size, channel count and grey preprocessing (see module
    docstring): a stock `DeiTImageProcessor` for 3 channels and no preprocessing, else a `RadiographImageProcessor`."""
    size = {"height": image_size, "width": image_size}
    preprocessing = preprocessing or GreyPreprocessing()
    if num_channels not in (1, 3):
        raise ValueError(f"num_channels must be 1 or 3, got {num_channels}")
    if num_channels == 1 or not preprocessing.is_stock:
        mean, std = (GREY_MEAN, GREY_STD) if num_channels == 1 else (IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD)
        return RadiographImageProcessor(size=size, crop_size=size, image_mean=list(mean), image_std=list(std),
                                        **preprocessing.to_dict())
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
    "INTENSITY_NORMALIZATIONS",
    "SIXTEEN_BIT_MODES",
    "STORED_BIT_DEPTHS",
    "GreyPreprocessing",
    "RadiographImageProcessor",
    "as_uint8",
    "clahe",
    "crop_uniform_border",
    "high_depth_to_uint8",
    "make_image_processor",
    "normalize_intensity",
    "range_to_uint8",
    "scale_to_uint8",
    "stored_bit_depth",
    "to_grey_array",
    "unit_to_uint8",
]

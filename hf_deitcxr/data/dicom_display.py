"""The DICOM header checks and display pipeline (PS3.3 C.11), every step guarded.

Each attribute the pipeline reads is validated first, so a malformed file ends in one `DicomReadError` that names
the attribute and what is wrong with it (missing, empty, not a number, out of range, inconsistent), never in an
exception from deep inside numpy or pydicom. Optional attributes that are absent or empty (type 2) are treated as
absent, as a viewer does.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pydicom
from pydicom.multival import MultiValue
from pydicom.pixels import apply_color_lut

from .grey_levels import range_to_uint8, scale_to_uint8, unit_to_uint8
from .image_errors import DicomReadError, check_pixel_budget

_MONOCHROME = ("MONOCHROME1", "MONOCHROME2")
_COLOUR = ("RGB", "YBR_FULL", "YBR_FULL_422", "YBR_PARTIAL_420", "YBR_ICT", "YBR_RCT", "PALETTE COLOR")
_VOI_FUNCTIONS = ("LINEAR", "LINEAR_EXACT", "SIGMOID")
_PRESENTATION_SHAPES = ("IDENTITY", "INVERSE", "LIN OD")  # LIN OD: for printers only (PS3.3 C.11.6), shown as is
_PALETTE_TABLES = tuple(
    f"{colour}PaletteColorLookupTable{part}" for colour in ("Red", "Green", "Blue") for part in ("Descriptor", "Data")
)
_LUMA = np.array([0.299, 0.587, 0.114])
TABLE_MIN_PIXELS = 65536  # above this many pixels a 16-bit image is mapped through a table of all stored values


class ImageHeader:
    """The validated attributes the decode needs, read once from the Dataset."""

    def __init__(self, ds: pydicom.Dataset, name: str) -> None:
        self.name = name
        self.rows = _integer(ds, "Rows", name, minimum=1, maximum=65535)
        self.columns = _integer(ds, "Columns", name, minimum=1, maximum=65535)
        self.samples = _integer(ds, "SamplesPerPixel", name, choices=(1, 3))
        self.bits_allocated = _integer(ds, "BitsAllocated", name, choices=(1, 8, 16, 32, 64))
        self.bits_stored = _integer(ds, "BitsStored", name, minimum=1, maximum=self.bits_allocated)
        self.signed = _integer(ds, "PixelRepresentation", name, choices=(0, 1)) == 1
        # empty NumberOfFrames is read as 1, as the single-frame default
        self.frames = _integer(ds, "NumberOfFrames", name, default=1, minimum=1)
        self.photometric = _text(ds, "PhotometricInterpretation", name, None, _MONOCHROME + _COLOUR)
        # PS3.3 C.11.6.1.2: INVERSE turns the output after the VOI LUT upside down. The DX/MG/IO image modules make it
        # the partner of MONOCHROME1 (IDENTITY of MONOCHROME2), so it names the same inversion: both invert once.
        shape = _text(ds, "PresentationLUTShape", name, "IDENTITY", _PRESENTATION_SHAPES)
        self.inverted = self.photometric == "MONOCHROME1" or shape == "INVERSE"
        expected_samples = 1 if self.photometric in _MONOCHROME + ("PALETTE COLOR",) else 3
        if self.samples != expected_samples:
            raise DicomReadError(f"{name}: DICOM SamplesPerPixel {self.samples} is inconsistent with "
                                 f"PhotometricInterpretation {self.photometric} (needs {expected_samples})")
        if self.samples == 3:  # pixel-interleaved (0) or colour-by-plane (1): pydicom needs to know which
            _integer(ds, "PlanarConfiguration", name, choices=(0, 1))
        if self.photometric == "PALETTE COLOR":
            missing = [table for table in _PALETTE_TABLES if not _present(ds, table)]
            if missing:
                raise DicomReadError(f"{name}: DICOM PALETTE COLOR image without its lookup tables "
                                     f"({', '.join(missing)} missing or empty)")
            for colour in ("Red", "Green", "Blue"):
                _check_palette(ds, colour, name)
        self.description = f"{self.columns}x{self.rows}" + (f"x{self.frames} frames" if self.frames > 1 else "") + (
            f"x{self.samples} samples" if self.samples > 1 else "")

    @property
    def samples_total(self) -> int:
        return self.rows * self.columns * self.frames * self.samples

    def check_budget(self) -> None:
        check_pixel_budget(self.name, self.description, self.samples_total, DicomReadError)

    def check_pixel_data_length(self, ds: pydicom.Dataset, compressed: bool) -> None:
        """Native PixelData must hold every declared frame (pydicom's own error names no attribute)."""
        if compressed:
            return
        length = len(ds.PixelData or b"")
        needed = math.ceil(self.samples_total * self.bits_allocated / 8)
        if length < needed:
            raise DicomReadError(f"{self.name}: DICOM PixelData holds {length:,} bytes but Rows x Columns x frames x "
                                 f"samples x BitsAllocated ({self.description}, {self.bits_allocated} bits) needs "
                                 f"{needed:,}")


def display_uint8(array: np.ndarray, ds: pydicom.Dataset, header: ImageHeader,
                  percentiles: tuple[float, float] | None) -> np.ndarray:
    """Decoded first-frame pixels -> uint8 grey as a viewer shows them (MONOCHROME1 / INVERSE inverted: bone is
    bright)."""
    if header.photometric in _MONOCHROME:
        if array.ndim == 3:  # a multi-frame array despite index=0 (some plugins): first frame
            array = array[0]
        grey = _monochrome_to_uint8(array, ds, header, percentiles)
        return 255 - grey if header.inverted else grey  # MONOCHROME1 / INVERSE: low values are white
    return _colour_to_uint8(array, ds, header)


def _monochrome_to_uint8(array: np.ndarray, ds: pydicom.Dataset, header: ImageHeader,
                         percentiles: tuple[float, float] | None) -> np.ndarray:
    if (percentiles is None and header.bits_stored > 8 and array.dtype in (np.uint16, np.int16)
            and array.size > TABLE_MIN_PIXELS):
        # Above 8 bits without percentiles the mapping depends on the stored value alone: compute it once for each
        # of the 65536 possible values and index, instead of float64 temporaries of the whole image (GBs near the
        # pixel budget).
        signed = array.dtype == np.int16
        table = _monochrome_pixels(np.arange(-32768 if signed else 0, 32768 if signed else 65536,
                                             dtype=array.dtype), ds, header, None)
        return table[array.view(np.uint16) ^ np.uint16(0x8000) if signed else array]  # int16 v -> v + 32768
    return _monochrome_pixels(array, ds, header, percentiles)


def _monochrome_pixels(array: np.ndarray, ds: pydicom.Dataset, header: ImageHeader,
                       percentiles: tuple[float, float] | None) -> np.ndarray:
    name = header.name
    values, value_range, rescaled = _modality(array, ds, header)
    if "VOILUTSequence" in ds:
        return _apply_voi_lut_sequence(values, ds, name)
    window = _window(ds, name)
    if window is not None:
        function = _text(ds, "VOILUTFunction", name, "LINEAR", _VOI_FUNCTIONS)
        return _apply_window(values, *window, function)
    if percentiles is not None:
        return scale_to_uint8(values, percentiles)
    if header.bits_stored <= 8:  # 8-bit data as before: plain uint8 kept as stored (as a JPEG), else min-max
        return array if not rescaled and array.dtype == np.uint8 else scale_to_uint8(values)
    # more than 8 bits and no window: the range the stored bit depth can hold, not the image's min-max, so the
    # same picture stored at 12 or 16 bits looks the same
    return range_to_uint8(values, *value_range)


def _modality(array: np.ndarray, ds: pydicom.Dataset, header: ImageHeader):
    """Modality LUT / rescale -> (values, the range the stored bit depth maps to after it, whether one applied)."""
    bits = header.bits_stored
    low, high = (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1) if header.signed else (0, 2**bits - 1)
    if "ModalityLUTSequence" in ds:
        lut, first = _lut(ds, "ModalityLUTSequence", header.name)
        index = np.clip(np.asarray(array, dtype=np.int64) - first, 0, len(lut) - 1)
        return lut[index], (float(lut.min()), float(lut.max())), True
    slope = _number(ds, "RescaleSlope", header.name, default=1.0)
    intercept = _number(ds, "RescaleIntercept", header.name, default=0.0)
    if slope == 0:
        raise DicomReadError(f"{header.name}: DICOM RescaleSlope is 0 (every pixel would be the same value)")
    rescaled = "RescaleSlope" in ds or "RescaleIntercept" in ds
    if slope == 1.0 and intercept == 0.0:
        return array, (low, high), rescaled
    ends = sorted((low * slope + intercept, high * slope + intercept))
    return np.asarray(array, dtype=np.float64) * slope + intercept, (ends[0], ends[1]), rescaled


def _apply_voi_lut_sequence(values: np.ndarray, ds: pydicom.Dataset, name: str) -> np.ndarray:
    lut, first = _lut(ds, "VOILUTSequence", name)
    index = np.clip(np.rint(np.asarray(values, dtype=np.float64)) - first, 0, len(lut) - 1).astype(np.int64)
    # The LUT's own value range is the display range (its descriptor's bit count is often wrong in practice)
    low, high = float(lut.min()), float(lut.max())
    if high <= low:
        return np.zeros(values.shape, dtype=np.uint8)
    return unit_to_uint8((lut[index] - low) / (high - low))


def _lut(ds: pydicom.Dataset, keyword: str, name: str) -> tuple[np.ndarray, int]:
    """The first item of a LUT sequence -> (table as float64, first mapped value), its descriptor checked."""
    sequence = ds[keyword].value
    if not sequence:
        raise DicomReadError(f"{name}: DICOM {keyword} is present but empty")
    item = sequence[0]
    descriptor = _values(item, "LUTDescriptor", f"{name}: DICOM {keyword} LUTDescriptor")
    if len(descriptor) != 3:
        raise DicomReadError(f"{name}: DICOM {keyword} LUTDescriptor has {len(descriptor)} values, not 3")
    entries, first = int(descriptor[0]) or 65536, int(descriptor[1])  # 0 entries means 2**16 (PS3.3 C.11.1.1)
    if "LUTData" not in item or item["LUTData"].value in (None, b"", []):
        raise DicomReadError(f"{name}: DICOM {keyword} has no LUTData")
    try:
        lut = np.asarray(item.LUTData, dtype=np.float64).ravel()
    except (TypeError, ValueError) as err:
        raise DicomReadError(f"{name}: DICOM {keyword} LUTData is not numeric ({err})") from err
    if len(lut) < entries:
        raise DicomReadError(f"{name}: DICOM {keyword} LUTData has {len(lut)} entries, shorter than the "
                             f"{entries} its LUTDescriptor declares")
    return lut[:entries], first


def _window(ds: pydicom.Dataset, name: str) -> tuple[float, float] | None:
    """First (center, width), or None if either is absent/empty or the width is < 1 (invalid per PS3.3)."""
    center = _number(ds, "WindowCenter", name, default=None, first_of_many=True)
    width = _number(ds, "WindowWidth", name, default=None, first_of_many=True)
    if center is None or width is None or width < 1:
        return None
    return center, width


def _apply_window(values: np.ndarray, center: float, width: float, function: str) -> np.ndarray:
    """PS3.3 C.11.2.1.2 windowing straight to [0, 1] -> uint8 (so the window center lands on ~128)."""
    x = np.asarray(values, dtype=np.float64)
    if function == "SIGMOID":
        with np.errstate(over="ignore"):  # exp overflows to inf far below a narrow window: y = 0 there, as meant
            y = 1.0 / (1.0 + np.exp(-4.0 * (x - center) / width))
    elif function == "LINEAR_EXACT":
        y = (x - center) / width + 0.5
    elif width == 1:  # LINEAR at width 1: the standard's two ends meet, a step above c - 0.5
        y = (x > center - 0.5).astype(np.float64)
    else:  # LINEAR, the default
        y = (x - (center - 0.5)) / (width - 1.0) + 0.5
    return unit_to_uint8(y)


def _colour_to_uint8(array: np.ndarray, ds: pydicom.Dataset, header: ImageHeader) -> np.ndarray:
    if header.photometric == "PALETTE COLOR":
        try:
            array = apply_color_lut(array, ds)
        except Exception as err:  # descriptors that do not fit their data, or the pixel values
            raise DicomReadError(f"{header.name}: DICOM palette colour lookup tables are unusable ({err})") from err
    if array.ndim != 3 or array.shape[-1] != 3:
        raise DicomReadError(f"{header.name}: {header.photometric} pixel data of shape {array.shape} is not "
                             "an (rows, columns, 3) colour image")
    luma = np.asarray(array, dtype=np.float64) @ _LUMA
    if array.dtype == np.uint8:
        return np.clip(np.rint(luma), 0, 255).astype(np.uint8)
    return scale_to_uint8(luma)


def _check_palette(ds: pydicom.Dataset, colour: str, name: str) -> None:
    keyword = f"{colour}PaletteColorLookupTable"
    descriptor = _values(ds, f"{keyword}Descriptor", f"{name}: DICOM {keyword}Descriptor")
    if len(descriptor) != 3 or int(descriptor[2]) not in (8, 16):
        raise DicomReadError(f"{name}: DICOM {keyword}Descriptor {_shown(descriptor)} is not "
                             "(entries, first value, 8 or 16 bits)")
    entries = int(descriptor[0]) or 65536  # 0 means 2**16 (PS3.3 C.7.6.3.1.5)
    length = len(_raw(ds, f"{keyword}Data", name))
    if length < entries * int(descriptor[2]) // 8:
        raise DicomReadError(f"{name}: DICOM {keyword}Data holds {length} bytes, shorter than the {entries} "
                             f"{descriptor[2]}-bit entries its descriptor declares")


# --- attribute readers: every failure names the attribute ----------------------------------------------------


def _present(ds: pydicom.Dataset, keyword: str) -> bool:
    return keyword in ds and ds[keyword].value not in (None, "", b"", [])


def _raw(ds: pydicom.Dataset, keyword: str, name: str):
    try:
        return ds[keyword].value
    except Exception as err:  # pydicom converts on access and can refuse a value it cannot parse
        raise DicomReadError(f"{name}: DICOM {keyword} cannot be read ({err})") from err


def _values(ds: pydicom.Dataset, keyword: str, label: str) -> Sequence:
    value = ds[keyword].value if keyword in ds else None
    if value in (None, "", b""):
        raise DicomReadError(f"{label} is missing or empty")
    return list(value) if isinstance(value, (MultiValue, list, tuple)) else [value]


def _number(ds: pydicom.Dataset, keyword: str, name: str, *, default, first_of_many: bool = False):
    """A finite number (absent or empty: `default`); several values only where the standard allows them."""
    if not _present(ds, keyword):
        return default
    value = _raw(ds, keyword, name)
    if isinstance(value, (MultiValue, list, tuple)):
        if not first_of_many and len(value) > 1:
            raise DicomReadError(f"{name}: DICOM {keyword} has {len(value)} values, expected one")
        value = value[0]
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise DicomReadError(f"{name}: DICOM {keyword} is not a number ({_shown(value)})") from None
    if not math.isfinite(number):
        raise DicomReadError(f"{name}: DICOM {keyword} is not a finite number ({_shown(value)})")
    return number


def _integer(ds: pydicom.Dataset, keyword: str, name: str, *, default=None, minimum=None, maximum=None,
             choices=None) -> int:
    number = _number(ds, keyword, name, default=default)
    if number is None:
        raise DicomReadError(f"{name}: DICOM {keyword} is missing or empty")
    if number != int(number):
        raise DicomReadError(f"{name}: DICOM {keyword} is not a whole number ({number:g})")
    number = int(number)
    if choices is not None and number not in choices:
        raise DicomReadError(f"{name}: DICOM {keyword} {number} is not one of {', '.join(map(str, choices))}")
    if (minimum is not None and number < minimum) or (maximum is not None and number > maximum):
        raise DicomReadError(f"{name}: DICOM {keyword} {number} is out of range ({minimum}..{maximum or 'any'})")
    return number


def _text(ds: pydicom.Dataset, keyword: str, name: str, default: str | None, choices: Sequence[str]) -> str:
    """One of `choices`; absent or empty: `default` (None: the attribute is required)."""
    if not _present(ds, keyword):
        if default is None:
            raise DicomReadError(f"{name}: DICOM {keyword} is missing or empty")
        return default
    value = _raw(ds, keyword, name)
    if isinstance(value, (MultiValue, list, tuple)):
        raise DicomReadError(f"{name}: DICOM {keyword} has {len(value)} values, expected one")
    text = str(value).strip().upper()
    if text not in choices:
        raise DicomReadError(f"{name}: DICOM {keyword} {_shown(value)} is not one of {', '.join(choices)}")
    return text


def _shown(value) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


__all__ = ["ImageHeader", "display_uint8"]

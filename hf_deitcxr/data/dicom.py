"""Reading radiographs (DICOM or ordinary image files) into 8-bit greyscale PIL images.

DICOM display pipeline (PS3.3 C.11), as a viewer would show the image:
stored values -> Modality LUT / RescaleSlope+Intercept -> VOI LUT sequence, else WindowCenter/Width, else
min-max (or percentile) scaling of the actual value range -> 8 bit -> inverted for MONOCHROME1 (so bone is
always bright). Stored values of 8 bits or fewer with nothing to apply are kept as they are, like a JPEG.
Colour DICOMs (RGB, YBR_*, PALETTE COLOR) become greyscale by ITU-R 601 luma.
"""

from __future__ import annotations

import io
import os
import warnings
from pathlib import Path
from typing import BinaryIO

import numpy as np
import pydicom
from PIL import Image, UnidentifiedImageError
from pydicom.errors import InvalidDicomError
from pydicom.multival import MultiValue
from pydicom.pixels import apply_color_lut, apply_modality_lut, apply_voi_lut, pixel_array

ImageSource = str | os.PathLike | bytes | bytearray | BinaryIO

DICOM_MAGIC_OFFSET = 128
DICOM_MAGIC = b"DICM"
_HIGH_DEPTH_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I", "F")
_LUMA = np.array([0.299, 0.587, 0.114])
_DECODER_HINT = (
    "install a decoder for it, e.g. `pip install pylibjpeg pylibjpeg-libjpeg pylibjpeg-openjpeg` "
    "or `pip install python-gdcm`"
)


class UnreadableImageError(ValueError):
    """An image file that cannot be decoded: empty, truncated, corrupt, not an image, or too large."""


class DicomReadError(UnreadableImageError):
    """A DICOM file without usable pixel data (not DICOM, no PixelData, or no decoder for its compression)."""


def is_dicom(source: ImageSource) -> bool:
    """True if the content carries the DICOM Part 10 preamble ("DICM" at byte 128)."""
    head = _head(source, DICOM_MAGIC_OFFSET + len(DICOM_MAGIC))
    return head[DICOM_MAGIC_OFFSET:] == DICOM_MAGIC


def read_dicom(
    source: ImageSource | pydicom.Dataset,
    *,
    percentiles: tuple[float, float] | None = None,
    force: bool = False,
) -> Image.Image:
    """Decode a DICOM file (path, bytes, file object or parsed Dataset) to an 8-bit mode "L" image.

    percentiles: used only when the file has no VOI LUT / window; e.g. (0.5, 99.5) clips outliers such as
    burnt-in text and collimator edges instead of min-max scaling the full range.
    force: parse files without the 128-byte preamble (old ACR-NEMA style), as `pydicom.dcmread(force=True)`.
    Multi-frame files give their first frame, with a warning.
    """
    if isinstance(source, pydicom.Dataset):
        return dicom_to_image(source, percentiles=percentiles)
    return dicom_to_image(_dcmread(source, force=force), percentiles=percentiles, name=_name(source))


def dicom_to_image(
    ds: pydicom.Dataset, *, percentiles: tuple[float, float] | None = None, name: str | None = None
) -> Image.Image:
    """The display pipeline of the module docstring applied to a parsed Dataset's first frame."""
    name = name or str(getattr(ds, "filename", None) or "<DICOM dataset>")
    if "PixelData" not in ds:
        raise DicomReadError(f"{name}: DICOM file has no pixel data (PixelData element missing)")
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    if frames > 1:
        warnings.warn(f"{name}: multi-frame DICOM ({frames} frames); using the first frame", stacklevel=3)
    array = _decode_first_frame(ds, name)
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2")).upper()
    if photometric in ("MONOCHROME1", "MONOCHROME2"):
        grey = _monochrome_to_uint8(array, ds, percentiles)
        if photometric == "MONOCHROME1":
            grey = 255 - grey  # MONOCHROME1 stores low values as white
    else:
        grey = _colour_to_uint8(array, ds, photometric, name)
    return Image.fromarray(np.ascontiguousarray(grey))


def read_radiograph(source: ImageSource, *, percentiles: tuple[float, float] | None = None) -> Image.Image:
    """Any radiograph file (DICOM by content, else anything PIL opens) -> fully decoded mode "L" image.

    Raises UnreadableImageError (DicomReadError for DICOM) for empty, truncated, corrupt or non-image
    content and for images over `PIL.Image.MAX_IMAGE_PIXELS` (PIL only warns below twice that limit; we
    refuse). A missing path raises FileNotFoundError. Note: if something set
    `PIL.ImageFile.LOAD_TRUNCATED_IMAGES = True`, PIL pads truncated files instead of failing, and they pass.
    """
    data, name = _read_bytes(source)
    if not data:
        raise UnreadableImageError(f"{name}: empty file (0 bytes)")
    if data[DICOM_MAGIC_OFFSET : DICOM_MAGIC_OFFSET + 4] == DICOM_MAGIC:
        return read_dicom(data, percentiles=percentiles)
    try:
        return _decode_with_pil(data, name)
    except UnreadableImageError:
        if name.lower().endswith((".dcm", ".dicom")):  # DICOM without preamble, named as such
            return read_dicom(data, percentiles=percentiles, force=True)
        raise


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
    return _to_uint8(np.where(finite, (values - low) / (high - low), 0.0))


# --- DICOM internals ----------------------------------------------------------------------------------------


def _dcmread(source: ImageSource, *, force: bool) -> pydicom.Dataset:
    name = _name(source)
    fp = io.BytesIO(bytes(source)) if isinstance(source, (bytes, bytearray)) else source
    try:
        return pydicom.dcmread(fp, force=force)
    except InvalidDicomError as err:
        raise DicomReadError(f"{name}: not a DICOM file (no 'DICM' preamble at byte 128): {err}") from err
    except FileNotFoundError:
        raise
    except Exception as err:  # pydicom raises many types on truncated/corrupt headers
        raise DicomReadError(f"{name}: corrupt or truncated DICOM ({type(err).__name__}: {err})") from err


def _decode_first_frame(ds: pydicom.Dataset, name: str) -> np.ndarray:
    file_meta = getattr(ds, "file_meta", None)
    syntax = file_meta.get("TransferSyntaxUID") if file_meta is not None else None
    try:
        # index=0 decodes only the first frame, so large multi-frame files do not fill memory
        array = pixel_array(ds, index=0)
    except (RuntimeError, NotImplementedError) as err:
        syntax_name = getattr(syntax, "name", str(syntax))
        if syntax is not None and getattr(syntax, "is_compressed", False):
            raise DicomReadError(
                f"{name}: cannot decode compressed transfer syntax {syntax_name!r} ({syntax}): "
                f"{_DECODER_HINT}. pydicom said: {err}"
            ) from err
        raise DicomReadError(f"{name}: cannot decode pixel data ({syntax_name}): {err}") from err
    except Exception as err:  # truncated PixelData, inconsistent Rows/Columns/BitsAllocated, ...
        raise DicomReadError(f"{name}: corrupt pixel data ({type(err).__name__}: {err})") from err
    return array


def _monochrome_to_uint8(array: np.ndarray, ds: pydicom.Dataset, percentiles: tuple[float, float] | None):
    if array.ndim == 3:  # a multi-frame array despite index=0 (some plugins): first frame
        array = array[0]
    has_rescale = "ModalityLUTSequence" in ds or "RescaleSlope" in ds or "RescaleIntercept" in ds
    values = apply_modality_lut(array, ds) if has_rescale else array
    if "VOILUTSequence" in ds:
        return _apply_voi_lut_sequence(values, ds)
    window = _window(ds)
    if window is not None:
        return _apply_window(values, *window, str(ds.get("VOILUTFunction", "LINEAR")).upper())
    if not has_rescale and array.dtype == np.uint8 and percentiles is None:
        return array  # plain 8-bit data: keep the stored values, as a JPEG would
    return scale_to_uint8(values, percentiles)


def _apply_voi_lut_sequence(values: np.ndarray, ds: pydicom.Dataset) -> np.ndarray:
    out = apply_voi_lut(values, ds, index=0, prefer_lut=True)
    # The LUT's own value range is the display range (its descriptor's bit count is often wrong in practice)
    lut = np.asarray(ds.VOILUTSequence[0].LUTData, dtype=np.float64)
    low, high = float(lut.min()), float(lut.max())
    if high <= low:
        return np.zeros(values.shape, dtype=np.uint8)
    return _to_uint8((np.asarray(out, dtype=np.float64) - low) / (high - low))


def _window(ds: pydicom.Dataset) -> tuple[float, float] | None:
    """First (center, width) of the file, or None if absent or unusable (width < 1 is invalid per PS3.3)."""
    if "WindowCenter" not in ds or "WindowWidth" not in ds:
        return None
    center, width = ds.WindowCenter, ds.WindowWidth
    center = center[0] if isinstance(center, MultiValue) else center
    width = width[0] if isinstance(width, MultiValue) else width
    if center is None or width is None or float(width) < 1:
        return None
    return float(center), float(width)


def _apply_window(values: np.ndarray, center: float, width: float, function: str) -> np.ndarray:
    """PS3.3 C.11.2.1.2 windowing straight to [0, 1] -> uint8 (so the window center lands on ~128)."""
    x = np.asarray(values, dtype=np.float64)
    if function == "SIGMOID":
        y = 1.0 / (1.0 + np.exp(-4.0 * (x - center) / width))
    elif function == "LINEAR_EXACT":
        y = (x - center) / width + 0.5
    else:  # LINEAR, the default
        y = (x - (center - 0.5)) / max(width - 1.0, 1.0) + 0.5
    return _to_uint8(y)


def _colour_to_uint8(array: np.ndarray, ds: pydicom.Dataset, photometric: str, name: str) -> np.ndarray:
    if photometric == "PALETTE COLOR":
        array = apply_color_lut(array, ds)
    if array.ndim != 3 or array.shape[-1] != 3:
        raise DicomReadError(
            f"{name}: unsupported photometric interpretation {photometric!r} (shape {array.shape})"
        )
    luma = np.asarray(array, dtype=np.float64) @ _LUMA
    if array.dtype == np.uint8:
        return np.clip(np.rint(luma), 0, 255).astype(np.uint8)
    return scale_to_uint8(luma)


def _to_uint8(unit: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(unit * 255.0), 0, 255).astype(np.uint8)


# --- ordinary image files -----------------------------------------------------------------------------------


def _decode_with_pil(data: bytes, name: str) -> Image.Image:
    try:
        # Our own size check instead of turning DecompressionBombWarning into an error: warning filters are
        # process-global and not thread-safe, and validation decodes in threads. PIL raises itself above 2x.
        image = Image.open(io.BytesIO(data))
        limit = Image.MAX_IMAGE_PIXELS
        if limit is not None and image.width * image.height > limit:
            raise UnreadableImageError(
                f"{name}: {image.width}x{image.height} exceeds PIL.Image.MAX_IMAGE_PIXELS={limit} "
                "(possible decompression bomb; raise the limit if the image is genuine)"
            )
        image.load()  # Image.open only reads the header; decoding is what finds truncation/corruption
    except UnreadableImageError:
        raise
    except UnidentifiedImageError as err:
        raise UnreadableImageError(f"{name}: not a recognised image format") from err
    except Image.DecompressionBombError as err:  # PIL's own refusal above 2x the limit, raised by Image.open
        raise UnreadableImageError(
            f"{name}: image too large ({err}; possible decompression bomb; raise PIL.Image.MAX_IMAGE_PIXELS if it "
            "is genuine)"
        ) from err
    except (OSError, SyntaxError, ValueError, EOFError) as err:
        raise UnreadableImageError(
            f"{name}: corrupt or truncated image ({type(err).__name__}: {err})"
        ) from err
    return _pil_to_grey(image)


def _pil_to_grey(image: Image.Image) -> Image.Image:
    if image.mode == "L":
        return image
    if image.mode in _HIGH_DEPTH_MODES:  # Image.convert("L") would clip 16-bit values at 255
        return Image.fromarray(scale_to_uint8(np.asarray(image)))
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    return image.convert("L")


# --- source helpers -----------------------------------------------------------------------------------------


def _read_bytes(source: ImageSource) -> tuple[bytes, str]:
    if isinstance(source, (bytes, bytearray)):
        return bytes(source), "<bytes>"
    if isinstance(source, (str, os.PathLike)):
        return Path(source).read_bytes(), str(source)
    return source.read(), _name(source)


def _head(source: ImageSource, size: int) -> bytes:
    if isinstance(source, (bytes, bytearray)):
        return bytes(source[:size])
    if isinstance(source, (str, os.PathLike)):
        with open(source, "rb") as f:
            return f.read(size)
    position = source.tell()
    head = source.read(size)
    source.seek(position)
    return head


def _name(source: object) -> str:
    if isinstance(source, (str, os.PathLike)):
        return str(source)
    if isinstance(source, (bytes, bytearray)):
        return "<bytes>"
    return str(getattr(source, "name", "<file object>"))


__all__ = [
    "DicomReadError",
    "UnreadableImageError",
    "dicom_to_image",
    "is_dicom",
    "read_dicom",
    "read_radiograph",
    "scale_to_uint8",
]

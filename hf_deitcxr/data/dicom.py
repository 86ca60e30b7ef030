"""Reading radiographs (DICOM or ordinary image files) into 8-bit greyscale PIL images.

DICOM display pipeline (PS3.3 C.11, in `dicom_display`), as a viewer would show the image:
stored values -> Modality LUT / RescaleSlope+Intercept -> VOI LUT sequence, else WindowCenter/Width, else the
range the stored bit depth (BitsStored) can hold (or percentiles of the actual values, when asked) -> 8 bit ->
inverted for MONOCHROME1 or Presentation LUT Shape INVERSE, once if both (so bone is always bright). Stored values
of 8 bits or fewer with nothing to apply are kept as they are, like a JPEG. Colour DICOMs (RGB, YBR_*, PALETTE
COLOR) become greyscale by ITU-R 601 luma. Compressed transfer syntaxes decode through pydicom's plug-ins: RLE
and (via Pillow) JPEG baseline / JPEG 2000 out of the box, JPEG Lossless and JPEG-LS with the `[dicom]` extra.
Every attribute is validated and the pixel budget (`image_errors`) checked from the header before any pixel is
decoded; other files go through `raster` (PNG, JPEG, TIFF, BMP, WebP only).
"""

from __future__ import annotations

import io
import os
import struct
import warnings
import zlib
from pathlib import Path
from typing import BinaryIO

import numpy as np
import pydicom
from PIL import Image
from pydicom.errors import InvalidDicomError
from pydicom.pixels import pixel_array
from pydicom.uid import DeflatedExplicitVRLittleEndian

from .dicom_display import ImageHeader, display_uint8
from .grey_levels import scale_to_uint8
from .image_errors import DicomReadError, UnreadableImageError, pixel_budget
from .raster import decode_raster

ImageSource = str | os.PathLike | bytes | bytearray | BinaryIO

DICOM_MAGIC_OFFSET = 128
DICOM_MAGIC = b"DICM"
# Sentences apart: the Space shows the user the first two and drops the pip one (serving.safe_text.user_message).
_DECODER_HINT = ('no decoder for it is installed. Convert the file to an uncompressed DICOM or a PNG. To decode it '
                 'here, pip install "hf_deitcxr[dicom]" (the pylibjpeg plug-ins for JPEG, JPEG-LS, JPEG 2000, RLE).')
# A deflated data set is inflated whole by pydicom before its header can be read: inflate it ourselves first, at
# most to 2 bytes per budgeted pixel (16-bit samples) plus room for the header, so a zlib bomb is refused early.
_DEFLATE_HEADER_ROOM = 16 * 2**20


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
    _parse_every_element(ds, name)
    header = ImageHeader(ds, name)
    header.check_budget()  # from the header alone, before any pixel is decoded
    syntax = _transfer_syntax(ds, name)
    header.check_pixel_data_length(ds, compressed=bool(getattr(syntax, "is_compressed", False)))
    if header.frames > 1:
        warnings.warn(f"{name}: multi-frame DICOM ({header.frames} frames); using the first frame", stacklevel=3)
    array = _decode_first_frame(ds, name, syntax)
    try:
        grey = display_uint8(array, ds, header, percentiles)
    except DicomReadError:
        raise
    except Exception as err:  # a combination of attributes the checks above did not foresee
        raise DicomReadError(f"{name}: DICOM display attributes are unusable ({err})") from err
    return Image.fromarray(np.ascontiguousarray(grey))


def read_radiograph(source: ImageSource, *, percentiles: tuple[float, float] | None = None) -> Image.Image:
    """Any radiograph file (DICOM by content, else anything PIL opens) -> fully decoded mode "L" image.

    Raises UnreadableImageError (DicomReadError for DICOM) for empty, truncated, corrupt or non-image
    content, for formats other than PNG/JPEG/TIFF/BMP/WebP/DICOM, and for images whose header declares more
    than the pixel budget (`PIL.Image.MAX_IMAGE_PIXELS` samples; PIL only warns below twice that limit; we
    refuse). A missing path raises FileNotFoundError. Note: if something set
    `PIL.ImageFile.LOAD_TRUNCATED_IMAGES = True`, PIL pads truncated files instead of failing, and they pass.
    """
    data, name = _read_bytes(source)
    if not data:
        raise UnreadableImageError(f"{name}: empty file (0 bytes)")
    if data[DICOM_MAGIC_OFFSET : DICOM_MAGIC_OFFSET + 4] == DICOM_MAGIC:
        return read_dicom(data, percentiles=percentiles)
    try:
        return decode_raster(data, name)
    except UnreadableImageError:
        if name.lower().endswith((".dcm", ".dicom")):  # DICOM without preamble, named as such
            return read_dicom(data, percentiles=percentiles, force=True)
        raise


# --- DICOM internals ----------------------------------------------------------------------------------------


def _dcmread(source: ImageSource, *, force: bool) -> pydicom.Dataset:
    name = _name(source)
    if isinstance(source, (bytes, bytearray)):
        _check_deflated_size(bytes(source), name)
        fp = io.BytesIO(bytes(source))
    else:
        fp = source
    try:
        return pydicom.dcmread(fp, force=force)
    except InvalidDicomError as err:
        raise DicomReadError(f"{name}: not a DICOM file (no 'DICM' preamble at byte 128): {err}") from err
    except FileNotFoundError:
        raise
    except Exception as err:  # pydicom raises many types on truncated/corrupt headers
        raise DicomReadError(f"{name}: corrupt or truncated DICOM header ({err})") from err


def _check_deflated_size(data: bytes, name: str) -> None:
    """Check a deflated data set's declared size against the pixel budget without inflating it all.

    pydicom inflates the whole data set before reading any attribute, so a few-MB zlib bomb would cost GBs first.
    The header is read from the first inflated MiB instead; failing that, inflation stops at 2 bytes per budgeted
    pixel (16-bit samples) plus room for the header.
    """
    budget = pixel_budget()
    if budget is None or DeflatedExplicitVRLittleEndian.encode() not in data[:4096]:
        return
    # (0002,0000) File Meta Information Group Length, explicit VR "UL", right after the preamble
    start = DICOM_MAGIC_OFFSET + len(DICOM_MAGIC)
    if data[start : start + 6] != b"\x02\x00\x00\x00UL":
        return  # no group length: pydicom will judge the file
    meta_end = start + 12 + struct.unpack("<I", data[start + 8 : start + 12])[0]
    try:
        head = zlib.decompressobj(-zlib.MAX_WBITS).decompress(data[meta_end:], _DEFLATE_HEADER_ROOM // 16)
        header = pydicom.dcmread(io.BytesIO(head), force=True, stop_before_pixels=True)
    except Exception:  # a header beyond the first MiB or a broken stream: the size cap below decides
        header = None
    if header is not None and "Rows" in header and "Columns" in header:
        ImageHeader(header, name).check_budget()
        return
    cap = 2 * budget + _DEFLATE_HEADER_ROOM
    inflater = zlib.decompressobj(-zlib.MAX_WBITS)
    try:
        inflated = len(inflater.decompress(data[meta_end:], cap))
    except zlib.error as err:
        raise DicomReadError(f"{name}: corrupt deflated DICOM data set ({err})") from err
    if inflated >= cap and inflater.unconsumed_tail:
        raise DicomReadError(f"{name}: image too large: the deflated DICOM data set inflates to more than "
                             f"{cap:,} bytes, beyond the pixel budget of {budget:,} (possible decompression bomb)")


def _parse_every_element(ds: pydicom.Dataset, name: str) -> None:
    """pydicom parses elements lazily, on first access: parse them all now, so a corrupt one is named here."""
    try:
        for _ in ds.iterall():
            pass
    except Exception as err:  # an unknown VR, a length that does not fit the VR, a broken sequence, ...
        raise DicomReadError(f"{name}: corrupt DICOM header element ({err})") from err


def _transfer_syntax(ds: pydicom.Dataset, name: str):
    file_meta = getattr(ds, "file_meta", None)
    syntax = file_meta.get("TransferSyntaxUID") if file_meta is not None else None
    if syntax is None:
        raise DicomReadError(f"{name}: DICOM file meta has no TransferSyntaxUID, so its pixel data cannot be read")
    try:
        syntax.is_compressed  # noqa: B018 - raises for a UID that is not a transfer syntax
    except Exception as err:
        raise DicomReadError(f"{name}: DICOM TransferSyntaxUID {str(syntax)[:64]!r} is not a transfer syntax") from err
    return syntax


def _decode_first_frame(ds: pydicom.Dataset, name: str, syntax) -> np.ndarray:
    try:
        # index=0 decodes only the first frame, so large multi-frame files do not fill memory
        return pixel_array(ds, index=0)
    except (RuntimeError, NotImplementedError) as err:
        syntax_name = getattr(syntax, "name", str(syntax))
        if syntax is not None and getattr(syntax, "is_compressed", False):
            raise DicomReadError(
                f"{name}: cannot decode compressed transfer syntax {syntax_name!r} ({syntax}): {_DECODER_HINT}"
            ) from err
        raise DicomReadError(f"{name}: cannot decode pixel data ({syntax_name}): {err}") from err
    except Exception as err:  # a compressed stream that does not decode, attributes pydicom refuses, ...
        raise DicomReadError(f"{name}: corrupt pixel data ({err})") from err


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

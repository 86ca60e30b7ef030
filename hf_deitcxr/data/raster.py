"""Ordinary image files (PNG, JPEG, TIFF, BMP, WebP) -> 8-bit grey PIL images, upright and within the pixel budget.

- Only the formats we claim are opened: Pillow's other plug-ins (GIF, PDF, PSD, ICO, EPS, ...) parse untrusted
  headers we never test, so they are refused with a message that names the format when it is recognisable.
- EXIF orientation is applied for every format (`ImageOps.exif_transpose`), so the model sees the image the way
  a viewer shows it (a phone-style Orientation=6 JPEG is upright).
- 16-bit grey images are mapped by their bit depth, not min-max: the PNG `sBIT` chunk when the file states its
  significant bits, else the smallest of 8/10/12/14/16 bits that holds the brightest pixel (12-bit data in a
  16-bit container is the common case). So the same picture saved at 12 or 16 bits gives the same grey levels
  (±1), and its contrast is kept. 32-bit integer images holding 0..65535 are treated alike; float images and
  other integers carry no bit depth: min-max of the finite values. This is `grey_levels.high_depth_to_uint8`, the
  function the saved image processor and training's image cache use too, so they see the same grey levels.
"""

from __future__ import annotations

import io
import struct

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .grey_levels import HIGH_DEPTH_MODES, high_depth_to_uint8
from .image_errors import UnreadableImageError, check_pixel_budget

ACCEPTED_FORMATS = ("PNG", "JPEG", "TIFF", "BMP", "WEBP")
ACCEPTED_TEXT = "PNG, JPEG, TIFF, BMP, WebP or DICOM"
# Magic numbers of formats Pillow (or a browser) knows but we refuse, to name them in the message.
_REFUSED_MAGIC = (
    (b"GIF87a", "GIF"), (b"GIF89a", "GIF"), (b"%PDF", "PDF"), (b"8BPS", "PSD"), (b"%!PS", "PostScript/EPS"),
    (b"\x00\x00\x01\x00", "ICO"), (b"icns", "ICNS"), (b"\x00\x00\x00\x0cjP  ", "JPEG 2000"),
    (b"\xff\x4f\xff\x51", "JPEG 2000"), (b"DDS ", "DDS"), (b"qoif", "QOI"), (b"\x76\x2f\x31\x01", "OpenEXR"),
)
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def decode_raster(data: bytes, name: str) -> Image.Image:
    """Decode a PNG/JPEG/TIFF/BMP/WebP file to an upright mode "L" image; UnreadableImageError otherwise."""
    try:
        image = Image.open(io.BytesIO(data), formats=ACCEPTED_FORMATS)
        # Our own size check instead of turning DecompressionBombWarning into an error: warning filters are
        # process-global and not thread-safe, and validation decodes in threads. PIL raises itself above 2x.
        bands = len(image.getbands())
        check_pixel_budget(name, f"{image.width}x{image.height}" + (f"x{bands} bands" if bands > 1 else ""),
                           image.width * image.height * bands, UnreadableImageError)
        image.load()  # Image.open only reads the header; decoding is what finds truncation/corruption
        image = ImageOps.exif_transpose(image)
    except UnreadableImageError:
        raise
    except UnidentifiedImageError as err:
        raise UnreadableImageError(_unrecognised(data, name)) from err
    except Image.DecompressionBombError as err:  # PIL's own refusal above 2x the limit, raised by Image.open
        raise UnreadableImageError(
            f"{name}: image too large ({err}; possible decompression bomb; raise PIL.Image.MAX_IMAGE_PIXELS if it "
            "is genuine)"
        ) from err
    except (OSError, SyntaxError, ValueError, EOFError, struct.error) as err:
        raise UnreadableImageError(f"{name}: corrupt or truncated image ({err})") from err
    try:
        return _to_grey(image, _png_significant_bits(data))
    except (ValueError, OSError) as err:  # modes Pillow opens but cannot convert, e.g. a CIELAB TIFF
        raise UnreadableImageError(f"{name}: a {image.mode} image cannot be shown as grey ({err})") from err


def _to_grey(image: Image.Image, significant_bits: int | None) -> Image.Image:
    if image.mode == "L":
        return image
    if image.mode in HIGH_DEPTH_MODES:  # Image.convert("L") would clip 16-bit values at 255
        return Image.fromarray(high_depth_to_uint8(np.asarray(image), significant_bits))
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    return image.convert("L")


def _png_significant_bits(data: bytes) -> int | None:
    """The grey sample's significant bits from a 16-bit PNG's sBIT chunk (None when absent or not 1..16)."""
    if not data.startswith(_PNG_SIGNATURE):
        return None
    position = len(_PNG_SIGNATURE)
    while position + 8 <= len(data):
        length, kind = struct.unpack(">I4s", data[position : position + 8])
        if kind in (b"IDAT", b"IEND"):  # sBIT comes before the image data
            return None
        if kind == b"sBIT" and length >= 1:
            bits = data[position + 8]
            return bits if 1 <= bits <= 16 else None
        position += 12 + length
    return None


def _unrecognised(data: bytes, name: str) -> str:
    known = next((fmt for magic, fmt in _REFUSED_MAGIC if data.startswith(magic)), None)
    if known is not None:
        return f"{name}: {known} files are not accepted (accepted: {ACCEPTED_TEXT})"
    return f"{name}: not a recognised image format (accepted: {ACCEPTED_TEXT})"


__all__ = ["ACCEPTED_FORMATS", "decode_raster"]

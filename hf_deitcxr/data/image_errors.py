"""The errors every image decoder raises, and the one pixel budget every format is checked against.

The budget is checked from the header (width x height, or DICOM Rows x Columns x frames x samples) before any
pixel is decoded, so a small file that declares a huge image is refused without the memory it would cost.
"""

from __future__ import annotations

from PIL import Image


class UnreadableImageError(ValueError):
    """An image file that cannot be decoded: empty, truncated, corrupt, not an image, or too large."""


class DicomReadError(UnreadableImageError):
    """A DICOM file without usable pixel data (not DICOM, no PixelData, no decoder, malformed attributes)."""


def pixel_budget() -> int | None:
    """The most pixel samples one image may hold: `PIL.Image.MAX_IMAGE_PIXELS` (one knob for every format)."""
    return Image.MAX_IMAGE_PIXELS


def check_pixel_budget(name: str, description: str, samples: int, error: type[UnreadableImageError]) -> None:
    """Refuse an image whose header declares more samples than `pixel_budget()` (description: e.g. '640x480')."""
    limit = pixel_budget()
    if limit is not None and samples > limit:
        raise error(
            f"{name}: image too large: {description} = {samples:,} pixels exceeds the pixel budget of {limit:,} "
            "(PIL.Image.MAX_IMAGE_PIXELS; possible decompression bomb)"
        )


__all__ = ["DicomReadError", "UnreadableImageError", "check_pixel_budget", "pixel_budget"]

"""Numeric pixel values -> 8-bit grey: by a known value range (bit depth, window) or by the image's own range.

The data layer's name for these functions. They are defined in the image processor's module
(`models/deit_cxr/image_processing_deit_cxr.py`) because that file is copied next to every saved checkpoint and
may import only numpy, PIL and transformers: so the Space's decoder, training's image cache and a saved
`RadiographImageProcessor` loaded with `trust_remote_code` map 16-bit and float images with one implementation.
"""

from __future__ import annotations

from ..models.deit_cxr.image_processing_deit_cxr import (
    HIGH_DEPTH_MODES,
    SIXTEEN_BIT_MODES,
    high_depth_to_uint8,
    range_to_uint8,
    scale_to_uint8,
    stored_bit_depth,
    unit_to_uint8,
)

__all__ = [
    "HIGH_DEPTH_MODES",
    "SIXTEEN_BIT_MODES",
    "high_depth_to_uint8",
    "range_to_uint8",
    "scale_to_uint8",
    "stored_bit_depth",
    "unit_to_uint8",
]

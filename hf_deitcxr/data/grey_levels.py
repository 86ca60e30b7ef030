"""Numeric pixel values -> 8-bit grey: by a known value range (bit depth, window) or by the image's own range."""

from __future__ import annotations

import numpy as np


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


__all__ = ["range_to_uint8", "scale_to_uint8", "unit_to_uint8"]

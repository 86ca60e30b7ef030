"""The Space's plumbing that needs no Gradio: settings read from the environment, and images that encode fast.

`fast_png`: Gradio writes every image output to its cache as a PNG at Pillow's default zlib level 6, which took
longer for one heatmap overlay than the student's forward pass; level 1 is several times faster for a file about as
large, with the same pixels (PNG is lossless; docs/RESULTS.md, "The Space under load"). Pillow reads save options
from the image's `encoderinfo` (documented in `Image.save`), so the level travels with the image through Gradio's own
`Image.save` call.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping

import numpy as np
from PIL import Image

PNG_COMPRESS_LEVEL = 1


def fast_png(image: np.ndarray | Image.Image | None) -> Image.Image | None:
    """`image` as a PIL image that Gradio (or anyone) saves as PNG at zlib level 1; None stays None."""
    if image is None:
        return None
    pil = Image.fromarray(image) if isinstance(image, np.ndarray) else image.copy()
    pil.encoderinfo = {**getattr(pil, "encoderinfo", {}), "compress_level": PNG_COMPRESS_LEVEL}
    return pil


def env_count(name: str, default: int, environ: Mapping[str, str] = os.environ) -> int:
    """A positive integer setting; anything else stops the app with the variable's name and what it expects."""
    value = environ.get(name, "").strip()
    if not value:
        return default
    if not value.isdigit() or int(value) < 1:
        sys.exit(f"{name}={value!r}: expected a whole number of at least 1 (default {default})")
    return int(value)


def env_flag(name: str, default: bool, environ: Mapping[str, str] = os.environ) -> bool:
    """1/0, true/false, yes/no, on/off; unset or empty: `default`."""
    value = environ.get(name)
    return default if value is None or value == "" else value.strip().lower() not in ("0", "false", "no", "off")


__all__ = ["env_count", "env_flag", "fast_png"]

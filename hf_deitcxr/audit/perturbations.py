"""Acquisition and processing changes a radiograph can plausibly undergo, applied to the 8-bit grey image.

Each `Perturbation` maps a uint8 (H, W) grey array to another of the same shape; the model's own image processor
runs afterwards, so a perturbation probes the model, not a re-implementation of its preprocessing. The operations
are `data.acquisition_ops`, the ones the processing augmentation draws from with random parameters.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import numpy as np

from ..data.acquisition_ops import (
    blur,
    border_crop,
    brightness,
    clahe,
    contrast,
    equalise,
    gamma,
    jpeg,
    letterbox,
    on_pil,
    resample,
)


@dataclass(frozen=True)
class Perturbation:
    """A named change to a uint8 grey image (`apply`), with the one-line description the report shows."""

    name: str
    description: str
    apply: Callable[[np.ndarray], np.ndarray]


def default_perturbations() -> tuple[Perturbation, ...]:
    """The probe's perturbations, mild to strong, in report order."""
    return (
        Perturbation("hist_equalise", "global histogram equalisation (PIL)", on_pil(equalise)),
        Perturbation("clahe", "CLAHE, clip 2, 8x8 tiles (kornia)", partial(clahe, clip_limit=2.0, grid=8)),
        Perturbation("gamma_0.6", "gamma 0.6 (brighter mid-tones)", partial(gamma, value=0.6)),
        Perturbation("gamma_1.6", "gamma 1.6 (darker mid-tones)", partial(gamma, value=1.6)),
        Perturbation("contrast_0.7", "contrast x0.7 about the mean", on_pil(partial(contrast, factor=0.7))),
        Perturbation("contrast_1.3", "contrast x1.3 about the mean", on_pil(partial(contrast, factor=1.3))),
        Perturbation("brightness_0.85", "brightness x0.85", on_pil(partial(brightness, factor=0.85))),
        Perturbation("brightness_1.15", "brightness x1.15", on_pil(partial(brightness, factor=1.15))),
        Perturbation("resample_0.25", "down to 1/4 size (box) and back up (bicubic)",
                     on_pil(partial(resample, factor=0.25))),
        Perturbation("blur_1.5", "Gaussian blur, sigma 1.5 px", on_pil(partial(blur, sigma=1.5))),
        Perturbation("jpeg_q50", "JPEG re-encoding, quality 50", on_pil(partial(jpeg, quality=50))),
        Perturbation("jpeg_q20", "JPEG re-encoding, quality 20", on_pil(partial(jpeg, quality=20))),
        Perturbation("border_crop_8%", "8 % cut off every border, resized back",
                     on_pil(partial(border_crop, fraction=0.08))),
        Perturbation("letterbox_10%", "squeezed between black bands of 10 % of the height",
                     on_pil(partial(letterbox, fraction=0.1))),
    )


__all__ = ["Perturbation", "default_perturbations"]

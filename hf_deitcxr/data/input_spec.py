"""How a model wants its pixels (size, channels, mean/std), read from its image processor: one home for the input
convention that training, evaluation, serving and mammography all follow."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from ..models.deit_cxr.image_processing_deit_cxr import GreyPreprocessing


@dataclass(frozen=True)
class InputSpec:
    """How a model wants its pixels: the grey image prepared by `preprocessing` (border removal, intensity
    normalisation) at size x size, normalised with mean/std, with `num_channels` channels."""

    mean: tuple[float, ...]
    std: tuple[float, ...]
    num_channels: int
    size: int
    preprocessing: GreyPreprocessing = field(default_factory=GreyPreprocessing)

    @classmethod
    def create(cls, mean: Sequence[float], std: Sequence[float], num_channels: int, size: int,
               preprocessing: GreyPreprocessing | None = None) -> InputSpec:
        if len(mean) != len(std) or len(mean) not in (1, num_channels):
            raise ValueError(f"mean/std of length {len(mean)}/{len(std)} do not fit {num_channels} channels")
        return cls(tuple(float(m) for m in mean), tuple(float(s) for s in std), num_channels, int(size),
                   preprocessing or GreyPreprocessing())

    @classmethod
    def from_processor(cls, processor, num_channels: int) -> InputSpec:
        """The spec of a model fed by `processor` (a transformers image processor) with `num_channels` channels."""
        mean, std, size = normalization_from_image_processor(processor)
        return cls.create(mean, std, num_channels, size, GreyPreprocessing.from_processor(processor))


def normalization_from_image_processor(processor) -> tuple[tuple[float, ...], tuple[float, ...], int]:
    """(mean, std, size) of a transformers image processor; `size` is the model's input size.

    That is `crop_size` when the processor centre-crops (stock DeiT: resize 256, crop 224), else `size`'s
    height (or shortest edge). Works with `size` given as a dict, a `SizeDict` or an int.
    """
    mean, std = getattr(processor, "image_mean", None), getattr(processor, "image_std", None)
    if mean is None or std is None:
        raise ValueError(f"{type(processor).__name__} has no image_mean/image_std")
    mean = (float(mean),) if isinstance(mean, (int, float)) else tuple(float(m) for m in mean)
    std = (float(std),) if isinstance(std, (int, float)) else tuple(float(s) for s in std)
    crops = getattr(processor, "do_center_crop", False) and getattr(processor, "crop_size", None)
    size = _edge_of(processor.crop_size) if crops else _edge_of(getattr(processor, "size", None))
    if size is None:
        name = type(processor).__name__
        raise ValueError(f"cannot read an input size from {name} (size={getattr(processor, 'size', None)!r})")
    return mean, std, size


def _edge_of(size) -> int | None:
    if size is None:
        return None
    if isinstance(size, int):
        return size
    for key in ("height", "shortest_edge"):
        value = size.get(key) if isinstance(size, Mapping) else getattr(size, key, None)
        if value:
            return int(value)
    return None


__all__ = ["InputSpec", "normalization_from_image_processor"]

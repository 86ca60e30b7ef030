"""Decode each radiograph once: grey, resized to the training size, held in memory (and optionally on disk).

- `load_grey_resized` / `preload_images`: every image is decoded, converted to grey and resized exactly once
  (uint8, 224 px: ~50 KB an image), so no epoch re-decodes a JPEG.
- `CachedImageDataset`: those pixels with their labels and extra columns (source, patient id), the data set
  every training run and evaluation iterates.

Radiographs are resized to a square without cropping (aspect ratio not kept), as the data sets were prepared.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence, Sized
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from functools import partial
from itertools import islice
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from ..models.deit_cxr.image_processing_deit_cxr import GreyPreprocessing, to_grey_array

logger = logging.getLogger(__name__)

# Columns kept next to the pixels when present (reports per source, patient-level checks).
DEFAULT_EXTRA_COLUMNS = ("source", "patient_id")
_CACHE_FORMAT_VERSION = 1




def load_grey_resized(image: Image.Image | str | os.PathLike | Mapping[str, Any], size: int,
                      preprocessing: GreyPreprocessing | None = None,
                      perturb: Callable[[np.ndarray], np.ndarray] | None = None) -> np.ndarray:
    """One image -> uint8 (size, size) grey array: greyscale first, then `perturb` if given (a processing
    augmentation of the full-size grey image), then `preprocessing.apply` (a PIL bicubic resize without crop, plus
    border removal / intensity normalisation when it asks for them).

    Accepts a PIL image, a file path or a `datasets` undecoded image dict (`{"bytes", "path"}`). 16-bit images are
    mapped to 8 bits by their bit depth (floats by their min-max) exactly as the saved image processor and the
    Space do (`to_grey_array`).
    """
    with _open_image(image) as opened:
        grey = to_grey_array(opened)[0]
    if perturb is not None:
        grey = perturb(grey)
    # np.array: a writable copy (torch.from_numpy warns on PIL's read-only buffer)
    return np.array((preprocessing or GreyPreprocessing()).apply(grey, size))


def preload_images(
    images: Iterable[Image.Image | str | os.PathLike | Mapping[str, Any]],
    size: int,
    num_workers: int | None = None,
    chunk_size: int = 256,
    length: int | None = None,
    preprocessing: GreyPreprocessing | None = None,
    perturbation: Callable[[int, np.ndarray], np.ndarray] | None = None,
) -> torch.Tensor:
    """Decode every image once -> uint8 tensor (N, 1, size, size). `perturbation(i, grey)`, if given, changes the
    i-th grey image (counted from 0 over `images`) before the preprocessing (`load_grey_resized`'s `perturb`).

    Pillow releases the GIL while decoding and resizing, so a thread pool uses all cores without pickling
    images to processes. Images are consumed in chunks so undecoded bytes of the whole data set are never held
    at once. When the number of images is known (`length`, or `len(images)`), the result is filled in place
    instead of stacked, halving peak memory.
    """
    if size <= 0:
        raise ValueError(f"size must be positive, got {size}")
    if length is None and isinstance(images, Sized):
        length = len(images)
    workers = num_workers if num_workers is not None else default_num_workers()
    start = time.perf_counter()
    chunks: list[np.ndarray] = []
    filled = 0
    pixels = torch.empty((length, 1, size, size), dtype=torch.uint8) if length is not None else None
    def decode(numbered: tuple[int, Any]) -> np.ndarray:
        index, image = numbered
        perturb = partial(perturbation, index) if perturbation is not None else None
        return load_grey_resized(image, size, preprocessing, perturb)

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        for chunk in _chunks(enumerate(images), chunk_size):
            decoded = np.stack(list(pool.map(decode, chunk)))
            if pixels is None:
                chunks.append(decoded)
            elif filled + len(decoded) > length:
                raise ValueError(f"more than the announced {length} images")
            else:
                pixels[filled : filled + len(decoded), 0] = torch.from_numpy(decoded)
            filled += len(decoded)
    if pixels is None:
        stacked = np.concatenate(chunks) if chunks else np.empty((0, size, size), dtype=np.uint8)
        pixels = torch.from_numpy(stacked)[:, None]
    elif filled != length:
        raise ValueError(f"{filled} images but {length} announced")
    logger.info("decoded %d images to %d px in %.1f s", filled, size, time.perf_counter() - start)
    return pixels


def default_num_workers() -> int:
    return max(1, min(8, os.cpu_count() or 1))


def _chunks(items: Iterator, chunk_size: int) -> Iterator[list]:
    while chunk := list(islice(items, chunk_size)):
        yield chunk


@contextmanager
def _open_image(source: Image.Image | str | os.PathLike | Mapping[str, Any]) -> Iterator[Image.Image]:
    """A PIL image as is, or one opened from a path / undecoded `datasets` dict and closed afterwards."""
    if isinstance(source, Image.Image):
        yield source
        return
    if isinstance(source, (str, os.PathLike)):
        opened = Image.open(source)
    elif isinstance(source, Mapping) and source.get("bytes") is not None:
        opened = Image.open(io.BytesIO(source["bytes"]))
    elif isinstance(source, Mapping) and source.get("path"):
        opened = Image.open(source["path"])
    else:
        raise TypeError(f"cannot read an image from {type(source).__name__}: {str(source)[:80]}")
    with opened:
        yield opened


class CachedImageDataset(torch.utils.data.Dataset):
    """Decoded, resized uint8 grey images with their labels (and optional extra columns) held in memory.

    `__getitem__` returns `{"pixels": uint8 (1, H, W), "labels": int, "index": int}`; `index` is the position
    in this data set (also through a `torch.utils.data.Subset`), which keys the teacher-logit cache.
    """

    def __init__(
        self,
        pixels: torch.Tensor,
        labels: torch.Tensor | Sequence[int],
        extras: Mapping[str, Sequence[Any]] | None = None,
        label_names: Sequence[str] | None = None,
    ) -> None:
        labels = torch.as_tensor(labels, dtype=torch.int64)
        if pixels.dtype != torch.uint8 or pixels.ndim != 4 or pixels.shape[1] != 1:
            raise ValueError(f"pixels must be uint8 (N, 1, H, W), got {pixels.dtype} {tuple(pixels.shape)}")
        if labels.ndim != 1 or len(labels) != len(pixels):
            raise ValueError(f"{len(pixels)} images but labels of shape {tuple(labels.shape)}")
        extras = {name: list(values) for name, values in (extras or {}).items()}
        for name, values in extras.items():
            if len(values) != len(pixels):
                raise ValueError(f"extra column {name!r} has {len(values)} values for {len(pixels)} images")
        self.pixels, self.labels, self.extras = pixels, labels, extras
        self.label_names = list(label_names) if label_names is not None else None

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return {"pixels": self.pixels[index], "labels": int(self.labels[index]), "index": int(index)}

    @property
    def image_size(self) -> int:
        return int(self.pixels.shape[-1])

    @classmethod
    def from_hf_dataset(
        cls,
        ds,
        size: int,
        image_column: str = "image",
        label_column: str = "label",
        extra_columns: Sequence[str] | None = None,
        num_workers: int | None = None,
        cache_dir: str | os.PathLike | None = None,
        preprocessing: GreyPreprocessing | None = None,
        perturbation: Callable[[int, np.ndarray], np.ndarray] | None = None,
    ) -> CachedImageDataset:
        """Decode a `datasets.Dataset` once (each image through `preprocessing`, see `load_grey_resized`).
        `extra_columns` default: those of `source`/`patient_id` present. `perturbation(i, grey)` changes image i
        before the preprocessing (`preload_images`); with a `cache_dir` it must have a `cache_key` naming it.

        With `cache_dir`, the decoded pixels are saved there keyed by the data set's fingerprint (which
        `datasets` derives from its data files and every transform applied), the image column, the size and the
        preprocessing, so a second run with the same data loads them instead of decoding.
        """
        for column in (image_column, label_column):
            if column not in ds.column_names:
                raise ValueError(f"column {column!r} not in the dataset; columns: {ds.column_names}")
        if extra_columns is None:
            extra_columns = [name for name in DEFAULT_EXTRA_COLUMNS if name in ds.column_names]
        plain = ds.with_format(None)  # a custom format (set_transform) would decode images to read a label
        labels = plain[label_column][:]
        if not all(isinstance(label, int) for label in labels):
            raise ValueError(f"column {label_column!r} must hold integer class indices (a ClassLabel feature)")
        extras = {name: plain[name][:] for name in extra_columns}

        preprocessing = preprocessing or GreyPreprocessing()
        cache_file = None
        if cache_dir is not None:
            cache_file = _cache_file(ds, image_column, size, cache_dir, preprocessing, _perturbation_key(perturbation))
        pixels = _load_cached_pixels(cache_file, len(ds), size)
        if pixels is None:
            images = _undecoded_images(ds, image_column)
            pixels = preload_images(images, size, num_workers=num_workers, length=len(ds), preprocessing=preprocessing,
                                    perturbation=perturbation)
            if cache_file is not None:
                _save_cached_pixels(cache_file, pixels)
        label_names = getattr(ds.features[label_column], "names", None)
        return cls(pixels, labels, extras=extras, label_names=label_names)


    @classmethod
    def concatenate(cls, parts: Sequence[CachedImageDataset]) -> CachedImageDataset:
        """One data set of `parts` in order (e.g. the images, then processed variants of them); every part must
        have the same image size, label names and extra columns."""
        if not parts:
            raise ValueError("nothing to concatenate")
        first = parts[0]
        for part in parts[1:]:
            if (part.pixels.shape[1:] != first.pixels.shape[1:] or part.label_names != first.label_names
                    or set(part.extras) != set(first.extras)):
                raise ValueError("cannot concatenate cached data sets of different image sizes, label names or "
                                 "extra columns")
        extras = {name: [value for part in parts for value in part.extras[name]] for name in first.extras}
        return cls(torch.cat([part.pixels for part in parts]), torch.cat([part.labels for part in parts]),
                   extras=extras, label_names=first.label_names)


def image_references(ds, image_column: str = "image") -> list[str | None]:
    """Where each image of a `datasets.Dataset` came from (its file path; None for images held as bytes only), in
    row order, without decoding any image: the per-image rows of an evaluation name their files."""
    return [value.get("path") if isinstance(value, Mapping) else None for value in _undecoded_images(ds, image_column)]


def _perturbation_key(perturbation: Callable | None) -> str | None:
    if perturbation is None:
        return None
    key = getattr(perturbation, "cache_key", None)
    if not key:
        raise ValueError("a perturbation cached on disk needs a `cache_key` that names it")
    return str(key)


def _undecoded_images(ds, image_column: str) -> Iterator[Any]:
    """The raw `{"bytes", "path"}` values, so decoding happens in the worker threads, not in `datasets`."""
    from datasets import Image as ImageFeature

    column = ds.select_columns([image_column]).with_format(None)
    if isinstance(column.features[image_column], ImageFeature):
        column = column.cast_column(image_column, ImageFeature(decode=False))
    for batch in column.iter(batch_size=256):
        yield from batch[image_column]


def _cache_file(ds, image_column: str, size: int, cache_dir: str | os.PathLike,
                preprocessing: GreyPreprocessing, perturbation_key: str | None = None) -> Path:
    fingerprint = getattr(ds, "_fingerprint", None)
    if not fingerprint:
        raise ValueError("this dataset has no fingerprint to key a pixel cache with; pass cache_dir=None")
    key = f"v{_CACHE_FORMAT_VERSION}|{fingerprint}|{image_column}|{len(ds)}|{size}"
    if not preprocessing.is_stock:  # stock keys unchanged, so caches written before the option stay valid
        key += f"|{preprocessing.intensity_normalization}|border={preprocessing.remove_border}"
    if perturbation_key is not None:
        key += f"|{perturbation_key}"
    return Path(cache_dir) / f"pixels-{hashlib.sha256(key.encode()).hexdigest()[:20]}-{size}px.pt"


def _load_cached_pixels(cache_file: Path | None, length: int, size: int) -> torch.Tensor | None:
    if cache_file is None or not cache_file.is_file():
        return None
    pixels = torch.load(cache_file, weights_only=True)
    if not isinstance(pixels, torch.Tensor) or tuple(pixels.shape) != (length, 1, size, size):
        logger.warning("ignoring pixel cache %s: unexpected content", cache_file)
        return None
    logger.info("loaded %d decoded images from %s", length, cache_file)
    return pixels


def _save_cached_pixels(cache_file: Path, pixels: torch.Tensor) -> None:
    # Write then rename, so an interrupted run never leaves a truncated cache behind.
    cache_file.parent.mkdir(parents=True, exist_ok=True)
    partial = cache_file.with_suffix(f".partial-{os.getpid()}")
    torch.save(pixels, partial)
    os.replace(partial, cache_file)


__all__ = ["CachedImageDataset", "default_num_workers", "image_references", "load_grey_resized", "preload_images"]

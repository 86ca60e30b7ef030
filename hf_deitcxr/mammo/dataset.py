"""Decode mammography exams once into uint8 tensors; exam-level and view-level datasets; the multi-view collator.

Every image is read with `read_radiograph` (DICOM or any PIL format, 8-bit grey), put into the common orientation
(chest wall on the left, see `orient`) and resized whole to the model size with `load_grey_resized` (no crop: the
full breast is kept, as in whole-mammogram transfer learning). Missing views stay zero and are masked.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageOps

from ..data.collate import RadiographCollator
from ..data.dicom import UnreadableImageError, read_radiograph
from ..data.image_cache import CachedImageDataset, default_num_workers, load_grey_resized
from .manifest import MammoManifest

logger = logging.getLogger(__name__)

ORIENTATIONS = ("laterality", "auto", "none")


class UnreadableMammogramError(UnreadableImageError):
    """An image of an exam could not be decoded; the message names the exam, the view and the file."""


def orient(image: Image.Image, laterality: str, orientation: str = "laterality") -> Image.Image:
    """Mirror an image so that every breast has its chest wall on the left.

    - `laterality`: right-breast views are mirrored (the DICOM display convention stores right breasts with the
      chest wall on the right, left breasts with it on the left);
    - `auto`: mirror when the right half holds more tissue (brighter) than the left (for film scans such as
      CBIS-DDSM, whose stored orientation varies);
    - `none`: keep the image as stored.
    """
    if orientation == "none":
        return image
    if orientation == "laterality":
        return ImageOps.mirror(image) if laterality == "R" else image
    if orientation == "auto":
        pixels = np.asarray(image.convert("L"), dtype=np.float32)
        half = pixels.shape[1] // 2
        return ImageOps.mirror(image) if pixels[:, -half:].mean() > pixels[:, :half].mean() else image
    raise ValueError(f"orientation must be one of {ORIENTATIONS}, got {orientation!r}")


def load_view(source: Any, laterality: str, size: int, orientation: str = "laterality") -> np.ndarray:
    """One mammogram (path, bytes or PIL image) -> oriented uint8 (size, size) grey array."""
    image = source if isinstance(source, Image.Image) else read_radiograph(source)
    return load_grey_resized(orient(image, laterality, orientation), size)


class MammoExamDataset(torch.utils.data.Dataset):
    """Exams as uint8 view stacks: `{"pixels": (V, 1, S, S), "view_mask": bool (V,), "labels": int}`.

    `view_labels` (E, V) holds each view's own label (-100 where the view is missing), for single-view training.
    """

    def __init__(
        self,
        pixels: torch.Tensor,
        view_mask: torch.Tensor,
        labels: torch.Tensor,
        view_labels: torch.Tensor,
        exam_ids: Sequence[str],
        patient_ids: Sequence[str],
        label_names: Sequence[str],
        view_slots: Sequence[str],
    ) -> None:
        if pixels.dtype != torch.uint8 or pixels.ndim != 5 or pixels.shape[2] != 1:
            raise ValueError(f"pixels must be uint8 (E, V, 1, S, S), got {pixels.dtype} {tuple(pixels.shape)}")
        if view_mask.shape != pixels.shape[:2] or view_labels.shape != pixels.shape[:2]:
            raise ValueError("view_mask and view_labels must be (E, V) like the pixels")
        if not bool(view_mask.any(dim=1).all()):
            raise ValueError("every exam needs at least one view")
        self.pixels, self.view_mask, self.labels, self.view_labels = pixels, view_mask, labels, view_labels
        self.exam_ids, self.patient_ids = list(exam_ids), list(patient_ids)
        self.label_names, self.view_slots = list(label_names), list(view_slots)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return {"pixels": self.pixels[index], "view_mask": self.view_mask[index], "labels": int(self.labels[index])}

    @property
    def image_size(self) -> int:
        return int(self.pixels.shape[-1])

    def single_view(self) -> CachedImageDataset:
        """The present views as a flat image dataset with per-view labels, for single-view models.

        Extra columns `exam_index` (position of the exam here) and `view` ("L-CC", ...) let exam-level scores be
        recovered from per-view predictions (`hf_deitcxr.mammo.evaluation.aggregate_views`).
        """
        exam_index, view_index = torch.nonzero(self.view_mask, as_tuple=True)
        return CachedImageDataset(
            self.pixels[exam_index, view_index],
            self.view_labels[exam_index, view_index],
            extras={"exam_index": exam_index.tolist(), "view": [self.view_slots[v] for v in view_index.tolist()],
                    "patient_id": [self.patient_ids[e] for e in exam_index.tolist()]},
            label_names=self.label_names,
        )

    @classmethod
    def from_manifest(
        cls,
        manifest: MammoManifest,
        size: int,
        orientation: str = "laterality",
        num_workers: int | None = None,
    ) -> MammoExamDataset:
        """Decode every image of `manifest` once (threads), oriented and resized to `size`."""
        if orientation not in ORIENTATIONS:
            raise ValueError(f"orientation must be one of {ORIENTATIONS}, got {orientation!r}")
        slots = list(manifest.view_slots)
        count = len(manifest.exams)
        pixels = torch.zeros((count, len(slots), 1, size, size), dtype=torch.uint8)
        view_mask = torch.zeros((count, len(slots)), dtype=torch.bool)
        view_labels = torch.full((count, len(slots)), -100, dtype=torch.int64)
        jobs = []
        for e, exam in enumerate(manifest.exams):
            for slot, view in exam.views.items():
                v = slots.index(slot)
                jobs.append((e, v, exam.exam_id, slot, view.path))
                view_mask[e, v] = True
                view_labels[e, v] = manifest.class_names.index(view.label)

        def decode(job):
            e, v, exam_id, slot, path = job
            try:
                return e, v, load_view(path, slot[0], size, orientation)
            except (UnreadableImageError, OSError) as err:
                raise UnreadableMammogramError(f"exam {exam_id!r} view {slot}: cannot read {path}: {err}") from err

        start = time.perf_counter()
        with ThreadPoolExecutor(max_workers=num_workers or default_num_workers()) as pool:
            for e, v, array in pool.map(decode, jobs):
                pixels[e, v, 0] = torch.from_numpy(array)
        logger.info("decoded %d mammograms of %d exams to %d px in %.1f s", len(jobs), count, size,
                    time.perf_counter() - start)
        labels = torch.as_tensor(manifest.exam_labels, dtype=torch.int64)
        return cls(pixels, view_mask, labels, view_labels, [e.exam_id for e in manifest.exams],
                   [e.patient_id for e in manifest.exams], manifest.class_names, slots)


class MultiViewCollator:
    """`data_collator` for `MammoExamDataset` items: `pixel_values` (B, V, C, S, S), `view_mask`, `labels`.

    Each present view goes through the chest X-ray pipeline's `RadiographCollator.transform` (float, augmentation
    when the collator augments, normalisation, channel replication), so single- and multi-view models see the
    same numerics. Missing views are left at zero and are never augmented; the model masks them.
    """

    def __init__(self, view_collator: RadiographCollator) -> None:
        self.view_collator = view_collator

    def __call__(self, features: Sequence[Mapping[str, Any]]) -> dict[str, torch.Tensor]:
        if not features:
            raise ValueError("cannot collate an empty batch")
        pixels = torch.stack([torch.as_tensor(feature["pixels"]) for feature in features])
        view_mask = torch.stack([torch.as_tensor(feature["view_mask"], dtype=torch.bool) for feature in features])
        if pixels.dtype != torch.uint8 or pixels.ndim != 5:
            raise ValueError(f"expected uint8 view stacks (V, 1, H, W), got {pixels.dtype} {tuple(pixels.shape[1:])}")
        present = self.view_collator.transform(pixels[view_mask])
        values = present.new_zeros((*view_mask.shape, *present.shape[1:]))
        values[view_mask] = present
        labels = torch.tensor([int(feature["labels"]) for feature in features], dtype=torch.int64)
        return {"pixel_values": values, "view_mask": view_mask, "labels": labels}


__all__ = ["ORIENTATIONS", "MammoExamDataset", "MultiViewCollator", "UnreadableMammogramError", "load_view", "orient"]

"""What every data source is read into before it becomes a `datasets.DatasetDict`: one record per image, the
split names and file kinds the sources recognise, and the schema (features, class order) they all share."""

from __future__ import annotations

import re
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import datasets

from .dicom import DICOM_MAGIC, DICOM_MAGIC_OFFSET

SPLIT_ALIASES: dict[str, str] = {
    "train": "train", "training": "train",
    "validation": "validation", "valid": "validation", "val": "validation", "dev": "validation",
    "test": "test", "testing": "test", "eval": "test", "evaluation": "test",
}  # fmt: skip
IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".gif", ".webp", ".pgm", ".ppm"})
DICOM_EXTENSIONS = frozenset({".dcm", ".dicom", ".dic"})
UNKNOWN_SOURCE = "unknown"


class MissingFilesError(FileNotFoundError):
    """Files listed in a manifest or metadata file do not exist; `paths` holds every one of them."""

    def __init__(self, paths: Sequence[str], listed_in: str) -> None:
        self.paths = list(paths)
        shown = "\n  ".join(self.paths)
        super().__init__(f"{len(self.paths)} file(s) listed in {listed_in} do not exist:\n  {shown}")


@dataclass(frozen=True)
class ImageRecord:
    """One image of a local source, before the `datasets` schema is applied."""

    path: str
    label: str | None
    patient_id: str | None
    source: str | None
    split: str
    key: str  # stable per-image name (relative path) for generated patient ids


def has_dicom_preamble(path: Path) -> bool:
    try:
        with open(path, "rb") as f:
            return f.read(DICOM_MAGIC_OFFSET + 4)[DICOM_MAGIC_OFFSET:] == DICOM_MAGIC
    except OSError:
        return False


def str_or_none(value: object) -> str | None:
    if value is None:
        return None
    text = str(value).strip()
    return text or None


def dataset_features(names: Sequence[str]) -> datasets.Features:
    return datasets.Features(
        {
            "image": datasets.Image(),
            "label": datasets.ClassLabel(names=list(names)),
            "patient_id": datasets.Value("string"),
            "source": datasets.Value("string"),
        }
    )


def class_names_for(labels: Iterable[str | None], class_names: Sequence[str] | None, where: str) -> list[str]:
    found = {label for label in labels if label is not None}
    if not found:
        raise ValueError(f"no labels found in {where}")
    if class_names is None:
        return _sorted_labels(found)
    names = [str(name) for name in class_names]
    if len(set(names)) != len(names):
        raise ValueError(f"class_names has duplicates: {names}")
    unknown = sorted(found - set(names))
    if unknown:
        raise ValueError(f"{where} has label(s) {unknown} that are not in class_names {names}")
    absent = [name for name in names if name not in found]
    if absent:
        warnings.warn(f"class_names {absent} do not occur in {where}", stacklevel=4)
    return names


def _sorted_labels(labels: Iterable[str]) -> list[str]:
    labels = list(labels)
    if all(re.fullmatch(r"-?\d+", label) for label in labels):
        return sorted(labels, key=int)  # "2" before "10"
    return sorted(labels)


def ordered_splits(splits: Iterable[str]) -> list[str]:
    preferred = ["train", "validation", "test"]
    present = list(splits)
    return [s for s in preferred if s in present] + sorted(s for s in present if s not in preferred)


def warn_missing_patients(missing: int, total: int, where: str) -> None:
    if missing:
        warnings.warn(
            f"{missing} of {total} image(s) in {where} have no patient_id: each is treated as its own "
            "patient, so images of one patient may end up in different splits",
            stacklevel=4,
        )

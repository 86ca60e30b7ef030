"""Load radiograph classification data from the Hub, an imagefolder, a CSV manifest, a folder of DICOMs or a
`datasets` `save_to_disk` folder (standardised like a Hub dataset).

Every source becomes the same `datasets.DatasetDict` with exactly these columns in every split:

- `image`: `datasets.Image()` holding a file path, decoded lazily on access (nothing is read at load time
  and the Arrow table holds paths only, so memory stays bounded whatever the data size). DICOM files are
  decoded once at load time through `dicom.read_dicom` (modality/VOI LUT, MONOCHROME1 inversion) to 8-bit
  greyscale PNGs in a cache folder (`cache_dir`, default `$HF_DEITCXR_CACHE/dicom_png` or
  `~/.cache/hf_deitcxr/dicom_png`, keyed on the DICOM's path, size and mtime) and the column points at those
  PNGs; so DICOM and JPEG data look the same to every later step and no per-access transform is needed (one
  would be lost to `set_transform`). Ordinary image files are referenced where they are and decoded as
  stored (RGB stays RGB).
- `label`: `datasets.ClassLabel`. Class order: `class_names` when given (labels not in it raise), else the
  Hub dataset's own ClassLabel order, else the sorted label names (numerically when all labels are integers).
  All splits share one ClassLabel.
- `patient_id` (string): from the data; for DICOM without one, the DICOM PatientID tag; if still missing, each
  image is its own patient (with a warning: repeat patients then cannot be kept in one split).
- `source` (string): the data's `source` column, else "unknown".

Local imagefolders are read directly (os.walk + metadata files) rather than with
`datasets.load_dataset("imagefolder")`: that is much faster on cxr3, writes no cache, and
keeps the ClassLabel/patient handling above identical for every source. The layout follows the HF
convention: split folders named train/training, validation/valid/val/dev, test/testing/eval/evaluation (else
everything is train), optional `metadata.csv`/`metadata.jsonl` with `file_name` relative to the metadata
file, labels from the metadata's label column or else the image's parent folder name.

When the data has a train split but no validation (or test) split, one is carved out of train at the patient
level (`splits.patient_level_split`) with `validation_fraction` (`test_fraction`) of the train images.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

import datasets

from .dicom_cache import convert_dicoms, dicom_cache_dir
from .hub_source import is_saved_dataset, load_hub, load_saved
from .local_sources import records_from_directory, records_from_manifest
from .records import (
    DICOM_EXTENSIONS,
    IMAGE_EXTENSIONS,
    SPLIT_ALIASES,
    UNKNOWN_SOURCE,
    ImageRecord,
    MissingFilesError,
    class_names_for,
    dataset_features,
    ordered_splits,
    warn_missing_patients,
)
from .splits import patient_level_split

logger = logging.getLogger(__name__)

MANIFEST_EXTENSIONS = frozenset({".csv", ".tsv"})
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")


def load_radiograph_dataset(
    source: str | os.PathLike,
    *,
    class_names: Sequence[str] | None = None,
    split_names: Mapping[str, str] | None = None,
    label_column: str = "label",
    image_column: str = "image",
    revision: str | None = None,
    validation_fraction: float = 0.15,
    test_fraction: float = 0.0,
    seed: int = 0,
    cache_dir: str | os.PathLike | None = None,
    num_workers: int | None = None,
) -> datasets.DatasetDict:
    """Load `source` (Hub id, imagefolder, CSV/TSV manifest or DICOM folder); see the module docstring.

    class_names: the class order of the `label` ClassLabel (default: sorted label names).
    split_names: extra source-split -> output-split aliases on top of `SPLIT_ALIASES` ({"holdout": "test"}).
    label_column: label column of metadata files, manifests and Hub or saved datasets.
    image_column: image column of Hub or saved datasets (manifests use `path` or `file_name`, else this column;
        imagefolders refuse anything but the default). revision: of a Hub dataset (refused for a local path).
    cache_dir: where decoded DICOMs are written as PNG. num_workers: threads for DICOM conversion.
    """
    aliases = {**SPLIT_ALIASES, **{k.lower(): v for k, v in (split_names or {}).items()}}
    path = Path(source).expanduser().absolute()  # the image column must not depend on the working directory
    if revision is not None and path.exists():
        raise ValueError(f"revision {revision!r} applies to Hub datasets only; {str(source)!r} is a local path")
    if path.is_dir() and is_saved_dataset(path):
        dataset_dict = load_saved(path, label_column, image_column, class_names, aliases)
        return _carve_missing_splits(dataset_dict, validation_fraction, test_fraction, seed)
    if path.is_dir():
        if image_column != "image":  # an imagefolder names its images by file_name (metadata) or by file
            raise ValueError(f"image_column {image_column!r} applies to Hub or saved datasets and manifests, not "
                             f"to the imagefolder {str(source)!r} (its metadata names images by `file_name`)")
        records = records_from_directory(path, label_column, aliases)
    elif path.is_file():
        if path.suffix.lower() not in MANIFEST_EXTENSIONS:
            raise ValueError(
                f"unsupported source {str(source)!r}: expected a directory, a .csv/.tsv manifest or a Hub dataset id"
            )
        records = records_from_manifest(path, label_column, image_column, aliases)
    elif _HUB_ID.match(str(source)) and not str(source).endswith(tuple(MANIFEST_EXTENSIONS)):
        dataset_dict = load_hub(str(source), revision, label_column, image_column, class_names, aliases)
        return _carve_missing_splits(dataset_dict, validation_fraction, test_fraction, seed)
    else:
        raise FileNotFoundError(f"{str(source)!r} is neither an existing file/directory nor a Hub dataset id")
    if not records:
        raise ValueError(
            f"no images found in {str(source)!r} (looked for {sorted(IMAGE_EXTENSIONS | DICOM_EXTENSIONS)})"
        )
    records = convert_dicoms(records, dicom_cache_dir(cache_dir), num_workers)
    dataset_dict = _build_dataset_dict(records, class_names, str(source))
    return _carve_missing_splits(dataset_dict, validation_fraction, test_fraction, seed)


def _build_dataset_dict(records: list[ImageRecord], class_names: Sequence[str] | None, where: str):
    names = class_names_for([r.label for r in records], class_names, where)
    features = dataset_features(names)
    index = {name: i for i, name in enumerate(names)}
    warn_missing_patients(sum(r.patient_id is None for r in records), len(records), where)
    by_split: dict[str, list[ImageRecord]] = {}
    for record in records:
        by_split.setdefault(record.split, []).append(record)
    splits = {}
    for split in ordered_splits(by_split):
        rows = by_split[split]
        columns = {
            "image": [r.path for r in rows],
            "label": [index[r.label] for r in rows],
            "patient_id": [r.patient_id or f"image:{r.key}" for r in rows],
            "source": [r.source or UNKNOWN_SOURCE for r in rows],
        }
        splits[split] = datasets.Dataset.from_dict(columns, features=features, split=split)
    return datasets.DatasetDict(splits)


def _carve_missing_splits(
    dataset_dict: datasets.DatasetDict, validation_fraction: float, test_fraction: float, seed: int
) -> datasets.DatasetDict:
    wanted = {name: fraction for name, fraction in (("validation", validation_fraction), ("test", test_fraction))}
    fractions = {name: f for name, f in wanted.items() if f and name not in dataset_dict}
    if not fractions or "train" not in dataset_dict:
        return dataset_dict
    logger.info("no %s split: patient-level split of train with fractions %s", "/".join(fractions), fractions)
    try:
        carved = patient_level_split(dataset_dict["train"], fractions, seed=seed)
    except ValueError as err:
        raise ValueError(f"{err} (set validation_fraction=0 / test_fraction=0 to skip the split)") from err
    merged = {**dataset_dict, **carved}
    return datasets.DatasetDict({name: merged[name] for name in ordered_splits(merged)})


__all__ = ["SPLIT_ALIASES", "MissingFilesError", "load_radiograph_dataset"]

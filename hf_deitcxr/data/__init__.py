"""Data layer: load radiographs from any source into one schema, decode DICOM, split by patient, find leakage.

The training-time modules (`image_cache`, `augmentation`, `collate`, `input_spec`, `balancing`) are imported from
their own modules and are not re-exported here.
"""

from .dicom import DicomReadError, UnreadableImageError, dicom_to_image, is_dicom, read_dicom, read_radiograph
from .sources import SPLIT_ALIASES, MissingFilesError, load_radiograph_dataset
from .splits import patient_level_split, patient_subset
from .validation import DataReport, DuplicateImage, LeakageError, UnreadableImage, ensure_no_leakage, validate_dataset

__all__ = [
    "SPLIT_ALIASES",
    "DataReport",
    "DicomReadError",
    "DuplicateImage",
    "LeakageError",
    "MissingFilesError",
    "UnreadableImage",
    "UnreadableImageError",
    "dicom_to_image",
    "ensure_no_leakage",
    "is_dicom",
    "load_radiograph_dataset",
    "patient_level_split",
    "patient_subset",
    "read_dicom",
    "read_radiograph",
    "validate_dataset",
]

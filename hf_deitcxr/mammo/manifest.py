"""Mammography exams from a CSV manifest or from DICOM tags: up to four views per exam, validated, split by patient.

A manifest has one row per image and the columns `exam_id, patient_id, laterality, view, path, label`; optional
columns are `split` (assigns rows to train/validation/test) and `breast_id` (the breast's key for
`exam_unit="breast"`); any other column (e.g. CBIS-DDSM's `cbis_split`, `pathology_raw`, `source`) is ignored.
Laterality is `L`/`R` (or `left`/`right`), view is `CC` or `MLO`; together they name one of the four view slots
`L-CC, L-MLO, R-CC, R-MLO`. Relative paths are resolved against the manifest's folder, and a folder holding a
`manifest.csv` (such as `cbis_mass/`) may be given instead of the CSV. A view missing from an exam stays missing (the
models mask it); it is never filled in with another image.

Rows are grouped into exams by `exam_unit` (`exam`: the exam_id column; `breast`: one breast's CC + MLO; `patient`)
and several crops of one view slot follow `multi_crop` (`pair`: every crop used once, the k-th most severe crops of
the slots forming the k-th exam; `most_severe`: one crop per slot): see `hf_deitcxr.mammo.exams`. Labels are per
image (per lesion crop or per breast); the exam label is the most severe label of its views, where severity is the
class order (`class_names`, default sorted names, e.g. `benign, malignant`: malignant if any crop is).
"""

from __future__ import annotations

import csv
import logging
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import datasets
import numpy as np
import pydicom

from ..data.dicom import is_dicom
from ..data.sources import SPLIT_ALIASES, MissingFilesError
from ..data.splits import patient_level_split
from ..data.validation import LeakageError
from .exams import VIEW_SLOTS, MammoExam, MammoImage, MammoView, check_rules, group_exams

logger = logging.getLogger(__name__)

MANIFEST_NAME = "manifest.csv"  # the CSV looked for when a folder is given
REQUIRED_COLUMNS: tuple[str, ...] = ("exam_id", "patient_id", "laterality", "view", "path", "label")
_LATERALITY = {"l": "L", "left": "L", "r": "R", "right": "R"}
_VIEW = {"cc": "CC", "mlo": "MLO"}
_SHOW = 10  # problems listed per error message


class ManifestError(ValueError):
    """A mammography manifest (or DICOM folder) that cannot be used as it is; the message lists every problem."""


@dataclass
class MammoManifest:
    exams: list[MammoExam]
    class_names: list[str]
    source: str = "<rows>"
    view_slots: tuple[str, ...] = field(default=VIEW_SLOTS)
    images: list[MammoImage] = field(default_factory=list)  # every listed image, left-out crops included
    exam_unit: str = "exam"
    multi_crop: str = "pair"

    def __len__(self) -> int:
        return len(self.exams)

    @property
    def exam_labels(self) -> np.ndarray:
        return np.asarray([exam.label_index(self.class_names) for exam in self.exams], dtype=np.int64)

    @property
    def num_images(self) -> int:
        return sum(len(exam.views) for exam in self.exams)

    @property
    def num_left_out(self) -> int:
        """Images in no exam (the crops `multi_crop="most_severe"` did not choose)."""
        return len(self.images) - self.num_images if self.images else 0  # a manifest built by hand lists none

    def subset(self, exams: Iterable[MammoExam]) -> MammoManifest:
        exams = list(exams)
        units = {exam.unit_id for exam in exams}
        images = [image for image in self.images if image.unit_key(self.exam_unit) in units]
        return replace(self, exams=exams, images=images)

    def split(
        self, validation_fraction: float = 0.15, test_fraction: float = 0.0, *, seed: int = 0,
        allow_leakage: bool = False,
    ) -> dict[str, MammoManifest]:
        """Exams by split: the manifest's `split` column when it has one, else a patient-level split.

        A patient whose exams sit in two splits raises `LeakageError` (unless `allow_leakage`).
        """
        if any(exam.split for exam in self.exams):
            splits: dict[str, list[MammoExam]] = {}
            for exam in self.exams:
                splits.setdefault(exam.split or "train", []).append(exam)
            result = {name: self.subset(members) for name, members in splits.items()}
            _check_patient_leakage(result, allow_leakage)
            return result
        fractions = {name: value for name, value in (("validation", validation_fraction), ("test", test_fraction))
                     if value > 0}
        if not fractions:
            return {"train": self}
        table = datasets.Dataset.from_dict({
            "row": list(range(len(self.exams))),
            "patient_id": [exam.patient_id for exam in self.exams],
            "label": self.exam_labels.tolist(),
        })
        parts = patient_level_split(table, fractions, seed=seed)
        return {name: self.subset(self.exams[i] for i in part["row"]) for name, part in parts.items()}

    def write_csv(self, path: str | os.PathLike) -> Path:
        """Write the manifest (one row per image, absolute paths) so it can be read back with `read_manifest`."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=[*REQUIRED_COLUMNS, "split"])
            writer.writeheader()
            for exam in self.exams:
                for slot, view in exam.views.items():
                    laterality, view_position = slot.split("-")
                    writer.writerow({"exam_id": exam.exam_id, "patient_id": exam.patient_id,
                                     "laterality": laterality, "view": view_position, "path": view.path,
                                     "label": view.label, "split": exam.split or ""})
        return path


def load_mammo_manifest(
    source: str | os.PathLike,
    class_names: Sequence[str] | None = None,
    dicom_labels: str | os.PathLike | None = None,
    check_files: bool = True,
    *,
    exam_unit: str = "exam",
    multi_crop: str = "pair",
) -> MammoManifest:
    """A CSV manifest, a folder holding a `manifest.csv`, or a folder of mammography DICOMs (views from their tags)
    labelled by `dicom_labels`; rows grouped into exams by `exam_unit` and `multi_crop` (`hf_deitcxr.mammo.exams`)."""
    path = Path(source).expanduser()
    rules = {"exam_unit": exam_unit, "multi_crop": multi_crop}
    if path.is_dir() and dicom_labels is None and (path / MANIFEST_NAME).is_file():
        return read_manifest(path / MANIFEST_NAME, class_names, check_files=check_files, **rules)
    if path.is_dir():
        if dicom_labels is None:
            raise ManifestError(f"{path} is a folder without a {MANIFEST_NAME}: DICOM mammograms need a labels CSV "
                                "(exam_id[,laterality],label)")
        rows = rows_from_dicom(path, read_dicom_labels(dicom_labels))
        return manifest_from_rows(rows, class_names, where=str(path), check_files=check_files, **rules)
    if not path.is_file():
        raise FileNotFoundError(f"mammography data {str(source)!r}: no such manifest file or folder")
    return read_manifest(path, class_names, check_files=check_files, **rules)


def find_mammo_manifest(source: str | os.PathLike) -> Path | None:
    """The mammography manifest `source` names (a CSV, or a folder's `manifest.csv`) when its header has the
    laterality and view columns, else None; reads the header only."""
    path = Path(source).expanduser()
    path = path / MANIFEST_NAME if path.is_dir() else path
    if path.suffix.lower() != ".csv" or not path.is_file():
        return None
    with open(path, newline="", encoding="utf-8-sig") as handle:
        header = {name.strip() for name in next(csv.reader(handle), [])}
    return path if {"laterality", "view"} <= header else None


def read_manifest(
    path: str | os.PathLike,
    class_names: Sequence[str] | None = None,
    check_files: bool = True,
    *,
    exam_unit: str = "exam",
    multi_crop: str = "pair",
) -> MammoManifest:
    """Read and validate a CSV manifest (see the module docstring); raises `ManifestError` listing the problems."""
    path = Path(path)
    with open(path, newline="", encoding="utf-8-sig") as handle:  # -sig: Excel writes a BOM
        reader = csv.DictReader(handle)
        columns = [(name or "").strip() for name in reader.fieldnames or []]
        missing = [name for name in REQUIRED_COLUMNS if name not in columns]
        if missing:
            raise ManifestError(f"{path}: missing column(s) {missing}; found {columns}, need {list(REQUIRED_COLUMNS)}")
        rows = []
        for line, row in enumerate(reader, start=2):  # line 1 is the header
            clean = {(key or "").strip(): (value or "").strip() for key, value in row.items()}
            clean["_where"] = f"{path.name} line {line}"
            clean["path"] = str(_resolve(clean["path"], path.parent)) if clean["path"] else ""
            rows.append(clean)
    return manifest_from_rows(rows, class_names, where=str(path), check_files=check_files, exam_unit=exam_unit,
                              multi_crop=multi_crop)


def manifest_from_rows(
    rows: Sequence[Mapping[str, str]],
    class_names: Sequence[str] | None = None,
    where: str = "<rows>",
    check_files: bool = True,
    *,
    exam_unit: str = "exam",
    multi_crop: str = "pair",
) -> MammoManifest:
    """Validate rows (dicts with the manifest columns; `_where` optional) and group them into exams."""
    check_rules(exam_unit, multi_crop)
    if not rows:
        raise ManifestError(f"{where}: no images listed")
    problems: list[str] = []
    images = [image for number, row in enumerate(rows)
              if (image := _parse_row(row, row.get("_where") or f"row {number}", problems)) is not None]
    problems += _listed_twice(images)
    names = _class_names(class_names, list(dict.fromkeys(image.label for image in images)), problems)
    exams, grouping_problems = group_exams(images, names, exam_unit, multi_crop)
    problems += grouping_problems
    if check_files:
        absent = [f"{image.path} ({image.where})" for image in images if not Path(image.path).is_file()]
        if absent and not problems:
            raise MissingFilesError(absent, where)
        problems += [f"file not found: {item}" for item in absent]
    if problems:
        shown = "\n  ".join(problems[:_SHOW]) + (f"\n  ... and {len(problems) - _SHOW} more" if len(problems) > _SHOW
                                                 else "")
        raise ManifestError(f"{where}: {len(problems)} problem(s):\n  {shown}")
    manifest = MammoManifest(exams, names, where, images=images, exam_unit=exam_unit, multi_crop=multi_crop)
    if manifest.num_left_out:
        logger.info("%s: %d crop(s) left out by multi_crop=most_severe", where, manifest.num_left_out)
    return manifest


def _parse_row(row: Mapping[str, str], origin: str, problems: list[str]) -> MammoImage | None:
    values = {name: str(row.get(name) or "").strip() for name in (*REQUIRED_COLUMNS, "split", "breast_id")}
    empty = [name for name in REQUIRED_COLUMNS if not values[name]]
    if empty:
        problems.append(f"{origin}: empty {', '.join(empty)}")
        return None
    laterality = _LATERALITY.get(values["laterality"].lower())
    view_position = _VIEW.get(values["view"].lower())
    if laterality is None:
        problems.append(f"{origin}: unknown laterality {values['laterality']!r} (use L or R)")
    if view_position is None:
        problems.append(f"{origin}: unknown view {values['view']!r} (use CC or MLO)")
    split = None
    if values["split"]:
        split = SPLIT_ALIASES.get(values["split"].lower())
        if split is None:
            problems.append(f"{origin}: unknown split {values['split']!r} (use one of {sorted(set(SPLIT_ALIASES))})")
    if laterality is None or view_position is None:
        return None
    return MammoImage(values["path"], values["label"], origin, values["exam_id"], values["patient_id"], laterality,
                      view_position, values["breast_id"], split)


def _listed_twice(images: Sequence[MammoImage]) -> list[str]:
    """One file on two rows is one image counted twice (and, in two exams, a leak): always a manifest error."""
    first: dict[str, MammoImage] = {}
    problems = []
    for image in images:
        if image.path in first:
            problems.append(f"{image.where}: {image.path} is listed twice (also {first[image.path].where})")
        first.setdefault(image.path, image)
    return problems


def _class_names(class_names: Sequence[str] | None, seen: list[str], problems: list[str]) -> list[str]:
    if class_names is None:
        return sorted(seen)
    names = [str(name) for name in class_names]
    if len(set(names)) != len(names) or not names:
        raise ManifestError(f"class_names must be distinct and non-empty, got {names}")
    unknown = [label for label in seen if label not in names]
    if unknown:
        problems.append(f"unknown label(s) {unknown}: not in class_names {names}")
    return names


def _resolve(value: str, base: Path) -> Path:
    path = Path(value).expanduser()
    return path if path.is_absolute() else (base / path).resolve()


def _check_patient_leakage(splits: Mapping[str, MammoManifest], allow_leakage: bool) -> None:
    where: dict[str, set[str]] = {}
    for name, manifest in splits.items():
        for exam in manifest.exams:
            where.setdefault(exam.patient_id, set()).add(name)
    leaked = {patient: sorted(names) for patient, names in where.items() if len(names) > 1}
    if not leaked:
        return
    shown = ", ".join(f"{patient} ({'/'.join(names)})" for patient, names in list(leaked.items())[:_SHOW])
    message = f"{len(leaked)} patient(s) have exams in more than one split: {shown}"
    if not allow_leakage:
        raise LeakageError(f"{message}. Fix the 'split' column, or pass allow_leakage=True to proceed anyway.")
    logger.warning("%s (continuing: leakage explicitly allowed)", message)


# --- DICOM --------------------------------------------------------------------------------------------------


def read_dicom_labels(path: str | os.PathLike) -> dict[tuple[str, str | None], str]:
    """Labels for DICOM exams: a CSV `exam_id,label` (exam level) or `exam_id,laterality,label` (per breast)."""
    path = Path(path)
    with open(path, newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        columns = [(name or "").strip() for name in reader.fieldnames or []]
        if "exam_id" not in columns or "label" not in columns:
            raise ManifestError(
                f"{path}: a DICOM labels file needs columns exam_id,label[,laterality]; found {columns}"
            )
        labels: dict[tuple[str, str | None], str] = {}
        for line, row in enumerate(reader, start=2):
            row = {(k or "").strip(): (v or "").strip() for k, v in row.items()}
            side = row.get("laterality") or None
            if side is not None and side.lower() not in _LATERALITY:
                raise ManifestError(f"{path} line {line}: unknown laterality {side!r} (use L or R)")
            key = (row["exam_id"], _LATERALITY[side.lower()] if side else None)
            if not row["exam_id"] or not row["label"]:
                raise ManifestError(f"{path} line {line}: empty exam_id or label")
            if key in labels:
                raise ManifestError(f"{path} line {line}: duplicate label for {key}")
            labels[key] = row["label"]
    return labels


def rows_from_dicom(
    folder: str | os.PathLike,
    labels: Mapping[tuple[str, str | None], str],
    exam_id_tag: str = "StudyInstanceUID",
) -> list[dict[str, str]]:
    """Manifest rows for every DICOM file under `folder`, from its tags (headers only, pixels not read).

    exam_id = `exam_id_tag` (StudyInstanceUID by default, or e.g. AccessionNumber), patient_id = PatientID,
    laterality = ImageLaterality (else Laterality), view = ViewPosition. Views other than CC/MLO and missing tags
    are reported by `manifest_from_rows` like a bad manifest row. The label is the breast's label when `labels`
    has (exam_id, laterality), else the exam's (exam_id, None).
    """
    rows = []
    unlabelled = []
    for path in sorted(_dicom_files(Path(folder))):
        try:
            ds = pydicom.dcmread(path, stop_before_pixels=True)
        except Exception as err:  # pydicom raises many types on corrupt headers
            raise ManifestError(f"{path}: unreadable DICOM header ({type(err).__name__}: {err})") from err
        exam_id = str(ds.get(exam_id_tag, "") or "")
        laterality = str(ds.get("ImageLaterality", "") or ds.get("Laterality", "") or "")
        side = _LATERALITY.get(laterality.lower())
        label = labels.get((exam_id, side), labels.get((exam_id, None), ""))
        if exam_id and not label:
            unlabelled.append(f"{path} (exam {exam_id}, laterality {laterality or '?'})")
        rows.append({
            "exam_id": exam_id, "patient_id": str(ds.get("PatientID", "") or ""), "laterality": laterality,
            "view": str(ds.get("ViewPosition", "") or ""), "path": str(path), "label": label, "_where": str(path),
        })
    if not rows:
        raise ManifestError(f"{folder}: no DICOM files found")
    if unlabelled:
        shown = "\n  ".join(unlabelled[:_SHOW])
        raise ManifestError(f"{len(unlabelled)} DICOM image(s) without a label in the labels file:\n  {shown}")
    return rows


def _dicom_files(folder: Path) -> Iterable[Path]:
    for path in folder.rglob("*"):
        if path.is_file() and (path.suffix.lower() in (".dcm", ".dicom") or is_dicom(path)):
            yield path


__all__ = [
    "REQUIRED_COLUMNS",
    "VIEW_SLOTS",
    "MammoExam",
    "MammoImage",
    "MammoManifest",
    "MammoView",
    "MANIFEST_NAME",
    "ManifestError",
    "find_mammo_manifest",
    "load_mammo_manifest",
    "manifest_from_rows",
    "read_dicom_labels",
    "read_manifest",
    "rows_from_dicom",
]

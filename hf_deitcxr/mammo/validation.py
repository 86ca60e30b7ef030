"""`hf-deitcxr validate-data --task mammo`: what a mammography manifest holds, and whether its split would leak.

Counts, from the manifest alone: images, patients, breasts, exams per exam unit (and the exams training would make
under the chosen `exam_unit` and `multi_crop`), labels per view, breasts with both views, patients with both breasts,
(breast, view) pairs with several crops and units whose crops carry different labels. Checks, with every image
decoded (`hf_deitcxr.data.validation.validate_dataset`): unreadable or missing files, exact duplicates by decoded
pixels (any two rows, wherever they are), and patients or identical images on both sides of the split that training
would make (the same `MammoManifest.split` call: same fraction and seed), or of the manifest's `split` column.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import datasets

from ..data.validation import DataReport, validate_dataset
from .exams import EXAM_UNITS, MammoImage, group_by
from .manifest import MammoManifest, load_mammo_manifest

_SHOW = 10  # examples listed per check


@dataclass
class MammoDataReport:
    """What `validate_mammo_data` found; `ok` when nothing needs fixing (exact duplicates within one split are
    listed but, as for chest X-rays, are not leakage)."""

    source: str
    exam_unit: str
    multi_crop: str
    class_names: list[str]
    counts: dict[str, Any]
    splits: dict[str, dict[str, Any]]  # split -> exams, images, patients, exam labels
    checks: DataReport
    duplicates: list[list[str]] = field(default_factory=list)  # each: the images sharing one pixel content
    cross_split_duplicates: list[list[str]] = field(default_factory=list)  # those of them in two splits: leakage

    @property
    def has_leakage(self) -> bool:
        return self.checks.has_leakage

    @property
    def ok(self) -> bool:
        return self.checks.ok

    def to_dict(self) -> dict[str, Any]:
        checks = self.checks.to_dict()
        return {"source": self.source, "exam_unit": self.exam_unit, "multi_crop": self.multi_crop,
                "class_names": self.class_names, "counts": self.counts, "splits": self.splits,
                "duplicates": self.duplicates, "cross_split_duplicates": self.cross_split_duplicates,
                "leaked_patients": checks["leaked_patients"],
                "unreadable": checks["unreadable"], "issues": checks["issues"], "hash_method": checks["hash_method"],
                "has_leakage": self.has_leakage, "ok": self.ok}

    def format(self) -> str:
        counts = self.counts
        lines = [f"Mammography data report: {self.source}",
                 f"  images {counts['images']}, patients {counts['patients']}, breasts {counts['breasts']}",
                 "  exams per unit: " + ", ".join(f"{unit} {n}" for unit, n in counts["units"].items()),
                 f"  exams with exam_unit={self.exam_unit}, multi_crop={self.multi_crop}: {counts['exams']} "
                 f"({counts['images_left_out']} crop(s) left out, {counts['mixed_label_exams']} with mixed labels)",
                 f"  breasts with both CC and MLO: {counts['breasts_with_both_views']}; patients with both breasts: "
                 f"{counts['patients_with_both_breasts']}",
                 f"  (breast, view) pairs with several crops: {counts['breast_views_with_several_crops']}",
                 "  units with mixed labels: " + ", ".join(f"{u} {n}" for u, n in counts["mixed_label_units"].items()),
                 "  labels per view: " + "; ".join(f"{view} " + ", ".join(f"{k} {v}" for k, v in labels.items())
                                                    for view, labels in counts["labels_per_view"].items()),
                 "", "split (patient-level, as training makes it):"]
        lines += [f"  {name}: {part['exams']} exams, {part['images']} images, {part['patients']} patients, "
                  + ", ".join(f"{k} {v}" for k, v in part["labels"].items()) for name, part in self.splits.items()]
        lines += [""] + self._check_lines() + ["OK" if self.ok else "PROBLEMS FOUND"]
        return "\n".join(lines)

    def _check_lines(self) -> list[str]:
        checks = self.checks
        found = [
            ("unreadable images", [f"{u.path}: {u.reason}" for u in checks.unreadable]),
            (f"exact duplicate images (by {checks.hash_method})", [" = ".join(group) for group in self.duplicates]),
            ("identical images in more than one split", [" = ".join(g) for g in self.cross_split_duplicates]),
            ("patients in more than one split", [f"{pid} in {', '.join(s)}" for pid, s in
                                                 checks.leaked_patients.items()]),
            ("other issues", checks.issues),
        ]
        lines = []
        for title, items in found:
            lines.append(f"{title}: {len(items)}")
            lines += [f"  {item}" for item in items[:_SHOW]]
            lines += [f"  ... and {len(items) - _SHOW} more"] if len(items) > _SHOW else []
        return lines


def validate_mammo_data(
    source: str | os.PathLike,
    *,
    class_names: Sequence[str] | None = None,
    dicom_labels: str | os.PathLike | None = None,
    exam_unit: str = "exam",
    multi_crop: str = "pair",
    validation_fraction: float = 0.15,
    seed: int = 0,
    check_files: bool = True,
    num_workers: int | None = None,
) -> MammoDataReport:
    """Count and check a mammography manifest (or folder) as `--task mammo` training would read and split it.

    Missing and unreadable files are reported, not raised; `check_files=False` hashes file bytes instead of
    decoded pixels.
    """
    manifest = load_mammo_manifest(source, class_names, dicom_labels, check_files=False, exam_unit=exam_unit,
                                   multi_crop=multi_crop)
    splits = manifest.split(validation_fraction, seed=seed, allow_leakage=True)  # leaks are reported below
    tables, rows = _image_tables(splits, manifest.class_names)
    checks = validate_dataset(tables, check_files, num_workers=num_workers)
    def describe(duplicates) -> list[list[str]]:
        return [[_describe(rows[place], place[0]) for place in d.occurrences] for d in duplicates]

    return MammoDataReport(
        str(manifest.source), exam_unit, multi_crop, manifest.class_names, manifest_counts(manifest),
        {name: _split_summary(part) for name, part in splits.items()}, checks,
        describe(checks.within_split_duplicates + checks.cross_split_duplicates),
        describe(checks.cross_split_duplicates),
    )


def manifest_counts(manifest: MammoManifest) -> dict[str, Any]:
    """The structure counts of the report (from the manifest alone, no file read)."""
    images = manifest.images
    breasts = group_by(images, lambda image: image.breast_key)
    patients = group_by(images, lambda image: image.patient_id)
    return {
        "images": len(images),
        "patients": len(patients),
        "breasts": len(breasts),
        "units": {unit: len(group_by(images, lambda image, u=unit: image.unit_key(u))) for unit in EXAM_UNITS},
        "exams": len(manifest.exams),
        "images_left_out": manifest.num_left_out,
        "mixed_label_exams": sum(1 for exam in manifest.exams if _mixed(exam.views.values())),
        "labels_per_view": labels_per_view(images, manifest.class_names),
        "breasts_with_both_views": sum(1 for crops in breasts.values() if {c.view for c in crops} == {"CC", "MLO"}),
        "patients_with_both_breasts": sum(1 for crops in patients.values()
                                          if len({c.breast_key for c in crops}) > 1),
        "breast_views_with_several_crops": sum(
            1 for crops in group_by(images, lambda image: (image.breast_key, image.view)).values() if len(crops) > 1),
        "mixed_label_units": {unit: sum(1 for crops in group_by(images, lambda image, u=unit: image.unit_key(u))
                                        .values() if _mixed(crops)) for unit in EXAM_UNITS},
    }


def labels_per_view(images: Sequence[MammoImage], class_names: Sequence[str]) -> dict[str, dict[str, int]]:
    counts = Counter((image.view, image.label) for image in images)
    return {view: {label: counts[view, label] for label in class_names} for view in ("CC", "MLO")}


def _mixed(items) -> bool:
    return len({item.label for item in items}) > 1


def _split_summary(part: MammoManifest) -> dict[str, Any]:
    labels = Counter(part.class_names[index] for index in part.exam_labels.tolist())
    return {"exams": len(part), "images": len(part.images), "patients": len({e.patient_id for e in part.exams}),
            "labels": {name: labels[name] for name in part.class_names}}


def _image_tables(
    splits: Mapping[str, MammoManifest], class_names: Sequence[str]
) -> tuple[dict[str, datasets.Dataset], dict[tuple[str, int], MammoImage]]:
    """One row per image (left-out crops included: they are files of the folder too), and (split, row) -> image."""
    features = datasets.Features({"image": datasets.Value("string"), "label": datasets.ClassLabel(names=class_names),
                                  "patient_id": datasets.Value("string"), "source": datasets.Value("string")})
    tables, rows = {}, {}
    for name, part in splits.items():
        rows.update({(name, index): image for index, image in enumerate(part.images)})
        tables[name] = datasets.Dataset.from_dict({
            "image": [image.path for image in part.images],
            "label": [class_names.index(image.label) for image in part.images],
            "patient_id": [image.patient_id for image in part.images],
            "source": [image.slot for image in part.images],  # the view slot, so every row has a "source"
        }, features=features)
    return tables, rows


def _describe(image: MammoImage, split: str) -> str:
    return f"{image.path} ({image.patient_id} {image.slot} {image.label}, {split})"


__all__ = ["MammoDataReport", "labels_per_view", "manifest_counts", "validate_mammo_data"]

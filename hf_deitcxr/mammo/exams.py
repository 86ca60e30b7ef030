"""Manifest images into exams: the exam unit (the manifest's exam, one breast, one patient) and the multi-crop rule.

An exam is what one prediction is made for: at most one image per view slot (`L-CC, L-MLO, R-CC, R-MLO`), the
multi-view model's input. Images are grouped by `exam_unit`:

- `exam` (default): the `exam_id` column, one screening exam of up to four views;
- `breast`: one breast's CC + MLO pair. Its key is the `breast_id` column when the manifest has one, else
  `<exam_id>_<laterality>`, so two visits of one breast stay two exams; with one exam per patient, as in CBIS-DDSM,
  that is patient + laterality;
- `patient`: every image of a patient (up to four views when the patient has one exam).

Several images in one view slot of a unit (lesion crops: CBIS-DDSM crops every mass of a mammogram, so a mammogram
with two masses gives two crops of one (breast, view)) follow `multi_crop`:

- `pair` (default): every crop is used exactly once. The crops of each slot are ordered by label severity (most
  severe first, ties in manifest order) and the k-th crops of all slots form the unit's k-th exam, `<unit>#k`: a
  breast with two CC and two MLO crops gives two two-view exams; one with three CC crops and one MLO crop gives one
  two-view exam and two CC-only exams. Which CC mass is which MLO mass is not recorded; ordering by severity pairs
  the malignant crops of a breast with each other where it has them in both views.
- `most_severe`: one exam per unit, holding the most severe crop of each slot (ties: the first in manifest order);
  the other crops are left out (`MammoManifest.num_left_out`). The exam label is then the unit's label.

An exam's label is its most severe image label in class order (`benign < malignant`: malignant if any of its crops
is malignant).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from ..models.multiview_mammo.configuration_multiview import DEFAULT_VIEW_NAMES

# The multi-view model's view order is the one order of the four slots.
VIEW_SLOTS: tuple[str, ...] = tuple(DEFAULT_VIEW_NAMES)
EXAM_UNITS: tuple[str, ...] = ("exam", "breast", "patient")
MULTI_CROP_RULES: tuple[str, ...] = ("pair", "most_severe")


@dataclass(frozen=True)
class MammoView:
    path: str
    label: str
    where: str  # "manifest.csv line 7" or the DICOM file, for error messages


@dataclass
class MammoExam:
    exam_id: str
    patient_id: str
    views: dict[str, MammoView]  # view slot ("L-CC", ...) -> image
    split: str | None = None
    unit_id: str = ""  # the breast / patient / exam it was made from (several exams share it under `pair`)

    def __post_init__(self) -> None:
        self.unit_id = self.unit_id or self.exam_id

    def label_index(self, class_names: Sequence[str]) -> int:
        """The most severe view label (the highest class index)."""
        return max(class_names.index(view.label) for view in self.views.values())


@dataclass(frozen=True)
class MammoImage:
    """One validated manifest row (or DICOM file)."""

    path: str
    label: str
    where: str
    exam_id: str
    patient_id: str
    laterality: str  # "L" or "R"
    view: str  # "CC" or "MLO"
    breast_id: str = ""
    split: str | None = None

    @property
    def slot(self) -> str:
        return f"{self.laterality}-{self.view}"

    @property
    def breast_key(self) -> str:
        return self.breast_id or f"{self.exam_id}_{self.laterality}"

    def unit_key(self, exam_unit: str) -> str:
        if exam_unit == "exam":
            return self.exam_id
        if exam_unit == "breast":
            return self.breast_key
        if exam_unit == "patient":
            return self.patient_id
        raise ValueError(f"exam_unit must be one of {EXAM_UNITS}, got {exam_unit!r}")


def check_rules(exam_unit: str, multi_crop: str) -> None:
    if exam_unit not in EXAM_UNITS:
        raise ValueError(f"exam_unit must be one of {EXAM_UNITS}, got {exam_unit!r}")
    if multi_crop not in MULTI_CROP_RULES:
        raise ValueError(f"multi_crop must be one of {MULTI_CROP_RULES}, got {multi_crop!r}")


def group_by(images: Iterable[MammoImage], key) -> dict:
    """Images by `key(image)`, in first-seen order (so results follow the manifest's order)."""
    groups: dict = {}
    for image in images:
        groups.setdefault(key(image), []).append(image)
    return groups


def group_exams(
    images: Sequence[MammoImage], class_names: Sequence[str], exam_unit: str = "exam", multi_crop: str = "pair"
) -> tuple[list[MammoExam], list[str]]:
    """The exams of `images` by the module's rules, and the problems found (a unit whose rows disagree on the
    patient or the split, a breast with both lateralities)."""
    check_rules(exam_unit, multi_crop)
    severity = {name: index for index, name in enumerate(class_names)}
    exams: list[MammoExam] = []
    problems: list[str] = []
    for key, members in group_by(images, lambda image: image.unit_key(exam_unit)).items():
        problems += _unit_problems(key, members, exam_unit)
        exams += _unit_exams(key, members, severity, multi_crop)
    return exams, problems


def _unit_problems(key: str, members: Sequence[MammoImage], exam_unit: str) -> list[str]:
    first, problems = members[0], []
    for image in members[1:]:
        if image.patient_id != first.patient_id:
            problems.append(f"{image.where}: {exam_unit} {key!r} has patient_id {image.patient_id!r}, "
                            f"earlier {first.patient_id!r}")
        if (image.split or None) != (first.split or None):
            problems.append(f"{image.where}: {exam_unit} {key!r} has split {image.split!r}, earlier {first.split!r}")
        if exam_unit == "breast" and image.laterality != first.laterality:
            problems.append(f"{image.where}: breast {key!r} has laterality {image.laterality}, earlier "
                            f"{first.laterality} ({first.where})")
    return problems


def _unit_exams(
    key: str, members: Sequence[MammoImage], severity: Mapping[str, int], multi_crop: str
) -> list[MammoExam]:
    by_slot = group_by(members, lambda image: image.slot)
    for crops in by_slot.values():
        crops.sort(key=lambda image: -severity.get(image.label, -1))  # stable: ties keep the manifest's order
    depth = 1 if multi_crop == "most_severe" else max(len(crops) for crops in by_slot.values())
    first = members[0]
    exams = []
    for k in range(depth):
        views = {slot: _view(by_slot[slot][k]) for slot in VIEW_SLOTS if len(by_slot.get(slot, ())) > k}
        exam_id = key if depth == 1 else f"{key}#{k + 1}"
        exams.append(MammoExam(exam_id, first.patient_id, views, first.split, unit_id=key))
    return exams


def _view(image: MammoImage) -> MammoView:
    return MammoView(image.path, image.label, image.where)


__all__ = [
    "EXAM_UNITS",
    "MULTI_CROP_RULES",
    "VIEW_SLOTS",
    "MammoExam",
    "MammoImage",
    "MammoView",
    "check_rules",
    "group_by",
    "group_exams",
]

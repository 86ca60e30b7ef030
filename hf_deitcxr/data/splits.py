"""Patient-level splits and subsets: all images of a patient always land on the same side.

Both functions work on whole patients, stratified by each patient's majority label, and size by *images*:
patients of a label stratum are shuffled (deterministically: by `seed` and the label, after sorting patient
ids, so row order does not matter) and taken while that brings the image count closer to the target.

Why not sklearn's StratifiedGroupKFold / GroupShuffleSplit: the first can only hold out 1/k of the data
(0.15 becomes 1/7 = 0.143) and the second sizes by number of patients, not images, and does not stratify; on
cxr3, where Kermany patients have 1-30 images, both miss the requested fractions by more than this does.
"""

from __future__ import annotations

import logging
import zlib
from collections.abc import Mapping
from dataclasses import dataclass

import datasets
import numpy as np

logger = logging.getLogger(__name__)

DEFAULT_FRACTIONS: dict[str, float] = {"validation": 0.15}


@dataclass
class _Patients:
    ids: np.ndarray  # unique patient ids, sorted
    sizes: np.ndarray  # images per patient
    rows: list[np.ndarray]  # dataset row indices per patient
    strata: dict[object, list[int]]  # stratum -> patient indices in a seeded random order


def patient_level_split(
    dataset: datasets.Dataset,
    fractions: Mapping[str, float] | None = None,
    *,
    seed: int = 0,
    stratify: bool = True,
    train_split: str = "train",
    label_column: str = "label",
    patient_column: str = "patient_id",
) -> datasets.DatasetDict:
    """Split `dataset` into `train_split` plus one split per entry of `fractions` (fractions of its images).

    No patient is in two splits; the result depends only on the data and `seed`. Each held-out split with a
    positive fraction gets at least one patient (for tiny data). Splits keep the dataset's row order.
    """
    fractions = dict(DEFAULT_FRACTIONS if fractions is None else fractions)
    _check_fractions(fractions, train_split)
    patients = _group_patients(dataset, label_column, patient_column, stratify, seed)
    if len(patients.ids) < len(fractions) + 1:
        raise ValueError(f"{len(patients.ids)} patient(s) cannot be split into {len(fractions) + 1} splits")
    chosen: dict[str, list[int]] = {name: [] for name in fractions}
    for stratum_patients in patients.strata.values():
        remaining = list(stratum_patients)
        stratum_images = int(patients.sizes[remaining].sum())
        for name, fraction in fractions.items():
            taken, remaining = _take_closest(remaining, patients.sizes, fraction * stratum_images)
            chosen[name].extend(taken)
    _ensure_non_empty(chosen, fractions, patients, seed)
    held_out = {p for members in chosen.values() for p in members}
    train = [p for p in range(len(patients.ids)) if p not in held_out]
    if not train:
        raise ValueError(f"fractions {fractions} leave no patient for {train_split!r}")
    chosen = {train_split: train, **chosen}
    result = datasets.DatasetDict(
        {name: _select(dataset, patients, members) for name, members in chosen.items()}
    )
    logger.info("patient-level split: %s", {name: len(split) for name, split in result.items()})
    return result


def patient_subset(
    dataset: datasets.Dataset,
    n_images: int,
    seed: int = 0,
    *,
    stratify: bool = True,
    label_column: str = "label",
    patient_column: str = "patient_id",
) -> datasets.Dataset:
    """About `n_images` images made of whole patients, each label stratum in proportion to its share.

    For data-efficiency curves: with one seed, a smaller subset is contained in a larger one (patients are
    taken as a prefix of one fixed order per stratum). Every stratum gets at least one patient while
    `n_images` >= the number of strata. Returns the dataset itself when `n_images` >= its length.
    """
    if n_images <= 0:
        raise ValueError(f"n_images must be positive, got {n_images}")
    if n_images >= len(dataset):
        return dataset
    patients = _group_patients(dataset, label_column, patient_column, stratify, seed)
    force_one = n_images >= len(patients.strata)
    members: list[int] = []
    for stratum_patients in patients.strata.values():
        target = n_images * int(patients.sizes[stratum_patients].sum()) / len(dataset)
        members.extend(_take_prefix(stratum_patients, patients.sizes, target, force_one=force_one))
    subset = _select(dataset, patients, members)
    logger.info(
        "patient subset: %d images from %d patients (asked for %d)", len(subset), len(members), n_images
    )
    return subset


def _check_fractions(fractions: Mapping[str, float], train_split: str) -> None:
    if train_split in fractions:
        raise ValueError(f"fractions name the split {train_split!r} itself; it gets the rest")
    if any(not 0 < f < 1 for f in fractions.values()):
        raise ValueError(f"fractions must be in (0, 1), got {dict(fractions)}")
    if sum(fractions.values()) >= 1:
        raise ValueError(f"fractions must leave something for {train_split!r}, got {dict(fractions)}")


def _group_patients(
    dataset: datasets.Dataset, label_column: str, patient_column: str, stratify: bool, seed: int
) -> _Patients:
    for column in (patient_column, label_column) if stratify else (patient_column,):
        if column not in dataset.column_names:
            raise ValueError(f"dataset has no {column!r} column (columns: {dataset.column_names})")
    if len(dataset) == 0:
        raise ValueError("cannot split an empty dataset")
    patient_of_row = np.asarray([str(p) for p in dataset[patient_column]])
    ids, inverse = np.unique(patient_of_row, return_inverse=True)
    order = np.argsort(inverse, kind="stable")
    sizes = np.bincount(inverse, minlength=len(ids))
    rows = np.split(order, np.cumsum(sizes)[:-1])
    stratum_of = _majority_labels(dataset[label_column], rows) if stratify else [0] * len(ids)
    strata: dict[object, list[int]] = {}
    for patient, stratum in enumerate(stratum_of):
        strata.setdefault(stratum, []).append(patient)
    for stratum, members in strata.items():
        rng = np.random.default_rng([seed, zlib.crc32(repr(stratum).encode())])
        strata[stratum] = [members[i] for i in rng.permutation(len(members))]
    return _Patients(ids, sizes, rows, dict(sorted(strata.items(), key=lambda item: repr(item[0]))))


def _majority_labels(labels: list, rows: list[np.ndarray]) -> list[object]:
    """Most frequent label per patient (ties: the smallest), as the stratum for patients with mixed labels."""
    labels = np.asarray(["" if v is None else v for v in labels])
    majority = []
    for patient_rows in rows:
        values, counts = np.unique(labels[patient_rows], return_counts=True)
        majority.append(values[np.argmax(counts)].item())
    return majority


def _take_closest(candidates: list[int], sizes: np.ndarray, target: float) -> tuple[list[int], list[int]]:
    """Greedy: take each candidate (in order) if it brings the image count closer to target."""
    taken, rest, count = [], [], 0
    for patient in candidates:
        if count + sizes[patient] / 2 < target:
            taken.append(patient)
            count += int(sizes[patient])
        else:
            rest.append(patient)
    return taken, rest


def _take_prefix(candidates: list[int], sizes: np.ndarray, target: float, *, force_one: bool) -> list[int]:
    """Longest prefix whose count stays closest to target (a prefix, so subsets nest as target grows)."""
    taken, count = [], 0
    for patient in candidates:
        if count + sizes[patient] / 2 >= target and not (force_one and not taken and target > 0):
            break
        taken.append(patient)
        count += int(sizes[patient])
    return taken


def _ensure_non_empty(
    chosen: dict[str, list[int]], fractions: Mapping[str, float], patients: _Patients, seed: int
):
    """Tiny data can round every stratum's share to zero patients: give such a split one train patient."""
    held_out = {p for members in chosen.values() for p in members}
    rng = np.random.default_rng([seed, len(patients.ids)])
    pool = [p for p in rng.permutation(len(patients.ids)).tolist() if p not in held_out]
    for name in fractions:
        if not chosen[name]:
            chosen[name].append(pool.pop(0))


def _select(dataset: datasets.Dataset, patients: _Patients, members: list[int]) -> datasets.Dataset:
    if not members:
        return dataset.select([])
    rows = np.sort(np.concatenate([patients.rows[p] for p in members]))
    return dataset.select(rows)


__all__ = ["DEFAULT_FRACTIONS", "patient_level_split", "patient_subset"]

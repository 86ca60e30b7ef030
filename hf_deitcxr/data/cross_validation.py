"""Patient-grouped, class-stratified k-fold cross-validation of a dataset's training pool.

`cross_validation_split` pools the training splits (`train`, or `train` + `validation`: `CV_POOLS`), cuts the pool
into K folds with sklearn's `StratifiedGroupKFold(shuffle=True, random_state=seed)` grouped by patient, and returns
fold i as the evaluation split (`validation`) and the other K - 1 folds as `train`. Every patient is in exactly one
evaluation fold; images without a patient id are each their own group (with a warning), and identical images (the
data report's duplicates) are grouped with each other, so no patient and no image is on both sides of a fold.

The folds depend only on the pooled data, K and the seed (sklearn sorts the group ids and labels before its seeded
shuffle), not on row order, the process or global random state: every process of a distributed run, and every
method of a benchmark, sees the same folds.

Why sklearn here and not `splits.patient_level_split`: a fold is by definition 1/K of the data, which is exactly what
StratifiedGroupKFold does well; the image-sized greedy split is for held-out fractions that are not 1/K.
"""

from __future__ import annotations

import json
import logging
import os
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import datasets
import numpy as np
from sklearn.model_selection import StratifiedGroupKFold

from .validation import DataReport, LeakageError

logger = logging.getLogger(__name__)

# The splits pooled before folding. train+validation (default): the validation split is development data like
# train, and CV is its replacement; any test split stays untouched. train: keep the validation split out of CV.
CV_POOLS: dict[str, tuple[str, ...]] = {"train+validation": ("train", "validation"), "train": ("train",)}
DEFAULT_CV_POOL = "train+validation"
CV_EVAL_SPLIT = "validation"  # the name the evaluation fold goes by, so a run evaluates it like any validation split


@dataclass(frozen=True)
class FoldSummary:
    """What a run records of its fold (training_args.json and metrics.json `extra`)."""

    n_splits: int
    fold: int
    seed: int
    pool: str
    pooled_splits: list[str]
    train_images: int
    train_patients: int
    eval_images: int
    eval_patients: int
    eval_class_counts: dict[str, int]

    def to_dict(self) -> dict:
        return dict(vars(self))


def check_fold_arguments(n_splits: int | None, fold: int | None, pool: str = DEFAULT_CV_POOL) -> None:
    """Raise ValueError unless (n_splits, fold) is off (None, None) or 2 <= n_splits and 0 <= fold < n_splits."""
    if n_splits is None:
        if fold is not None:
            raise ValueError(f"--fold {fold} picks a cross-validation fold: it needs --cv_folds K")
        return
    if n_splits < 2:
        raise ValueError(f"--cv_folds must be at least 2 (K folds, one held out per run), got {n_splits}")
    if fold is None:
        raise ValueError(f"--cv_folds {n_splits} trains one fold per run: give --fold i with 0 <= i < {n_splits}")
    if not 0 <= fold < n_splits:
        raise ValueError(f"--fold must be in 0..{n_splits - 1} for --cv_folds {n_splits}, got {fold}")
    if pool not in CV_POOLS:
        raise ValueError(f"--cv_pool must be one of {list(CV_POOLS)}, got {pool!r}")


def patient_folds(
    dataset: datasets.Dataset,
    n_splits: int,
    *,
    seed: int = 0,
    label_column: str = "label",
    patient_column: str = "patient_id",
    linked_rows: Iterable[Sequence[int]] = (),
) -> list[np.ndarray]:
    """The evaluation rows (sorted) of each of the `n_splits` folds of `dataset`, grouped by patient and stratified
    by label. `linked_rows`: sets of rows that must share a fold whatever their patients (identical images)."""
    check_fold_arguments(n_splits, 0)
    if label_column not in dataset.column_names:
        raise ValueError(f"dataset has no {label_column!r} column (columns: {dataset.column_names})")
    groups = link_groups(patient_groups(dataset, patient_column), linked_rows)
    return _stratified_group_folds(np.asarray(dataset[label_column]), groups, n_splits, seed)


def _stratified_group_folds(labels: np.ndarray, groups: np.ndarray, n_splits: int, seed: int) -> list[np.ndarray]:
    if len(set(groups.tolist())) < n_splits:
        raise ValueError(f"{len(set(groups.tolist()))} patient(s) cannot be split into {n_splits} folds")
    splitter = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    with warnings.catch_warnings(record=True) as caught:  # sklearn warns of small classes: into our log instead
        warnings.simplefilter("always")
        folds = [np.sort(rows) for _, rows in splitter.split(np.zeros(len(labels)), labels, groups)]
    for warning in caught:
        logger.warning("cross-validation: %s", warning.message)
    if any(len(rows) == 0 for rows in folds):
        raise ValueError(f"{n_splits} folds leave a fold empty: too few patients per class")
    _warn_missing_classes(folds, labels)
    return folds


def patient_groups(dataset: datasets.Dataset, patient_column: str = "patient_id") -> np.ndarray:
    """The group of each row: its patient id, or (no column, empty id) the row itself, with a warning."""
    if patient_column not in dataset.column_names:
        logger.warning("cross-validation: no %r column: each of the %d images is its own group, so images of one "
                       "patient may be in different folds", patient_column, len(dataset))
        return np.asarray([f"row:{i}" for i in range(len(dataset))])
    ids = ["" if p is None else str(p) for p in dataset[patient_column]]
    missing = sum(not p for p in ids)
    if missing:
        logger.warning("cross-validation: %d of %d image(s) have no patient id: each is its own group, so images of "
                       "one patient may be in different folds", missing, len(ids))
    return np.asarray([p if p else f"row:{i}" for i, p in enumerate(ids)])


def cross_validation_split(
    dataset_dict: datasets.DatasetDict,
    n_splits: int,
    fold: int,
    *,
    seed: int = 0,
    pool: str = DEFAULT_CV_POOL,
    report: DataReport | None = None,
) -> tuple[datasets.DatasetDict, FoldSummary]:
    """`train` = the pool without fold `fold`, `validation` = fold `fold`; other splits (test) are kept as they are.

    `report`: the data report of `dataset_dict`, whose identical images (within or across splits) share a fold.
    """
    check_fold_arguments(n_splits, fold, pool)
    names = [name for name in CV_POOLS[pool] if name in dataset_dict]
    if "train" not in names:
        raise ValueError(f"cross-validation needs a 'train' split; splits: {list(dataset_dict)}")
    duplicates = report.within_split_duplicates + report.cross_split_duplicates if report else []
    pooled, linked = _pool(dataset_dict, names, [d.occurrences for d in duplicates])
    patients = patient_groups(pooled)
    groups = link_groups(patients, linked)
    eval_rows = _stratified_group_folds(np.asarray(pooled["label"]), groups, n_splits, seed)[fold]
    train_rows = np.setdiff1d(np.arange(len(pooled)), eval_rows)
    shared = set(groups[train_rows].tolist()) & set(groups[eval_rows].tolist())
    if shared:  # impossible by construction; checked because a leak would silently inflate every CV figure
        raise RuntimeError(f"cross-validation put patient(s) {sorted(shared)[:10]} on both sides of a fold")
    train, evaluation = pooled.select(train_rows), pooled.select(eval_rows)
    summary = FoldSummary(
        n_splits=n_splits, fold=fold, seed=seed, pool=pool, pooled_splits=names,
        train_images=len(train_rows), train_patients=len(set(patients[train_rows].tolist())),
        eval_images=len(eval_rows), eval_patients=len(set(patients[eval_rows].tolist())),
        eval_class_counts=_class_counts(evaluation),
    )
    logger.info("cross-validation fold %d of %d (seed %d, pool %s): train %d images / %d patients, evaluation %d "
                "images / %d patients", fold, n_splits, seed, "+".join(names), summary.train_images,
                summary.train_patients, summary.eval_images, summary.eval_patients)
    kept = {name: split for name, split in dataset_dict.items() if name not in names and name != CV_EVAL_SPLIT}
    return datasets.DatasetDict({"train": train, CV_EVAL_SPLIT: evaluation, **kept}), summary


def _pool(dataset_dict: datasets.DatasetDict, names: list[str],
          duplicates: Iterable[Sequence[tuple[str, int]]]) -> tuple[datasets.Dataset, list[list[int]]]:
    """The pooled splits (in `names` order) and each duplicate's rows in the pool."""
    pooled = datasets.concatenate_datasets([dataset_dict[name] for name in names])
    starts = np.cumsum([0] + [len(dataset_dict[n]) for n in names])[:-1].tolist()
    offsets = dict(zip(names, starts, strict=True))
    linked = [[offsets[split] + index for split, index in places if split in offsets] for places in duplicates]
    return pooled, [rows for rows in linked if len(rows) > 1]


def check_teacher_fold(teacher: str | os.PathLike | None, fold: FoldSummary, *, allow_leakage: bool = False) -> None:
    """Refuse a distillation teacher that was not trained on this fold's training part: a teacher trained on the
    whole train split (or on another fold) has seen the held-out patients, and would leak them into the student.

    Read from the teacher folder's training_args.json; a Hub id (or a folder without it) can only be warned about.
    """
    record = Path(teacher or "") / "training_args.json"
    if not teacher or not record.is_file():
        logger.warning("cross-validation: cannot tell which data the teacher %s was trained on (no %s): it must "
                       "not have seen fold %d", teacher, record.name, fold.fold)
        return
    theirs = json.loads(record.read_text()).get("cross_validation") or {}
    mine = fold.to_dict()
    if all(theirs.get(key) == mine[key] for key in _SAME_FOLD):
        return
    seen = (f"fold {theirs.get('fold')} of {theirs.get('n_splits')} (seed {theirs.get('seed')}, pool "
            f"{theirs.get('pool')})" if theirs else "without cross-validation")
    message = (f"the teacher {teacher} was trained {seen}, not on the training part of fold {fold.fold} of "
               f"{fold.n_splits} (seed {fold.seed}, pool {fold.pool}): it has seen held-out patients. Train the "
               f"teacher with the same --cv_folds/--fold/--subset_seed/--cv_pool")
    if not allow_leakage:
        raise LeakageError(message + " (or pass --allow_leakage true)")
    logger.warning("%s; going on: --allow_leakage", message)


# The fields that make two runs' folds the same (on the same data: the image counts tell another dataset apart).
_SAME_FOLD = ("n_splits", "fold", "seed", "pool", "train_images", "eval_images")


def link_groups(groups: np.ndarray, linked_rows: Iterable[Sequence[int]]) -> np.ndarray:
    """Merge the groups of each set of linked rows into one (named by its smallest group id, for determinism)."""
    parent: dict[str, str] = {}

    def root(group: str) -> str:
        while parent.get(group, group) != group:
            group = parent[group]
        return group

    for rows in linked_rows:
        roots = sorted({root(str(groups[row])) for row in rows})
        for other in roots[1:]:
            parent[other] = roots[0]
    if not parent:
        return groups
    return np.asarray([root(str(group)) for group in groups])


def _warn_missing_classes(folds: list[np.ndarray], labels: np.ndarray) -> None:
    classes = set(labels.tolist())
    for index, rows in enumerate(folds):
        missing = sorted(classes - set(labels[rows].tolist()))
        if missing:
            logger.warning("cross-validation: fold %d has no image of label(s) %s (too few patients of them)",
                           index, missing)


def _class_counts(split: datasets.Dataset) -> dict[str, int]:
    label_names = split.features["label"].names
    counts = np.bincount(np.asarray(split["label"], dtype=int), minlength=len(label_names))
    return {name: int(count) for name, count in zip(label_names, counts, strict=True)}


__all__ = [
    "CV_EVAL_SPLIT",
    "CV_POOLS",
    "DEFAULT_CV_POOL",
    "FoldSummary",
    "check_fold_arguments",
    "check_teacher_fold",
    "cross_validation_split",
    "link_groups",
    "patient_folds",
    "patient_groups",
]

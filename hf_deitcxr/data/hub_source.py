"""A Hugging Face Hub image-classification dataset (or one saved with `save_to_disk`) standardised to the schema of
every other source."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import datasets

from .records import (
    UNKNOWN_SOURCE,
    class_names_for,
    dataset_features,
    ordered_splits,
    str_or_none,
    warn_missing_patients,
)


def load_hub(
    repo_id: str,
    revision: str | None,
    label_column: str,
    image_column: str,
    class_names: Sequence[str] | None,
    aliases: Mapping[str, str],
) -> datasets.DatasetDict:
    try:
        loaded = datasets.load_dataset(repo_id, revision=revision)
    except Exception as err:  # a mistyped local path lands here too: say both
        raise ValueError(
            f"{repo_id!r} is not an existing local path, and loading it as a Hub dataset failed: "
            f"{type(err).__name__}: {err}"
        ) from err
    return standardise_loaded(loaded, f"Hub dataset {repo_id!r}", label_column, image_column, class_names, aliases)


def load_saved(
    folder: Path,
    label_column: str,
    image_column: str,
    class_names: Sequence[str] | None,
    aliases: Mapping[str, str],
) -> datasets.DatasetDict:
    """A `Dataset`/`DatasetDict` written by `save_to_disk` (e.g. a Hub dataset prepared offline), standardised."""
    loaded = datasets.load_from_disk(str(folder))
    return standardise_loaded(loaded, f"saved dataset {str(folder)!r}", label_column, image_column, class_names,
                              aliases)


def is_saved_dataset(folder: Path) -> bool:
    """Whether `folder` was written by `save_to_disk` (the marker files `load_from_disk` itself looks for)."""
    return (folder / "dataset_dict.json").is_file() or (folder / "state.json").is_file()


def standardise_loaded(
    loaded: datasets.Dataset | datasets.DatasetDict,
    where: str,
    label_column: str,
    image_column: str,
    class_names: Sequence[str] | None,
    aliases: Mapping[str, str],
) -> datasets.DatasetDict:
    """`loaded` (one split is train) in the common schema: splits aliased, columns renamed, one ClassLabel."""
    if isinstance(loaded, datasets.Dataset):
        loaded = datasets.DatasetDict({"train": loaded})
    renamed = {aliases.get(name.lower(), name): split for name, split in loaded.items()}
    if not renamed or all(len(split) == 0 for split in renamed.values()):
        raise ValueError(f"{where} is empty")
    for name, split in renamed.items():
        _require_columns(split, (image_column, label_column), f"{where} [{name}]")
    names = _hub_class_names(renamed, label_column, class_names, where)
    standard = {
        name: _standardise_split(split, name, label_column, image_column, names) for name, split in renamed.items()
    }
    return datasets.DatasetDict({name: standard[name] for name in ordered_splits(standard)})


def _require_columns(split: datasets.Dataset, columns: Sequence[str], where: str) -> None:
    missing = [c for c in columns if c not in split.column_names]
    if missing:
        raise ValueError(
            f"{where} has no column(s) {missing} (columns: {split.column_names}); set image_column/label_column"
        )


def _label_strings(split: datasets.Dataset, label_column: str) -> list[str | None]:
    feature = split.features[label_column]
    values = split[label_column]
    if isinstance(feature, datasets.ClassLabel):
        return [feature.int2str(v) if v is not None and 0 <= v < feature.num_classes else None for v in values]
    return [str_or_none(v) for v in values]


def _hub_class_names(splits, label_column: str, class_names: Sequence[str] | None, where: str) -> list[str]:
    labels = [label for split in splits.values() for label in _label_strings(split, label_column)]
    if class_names is None:
        label_features = [split.features[label_column] for split in splits.values()]
        first = label_features[0]
        if isinstance(first, datasets.ClassLabel) and all(f == first for f in label_features):
            return list(first.names)  # the dataset author's order
    return class_names_for(labels, class_names, where)


def _standardise_split(
    split: datasets.Dataset, name: str, label_column: str, image_column: str, names: Sequence[str]
) -> datasets.Dataset:
    index = {label: i for i, label in enumerate(names)}
    labels = [index[label] if label is not None else -1 for label in _label_strings(split, label_column)]
    columns = [c for c in (image_column, "patient_id", "source") if c in split.column_names]
    split = split.select_columns(columns)
    if image_column != "image":
        split = split.rename_column(image_column, "image")
    if not isinstance(split.features["image"], datasets.Image):
        split = split.cast_column("image", datasets.Image())
    split = split.add_column("label", labels, feature=datasets.ClassLabel(names=list(names)))
    if "patient_id" not in split.column_names:
        warn_missing_patients(len(split), len(split), f"split {name!r}")
        split = split.add_column("patient_id", [f"{name}-{i}" for i in range(len(split))])
    if "source" not in split.column_names:
        split = split.add_column("source", [UNKNOWN_SOURCE] * len(split))
    split = split.select_columns(["image", "label", "patient_id", "source"])
    return split.cast(dataset_features(names)) if split.features != dataset_features(names) else split

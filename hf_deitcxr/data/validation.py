"""Checks to run before training: class/source balance, unreadable files, and leakage between splits.

Leakage is (a) a patient_id in more than one split and (b) an identical image in more than one split.
Identity is a BLAKE2b hash of the *decoded* 8-bit greyscale pixels (plus the image shape) when
`check_files=True` (the default: every image is decoded anyway to find unreadable ones, and a pixel hash also
catches the same image re-saved losslessly in another format or with other metadata), else of the *encoded
file bytes* (cheap, byte-identical copies only).
Near-duplicates (re-compressed, resized) are not detected.
"""

from __future__ import annotations

import hashlib
import os
import warnings
from collections import Counter
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

import datasets
import numpy as np

from .dicom import UnreadableImageError, read_radiograph

PIXEL_HASH = "decoded pixels (8-bit greyscale)"
BYTES_HASH = "encoded file bytes"
_SHOW = 10  # examples listed per problem in format() and error messages


class LeakageError(ValueError):
    """The same patient or an identical image appears in more than one split."""


@dataclass
class UnreadableImage:
    split: str
    index: int
    path: str | None
    reason: str


@dataclass
class DuplicateImage:
    """One image content found at several (split, index) positions."""

    digest: str
    occurrences: list[tuple[str, int]]

    @property
    def splits(self) -> list[str]:
        return sorted({split for split, _ in self.occurrences})


@dataclass
class DataReport:
    """What `validate_dataset` found. `ok` is True when nothing below needs fixing."""

    num_images: dict[str, int]
    class_names: list[str]
    class_counts: dict[str, dict[str, int]]  # split -> label name -> images
    source_counts: dict[str, dict[str, int]]  # split -> source -> images
    unreadable: list[UnreadableImage] = field(default_factory=list)
    cross_split_duplicates: list[DuplicateImage] = field(default_factory=list)
    within_split_duplicates: list[DuplicateImage] = field(default_factory=list)  # informational, not leakage
    leaked_patients: dict[str, list[str]] = field(default_factory=dict)  # patient_id -> splits
    missing_labels: dict[str, list[int]] = field(
        default_factory=dict
    )  # split -> indices (None/-1/out of range)
    issues: list[str] = field(
        default_factory=list
    )  # structural: missing columns, class names differing by split
    hash_method: str = PIXEL_HASH
    files_checked: bool = True

    @property
    def has_leakage(self) -> bool:
        return bool(self.leaked_patients or self.cross_split_duplicates)

    @property
    def ok(self) -> bool:
        return not (self.has_leakage or self.unreadable or self.missing_labels or self.issues)

    def to_dict(self) -> dict:
        data = asdict(self)
        data["ok"] = self.ok
        data["has_leakage"] = self.has_leakage
        return data

    def format(self) -> str:
        """A human-readable summary: class and source tables per split, then each check with examples."""
        lines = [
            f"Data report ({'decoded every image' if self.files_checked else 'files not decoded'}; "
            f"duplicates by {self.hash_method})"
        ]
        lines += _table(self.class_counts, self.class_names, self.num_images, "class")
        sources = sorted({s for counts in self.source_counts.values() for s in counts})
        lines += _table(self.source_counts, sources, self.num_images, "source")
        lines.append("")
        lines += self._check_lines()
        lines.append("OK" if self.ok else "PROBLEMS FOUND")
        return "\n".join(lines)

    def _check_lines(self) -> list[str]:
        unreadable = [f"{u.split}[{u.index}] {u.path or ''}: {u.reason}" for u in self.unreadable]
        cross = [_describe_duplicate(d) for d in self.cross_split_duplicates]
        within = [_describe_duplicate(d) for d in self.within_split_duplicates]
        leaked = [f"{pid} in {', '.join(splits)}" for pid, splits in self.leaked_patients.items()]
        missing = [f"{split}: indices {indices[:_SHOW]}" for split, indices in self.missing_labels.items()]
        checks = [
            ("unreadable images", unreadable),
            ("identical images in more than one split", cross),
            ("patients in more than one split", leaked),
            ("missing/unknown labels", missing),
            ("other issues", self.issues),
            ("identical images within one split (not leakage)", within),
        ]
        lines = []
        for title, items in checks:
            lines.append(f"{title}: {len(items)}")
            lines += [f"  {item}" for item in items[:_SHOW]]
            if len(items) > _SHOW:
                lines.append(f"  ... and {len(items) - _SHOW} more")
        return lines


def validate_dataset(
    dataset_dict: datasets.DatasetDict | Mapping[str, datasets.Dataset] | datasets.Dataset,
    check_files: bool = True,
    *,
    num_workers: int | None = None,
    batch_size: int = 256,
) -> DataReport:
    """Count classes/sources per split and look for unreadable images, missing labels and leakage.

    check_files=True decodes every image (via `read_radiograph`, in `num_workers` threads) and hashes the
    pixels; False only reads and hashes the encoded bytes (missing files are still reported).
    """
    splits = {"train": dataset_dict} if isinstance(dataset_dict, datasets.Dataset) else dict(dataset_dict)
    report = DataReport(
        {}, [], {}, {}, hash_method=PIXEL_HASH if check_files else BYTES_HASH, files_checked=check_files
    )
    occurrences: dict[str, list[tuple[str, int]]] = {}
    patients: dict[str, set[str]] = {}
    workers = num_workers or min(8, os.cpu_count() or 1)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for name, split in splits.items():
            report.num_images[name] = len(split)
            _count_labels(report, name, split)
            report.source_counts[name] = _count_column(split, "source", report, name)
            for pid in _column(split, "patient_id", report, name) or []:
                if pid not in (None, ""):
                    patients.setdefault(str(pid), set()).add(name)
            _hash_images(report, name, split, pool, check_files, batch_size, occurrences)
    _collect_duplicates(report, occurrences)
    report.leaked_patients = {pid: sorted(s) for pid, s in sorted(patients.items()) if len(s) > 1}
    return report


def ensure_no_leakage(report: DataReport, allow_leakage: bool = False) -> DataReport:
    """Raise LeakageError listing leaked patients and cross-split duplicates, unless `allow_leakage`."""
    if not report.has_leakage:
        return report
    message = _leakage_message(report)
    if allow_leakage:
        warnings.warn(f"{message} (continuing: leakage explicitly allowed)", stacklevel=2)
        return report
    raise LeakageError(f"{message}. Fix the splits, or pass allow_leakage=True to proceed anyway.")


# --- counting -----------------------------------------------------------------------------------------------


def _count_labels(report: DataReport, name: str, split: datasets.Dataset) -> None:
    labels = _column(split, "label", report, name)
    if labels is None:
        report.class_counts[name] = {}
        return
    feature = split.features["label"]
    if isinstance(feature, datasets.ClassLabel):
        names = list(feature.names)
        if report.class_names and names != report.class_names:
            report.issues.append(f"split {name!r} has class names {names}, others {report.class_names}")
        report.class_names = report.class_names or names
        valid = [v is not None and 0 <= v < len(names) for v in labels]
        counts = Counter(names[v] for v, ok in zip(labels, valid, strict=True) if ok)
        report.class_counts[name] = {label: counts[label] for label in names}
    else:  # plain string labels (e.g. a dataset not made by load_radiograph_dataset)
        valid = [v not in (None, "") for v in labels]
        counts = Counter(str(v) for v, ok in zip(labels, valid, strict=True) if ok)
        report.class_counts[name] = dict(sorted(counts.items()))
        report.class_names = sorted(set(report.class_names) | set(counts))
    missing = [i for i, ok in enumerate(valid) if not ok]
    if missing:
        report.missing_labels[name] = missing


def _count_column(split: datasets.Dataset, column: str, report: DataReport, name: str) -> dict[str, int]:
    values = _column(split, column, report, name)
    return dict(sorted(Counter(str(v) for v in values).items())) if values is not None else {}


def _column(split: datasets.Dataset, column: str, report: DataReport, name: str) -> list | None:
    if column not in split.column_names:
        report.issues.append(f"split {name!r} has no {column!r} column")
        return None
    return split[column]


# --- image hashing ------------------------------------------------------------------------------------------


def _hash_images(report, name, split, pool, check_files, batch_size, occurrences) -> None:
    if "image" not in split.column_names:
        report.issues.append(f"split {name!r} has no 'image' column")
        return
    hasher = _pixel_digest if check_files else _bytes_digest
    offset = 0
    for items in _encoded_images(split, batch_size):
        for i, (digest, path, reason) in enumerate(pool.map(hasher, items)):
            if reason is not None:
                report.unreadable.append(UnreadableImage(name, offset + i, path, reason))
            else:
                occurrences.setdefault(digest, []).append((name, offset + i))
        offset += len(items)


def _encoded_images(split: datasets.Dataset, batch_size: int) -> Iterator[list]:
    """Batches of {"path", "bytes"} dicts (or plain paths) without decoding, so memory stays bounded."""
    column = split.select_columns(["image"])
    if isinstance(column.features["image"], datasets.Image):
        column = column.cast_column("image", datasets.Image(decode=False))
    for batch in column.iter(batch_size=batch_size):
        yield batch["image"]


def _load_bytes(item) -> tuple[bytes, str | None]:
    if item is None:
        raise UnreadableImageError("no image")
    if isinstance(item, (str, os.PathLike)):
        return Path(item).read_bytes(), str(item)
    path = item.get("path")
    if item.get("bytes") is not None:
        return item["bytes"], path
    if not path:
        raise UnreadableImageError("neither bytes nor path")
    return Path(path).read_bytes(), path


def _pixel_digest(item) -> tuple[str | None, str | None, str | None]:
    path = _item_path(item)
    try:
        data, path = _load_bytes(item)
        pixels = np.asarray(read_radiograph(data))
    except (UnreadableImageError, OSError) as err:
        return None, path, _reason(err)
    shape = f"{pixels.shape}".encode()
    return hashlib.blake2b(shape + pixels.tobytes(), digest_size=16).hexdigest(), path, None


def _bytes_digest(item) -> tuple[str | None, str | None, str | None]:
    path = _item_path(item)
    try:
        data, path = _load_bytes(item)
    except (UnreadableImageError, OSError) as err:
        return None, path, _reason(err)
    if not data:
        return None, path, "empty file (0 bytes)"
    return hashlib.blake2b(data, digest_size=16).hexdigest(), path, None


def _item_path(item) -> str | None:
    if isinstance(item, (str, os.PathLike)):
        return str(item)
    return item.get("path") if isinstance(item, dict) else None


def _reason(err: Exception) -> str:
    if isinstance(err, FileNotFoundError):
        return "file not found"
    return str(err) or type(err).__name__


def _collect_duplicates(report: DataReport, occurrences: dict[str, list[tuple[str, int]]]) -> None:
    for digest, places in occurrences.items():
        if len(places) < 2:
            continue
        duplicate = DuplicateImage(digest, places)
        target = (
            report.cross_split_duplicates if len(duplicate.splits) > 1 else report.within_split_duplicates
        )
        target.append(duplicate)


# --- formatting ---------------------------------------------------------------------------------------------


def _table(
    counts: dict[str, dict[str, int]], columns: list[str], totals: dict[str, int], title: str
) -> list[str]:
    header = ["split", "images", *columns]
    rows = [
        [split, str(totals.get(split, 0)), *(str(counts[split].get(c, 0)) for c in columns)]
        for split in counts
    ]
    if len(rows) > 1:
        rows.append(
            [
                "total",
                str(sum(totals.values())),
                *(str(sum(c.get(col, 0) for c in counts.values())) for col in columns),
            ]
        )
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    lines = ["", f"per {title}:"]
    for row in [header, *rows]:
        lines.append(
            "  "
            + "  ".join(
                cell.ljust(widths[i]) if i == 0 else cell.rjust(widths[i]) for i, cell in enumerate(row)
            )
        )
    return lines


def _describe_duplicate(duplicate: DuplicateImage) -> str:
    places = ", ".join(f"{split}[{index}]" for split, index in duplicate.occurrences[:_SHOW])
    return f"{duplicate.digest[:12]}: {places}"


def _leakage_message(report: DataReport) -> str:
    parts = []
    if report.leaked_patients:
        shown = [f"{pid} ({', '.join(s)})" for pid, s in list(report.leaked_patients.items())[:50]]
        more = len(report.leaked_patients) - len(shown)
        parts.append(
            f"{len(report.leaked_patients)} patient(s) in more than one split: {', '.join(shown)}"
            + (f" ... and {more} more (see report.leaked_patients)" if more > 0 else "")
        )
    if report.cross_split_duplicates:
        shown = [_describe_duplicate(d) for d in report.cross_split_duplicates[:50]]
        more = len(report.cross_split_duplicates) - len(shown)
        parts.append(
            f"{len(report.cross_split_duplicates)} identical image(s) in more than one split: "
            + "; ".join(shown)
            + (f" ... and {more} more (see report.cross_split_duplicates)" if more > 0 else "")
        )
    return "data leakage between splits: " + " | ".join(parts)


__all__ = [
    "BYTES_HASH",
    "DataReport",
    "DuplicateImage",
    "LeakageError",
    "PIXEL_HASH",
    "UnreadableImage",
    "ensure_no_leakage",
    "validate_dataset",
]

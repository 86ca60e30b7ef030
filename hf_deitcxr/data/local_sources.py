"""Records from local files: an imagefolder (split folders, optional metadata.csv/jsonl, labels from metadata or
folder names) or a CSV/TSV manifest (path, label[, patient_id][, source][, split])."""

from __future__ import annotations

import csv
import json
import os
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path

from .records import DICOM_EXTENSIONS, IMAGE_EXTENSIONS, ImageRecord, MissingFilesError, has_dicom_preamble, str_or_none

METADATA_FILENAMES = ("metadata.csv", "metadata.jsonl")
PATH_COLUMNS = ("path", "file_name")


def records_from_directory(root: Path, label_column: str, aliases: Mapping[str, str]) -> list[ImageRecord]:
    # Resolved, so that paths read from metadata files (resolved) and walked paths compare equal even for a
    # relative root such as "../shared/data/cxr3".
    root = root.resolve()
    images, metadata_files = _walk(root)
    split_roots = {
        child.name: aliases[child.name.lower()]
        for child in sorted(root.iterdir())
        if child.is_dir() and child.name.lower() in aliases
    }
    if metadata_files:
        rows = _metadata_rows(metadata_files, label_column)
        listed = {Path(row["path"]) for row in rows}
        unlisted = [image for image in images if image not in listed]
        if unlisted:
            warnings.warn(f"{len(unlisted)} image(s) under {root} are not in its metadata files; ignored", stacklevel=3)
    else:
        rows = [{"path": str(image), "label": None} for image in images]
    records = []
    for row in rows:
        path = Path(row["path"])
        relative = path.relative_to(root) if path.is_relative_to(root) else path
        split = split_roots.get(relative.parts[0]) if split_roots else "train"
        if split is None:
            continue  # outside every split folder
        label = row.get("label") or _label_from_folder(path, root, split_roots)
        records.append(
            ImageRecord(str(path), label, row.get("patient_id"), row.get("source"), split, relative.as_posix())
        )
    if split_roots and len(records) < len(rows):
        warnings.warn(f"{len(rows) - len(records)} image(s) outside the split folders of {root}; ignored", stacklevel=3)
    return records


def _walk(root: Path) -> tuple[list[Path], list[Path]]:
    """Image/DICOM files and metadata files under root, sorted, skipping hidden entries."""
    images, metadata = [], []
    for directory, subdirs, files in os.walk(root):
        subdirs[:] = sorted(d for d in subdirs if not d.startswith("."))
        for name in sorted(files):
            if name.startswith("."):
                continue
            path = Path(directory, name)
            if name.lower() in METADATA_FILENAMES:
                metadata.append(path)
            elif _is_image_path(path):
                images.append(path)
    return images, metadata


def _is_image_path(path: Path) -> bool:
    suffix = path.suffix.lower()
    if suffix in IMAGE_EXTENSIONS or suffix in DICOM_EXTENSIONS:
        return True
    return suffix == "" and has_dicom_preamble(path)  # DICOM files often have no extension


def _metadata_rows(metadata_files: Sequence[Path], label_column: str) -> list[dict]:
    rows, missing = [], []
    for metadata_file in metadata_files:
        table = _read_table(metadata_file)
        if table and "file_name" not in table[0]:
            raise ValueError(f"{metadata_file} has no 'file_name' column (columns: {sorted(table[0])})")
        if table and label_column in table[0]:
            # an empty label cell is an error, not a silent fall-back to the folder name
            _check_labels_present(table, label_column, str(metadata_file))
        for row in table:
            path = _resolve(row["file_name"], metadata_file.parent)
            if not row["file_name"] or not path.is_file():
                missing.append(str(path))
            rows.append(
                {
                    "path": str(path),
                    "label": row.get(label_column),
                    "patient_id": row.get("patient_id"),
                    "source": row.get("source"),
                }
            )
    if missing:
        raise MissingFilesError(missing, ", ".join(str(m) for m in metadata_files))
    return rows


def _label_from_folder(path: Path, root: Path, split_roots: Mapping[str, str]) -> str:
    parent = path.parent
    if parent == root or (split_roots and parent.parent == root and parent.name in split_roots):
        raise ValueError(
            f"cannot infer a label for {path}: put images in <split>/<label>/ folders or give a metadata.csv "
            "with a label column"
        )
    return parent.name


def records_from_manifest(
    manifest: Path, label_column: str, image_column: str, aliases: Mapping[str, str]
) -> list[ImageRecord]:
    rows = _read_table(manifest)
    if not rows:
        raise ValueError(f"manifest {manifest} has no rows")
    path_column = next((c for c in (*PATH_COLUMNS, image_column) if c in rows[0]), None)
    if path_column is None:
        raise ValueError(f"manifest {manifest} needs a 'path' column (columns: {sorted(rows[0])})")
    if label_column not in rows[0]:
        raise ValueError(f"manifest {manifest} has no label column {label_column!r} (columns: {sorted(rows[0])})")
    records, missing = [], []
    for row in rows:
        path = _resolve(row[path_column], manifest.parent)
        if not row[path_column] or not path.is_file():
            missing.append(str(path) if row[path_column] else f"<empty {path_column}>")
        split_value = row.get("split") or "train"
        split = aliases.get(split_value.lower(), split_value)
        records.append(
            ImageRecord(str(path), row[label_column], row.get("patient_id"), row.get("source"), split, str(path))
        )
    if missing:
        raise MissingFilesError(missing, str(manifest))
    _check_labels_present(rows, label_column, str(manifest))
    return records


def _read_table(path: Path) -> list[dict[str, str]]:
    if path.suffix.lower() == ".jsonl":
        with open(path, encoding="utf-8") as f:
            return [{k: str_or_none(v) for k, v in json.loads(line).items()} for line in f if line.strip()]
    with open(path, newline="", encoding="utf-8-sig") as f:  # -sig: Excel writes a BOM
        reader = csv.DictReader(f, delimiter="\t" if path.suffix.lower() == ".tsv" else ",")
        return [{(k or "").strip(): str_or_none(v) for k, v in row.items()} for row in reader]


def _check_labels_present(rows: Sequence[Mapping[str, str | None]], label_column: str, where: str) -> None:
    empty = [number for number, row in enumerate(rows, start=2) if not row.get(label_column)]  # 1 = header
    if empty:
        shown = ", ".join(map(str, empty[:20])) + (" ..." if len(empty) > 20 else "")
        raise ValueError(f"{where}: {len(empty)} row(s) with an empty {label_column!r} (lines {shown})")


def _resolve(value: str | None, base: Path) -> Path:
    path = Path((value or "").strip()).expanduser()
    return Path(os.path.normpath(path if path.is_absolute() else base / path))

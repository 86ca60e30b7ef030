"""The Space's batch tab without any UI: several uploads or a zip -> the rows and CSV of `hf-deitcxr predict`.

Every file goes through `batch_predict.examine` / `predict_examined` / `csv_row` (the CLI's own steps), so the
table and the CSV are what `hf-deitcxr predict` writes for the same files. Zip members are extracted by this
module, never by `ZipFile.extractall`: only regular files, under a flat generated name (no path from the archive
reaches the file system), each at most the single upload's size limit, and at most MAX_FILES of them; a member
that breaks a rule becomes a row with its error, like any bad file.
"""

from __future__ import annotations

import csv
import re
import tempfile
import zipfile
from collections.abc import Sequence
from pathlib import Path, PurePosixPath

from .batch_predict import InputFile, csv_header, csv_row, examine, predict_examined
from .input_check import RadiographCheck
from .predictor import RadiographClassifier

MAX_FILES = 200  # per batch request: the tab is for a handful of studies, `hf-deitcxr predict` for a folder
BATCH_SIZE = 16
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(b|kb|mb|gb)?\s*$", re.IGNORECASE)
_UNITS = {"b": 1, "kb": 1024, "mb": 1024**2, "gb": 1024**3}


def parse_size(text: str) -> int:
    """'50mb' -> bytes, as Gradio reads MAX_FILE_SIZE (binary units)."""
    match = _SIZE.match(text)
    if not match:
        raise ValueError(f"not a size: {text!r} (e.g. 50mb)")
    return int(float(match.group(1)) * _UNITS[(match.group(2) or "b").lower()])


def expand_uploads(paths: Sequence[str | Path], folder: Path, max_bytes: int
                   ) -> tuple[list[InputFile], dict[str, str]]:
    """(inputs, {server path: name to show}): uploaded files, zips replaced by their members (extracted into
    `folder`), at most MAX_FILES. Shown names are base names or `archive.zip/member`, never a server path."""
    inputs: list[InputFile] = []
    shown: dict[str, str] = {}
    for path in map(Path, paths):
        if path.suffix.lower() == ".zip":
            for source, name in zip_members(path, folder, max_bytes, MAX_FILES - len(inputs)):
                inputs.append(source)
                shown[source.path] = name
        else:
            inputs.append(InputFile(str(path)))
            shown[str(path)] = path.name
        if len(inputs) >= MAX_FILES:
            break
    return inputs[:MAX_FILES], shown


def zip_members(archive: Path, folder: Path, max_bytes: int, limit: int) -> list[tuple[InputFile, str]]:
    """The archive's files extracted safely, each with its shown name `archive.zip/member`."""
    try:
        with zipfile.ZipFile(archive) as opened:
            members = [info for info in opened.infolist() if not info.is_dir()][:limit]
            into = Path(tempfile.mkdtemp(dir=folder))  # one folder per archive: generated names never collide
            return [(_extract(opened, info, into / f"member_{i:04d}{_suffix(info.filename)}", max_bytes),
                     f"{archive.name}/{info.filename}") for i, info in enumerate(members)]
    except (zipfile.BadZipFile, OSError, EOFError) as err:
        return [(InputFile(archive.name, error=f"not a readable zip archive ({err})"), archive.name)]


def _extract(opened: zipfile.ZipFile, info: zipfile.ZipInfo, target: Path, max_bytes: int) -> InputFile:
    if info.file_size > max_bytes:
        return InputFile(str(target), error=f"larger than the upload limit ({max_bytes} bytes)")
    try:  # a flat generated name: "../x", absolute paths and links in the archive cannot write outside `folder`
        with opened.open(info) as source, target.open("wb") as sink:
            _copy_limited(source, sink, max_bytes)  # the header's size can lie: the bytes are counted too
    except (ValueError, OSError, zipfile.BadZipFile, EOFError, NotImplementedError, RuntimeError) as err:
        target.unlink(missing_ok=True)  # RuntimeError: an encrypted member
        return InputFile(str(target), error=f"cannot be extracted ({err})")
    return InputFile(str(target))


def _suffix(name: str) -> str:
    """The member's extension only (DICOM and image files are recognised by it), restricted to safe characters."""
    return re.sub(r"[^A-Za-z0-9.]", "", PurePosixPath(name).suffix)[:10]


def _copy_limited(source, sink, max_bytes: int, chunk: int = 1 << 20) -> None:
    written = 0
    while block := source.read(chunk):
        written += len(block)
        if written > max_bytes:
            raise ValueError(f"larger than the upload limit ({max_bytes} bytes)")
        sink.write(block)


def batch_rows(
    classifier: RadiographClassifier, check: RadiographCheck | None, inputs: Sequence[InputFile],
    shown: dict[str, str] | None = None,
) -> tuple[list[str], list[list[str]]]:
    """(CSV header, one row per input in order), as `hf-deitcxr predict` without heatmaps; `shown` renames paths."""
    rows: list[list[str]] = []
    for start in range(0, len(inputs), BATCH_SIZE):
        examined = [examine(source, classifier, check) for source in inputs[start : start + BATCH_SIZE]]
        readable = [item for item in examined if item.view is not None and not item.error]
        predictions = dict(zip(map(id, readable), predict_examined(classifier, readable, False), strict=True))
        for item in examined:
            row = csv_row(item, predictions.get(id(item)), classifier.labels, None)
            row[0] = (shown or {}).get(row[0], row[0])
            rows.append(row)
    return csv_header(classifier.labels, False), rows


def write_csv(path: Path, header: Sequence[str], rows: Sequence[Sequence[str]]) -> Path:
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path


__all__ = ["MAX_FILES", "batch_rows", "expand_uploads", "parse_size", "write_csv", "zip_members"]

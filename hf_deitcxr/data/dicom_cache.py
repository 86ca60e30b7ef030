"""DICOM files of a local source decoded once (modality/VOI LUT, MONOCHROME1 inversion) into 8-bit PNGs in a cache
folder, so later steps see DICOM and JPEG data alike; patient ids come from the header when the data has none."""

from __future__ import annotations

import hashlib
import io
import logging
import os
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

import pydicom

from .dicom import DicomReadError, dicom_to_image
from .records import DICOM_EXTENSIONS, ImageRecord, has_dicom_preamble, str_or_none

logger = logging.getLogger(__name__)

_DICOM_CACHE_VERSION = "2"  # bump when dicom.py's display pipeline changes, to re-convert cached PNGs (2: BitsStored)


def dicom_cache_dir(cache_dir: str | os.PathLike | None) -> Path:
    if cache_dir is not None:
        return Path(cache_dir).expanduser()
    base = os.environ.get("HF_DEITCXR_CACHE") or Path.home() / ".cache" / "hf_deitcxr"
    return Path(base).expanduser() / "dicom_png"


def _is_dicom_record(record: ImageRecord) -> bool:
    suffix = Path(record.path).suffix.lower()
    return suffix in DICOM_EXTENSIONS or (suffix == "" and has_dicom_preamble(Path(record.path)))


def convert_dicoms(records: list[ImageRecord], cache_dir: Path, num_workers: int | None) -> list[ImageRecord]:
    """Replace DICOM paths by cached 8-bit PNGs; patient_id from the DICOM header where the data has none."""
    indices = [i for i, record in enumerate(records) if _is_dicom_record(record)]
    if not indices:
        return records
    cache_dir.mkdir(parents=True, exist_ok=True)
    workers = num_workers or min(8, os.cpu_count() or 1)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        results = list(pool.map(lambda i: _convert_one(records[i].path, cache_dir), indices))
    errors = [error for _, _, error in results]
    failures = [f"{records[i].path}: {error}" for i, error in zip(indices, errors, strict=True) if error]
    if failures:
        raise DicomReadError(f"{len(failures)} DICOM file(s) could not be decoded:\n  " + "\n  ".join(failures))
    header_ids = _usable_header_patient_ids([pid for _, pid, _ in results])
    converted = list(records)
    for i, (png, _, _), header_id in zip(indices, results, header_ids, strict=True):
        converted[i] = replace(records[i], path=png, patient_id=records[i].patient_id or header_id)
    logger.info("%d DICOM file(s) available as PNG under %s", len(indices), cache_dir)
    return converted


def _convert_one(path: str, cache_dir: Path) -> tuple[str | None, str | None, str | None]:
    """(png path, header PatientID, error message) for one DICOM file; converts only if not cached."""
    try:
        stat = os.stat(path)
        key = f"{os.path.abspath(path)}|{stat.st_size}|{stat.st_mtime_ns}|{_DICOM_CACHE_VERSION}"
        png = cache_dir / f"{hashlib.sha1(key.encode()).hexdigest()}.png"
        if png.is_file():
            header = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=["PatientID"])
        else:
            header = pydicom.dcmread(path)
            buffer = io.BytesIO()
            dicom_to_image(header, name=path).save(buffer, format="PNG", compress_level=3)
            tmp = png.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_bytes(buffer.getvalue())
            os.replace(tmp, png)  # atomic: a concurrent or interrupted run never sees half a PNG
        return str(png), str_or_none(header.get("PatientID")), None
    except Exception as err:  # reported together for all files
        return None, None, f"{type(err).__name__}: {err}"


def _usable_header_patient_ids(ids: list[str | None]) -> list[str | None]:
    """Header PatientIDs, unless anonymisation gave all images the same one (it would make them 1 patient)."""
    present = {pid for pid in ids if pid}
    if len(ids) > 1 and len(present) == 1 and all(ids):
        warnings.warn(
            f"all {len(ids)} DICOM files have PatientID {present.pop()!r} (anonymised?); ignoring it",
            stacklevel=4,
        )
        return [None] * len(ids)
    return ids

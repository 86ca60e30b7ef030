"""`hf-deitcxr predict MODEL INPUT... --output predictions.csv`: the Space's prediction path over many files.

INPUT: image or DICOM files, folders (searched recursively for image and DICOM files, hidden entries skipped) and
CSV/TSV manifests (a column of paths, relative ones resolved against the manifest's folder). Each file goes through
the Space's own steps: `decode_upload`, the input check (`RadiographCheck`), the model's `model_view`, and
`RadiographClassifier.predict_batch`, which resizes and normalises as `predict` does and runs batches on --device.

One CSV row per input, in input order (folders sorted by path, manifests in row order): path, label,
prob_<class> for each class of the model's id2label, input_check (passed | refused | off), input_check_reason,
error, and heatmap (the PNG written with --heatmaps). A file that cannot be read becomes a row with its error and
no prediction; the run goes on. A refused input is still predicted unless --skip_refused (the Space refuses it).
"""

from __future__ import annotations

import argparse
import csv
import logging
import re
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from PIL import Image
from tqdm import tqdm

from ..data.dicom import UnreadableImageError
from ..data.records import DICOM_EXTENSIONS, IMAGE_EXTENSIONS, has_dicom_preamble
from .decode import decode_upload
from .explain import overlay
from .input_check import RadiographCheck
from .predictor import PRECISIONS, Prediction, RadiographClassifier

logger = logging.getLogger(__name__)

MANIFEST_SUFFIXES = frozenset({".csv", ".tsv"})
PATH_COLUMNS = ("path", "file_name", "filename", "file", "image")  # tried in this order when --path_column is unset
_HUB_ID = re.compile(r"^[\w.-]+(/[\w.-]+)?$")  # NAME or OWNER/NAME; anything else is meant as a local folder
_UNSAFE_NAME = re.compile(r"[^\w.-]+")


class BatchPredictionError(ValueError):
    """The run cannot start (no model, no inputs, no such device); per-file problems are rows instead."""


@dataclass(frozen=True)
class InputFile:
    path: str  # as shown in the CSV
    error: str = ""  # set when the input is known to be bad before reading it (an empty manifest cell)


@dataclass
class Examined:
    """One input after decoding and the input check: what the model sees, or why it will not."""

    source: InputFile
    view: Image.Image | None = None  # `model_view` of the decoded grey image
    verdict: str = ""
    reason: str = ""
    error: str = ""


@dataclass(frozen=True)
class BatchSummary:
    rows: int
    errors: int
    refused: int
    output: Path


# --- inputs ----------------------------------------------------------------------------------------------------


def expand_inputs(inputs: Sequence[str | Path], path_column: str | None = None) -> list[InputFile]:
    """Every file named by `inputs`, in order; a missing command-line input is an error (most likely a typo)."""
    found: list[InputFile] = []
    for given in inputs:
        path = Path(given).expanduser()
        if path.is_dir():
            found.extend(InputFile(str(p)) for p in folder_files(path))
        elif path.suffix.lower() in MANIFEST_SUFFIXES and path.is_file():
            found.extend(manifest_files(path, path_column))
        elif path.is_file():
            found.append(InputFile(str(path)))
        else:
            raise BatchPredictionError(f"input {given}: no such file or folder")
    if not found:
        raise BatchPredictionError(f"no input files found in {', '.join(map(str, inputs)) or '(nothing given)'}")
    return found


def folder_files(root: Path) -> list[Path]:
    """Image and DICOM files under `root` (extension-less files only with a DICOM preamble), sorted by path."""
    files = []
    for path in root.rglob("*"):
        if any(part.startswith(".") for part in path.relative_to(root).parts) or not path.is_file():
            continue
        suffix = path.suffix.lower()
        if suffix in IMAGE_EXTENSIONS or suffix in DICOM_EXTENSIONS or (suffix == "" and has_dicom_preamble(path)):
            files.append(path)
    return sorted(files)


def manifest_files(manifest: Path, path_column: str | None = None) -> list[InputFile]:
    """The manifest's paths in row order, relative ones resolved against its folder; empty cells become errors."""
    try:
        with open(manifest, newline="", encoding="utf-8-sig") as f:  # -sig: Excel writes a BOM
            reader = csv.DictReader(f, delimiter="\t" if manifest.suffix.lower() == ".tsv" else ",")
            fieldnames = list(reader.fieldnames or [])
            columns = [name.strip() for name in fieldnames]
            column = _path_column(manifest, columns, path_column)
            raw = fieldnames[columns.index(column)]
            values = [(reader.line_num, (row.get(raw) or "").strip()) for row in reader]  # blank lines skipped
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise BatchPredictionError(f"manifest {manifest}: cannot be read as a CSV ({err})") from err
    files = []
    for line, value in values:
        if not value:
            files.append(InputFile(f"{manifest}:{line}", f"line {line} of {manifest.name}: empty {column!r} cell"))
            continue
        path = Path(value).expanduser()
        files.append(InputFile(str(path if path.is_absolute() else manifest.parent / path)))
    return files


def _path_column(manifest: Path, columns: list[str], wanted: str | None) -> str:
    if wanted is not None:
        if wanted not in columns:
            raise BatchPredictionError(f"manifest {manifest} has no column {wanted!r} (columns: {columns})")
        return wanted
    column = next((c for c in PATH_COLUMNS if c in columns), None)
    if column is None and len(columns) == 1:
        column = columns[0]  # a one-column manifest: that column holds the paths
    if column is None:
        raise BatchPredictionError(
            f"manifest {manifest}: no path column among {columns}; name one with --path_column (looked for "
            f"{', '.join(PATH_COLUMNS)})"
        )
    return column


# --- model -----------------------------------------------------------------------------------------------------


def load_classifier(model: str, device: str = "cpu", precision: str = "fp32", explain: bool = False
                    ) -> RadiographClassifier:
    """The saved model (folder or Hub id) on `device`, with clear errors for what is not a model."""
    target = resolve_device(device)
    path = Path(model).expanduser()
    if path.is_dir() and not (path / "config.json").is_file():
        raise BatchPredictionError(f"model {model}: not a saved model folder (no config.json in it)")
    if not path.is_dir() and not _HUB_ID.match(model):
        raise BatchPredictionError(f"model {model}: no such folder")
    try:
        # the model's own forward: the Space's start-up choice (fused / ONNX / bf16, checked and timed at load) is
        # for single requests on the CPU, and this runs batches, on --device
        classifier = RadiographClassifier.from_pretrained(path if path.is_dir() else model, precision=precision,
                                                          explain=explain, fused=False)
    except (OSError, ValueError) as err:  # e.g. a Hub id that does not exist or cannot be reached
        found = "cannot be loaded" if path.is_dir() else "no such folder, and not loadable as a Hub id"
        raise BatchPredictionError(f"model {model}: {found} ({err})") from err
    classifier.model.to(target)
    return classifier


def resolve_device(name: str) -> torch.device:
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError) as err:
        raise BatchPredictionError(f"--device {name}: not a device ({err})") from err
    if device.type == "cuda" and not torch.cuda.is_available():
        raise BatchPredictionError(f"--device {name}: CUDA is not available here (use --device cpu)")
    return device


# --- prediction ------------------------------------------------------------------------------------------------


def examine(source: InputFile, classifier: RadiographClassifier, check: RadiographCheck | None) -> Examined:
    """Decode and check one input as the Space does; any failure becomes the row's error, never the run's."""
    if source.error:
        return Examined(source, error=source.error)
    try:
        upload = decode_upload(source.path)
        verdict, reason = "off", ""
        if check is not None:
            _, failures = check.all_failures(upload)
            verdict, reason = ("refused", "; ".join(failures.values())) if failures else ("passed", "")
        return Examined(source, classifier.model_view(upload.grey), verdict, reason)
    except Exception as err:  # a bad file of any kind (corrupt, truncated, unreadable DICOM, no permission)
        return Examined(source, error=_error_text(err))


def predict_examined(classifier: RadiographClassifier, items: Sequence[Examined], heatmap: bool
                     ) -> list[Prediction | None]:
    """One batched forward over the items' views; if it fails, each item alone, so one bad image fails alone."""
    if len(items) > 1:
        try:
            return list(classifier.predict_batch([item.view for item in items], heatmap=heatmap, framed=True))
        except Exception as err:
            logger.warning("a batch failed (%s): predicting its images one by one", _error_text(err))
    predictions: list[Prediction | None] = []
    for item in items:
        try:
            predictions.extend(classifier.predict_batch([item.view], heatmap=heatmap, framed=True))
        except Exception as err:  # e.g. an image the saved preprocessing cannot frame
            item.error = _error_text(err)
            predictions.append(None)
    return predictions


def _error_text(err: BaseException) -> str:
    text = " ".join(str(err).split())  # one line per CSV cell
    return text if isinstance(err, UnreadableImageError) else f"{type(err).__name__}: {text}"


def chunks(items: Sequence[InputFile], size: int) -> Iterator[Sequence[InputFile]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def csv_header(labels: Sequence[str], heatmaps: bool) -> list[str]:
    columns = ["path", "label", *(f"prob_{label}" for label in labels), "input_check", "input_check_reason", "error"]
    return [*columns, "heatmap"] if heatmaps else columns


def csv_row(item: Examined, prediction: Prediction | None, labels: Sequence[str], heatmap: str | None) -> list[str]:
    probabilities = [repr(prediction.probabilities[label]) for label in labels] if prediction else [""] * len(labels)
    row = [item.source.path, prediction.label if prediction else "", *probabilities, item.verdict, item.reason,
           item.error]
    return row if heatmap is None else [*row, heatmap]


def write_heatmap(folder: Path, index: int, item: Examined, prediction: Prediction | None) -> str:
    """The Space's overlay of the prediction's heatmap as `<row index>_<file stem>.png`; "" when there is none."""
    if prediction is None or prediction.heatmap is None or item.view is None:
        return ""
    stem = _UNSAFE_NAME.sub("_", Path(item.source.path).stem)[:60] or "image"
    target = folder / f"{index:06d}_{stem}.png"  # the row index keeps names unique across folders
    Image.fromarray(overlay(item.view, prediction.heatmap)).save(target)
    return str(target)


def run_batch_prediction(
    model: str,
    inputs: Sequence[str | Path],
    output: str | Path,
    *,
    batch_size: int = 32,
    device: str = "cpu",
    precision: str = "fp32",
    heatmaps: str | Path | None = None,
    check_input: bool = True,
    skip_refused: bool = False,
    path_column: str | None = None,
    progress: bool = True,
) -> BatchSummary:
    """Predict every input and write the CSV (rows written batch by batch, so an interrupted run keeps its rows)."""
    if batch_size < 1:
        raise BatchPredictionError(f"--batch_size must be at least 1, got {batch_size}")
    files = expand_inputs(inputs, path_column)  # before loading the model: a typo fails fast
    classifier = load_classifier(model, device, precision, explain=heatmaps is not None)
    if heatmaps is not None and classifier.heatmap_kind is None:
        logger.warning("%s has no heatmap for its model type: the heatmap column stays empty", model)
    check = RadiographCheck() if check_input else None
    heatmap_dir = Path(heatmaps) if heatmaps is not None else None
    if heatmap_dir is not None:
        heatmap_dir.mkdir(parents=True, exist_ok=True)
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    errors = refused = index = 0
    with open(output, "w", newline="", encoding="utf-8") as f, tqdm(
        total=len(files), unit="image", disable=not progress, file=sys.stderr
    ) as bar:
        writer = csv.writer(f)
        writer.writerow(csv_header(classifier.labels, heatmap_dir is not None))
        for chunk in chunks(files, batch_size):
            items = [examine(source, classifier, check) for source in chunk]
            wanted = [not i.error and not (skip_refused and i.verdict == "refused") for i in items]
            chosen = [item for item, want in zip(items, wanted, strict=True) if want]
            predictions = iter(predict_examined(classifier, chosen, heatmap_dir is not None))
            for item, want in zip(items, wanted, strict=True):
                prediction = next(predictions) if want else None
                heatmap = write_heatmap(heatmap_dir, index, item, prediction) if heatmap_dir is not None else None
                writer.writerow(csv_row(item, prediction, classifier.labels, heatmap))
                errors += bool(item.error)
                refused += item.verdict == "refused"
                index += 1
            f.flush()
            bar.update(len(chunk))
    return BatchSummary(index, errors, refused, output)


# --- command line ----------------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hf-deitcxr predict", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", help="saved model folder (or Hub id)")
    parser.add_argument("inputs", nargs="+", metavar="INPUT", help="image/DICOM files, folders, CSV/TSV manifests")
    parser.add_argument("--output", default="predictions.csv", help="CSV to write (default: predictions.csv)")
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--device", default="cpu", help="cpu (default), cuda or cuda:N")
    parser.add_argument("--precision", choices=PRECISIONS, default="fp32",
                        help="model weights (default fp32: the same numbers on every machine)")
    parser.add_argument("--heatmaps", default=None, metavar="DIR",
                        help="write the Space's heatmap overlay (DeiT: attention rollout; DenseNet: CAM) per image")
    parser.add_argument("--path_column", default=None,
                        help=f"manifest column of paths (default: the first of {', '.join(PATH_COLUMNS)})")
    parser.add_argument("--no_input_check", action="store_true", help="do not run the Space's input check")
    parser.add_argument("--skip_refused", action="store_true",
                        help="no prediction for inputs the input check refuses (as the Space does)")
    parser.add_argument("--no_progress", action="store_true", help="no progress bar")
    return parser


def predict_main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `hf-deitcxr predict`; prints where the CSV went and how many rows failed or were refused."""
    parser = build_parser()
    args = parser.parse_args(sys.argv[1:] if argv is None else list(argv))
    try:
        summary = run_batch_prediction(
            args.model, args.inputs, args.output, batch_size=args.batch_size, device=args.device,
            precision=args.precision, heatmaps=args.heatmaps, check_input=not args.no_input_check,
            skip_refused=args.skip_refused, path_column=args.path_column, progress=not args.no_progress,
        )
    except BatchPredictionError as err:
        parser.exit(2, f"hf-deitcxr predict: error: {err}\n")
    print(f"wrote {summary.rows} rows to {summary.output} ({summary.errors} with errors, "
          f"{summary.refused} refused by the input check)")
    return 0


__all__ = [
    "BatchPredictionError",
    "BatchSummary",
    "InputFile",
    "build_parser",
    "expand_inputs",
    "folder_files",
    "load_classifier",
    "manifest_files",
    "predict_main",
    "run_batch_prediction",
]

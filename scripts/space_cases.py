"""The uploads that the Space's measuring scripts send, and how an answer is classified.

Shared by `load_test_space.py` (the mixed load test) and `memory_profile_space.py` (peak memory per input kind):
valid radiographs (the bundled samples as JPEG, PNG, 8- and 16-bit DICOM), near-limit files (a radiograph upscaled to
just under / over the pixel budget and the upload limit), hostile files (every generator of `malformed_inputs.py`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import malformed_inputs as mi
import numpy as np
from PIL import Image

SAMPLES = mi.SAMPLES
GENERIC_ERROR = "has raised an exception but has not enabled verbose error reporting"
SERVER_ERROR_TITLE = "Server error"  # space/app.py's message for an exception it did not foresee (a bug)
UNDER_BUDGET_SIDE = 9400  # 88.4 Mpixel
OVER_BUDGET_SIDE = 9500  # 90.3 Mpixel
UNDER_UPLOAD_LIMIT_DICOM_SIDE = 5000  # 16-bit uncompressed: 50,000,000 bytes of pixels


def sample_files() -> list[Path]:
    files = sorted(p for p in SAMPLES.rglob("*") if p.suffix.lower() in (".png", ".jpg", ".jpeg"))
    if not files:
        raise FileNotFoundError(f"no sample radiographs under {SAMPLES}")
    return files


def answer_outcome(result, error: BaseException | None) -> tuple[str, str]:
    """(outcome, detail) of one `predict` answer: success (the four outputs, a label dict with confidences first),
    clear_error (a gr.Error with a specific message), generic_error (the app's "Server error": an exception it did
    not foresee), timeout, or crash (Gradio's generic exception, an empty message, another exception, a bad shape)."""
    from gradio_client.exceptions import AppError

    if error is not None:
        if isinstance(error, AppError):
            message = str(error.message or "").strip()
            if not message or GENERIC_ERROR in message:
                return "crash", message or "empty error message"
            if getattr(error, "title", None) == SERVER_ERROR_TITLE:
                return "generic_error", message
            return "clear_error", message
        if isinstance(error, TimeoutError):
            return "timeout", f"no answer ({type(error).__name__})"
        return "crash", f"{type(error).__name__}: {error}"
    label = result[0] if isinstance(result, (list, tuple)) and len(result) == 4 else None
    if isinstance(label, dict) and label.get("confidences"):
        return "success", str(label.get("label"))
    return "crash", f"unexpected output {str(result)[:120]}"


@dataclass(frozen=True)
class ProfileCase:
    kind: str
    group: str  # valid | near_limit | hostile | mixed
    expected: str | None  # success | clear_error | None (either: a valid encoding the input check may refuse)
    path: Path


# --- inputs ------------------------------------------------------------------------------------------------------


def _grey(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("L"))


def valid_cases(folder: Path, count: int = 6) -> list[ProfileCase]:
    """The bundled sample radiographs as JPEG (as shipped), PNG, 8-bit and 16-bit (12 bits stored) DICOM."""
    folder.mkdir(parents=True, exist_ok=True)
    cases = []
    for i, source in enumerate(sample_files()[:count]):
        grey = _grey(source)
        height, width = grey.shape
        files = {"valid_jpeg": (".jpg", source.read_bytes()),
                 "valid_png": (".png", mi.encode_image(Image.fromarray(grey), "PNG")),
                 "valid_dicom_8bit": (".dcm", mi.dicom_bytes(height, width, grey.tobytes(), bits=8)),
                 "valid_dicom_16bit": (".dcm", mi.dicom_bytes(height, width, (grey.astype(np.uint16) * 16).tobytes(),
                                                         bits_stored=12))}
        for kind, (suffix, data) in files.items():
            path = folder / f"{kind}_{i:02d}{suffix}"
            path.write_bytes(data)
            cases.append(ProfileCase(kind, "valid", "success", path))
    return cases


def near_limit_cases(folder: Path) -> list[ProfileCase]:
    """A radiograph upscaled to just under (valid) and just over (refused) the pixel budget and the upload limit."""
    from pydicom.uid import DeflatedExplicitVRLittleEndian

    folder.mkdir(parents=True, exist_ok=True)
    grey = Image.fromarray(_grey(sample_files()[0]))
    cases = []
    for side, expected, tag in ((UNDER_BUDGET_SIDE, "success", "under"), (OVER_BUDGET_SIDE, "clear_error", "over")):
        big = np.asarray(grey.resize((side, side), Image.Resampling.BILINEAR))
        big16 = big.astype(np.uint16) * 257
        files = {f"png8_{side}px_{tag}_budget": (".png", mi.encode_image(Image.fromarray(big), "PNG")),
                 f"png16_{side}px_{tag}_budget": (".png", mi.encode_image(Image.fromarray(big16), "PNG")),
                 f"dicom16_deflated_{side}px_{tag}_budget": (".dcm", mi.patched_dicom(
                     big16, transfer_syntax=DeflatedExplicitVRLittleEndian))}
        del big, big16
        for kind, (suffix, data) in files.items():
            path = folder / f"{kind}{suffix}"
            path.write_bytes(data)
            cases.append(ProfileCase(kind, "near_limit", expected, path))
    side = UNDER_UPLOAD_LIMIT_DICOM_SIDE
    pixels = np.asarray(grey.resize((side, side), Image.Resampling.BILINEAR)).astype(np.uint16) * 16
    path = folder / f"dicom16_{side}px_under_upload_limit.dcm"
    path.write_bytes(mi.dicom_bytes(side, side, pixels.tobytes(), bits_stored=12))
    cases.append(ProfileCase(path.stem, "near_limit", "success", path))
    return cases


def hostile_cases(folder: Path, per_kind: int = 6, seed: int = 0) -> list[ProfileCase]:
    """Every generator of malformed_inputs (round 0, then 1, ...) up to `per_kind` files each, spread over its
    variants; the deflated DICOM bomb is a kind of its own. radiograph_encoding is group "mixed" (valid encodings
    of which the input check refuses some), everything else must be refused with a clear message."""
    folder.mkdir(parents=True, exist_ok=True)
    cases = []
    for kind, make in mi.GENERATORS:
        made: list[tuple[str, str, bytes]] = []
        round_index = 0
        while (len(made) < per_kind or round_index < 2) and round_index < 4:  # >= 2 rounds: both deflate bombs
            rng = np.random.default_rng([seed, round_index])
            if kind == "malformed_dicom":
                for label, data in mi.malformed_dicom_cases(rng, round_index):
                    made.append(("deflated_dicom_bomb" if label == "deflated-bomb" else kind, ".dcm", data))
            else:
                made += [(kind, suffix, data) for suffix, data in make(rng, round_index)]
            round_index += 1
        for sub_kind in dict.fromkeys(k for k, _, _ in made):
            items = [(s, d) for k, s, d in made if k == sub_kind]
            picks = np.unique(np.linspace(0, len(items) - 1, min(per_kind, len(items))).round().astype(int))
            for i in picks:
                suffix, data = items[i]
                path = folder / f"{sub_kind}_{i:03d}{suffix}"
                path.write_bytes(data)
                mixed = sub_kind == "radiograph_encoding"
                cases.append(ProfileCase(sub_kind, "mixed" if mixed else "hostile", None if mixed else "clear_error",
                                         path))
    return cases

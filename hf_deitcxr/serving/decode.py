"""Decode one uploaded file (PNG/JPEG/DICOM/anything PIL opens) for serving, keeping what the input check needs.

`read_radiograph` turns every file into an 8-bit grey image and so forgets whether it was a colour picture; the
input check needs that, so the colourfulness of colour files is measured here from a small draft decode (JPEG
decodes at 1/8 scale), and the DICOM modality is read from the header. Grey files are decoded once.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pydicom
from PIL import Image

from ..data.dicom import DICOM_MAGIC, DICOM_MAGIC_OFFSET, ImageSource, UnreadableImageError, read_radiograph

# PIL modes that carry no colour: nothing to measure.
_GREY_MODES = frozenset({"1", "L", "LA", "La", "I", "I;16", "I;16B", "I;16L", "I;16N", "F"})
_COLOUR_THUMBNAIL = (64, 64)


@dataclass(frozen=True)
class DecodedUpload:
    """An uploaded image as the model will see it (8-bit grey) plus facts about the file itself."""

    grey: Image.Image
    colourfulness: float  # Hasler & Suesstrunk (2003) M on a 64 px thumbnail; 0 for grey files and DICOM
    is_dicom: bool
    modality: str | None  # DICOM (0008,0060) Modality, e.g. "CR", "DX", "CT"; None when absent or not DICOM
    body_part: str | None = None  # DICOM (0018,0015) BodyPartExamined, e.g. "CHEST"; None when absent
    view_position: str | None = None  # DICOM (0018,5101) ViewPosition, e.g. "PA", "LL"; None when absent
    photometric: str | None = None  # DICOM PhotometricInterpretation, e.g. "MONOCHROME1" (inverted on decoding)
    window: str | None = None  # the VOI step `read_radiograph` applied, as text (the Space's input preview)
    pixel_spacing: str | None = None  # "row x column mm" from PixelSpacing / ImagerPixelSpacing; None when absent
    inverted: bool = False  # the decoder inverted the grey levels (MONOCHROME1 or Presentation LUT Shape INVERSE)

    @property
    def size(self) -> tuple[int, int]:
        return self.grey.size


def decode_upload(source: ImageSource) -> DecodedUpload:
    """Read a file path, bytes or an open binary file.

    Raises `UnreadableImageError` (its message names only the file's base name).
    """
    data, name = _read(source)
    if not data:
        raise UnreadableImageError(f"{name}: empty file (0 bytes)")
    dicom = data[DICOM_MAGIC_OFFSET : DICOM_MAGIC_OFFSET + len(DICOM_MAGIC)] == DICOM_MAGIC or name.lower().endswith(
        (".dcm", ".dicom")
    )
    try:
        grey = read_radiograph(_NamedBytes(data, name))
    except UnreadableImageError as err:
        raise UnreadableImageError(str(err).replace("<bytes>", name)) from err
    if dicom:
        return DecodedUpload(grey, 0.0, True, *_dicom_facts(data))  # the header is parsed once more, without pixels
    return DecodedUpload(grey, _colourfulness(data), False, None)


def colourfulness(rgb: np.ndarray) -> float:
    """Hasler & Suesstrunk's colourfulness M of an (H, W, 3) array: 0 for grey, ~15 'slightly', >~60 'very'."""
    rgb = np.asarray(rgb, dtype=np.float32)
    rg = rgb[..., 0] - rgb[..., 1]
    yb = 0.5 * (rgb[..., 0] + rgb[..., 1]) - rgb[..., 2]
    return float(np.hypot(rg.std(), yb.std()) + 0.3 * np.hypot(rg.mean(), yb.mean()))


def _colourfulness(data: bytes) -> float:
    with Image.open(io.BytesIO(data)) as image:
        if image.mode in _GREY_MODES:
            return 0.0
        image.draft("RGB", _COLOUR_THUMBNAIL)  # JPEG: decode at reduced scale, much cheaper than a full decode
        if image.mode == "P" and "transparency" in image.info:
            image = image.convert("RGBA")
        thumbnail = image.convert("RGB").resize(_COLOUR_THUMBNAIL, Image.Resampling.BOX)
    return colourfulness(np.asarray(thumbnail))


def _dicom_facts(data: bytes) -> tuple[str | None, ...]:
    """(Modality, BodyPartExamined, ViewPosition, PhotometricInterpretation), each stripped and uppercased, several
    values joined by a backslash as DICOM writes them (so "CT\\DX" stays visible as two values), then the window
    and pixel spacing as text (None when absent or empty) and whether the decoder inverted the grey levels."""
    try:
        header = pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True, force=True)
    except Exception:  # the pixels decoded, so the header is readable in practice; never fail on metadata alone
        return None, None, None, None, None, None, False
    tags = ("Modality", "BodyPartExamined", "ViewPosition", "PhotometricInterpretation")
    texts = [_tag_text(header, keyword) for keyword in tags]
    inverted = texts[3] == "MONOCHROME1" or _tag_text(header, "PresentationLUTShape") == "INVERSE"
    return (*texts, _window_text(header), _spacing_text(header), inverted)


def _window_text(header: pydicom.Dataset) -> str | None:
    """The VOI step in the order `dicom_display` applies it: VOI LUT sequence, else the first window, else none."""
    try:
        if header.get("VOILUTSequence"):
            return "VOI LUT sequence"
        center, width = _first(header.get("WindowCenter")), _first(header.get("WindowWidth"))
        if center is not None and width is not None:
            return f"center {float(center):g} / width {float(width):g}"
    except Exception:  # an unparsable value: the decoder went on without it, and so does this description
        return None
    return "none in the file (the stored bit depth's range)"


def _spacing_text(header: pydicom.Dataset) -> str | None:
    for keyword in ("PixelSpacing", "ImagerPixelSpacing"):
        try:
            value = header.get(keyword)
            if value is not None and len(value) == 2:
                return f"{float(value[0]):g} × {float(value[1]):g} mm ({keyword})"
        except Exception:  # an unparsable spacing is left out, not an error
            continue
    return None


def _first(value: object) -> object | None:
    if isinstance(value, (list, tuple, pydicom.multival.MultiValue)):
        return value[0] if len(value) else None
    return value


def _tag_text(header: pydicom.Dataset, keyword: str) -> str | None:
    try:
        value = header.get(keyword)
    except Exception:  # a value pydicom cannot parse: treated as absent, the input check then decides
        return None
    if value is None:
        return None
    values = value if isinstance(value, (list, tuple, pydicom.multival.MultiValue)) else [value]
    text = "\\".join(str(v).strip() for v in values if str(v).strip()).upper()
    return text or None


class _NamedBytes(io.BytesIO):
    """Bytes with a file name, so `read_radiograph` recognises a `.dcm` without preamble and names it in errors."""

    def __init__(self, data: bytes, name: str) -> None:
        super().__init__(data)
        self.name = name


def _read(source: ImageSource) -> tuple[bytes, str]:
    if isinstance(source, (bytes, bytearray)):
        return bytes(source), "<upload>"
    if hasattr(source, "read"):  # an open binary file
        return source.read(), Path(getattr(source, "name", None) or "<upload>").name
    path = Path(source)
    if not path.is_file():
        raise UnreadableImageError(f"{path.name}: no such file")
    return path.read_bytes(), path.name


__all__ = ["DecodedUpload", "colourfulness", "decode_upload"]

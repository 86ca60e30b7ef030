"""Compressed DICOMs written here (JPEG Lossless SV1, JPEG 2000 lossless, RLE) and read back pixel for pixel through
the data loader (`read_dicom` / `read_radiograph`) and the Space's decoder (`decode_upload`); without decoder plug-ins,
one message that names the `[dicom]` extra."""

from __future__ import annotations

import io
import sys
from pathlib import Path

import numpy as np
import pytest
from pydicom import dcmread
from pydicom.pixels import get_decoder, pixel_array
from pydicom.uid import JPEG2000Lossless, JPEGLosslessSV1, JPEGLSLossless, RLELossless

from hf_deitcxr.data import DicomReadError, UnreadableImageError, read_dicom, read_radiograph
from hf_deitcxr.serving.decode import decode_upload
from hf_deitcxr.serving.safe_text import user_message
from tests.helpers.dicom_files import write_compressed_dicom, write_dicom

SYNTAXES = [JPEGLosslessSV1, JPEG2000Lossless, RLELossless]
SYNTAX_IDS = ["JPEG-Lossless-SV1", "JPEG-2000-lossless", "RLE-lossless"]
EXTRA_HINT = 'pip install "hf_deitcxr[dicom]"'


def grey(image) -> np.ndarray:
    assert image.mode == "L"
    return np.asarray(image)


def random_pixels(bits: int, dtype: type, seed: int = 0) -> np.ndarray:
    # at least 32 px a side: openjpeg's default 6 resolution levels halve the image 5 times
    pixels = np.random.default_rng(seed).integers(0, 2**bits, (40, 36)).astype(dtype)
    pixels[0, :2] = [0, 2**bits - 1]  # both ends of the stored range
    return pixels


@pytest.mark.parametrize("syntax", SYNTAXES, ids=SYNTAX_IDS)
def test_8_bit_compressed_dicom_decodes_to_the_stored_pixels(syntax, tmp_path):
    stored = random_pixels(8, np.uint8)
    data = write_compressed_dicom(stored, syntax)
    ds = dcmread(io.BytesIO(data))
    assert ds.file_meta.TransferSyntaxUID == syntax and ds["PixelData"].is_undefined_length  # really encapsulated
    np.testing.assert_array_equal(grey(read_dicom(data)), stored)
    np.testing.assert_array_equal(grey(decode_upload(data).grey), stored)
    (tmp_path / "x.dcm").write_bytes(data)
    np.testing.assert_array_equal(grey(read_radiograph(tmp_path / "x.dcm")), stored)


@pytest.mark.parametrize("syntax", SYNTAXES, ids=SYNTAX_IDS)
@pytest.mark.parametrize(
    ("bits", "attributes"),
    [
        (12, {"WindowCenter": 1800, "WindowWidth": 2500}),
        # the DX module's pair for a negative image: inverted once
        (16, {"photometric": "MONOCHROME1", "PresentationLUTShape": "INVERSE"}),
    ],
    ids=["12-bit-windowed", "16-bit-MONOCHROME1-INVERSE"],
)
def test_high_bit_depth_compressed_dicom_matches_its_uncompressed_twin(syntax, bits, attributes):
    stored = random_pixels(bits, np.uint16, seed=bits)
    packed = write_compressed_dicom(stored, syntax, bits_stored=bits, **attributes)
    np.testing.assert_array_equal(pixel_array(dcmread(io.BytesIO(packed))), stored)  # the stream is lossless
    expected = grey(read_dicom(write_dicom(None, stored, bits_stored=bits, **attributes)))
    assert len(np.unique(expected)) > 50  # a real grey ramp, not a few clipped levels
    np.testing.assert_array_equal(grey(read_dicom(packed)), expected)
    upload = decode_upload(packed)
    assert upload.is_dicom and upload.modality == "DX"
    np.testing.assert_array_equal(grey(upload.grey), expected)


def no_decoders(monkeypatch: pytest.MonkeyPatch, syntax) -> None:
    """pydicom as without the extra: no plug-in for `syntax` available (Pillow's JPEG 2000 one too)."""
    decoder = get_decoder(syntax)
    monkeypatch.setattr(decoder, "_available", {})
    assert not decoder.is_available


@pytest.mark.parametrize("syntax", [JPEGLosslessSV1, JPEG2000Lossless], ids=["JPEG-Lossless", "JPEG-2000"])
def test_without_the_extra_one_message_names_it(syntax, monkeypatch):
    data = write_compressed_dicom(random_pixels(12, np.uint16), syntax, bits_stored=12)
    no_decoders(monkeypatch, syntax)
    with pytest.raises(DicomReadError) as refused:
        read_dicom(data)
    assert str(refused.value) == (
        f"<bytes>: cannot decode compressed transfer syntax {syntax.name!r} ({syntax}): no decoder for it is "
        f"installed. Convert the file to an uncompressed DICOM or a PNG. To decode it here, {EXTRA_HINT} (the "
        "pylibjpeg plug-ins for JPEG, JPEG-LS, JPEG 2000, RLE)."
    )
    with pytest.raises(UnreadableImageError) as upload:
        decode_upload(data)
    assert EXTRA_HINT in str(upload.value)
    # The Space's user sees what to do with the file, not the server's pip command.
    shown = user_message(str(upload.value))
    assert shown.endswith("no decoder for it is installed. Convert the file to an uncompressed DICOM or a PNG.")
    assert "pip" not in shown


def test_the_dicom_extra_provides_the_decoders_and_ci_installs_it():
    for syntax in (JPEGLosslessSV1, JPEGLSLossless, JPEG2000Lossless, RLELossless):
        assert "pylibjpeg" in get_decoder(syntax).available_plugins, syntax.name
    if sys.version_info >= (3, 11):
        import tomllib

        extras = tomllib.loads((Path(__file__).parents[2] / "pyproject.toml").read_text())["project"][
            "optional-dependencies"]
        assert {"pylibjpeg", "pylibjpeg-libjpeg", "pylibjpeg-openjpeg", "pylibjpeg-rle"} == {
            requirement.split(">")[0] for requirement in extras["dicom"]}
        assert set(extras["dicom"]) <= set(extras["test"])  # CI installs .[test]

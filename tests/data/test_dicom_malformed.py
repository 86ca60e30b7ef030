"""Malformed DICOMs (scripts/malformed_inputs.malformed_dicom_cases): each decodes or says exactly what is wrong.

Also the pixel budget, checked from the header before any pixel is decoded (a small file declaring a huge image,
frames and samples counted, a deflate bomb refused without inflating it).
"""

from __future__ import annotations

import tracemalloc
from contextlib import nullcontext

import numpy as np
import pytest
from PIL import Image

import hf_deitcxr.data.dicom as dicom_module
from hf_deitcxr.data import DicomReadError, read_dicom, read_radiograph
from scripts.malformed_inputs import deflated_dicom, malformed_dicom_cases, patched_dicom
from tests.helpers.dicom_files import write_dicom

CASES = dict(malformed_dicom_cases(np.random.default_rng(0), 0))
DECODES = {
    "NumberOfFrames-empty", "NumberOfFrames-3-valid", "RescaleSlope-empty", "WindowWidth-zero",
    "WindowWidth-missing", "WindowWidth-second-value-non-numeric", "Modality-missing", "Modality-empty",
    "Modality-two-values", "PlanarConfiguration-0-valid-RGB",
}
# label -> what the message must say (a regex); every refused case is listed, so a new case needs an entry
REFUSED = {
    "Rows-missing": "Rows is missing or empty", "Rows-empty": "Rows is missing or empty",
    "Rows-zero": "Rows 0 is out of range", "Rows-too-many-for-data": "PixelData holds 128 bytes but .* needs 256",
    "Columns-missing": "Columns is missing or empty", "Columns-empty": "Columns is missing or empty",
    "Columns-zero": "Columns 0 is out of range",
    "Rows-Columns-huge-declared": "image too large: 60000x60000 = 3,600,000,000 pixels exceeds the pixel budget",
    "SamplesPerPixel-missing": "SamplesPerPixel is missing", "SamplesPerPixel-zero": "SamplesPerPixel 0 is not one",
    "SamplesPerPixel-3-for-monochrome": "SamplesPerPixel 3 is inconsistent with PhotometricInterpretation",
    "BitsAllocated-missing": "BitsAllocated is missing", "BitsAllocated-12": "BitsAllocated 12 is not one of",
    "BitsAllocated-zero": "BitsAllocated 0 is not one of", "BitsStored-missing": "BitsStored is missing",
    "BitsStored-zero": "BitsStored 0 is out of range", "BitsStored-above-allocated": "BitsStored 17 is out of range",
    "PixelRepresentation-missing": "PixelRepresentation is missing",
    "PixelRepresentation-2": "PixelRepresentation 2 is not one of",
    "NumberOfFrames-non-numeric": "NumberOfFrames is not a number \\('abc'\\)",
    "NumberOfFrames-zero": "NumberOfFrames 0 is out of range", "NumberOfFrames-negative": "NumberOfFrames -1 is out",
    "NumberOfFrames-fraction": "NumberOfFrames is not a whole number",
    "NumberOfFrames-more-than-data": "PixelData holds .* bytes but .*x3 frames",
    "NumberOfFrames-huge": "image too large: .*99999999 frames",
    "PhotometricInterpretation-missing": "PhotometricInterpretation is missing",
    "PhotometricInterpretation-empty": "PhotometricInterpretation is missing or empty",
    "PhotometricInterpretation-unknown": "PhotometricInterpretation 'FOO' is not one of",
    "PhotometricInterpretation-two-values": "PhotometricInterpretation has 2 values",
    "PhotometricInterpretation-RGB-one-sample": "SamplesPerPixel 1 is inconsistent with .* RGB",
    "PALETTE-COLOR-without-tables": "PALETTE COLOR image without its lookup tables",
    "PALETTE-COLOR-tables-too-short": "RedPaletteColorLookupTableData holds 2 bytes, shorter than the 256",
    "RescaleSlope-non-numeric": "RescaleSlope is not a number", "RescaleSlope-zero": "RescaleSlope is 0",
    "RescaleSlope-infinite": "RescaleSlope is not a finite", "RescaleSlope-nan": "RescaleSlope is not a finite",
    "RescaleSlope-two-values": "RescaleSlope has 2 values",
    "RescaleIntercept-non-numeric": "RescaleIntercept is not a number",
    "RescaleIntercept-nan": "RescaleIntercept is not a finite",
    "WindowCenter-non-numeric": "WindowCenter is not a number", "WindowWidth-non-numeric": "WindowWidth is not a",
    "WindowWidth-infinite": "WindowWidth is not a finite", "WindowCenter-nan": "WindowCenter is not a finite",
    "VOILUTFunction-unknown": "VOILUTFunction 'CUBIC' is not one of",
    "VOILUTSequence-empty": "VOILUTSequence is present but empty",
    "VOILUTSequence-shorter-than-descriptor": "VOILUTSequence LUTData has 4 entries, shorter than the 4096",
    "VOILUTSequence-without-data": "VOILUTSequence has no LUTData",
    "VOILUTSequence-without-descriptor": "VOILUTSequence LUTDescriptor is missing",
    "VOILUTSequence-descriptor-two-values": "VOILUTSequence LUTDescriptor has 2 values",
    "ModalityLUTSequence-empty": "ModalityLUTSequence is present but empty",
    "ModalityLUTSequence-shorter-than-descriptor": "ModalityLUTSequence LUTData has 2 entries",
    "PixelData-missing": "no pixel data", "PixelData-empty": "PixelData holds 0 bytes",
    "PixelData-short": "PixelData holds 64 bytes but .* needs 128",
    "deflated-bomb": "image too large: 10000x10000",
    "PlanarConfiguration-missing-for-RGB": "PlanarConfiguration is missing",
    "PlanarConfiguration-2": "PlanarConfiguration 2 is not one of 0, 1",
    "TransferSyntaxUID-unknown": "TransferSyntaxUID '1.2.840.99999.1.2.1' is not a transfer syntax",
    "Rows-unknown-VR": "corrupt DICOM header element .*UQ",
}


def test_every_case_is_classified():
    assert set(CASES) == DECODES | set(REFUSED) and not DECODES & set(REFUSED)


@pytest.mark.parametrize("label", sorted(REFUSED))
def test_malformed_dicom_is_refused_with_a_specific_message(label):
    with pytest.raises(DicomReadError, match=REFUSED[label]) as info:
        read_radiograph(CASES[label])
    message = str(info.value)
    assert "corrupt pixel data" not in message and "unusable" not in message  # the generic fall-backs


@pytest.mark.parametrize("label", sorted(DECODES))
def test_tolerable_dicom_decodes(label):
    with pytest.warns(UserWarning, match="multi-frame") if "3-valid" in label else nullcontext():
        image = read_radiograph(CASES[label])
    assert image.mode == "L" and image.size == (8, 8)


def test_huge_declared_size_is_refused_before_any_pixel_is_decoded(monkeypatch):
    def no_decode(*args, **kwargs):
        raise AssertionError("pixels decoded before the budget check")

    monkeypatch.setattr(dicom_module, "pixel_array", no_decode)
    data = CASES["Rows-Columns-huge-declared"]
    assert len(data) < 2000  # a small file that declares 3.6 Gpixel
    with pytest.raises(DicomReadError, match="image too large"):
        read_radiograph(data)


@pytest.mark.filterwarnings("ignore:.*multi-frame")
def test_budget_counts_frames_and_samples(monkeypatch):
    frames = np.zeros((3, 8, 8), np.uint16)
    rgb = np.zeros((8, 8, 3), np.uint8)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 8 * 8 * 3)
    read_dicom(write_dicom(None, frames, NumberOfFrames=3))
    read_dicom(write_dicom(None, rgb, photometric="RGB"))
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 8 * 8 * 3 - 1)
    with pytest.raises(DicomReadError, match="8x8x3 frames = 192 pixels"):
        read_dicom(write_dicom(None, frames, NumberOfFrames=3))
    with pytest.raises(DicomReadError, match="8x8x3 samples = 192 pixels"):
        read_dicom(write_dicom(None, rgb, photometric="RGB"))


def test_deflate_bomb_is_refused_without_inflating_it():
    data = CASES["deflated-bomb"]  # 200 MB of pixels once inflated
    assert len(data) < 1_000_000
    tracemalloc.start()
    try:
        with pytest.raises(DicomReadError, match="image too large"):
            read_radiograph(data)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 20 * 2**20, peak


def test_deflated_dicom_within_budget_still_decodes():
    assert read_radiograph(deflated_dicom(64)).size == (64, 64)


def test_valid_palette_colour_dicom_becomes_grey():
    ramp = (np.arange(256, dtype=np.uint16) * 257).tobytes()
    zeros = np.zeros(256, np.uint16).tobytes()
    data = patched_dicom(
        np.arange(64, dtype=np.uint8).reshape(8, 8), raw={"PhotometricInterpretation": "PALETTE COLOR"},
        RedPaletteColorLookupTableDescriptor=[256, 0, 16], GreenPaletteColorLookupTableDescriptor=[256, 0, 16],
        BluePaletteColorLookupTableDescriptor=[256, 0, 16], RedPaletteColorLookupTableData=ramp,
        GreenPaletteColorLookupTableData=zeros, BluePaletteColorLookupTableData=zeros,
    )
    out = np.asarray(read_radiograph(data))
    assert out.shape == (8, 8) and out[0, 0] == 0 and out[-1, -1] == 255  # red ramp only: min-max of the luma


@pytest.mark.parametrize("signed", [False, True], ids=["unsigned", "signed"])
@pytest.mark.parametrize("display", ["bits stored", "window", "rescale + sigmoid window", "VOI LUT"])
def test_large_16_bit_images_mapped_through_a_table_match_the_direct_mapping(monkeypatch, signed, display):
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence

    import hf_deitcxr.data.dicom_display as display_module

    rng = np.random.default_rng(3)
    low, high = (-2048, 2048) if signed else (0, 4096)
    stored = rng.integers(low, high, (300, 300)).astype(np.int16 if signed else np.uint16)
    attributes = {"PixelRepresentation": int(signed)}
    if display == "window":
        attributes |= {"WindowCenter": 300, "WindowWidth": 1500}
    elif display == "rescale + sigmoid window":
        attributes |= {"RescaleSlope": 0.5, "RescaleIntercept": -100, "WindowCenter": 200, "WindowWidth": 900,
                       "VOILUTFunction": "SIGMOID"}
    elif display == "VOI LUT":
        item = Dataset()
        item.LUTDescriptor = [4096, low, 16]
        item.add_new(0x00283006, "US", list(range(0, 65536, 16)))
        attributes["VOILUTSequence"] = Sequence([item])
    data = write_dicom(None, stored, bits_stored=12, **attributes)
    assert stored.size > display_module.TABLE_MIN_PIXELS
    through_table = np.asarray(read_dicom(data))
    monkeypatch.setattr(display_module, "TABLE_MIN_PIXELS", 10**9)
    direct = np.asarray(read_dicom(data))
    np.testing.assert_array_equal(through_table, direct)
    assert len(np.unique(direct)) > 100

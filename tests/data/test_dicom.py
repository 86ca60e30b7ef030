"""DICOM decoding (real files written with pydicom) and robust reading of ordinary image files."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image
from pydicom.dataset import Dataset
from pydicom.encaps import encapsulate
from pydicom.sequence import Sequence
from pydicom.uid import JPEGLSLossless

from hf_deitcxr.data import DicomReadError, UnreadableImageError, is_dicom, read_dicom, read_radiograph
from tests.helpers.dicom_files import write_dicom


def pixels_of(image: Image.Image) -> np.ndarray:
    assert image.mode == "L"
    return np.asarray(image)


def test_monochrome2_8bit_keeps_stored_values(tmp_path):
    stored = np.arange(16, dtype=np.uint8).reshape(4, 4) * 10
    path = tmp_path / "a.dcm"
    write_dicom(path, stored)
    assert is_dicom(path)
    np.testing.assert_array_equal(pixels_of(read_dicom(path)), stored)
    np.testing.assert_array_equal(pixels_of(read_radiograph(path)), stored)  # dispatch by content


def test_monochrome1_is_inverted():
    stored = np.full((4, 4), 10, dtype=np.uint8)
    stored[0, 0] = 250  # bright stored value = dark on screen for MONOCHROME1
    out = pixels_of(read_dicom(write_dicom(None, stored, photometric="MONOCHROME1")))
    assert out[0, 0] == 5
    assert out[1, 1] == 245


def test_16bit_rescale_and_window_maps_center_to_mid_grey():
    # modality = 2 * stored - 1024: stored [0, 962, 1012, 1062, 1112, 4095] -> [-1024, 900, 1000, 1100, 1200, 7166]
    stored = np.array([[0, 962, 1012], [1062, 1112, 4095]], dtype=np.uint16)
    data = write_dicom(
        None,
        stored,
        bits_stored=12,
        RescaleSlope=2,
        RescaleIntercept=-1024,
        WindowCenter=1000,
        WindowWidth=400,
    )
    out = pixels_of(read_dicom(data)).astype(int)
    # PS3.3 C.11.2.1.2.1 (LINEAR): y = ((x - (c - 0.5)) / (w - 1) + 0.5) * 255, clipped, with c = 1000, w = 400:
    # x = 900 -> 0.2506 * 255 = 63.9; x = 1000 -> 0.5013 * 255 = 127.8; x = 1100 -> 0.7519 * 255 = 191.7;
    # x = 1200 -> 1.0025 (clipped); x = -1024 is below the window, 7166 above it.
    np.testing.assert_array_equal(out, [[0, 64, 128], [192, 255, 255]])


def test_12_and_16_bit_dicoms_without_window_map_by_bits_stored():
    # One low-contrast picture (40..200) stored at 12 and at 16 bits: mapped by BitsStored, both give it back
    # within ±1 (min-max would stretch 40..200 to 0..255, and differently per encoding if the range differed).
    grey = np.linspace(40, 200, 16 * 16).reshape(16, 16).round()
    at_12_bits = np.rint(grey * (4095 / 255)).astype(np.uint16)
    at_16_bits = (grey * 257).astype(np.uint16)
    out_12 = pixels_of(read_dicom(write_dicom(None, at_12_bits, bits_stored=12))).astype(int)
    out_16 = pixels_of(read_dicom(write_dicom(None, at_16_bits, bits_stored=16))).astype(int)
    assert np.abs(out_12 - grey).max() <= 1 and np.abs(out_16 - grey).max() <= 1
    assert np.abs(out_12 - out_16).max() <= 1


def test_signed_and_rescaled_dicoms_map_the_rescaled_stored_range():
    # signed 12 bits: -2048..2047; modality = 2 * stored + 100 -> -3996..4194; value v -> (v + 3996) / 8190 * 255
    stored = np.array([[-2048, 0], [1024, 2047]], dtype=np.int16)
    data = write_dicom(None, stored, bits_stored=12, PixelRepresentation=1, RescaleSlope=2, RescaleIntercept=100)
    out = pixels_of(read_dicom(data)).astype(int)
    np.testing.assert_array_equal(out, np.rint((2 * stored + 100 + 3996) / 8190 * 255))


def test_percentiles_replace_the_min_max_range_when_there_is_no_window():
    # 0, 100, ..., 1000: the 10th and 60th percentiles are exactly 100 and 600 (linear interpolation between
    # ranks 1 and 6 of 11), so grey = (v - 100) / 500 * 255 = 0.51 * (v - 100), clipped to 0..255.
    stored = (100 * np.arange(11)).astype(np.uint16).reshape(1, 11)
    data = write_dicom(None, stored, bits_stored=16)
    robust = pixels_of(read_dicom(data, percentiles=(10.0, 60.0))).astype(int)
    np.testing.assert_array_equal(robust[0], [0, 0, 51, 102, 153, 204, 255, 255, 255, 255, 255])


@pytest.mark.parametrize("function", ["LINEAR", "LINEAR_EXACT", "SIGMOID"])
def test_12bit_monochrome1_matches_pydicom_modality_and_voi_luts(function):
    """Our display pipeline against pydicom's own: Modality LUT, VOI LUT (window), scaled to 8 bit, inverted."""
    from pydicom import dcmread
    from pydicom.pixels import apply_modality_lut, apply_voi_lut

    stored = np.random.default_rng(0).integers(0, 4096, (16, 16), dtype=np.uint16)
    stored[0, :4] = [0, 4095, 1500, 1501]
    data = write_dicom(None, stored, photometric="MONOCHROME1", bits_stored=12, RescaleSlope=0.5,
                       RescaleIntercept=-100, WindowCenter=650, WindowWidth=900, VOILUTFunction=function)
    ds = dcmread(io.BytesIO(data))
    voi = apply_voi_lut(apply_modality_lut(ds.pixel_array, ds), ds, index=0)
    # pydicom's windowed output spans the rescaled stored range: [0 * 0.5 - 100, 4095 * 0.5 - 100]
    low, high = -100.0, 4095 * 0.5 - 100
    reference = 255 - np.rint((voi - low) / (high - low) * 255)
    out = pixels_of(read_dicom(data)).astype(int)
    assert np.abs(out - reference).max() <= 1
    assert len(np.unique(out)) > 50  # a real grey ramp, not a few clipped levels


def test_voi_lut_sequence_is_applied():
    item = Dataset()
    item.LUTDescriptor = [4, 0, 8]
    item.add_new(0x00283006, "US", [0, 40, 200, 255])  # LUTData; its VR (US/OW) is ambiguous without a hint
    stored = np.array([[0, 1], [2, 3]], dtype=np.uint16)
    out = pixels_of(read_dicom(write_dicom(None, stored, bits_stored=12, VOILUTSequence=Sequence([item]))))
    np.testing.assert_array_equal(out, [[0, 40], [200, 255]])


def test_multiframe_gives_first_frame_with_warning():
    frames = np.stack([np.full((4, 4), 30 * (i + 1), dtype=np.uint8) for i in range(3)])
    with pytest.warns(UserWarning, match="multi-frame"):
        out = pixels_of(read_dicom(write_dicom(None, frames, NumberOfFrames=3)))
    assert (out == 30).all()


def test_rgb_dicom_becomes_grey():
    rgb = np.zeros((4, 4, 3), dtype=np.uint8)
    rgb[..., 1] = 200
    out = pixels_of(read_dicom(write_dicom(None, rgb, photometric="RGB")))
    assert (out == round(0.587 * 200)).all()


def test_no_pixel_data_raises():
    data = write_dicom(None, np.zeros((4, 4), np.uint8), with_pixel_data=False)
    with pytest.raises(DicomReadError, match="no pixel data"):
        read_dicom(data)
    assert issubclass(DicomReadError, ValueError) and issubclass(DicomReadError, UnreadableImageError)


def test_not_dicom_raises():
    with pytest.raises(DicomReadError, match="not a DICOM"):
        read_dicom(b"just some text, no DICM preamble" * 10)


def test_compressed_syntax_without_decoder_raises_clearly():
    from pydicom import dcmread
    from pydicom.pixels import get_decoder

    ds = dcmread(io.BytesIO(write_dicom(None, np.zeros((4, 4), np.uint8))))
    ds.file_meta.TransferSyntaxUID = JPEGLSLossless
    ds.PixelData = encapsulate([b"\xff\xd8not really jpeg-ls\xff\xd9"])
    ds["PixelData"].VR = "OB"
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    with pytest.raises(DicomReadError) as info:
        read_dicom(buffer.getvalue())
    if not get_decoder(JPEGLSLossless).is_available:
        assert "JPEG-LS" in str(info.value) and "install" in str(info.value)


# --- ordinary files -----------------------------------------------------------------------------------------


def test_rgb_png_becomes_grey(tmp_path):
    path = tmp_path / "rgb.png"
    Image.new("RGB", (5, 5), (255, 255, 255)).save(path)
    assert pixels_of(read_radiograph(path)).min() == 255
    assert not is_dicom(path)


def test_16bit_png_is_scaled_not_clipped(tmp_path):
    # brightest 4000 < 4096: 12-bit data in a 16-bit container, mapped by 12 bits (v / 4095 * 255)
    path = tmp_path / "deep.png"
    Image.fromarray(np.array([[0, 1000], [2000, 4000]], dtype=np.uint16)).save(path)
    out = pixels_of(read_radiograph(path)).astype(int)
    np.testing.assert_array_equal(out, [[0, 62], [125, 249]])


def test_truncated_jpeg_raises(tmp_path):
    rng = np.random.default_rng(0)
    buffer = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (64, 64), dtype=np.uint8)).save(buffer, format="JPEG")
    path = tmp_path / "cut.jpg"
    path.write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    with pytest.raises(UnreadableImageError, match="truncated"):
        read_radiograph(path)


def test_zero_byte_file_raises(tmp_path):
    path = tmp_path / "empty.png"
    path.write_bytes(b"")
    with pytest.raises(UnreadableImageError, match="empty"):
        read_radiograph(path)


def test_text_renamed_png_raises(tmp_path):
    path = tmp_path / "notes.png"
    path.write_text("this is not an image\n" * 20)
    with pytest.raises(UnreadableImageError, match="not a recognised image"):
        read_radiograph(path)


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
def test_decompression_bomb_is_refused(tmp_path, monkeypatch):
    path = tmp_path / "big.png"
    Image.new("L", (20, 20)).save(path)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 300)  # 400 px: PIL itself would only warn
    with pytest.raises(UnreadableImageError, match="MAX_IMAGE_PIXELS"):
        read_radiograph(path)


def test_decompression_bomb_beyond_pils_own_limit_says_too_large(tmp_path, monkeypatch):
    path = tmp_path / "huge.png"
    Image.new("L", (30, 30)).save(path)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 300)  # 900 px > 2x the limit: Image.open raises itself
    with pytest.raises(UnreadableImageError, match="huge.png: image too large .*MAX_IMAGE_PIXELS"):
        read_radiograph(path)


def test_missing_file_is_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError):
        read_radiograph(tmp_path / "nope.png")

"""Ordinary image files: only the claimed formats, EXIF orientation applied, 16-bit mapped by bit depth."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from hf_deitcxr.data import UnreadableImageError, read_radiograph

UPRIGHT = np.zeros((20, 40), np.uint8)
UPRIGHT[:10, :20] = 255  # bright top-left quarter: any rotation or flip moves it


def encode(array: np.ndarray, fmt: str, **kwargs) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format=fmt, **kwargs)
    return buffer.getvalue()


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP", "TIFF"])
def test_exif_orientation_6_decodes_upright(fmt):
    # Orientation 6 = "rotate 90 degrees clockwise to display", as a phone held upright writes it: the stored
    # pixels are the upright picture turned counter-clockwise.
    exif = Image.Exif()
    exif[0x0112] = 6
    options = {"tiffinfo": {0x0112: 6}} if fmt == "TIFF" else {"exif": exif}
    if fmt in ("JPEG", "WEBP"):
        options["quality"] = 95
    out = np.asarray(read_radiograph(encode(np.rot90(UPRIGHT, 1), fmt, **options)), dtype=float)
    assert out.shape == UPRIGHT.shape
    assert np.abs(out - UPRIGHT).mean() < 2  # lossy formats: a few grey levels at the block edge


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (encode(UPRIGHT, "GIF"), "GIF files are not accepted"),
        (encode(UPRIGHT, "ICO"), "ICO files are not accepted"),
        (encode(UPRIGHT, "PPM"), "not a recognised image format"),
        (encode(UPRIGHT, "TGA"), "not a recognised image format"),
    ],
    ids=["gif", "ico", "ppm", "tga"],
)
def test_formats_we_do_not_claim_are_refused(data, message):
    with pytest.raises(UnreadableImageError, match=message) as info:
        read_radiograph(data)
    assert "accepted: PNG, JPEG, TIFF, BMP, WebP or DICOM" in str(info.value)


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "TIFF", "BMP", "WEBP"])
def test_claimed_formats_decode(fmt):
    out = np.asarray(read_radiograph(encode(UPRIGHT, fmt, **({"lossless": True} if fmt == "WEBP" else {}))))
    assert out.shape == UPRIGHT.shape and np.abs(out.astype(int) - UPRIGHT).mean() < 2


def test_12_and_16_bit_pngs_of_one_picture_decode_alike_and_keep_its_contrast():
    # A low-contrast picture (40..200): min-max would stretch it to 0..255 and lose what the file says.
    grey = np.linspace(40, 200, 64 * 64).reshape(64, 64).round().astype(np.uint8)
    at_12_bits = np.rint(grey * (4095 / 255)).astype(np.uint16)  # 12-bit data in a 16-bit container
    at_16_bits = grey.astype(np.uint16) * 257
    out_8 = np.asarray(read_radiograph(encode(grey, "PNG"))).astype(int)
    out_12 = np.asarray(read_radiograph(encode(at_12_bits, "PNG"))).astype(int)
    out_16 = np.asarray(read_radiograph(encode(at_16_bits, "PNG"))).astype(int)
    np.testing.assert_array_equal(out_8, grey)
    assert np.abs(out_12 - grey).max() <= 1 and np.abs(out_16 - grey).max() <= 1
    assert np.abs(out_12 - out_16).max() <= 1
    out_tiff = np.asarray(read_radiograph(encode(at_12_bits, "TIFF"))).astype(int)
    assert np.abs(out_tiff - grey).max() <= 1


def with_sbit(png: bytes, bits: int) -> bytes:
    """Insert an sBIT chunk (significant grey bits) right after IHDR (8 + 25 bytes in)."""
    chunk = struct.pack(">I", 1) + b"sBIT" + bytes([bits])
    chunk += struct.pack(">I", zlib.crc32(b"sBIT" + bytes([bits])) & 0xFFFFFFFF)
    return png[:33] + chunk + png[33:]


def test_png_sbit_states_the_bit_depth():
    # A dark 12-bit picture (0..60 of 255) whose brightest pixel fits in 10 bits: without sBIT the depth is
    # inferred as 10 bits (4x brighter); with sBIT = 12 it is mapped by 12 bits as the file says.
    grey = np.linspace(0, 60, 32 * 32).reshape(32, 32).round()
    png = encode(np.rint(grey * (4095 / 255)).astype(np.uint16), "PNG")
    stated = np.asarray(read_radiograph(with_sbit(png, 12))).astype(int)
    inferred = np.asarray(read_radiograph(png)).astype(int)
    assert np.abs(stated - grey).max() <= 1
    assert np.abs(inferred - np.minimum(255, np.rint(grey * 4095 / 1023))).max() <= 1


def test_float_and_32_bit_images_are_still_min_max_scaled():
    values = np.array([[-5.0, 0.0], [5.0, 15.0]], dtype=np.float32)
    out = np.asarray(read_radiograph(encode(values, "TIFF"))).astype(int)
    np.testing.assert_array_equal(out, [[0, 64], [128, 255]])


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
def test_pixel_budget_counts_colour_bands(monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 10 * 10 * 3 - 1)
    assert read_radiograph(encode(np.zeros((10, 10), np.uint8), "PNG")).size == (10, 10)
    with pytest.raises(UnreadableImageError, match=r"image too large: 10x10x3 bands = 300 pixels exceeds"):
        read_radiograph(encode(np.zeros((10, 10, 3), np.uint8), "PNG"))


def test_generated_refused_formats_and_truncated_accepted_formats_fail_clearly():
    from scripts.malformed_inputs import refused_formats, truncated_bmp_webp_tiff

    for _suffix, data in refused_formats(np.random.default_rng(1), 0):
        with pytest.raises(UnreadableImageError, match="accepted: PNG, JPEG"):
            read_radiograph(data)
    for _suffix, data in truncated_bmp_webp_tiff(np.random.default_rng(1), 0):
        with pytest.raises(UnreadableImageError, match="corrupt or truncated"):
            read_radiograph(data)


def test_a_mode_pillow_cannot_convert_is_a_clear_error():
    buffer = io.BytesIO()
    Image.new("LAB", (8, 8)).save(buffer, format="TIFF")
    with pytest.raises(UnreadableImageError, match="a LAB image cannot be shown as grey"):
        read_radiograph(buffer.getvalue())



@pytest.mark.parametrize("kind", ["16-bit full range", "12-bit in 16", "low-contrast 16-bit", "32-bit I"])
def test_space_training_and_processor_paths_give_one_grey_array_for_a_high_depth_file(kind):
    # The Space decodes the file (read_radiograph); training (load_grey_resized) and the saved 1-channel processor
    # (to_grey_array) see the PIL image Pillow opens. All three map it by the stored bit depth, not min-max, which
    # would stretch the low-contrast picture (40..200 of 255) to 0..255.
    from hf_deitcxr.data.image_cache import load_grey_resized
    from hf_deitcxr.models.deit_cxr.image_processing_deit_cxr import to_grey_array

    low_contrast = np.linspace(40, 200, 48 * 48).reshape(48, 48).round()
    values = {
        "16-bit full range": np.linspace(0, 65535, 48 * 48).reshape(48, 48).round().astype(np.uint16),
        "12-bit in 16": np.rint(low_contrast * (4095 / 255)).astype(np.uint16),
        "low-contrast 16-bit": low_contrast.astype(np.uint16) * 257,
        "32-bit I": np.rint(low_contrast * (4095 / 255)).astype(np.int32),  # 12-bit data widened to mode "I"
    }[kind]
    data = encode(values, "TIFF" if kind == "32-bit I" else "PNG")
    space = np.asarray(read_radiograph(data))
    with Image.open(io.BytesIO(data)) as opened:
        assert opened.mode == ("I" if kind == "32-bit I" else "I;16")
        processor = to_grey_array(opened)[0]
    training = load_grey_resized({"bytes": data, "path": None}, 48)  # the training size: no resize
    np.testing.assert_array_equal(processor, space)
    np.testing.assert_array_equal(training, space)
    if kind != "16-bit full range":
        assert np.abs(space.astype(int) - low_contrast).max() <= 1  # the file's grey levels, its contrast kept

"""The end of the DICOM display pipeline: windowing (VOI LUT functions) against pydicom's `apply_windowing`, and the
Presentation LUT Shape (INVERSE inverts the output after the VOI LUT, once even with MONOCHROME1)."""

from __future__ import annotations

import io
import warnings

import numpy as np
import pytest
from pydicom import dcmread
from pydicom.pixels import apply_windowing

from hf_deitcxr.data import DicomReadError, read_dicom
from tests.helpers.dicom_files import write_dicom

EVERY_12_BIT_VALUE = np.arange(4096, dtype=np.uint16).reshape(64, 64)
RAMP = np.arange(0, 4096, 64, dtype=np.uint16).reshape(8, 8)


def shown(stored: np.ndarray = RAMP, **attributes) -> np.ndarray:
    image = read_dicom(write_dicom(None, stored, bits_stored=12, **attributes))
    assert image.mode == "L"
    return np.asarray(image).astype(int)


def pydicom_windowed_uint8(data: bytes) -> np.ndarray:
    """pydicom's window output spans the stored range (0..4095 for unsigned 12 bit); ours is 0..255 directly."""
    ds = dcmread(io.BytesIO(data))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # its SIGMOID's exp overflows far from a narrow window
        windowed = apply_windowing(ds.pixel_array, ds)
    return np.rint(windowed / 4095 * 255).astype(int)


@pytest.mark.parametrize("function", ["LINEAR", "LINEAR_EXACT", "SIGMOID"])
@pytest.mark.parametrize(("center", "width"), [(2048, 4096), (1000, 401), (300.5, 37), (2047.5, 1)])
def test_window_matches_pydicom_apply_windowing_on_every_12_bit_value(function, center, width):
    data = write_dicom(None, EVERY_12_BIT_VALUE, bits_stored=12, WindowCenter=center, WindowWidth=width,
                       VOILUTFunction=function)
    np.testing.assert_array_equal(shown(EVERY_12_BIT_VALUE, WindowCenter=center, WindowWidth=width,
                                        VOILUTFunction=function), pydicom_windowed_uint8(data))


def test_first_of_several_windows_matches_pydicom_index_0():
    attributes = {"WindowCenter": [1000, 3000], "WindowWidth": [400, 800]}
    data = write_dicom(None, EVERY_12_BIT_VALUE, bits_stored=12, **attributes)
    np.testing.assert_array_equal(shown(EVERY_12_BIT_VALUE, **attributes), pydicom_windowed_uint8(data))


@pytest.mark.parametrize("function", ["LINEAR", "LINEAR_EXACT", "SIGMOID"])
def test_width_below_1_is_ignored_by_design_where_pydicom_windows_or_raises(function):
    """Ours differs on purpose: a width < 1 (LINEAR needs >= 1 in PS3.3; on a radiograph any such width is a broken
    header) is treated as no window, so the image is shown by its BitsStored range instead of as a near-binary
    threshold. pydicom refuses it for LINEAR and windows with it for LINEAR_EXACT and SIGMOID."""
    attributes = {"WindowCenter": 2048, "WindowWidth": 0.5, "VOILUTFunction": function}
    np.testing.assert_array_equal(shown(EVERY_12_BIT_VALUE, **attributes), shown(EVERY_12_BIT_VALUE))
    data = write_dicom(None, EVERY_12_BIT_VALUE, bits_stored=12, **attributes)
    if function == "LINEAR":
        with pytest.raises(ValueError, match="greater than or equal to 1"):
            pydicom_windowed_uint8(data)
    else:
        assert len(np.unique(pydicom_windowed_uint8(data))) <= 3


def test_inverse_presentation_lut_shape_inverts_like_monochrome1():
    plain = shown()
    assert len(np.unique(plain)) == 64
    np.testing.assert_array_equal(shown(PresentationLUTShape="INVERSE"), 255 - plain)
    np.testing.assert_array_equal(shown(photometric="MONOCHROME1"), 255 - plain)


@pytest.mark.parametrize("shape", ["INVERSE", "IDENTITY"])
def test_monochrome1_is_inverted_once_whatever_its_presentation_lut_shape(shape):
    # PS3.3: INVERSE is the shape a MONOCHROME1 image carries, so the two name one inversion, not two; and an
    # IDENTITY shape does not undo what the Photometric Interpretation says.
    np.testing.assert_array_equal(shown(photometric="MONOCHROME1", PresentationLUTShape=shape), 255 - shown())


@pytest.mark.parametrize("shape", ["IDENTITY", "LIN OD", ""])
def test_identity_lin_od_and_empty_shapes_leave_monochrome2_as_it_is(shape):
    np.testing.assert_array_equal(shown(PresentationLUTShape=shape), shown())


def test_inverse_applies_after_the_window():
    window = {"WindowCenter": 1000, "WindowWidth": 500}
    windowed = shown(**window)
    assert windowed[0, 0] == 0 and windowed[-1, -1] == 255  # below / above the window
    inverted = shown(**window, PresentationLUTShape="INVERSE")
    np.testing.assert_array_equal(inverted, 255 - windowed)  # the window's output turned over, not its input
    assert inverted[0, 0] == 255


def test_unknown_presentation_lut_shape_is_refused():
    with pytest.raises(DicomReadError, match="PresentationLUTShape 'UPSIDE DOWN' is not one of IDENTITY, INVERSE"):
        shown(PresentationLUTShape="UPSIDE DOWN")

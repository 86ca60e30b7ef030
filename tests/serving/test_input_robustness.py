"""Malformed and unusual uploads through the Space's prediction path (no UI): a result or a clear error, never a crash.

A fast, in-process subset of scripts/reliability_space.py (which sends >= 200 such files through the running app
with gradio_client): one round of every generator in scripts/malformed_inputs.py, decompression bombs, 8000 px
images and broken DICOMs included.
"""

import io

import numpy as np
import pytest
import torch
from PIL import Image

from hf_deitcxr import DeiTCXRConfig, DeiTCXRForImageClassificationWithTeacher, make_image_processor
from hf_deitcxr.data import UnreadableImageError, read_radiograph
from hf_deitcxr.data.dicom import scale_to_uint8
from hf_deitcxr.serving import ChestXrayPredictor, NotARadiographError
from scripts.malformed_inputs import GENERATORS, write_cases
from tests.helpers.tiny_models import tiny_deit_kwargs


@pytest.fixture(scope="module")
def predictor(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny_student")
    torch.manual_seed(0)
    DeiTCXRForImageClassificationWithTeacher(DeiTCXRConfig(**tiny_deit_kwargs())).save_pretrained(folder)
    make_image_processor(image_size=32).save_pretrained(folder)
    return ChestXrayPredictor.from_pretrained(folder, precision="fp32")


@pytest.fixture(scope="module")
def cases(tmp_path_factory):
    return write_cases(tmp_path_factory.mktemp("malformed"), count=1)  # one round: each generator once


def test_every_malformed_input_gets_a_result_or_a_clear_error(predictor, cases):
    assert {case.kind for case in cases} == {kind for kind, _ in GENERATORS}
    outcomes = {}
    for case in cases:
        try:
            result = predictor.predict(case.path)
        except (UnreadableImageError, NotARadiographError) as error:
            assert str(error).strip(), case.path.name
            outcomes[case.path.name] = "clear error"
        else:
            assert set(result.student.probabilities) == {"normal", "pneumonia", "covid"}
            assert sum(result.student.probabilities.values()) == pytest.approx(1.0, abs=1e-4)
            outcomes[case.path.name] = "result"
    # radiographs in unusual valid encodings (16-bit, CMYK, alpha, GIF, BMP, WebP, DICOM ...) must be predicted
    encoded = [name for name in outcomes if "radiograph_encoding" in name]
    assert sum(outcomes[name] == "result" for name in encoded) >= 10
    bombs = [name for name in outcomes if "decompression_bomb" in name]
    assert bombs and all(outcomes[name] == "clear error" for name in bombs)


def test_non_finite_pixels_do_not_blank_the_image():
    # Regression: a float image with a NaN/inf band became all black (NaN min/max), then "no contrast".
    values = np.linspace(-1000.0, 2000.0, 64 * 64).reshape(64, 64)
    broken = values.copy()
    broken[:8] = np.nan
    broken[-4:] = np.inf
    scaled = scale_to_uint8(broken)
    finite_rows = scale_to_uint8(values[8:-4])
    np.testing.assert_array_equal(scaled[8:-4], finite_rows)
    assert scaled[:8].max() == 0 and scaled[-4:].max() == 0
    assert scale_to_uint8(np.full((4, 4), np.nan)).max() == 0

    buffer = io.BytesIO()
    Image.fromarray(broken.astype(np.float32)).save(buffer, format="TIFF")
    grey = np.asarray(read_radiograph(buffer.getvalue()))
    assert grey[8:-4].std() > 50  # the radiograph's contrast survives

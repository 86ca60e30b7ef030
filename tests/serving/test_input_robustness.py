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
from hf_deitcxr.serving import ChestXrayPredictor, NotARadiographError, decode_upload
from scripts.malformed_inputs import GENERATORS, SAMPLES, write_cases
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


# radiograph_encodings(round 0) in its order: (name, how the decoded pixels relate to the source radiograph)
ENCODINGS = [
    # 16/12-bit files are mapped by their bit depth (not min-max), so they give back the 8-bit source within ±1
    ("16-bit png, full range", "exact"), ("12-bit data in a 16-bit png", "exact"),
    ("cmyk jpeg", "lossy"), ("rgba png", "exact"), ("la png", "exact"), ("palette png", "exact"),
    ("animated gif", "refused format"), ("float tiff with nan/inf bands", "finite rows stretched"),
    ("16-bit tiff", "exact"), ("bmp", "exact"), ("webp", "lossy"), ("letterboxed 3:1 png", "letterboxed"),
    ("1x1 png", "1x1"), ("12-bit MONOCHROME1 dicom", "exact"), ("rgb dicom", "exact"),
    ("8000x8000 jpeg", "8000 px"),
]
# the only valid encodings the input check refuses, and why
REFUSED = {"letterboxed 3:1 png": "aspect ratio 3.00", "1x1 png": "only 1x1 px"}
# valid files in formats the decoder does not accept (Pillow is restricted to the formats we claim)
UNREADABLE = {"animated gif": "GIF files are not accepted"}


def stretched(grey: np.ndarray) -> np.ndarray:
    """Min-max scaling to 0..255, by hand: what a high-depth or windowless file of this content decodes to."""
    low, high = grey.min(), grey.max()
    return np.rint((grey - low) * 255.0 / (high - low))


def expected_pixels(relation: str, source: np.ndarray) -> np.ndarray:
    """What a file made from `source` (the bundled radiograph, uint8) must decode to, computed without our reader."""
    height, width = source.shape
    grey = source.astype(np.float64)
    if relation in ("exact", "lossy"):
        return grey
    if relation == "stretched":
        return stretched(grey)
    if relation == "finite rows stretched":  # rows [:20] NaN and [-5:] inf: shown black, the range from the rest
        return np.concatenate([np.zeros((20, width)), stretched(grey[20:-5]), np.zeros((5, width))])
    if relation == "letterboxed":
        return np.hstack([np.zeros_like(grey), grey, np.zeros_like(grey)])
    if relation == "1x1":
        return np.asarray(Image.fromarray(source).resize((1, 1)), dtype=np.float64)
    raise ValueError(relation)


def test_every_malformed_input_gets_a_result_or_a_clear_error(predictor, cases):
    assert {case.kind for case in cases} == {kind for kind, _ in GENERATORS}
    outcomes = {}
    results = {}
    for case in cases:
        try:
            result = predictor.predict(case.path)
        except (UnreadableImageError, NotARadiographError) as error:
            assert str(error).strip(), case.path.name
            outcomes[case.path] = error
        else:
            assert set(result.student.probabilities) == {"normal", "pneumonia", "covid"}
            assert sum(result.student.probabilities.values()) == pytest.approx(1.0, abs=1e-4)
            outcomes[case.path] = "result"
            results[case.path] = result
    bombs = [case.path for case in cases if case.kind == "decompression_bomb"]
    assert bombs and all(isinstance(outcomes[path], UnreadableImageError) for path in bombs)

    # radiographs in unusual valid encodings: exactly these reach the model, and decode to the source's pixels
    encoded = [case.path for case in cases if case.kind == "radiograph_encoding"]
    assert len(encoded) == len(ENCODINGS)
    source = np.asarray(Image.open(sorted(SAMPLES.rglob("*.jpg"))[0]).convert("L"))  # round 0's radiograph
    for path, (name, relation) in zip(encoded, ENCODINGS, strict=True):
        if name in UNREADABLE:
            assert isinstance(outcomes[path], UnreadableImageError), (name, outcomes[path])
            assert UNREADABLE[name] in str(outcomes[path])
            continue
        if name in REFUSED:
            assert isinstance(outcomes[path], NotARadiographError), (name, outcomes[path])
            assert REFUSED[name] in str(outcomes[path])
            decoded = np.asarray(decode_upload(path).grey, dtype=np.float64)
        else:
            assert outcomes[path] == "result", (name, outcomes[path])
            decoded = np.asarray(results[path].upload.grey, dtype=np.float64)
        if relation == "8000 px":  # the source upsampled (bilinear) to 8000 px, then JPEG q85: compare a sample
            reference = np.asarray(Image.fromarray(source).resize((8000, 8000), Image.Resampling.BILINEAR))
            error = np.abs(decoded[::9, ::9] - reference[::9, ::9])
            assert error.mean() < 1.0 and np.percentile(error, 99) <= 4, name
            continue
        reference = expected_pixels(relation, source)
        assert decoded.shape == reference.shape, name
        error = np.abs(decoded - reference)
        if relation == "lossy":  # CMYK JPEG q90, WebP q80: measured 0.6 and 2.0 mean, no ±1 bound exists
            assert error.mean() < 3.0 and np.percentile(error, 99) <= 10, (name, error.mean())
        else:
            assert error.max() <= 1, (name, error.max())


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

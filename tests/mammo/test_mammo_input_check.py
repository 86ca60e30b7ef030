"""The mammography tab's input check (`hf_deitcxr.mammo.input_check`): what it refuses, what it lets through.

Mammograms here are generated (`hf_deitcxr.mammo.synthetic`: full-field-like breasts on a black background); the chest
X-rays are the package's bundled sample radiographs. A few real CBIS-DDSM crops are read from the shared data folder
only when it is present (nothing is copied into the repository).
"""

from __future__ import annotations

import io
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFont

from hf_deitcxr.mammo.input_check import (
    MammogramCheck,
    MammogramCheckConfig,
    NotAMammogramError,
    tissue_flat_fill,
)
from hf_deitcxr.mammo.synthetic import SyntheticMammoConfig, write_synthetic_mammo
from hf_deitcxr.serving import RadiographGate, decode_upload
from tests.helpers.dicom_files import write_dicom
from tests.helpers.serving_models import RADIOGRAPHS, colour_shapes

CBIS = Path(__file__).resolve().parents[3] / "shared" / "data" / "cbis_mass"
SCRIPTS = Path(__file__).resolve().parents[2] / "scripts"


@pytest.fixture(scope="module")
def gate() -> RadiographGate:
    return RadiographGate.load()


@pytest.fixture(scope="module")
def check(gate) -> MammogramCheck:
    return MammogramCheck(gate=gate)


@pytest.fixture(scope="module")
def mammograms(tmp_path_factory) -> list[Path]:
    """Generated full-field-like views (both breasts, CC and MLO) at three sizes."""
    root = tmp_path_factory.mktemp("synthetic_mammograms")
    paths = []
    for size in (64, 128, 256):
        write_synthetic_mammo(root / str(size), 3, seed=size, config=SyntheticMammoConfig(size=size))
        paths += sorted((root / str(size) / "images").glob("*.png"))
    return paths


def upload_of(image: Image.Image):
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return decode_upload(buffer.getvalue())


def grey_drawing() -> Image.Image:
    image = Image.new("L", (200, 160), 200)
    draw = ImageDraw.Draw(image)
    draw.rectangle([20, 20, 90, 80], fill=60)
    draw.ellipse([100, 40, 180, 140], fill=120)
    draw.polygon([(10, 150), (60, 100), (90, 150)], fill=30)
    return image


def grey_text() -> Image.Image:
    image = Image.new("L", (240, 200), 255)
    draw, font = ImageDraw.Draw(image), ImageFont.load_default(size=14)
    for y in range(2, 200, 16):
        draw.text((2, y), "the quick brown fox jumps over 0123", fill=0, font=font)
    return image


def test_generated_mammograms_pass(check, mammograms):
    assert len(mammograms) == 36
    for path in mammograms:
        stats, found = check.all_failures(decode_upload(path))
        assert found == {}, (path.name, stats)
        assert check.check(decode_upload(path), "L-CC") == stats


def test_bundled_chest_radiographs_are_refused_as_chest_x_rays(check, gate):
    assert RADIOGRAPHS
    refused = 0
    for path in RADIOGRAPHS:
        try:
            check.check(decode_upload(path), "R-MLO")
        except NotAMammogramError as err:
            assert str(err).startswith("R-MLO: this does not look like a mammogram: it looks like a chest X-ray (use "
                                       "the chest X-ray tab")
            refused += 1
    assert refused >= len(RADIOGRAPHS) - 1  # one of the 12 scores 0.47 with the chest gate
    # at the chest gate's own threshold, what the chest tab accepts this check refuses: all of them
    as_chest_tab = MammogramCheck(MammogramCheckConfig(max_chest_score=None), gate=gate)
    assert as_chest_tab.max_chest_score == gate.threshold == check.chest_gate_threshold < check.max_chest_score == 0.5
    assert all("chest" in as_chest_tab.all_failures(decode_upload(path))[1] for path in RADIOGRAPHS)


@pytest.mark.parametrize(("make", "reason"), [
    (grey_drawing, "flat_fill"),
    (grey_text, "roughness"),
    (lambda: Image.fromarray(np.random.default_rng(0).integers(0, 256, (128, 128), dtype=np.uint8)), "roughness"),
    (lambda: Image.new("L", (128, 128), 90), "contrast"),
    (colour_shapes, "colour"),
])
def test_grey_drawings_text_noise_blank_and_colour_images_are_refused(check, make, reason):
    _, found = check.all_failures(upload_of(make()))
    assert reason in found
    with pytest.raises(NotAMammogramError, match=r"Please upload a mammogram"):
        check.check(upload_of(make()), "L-CC")


def test_the_message_names_the_slot_and_every_reason(check):
    with pytest.raises(NotAMammogramError) as refused:
        check.check(upload_of(Image.new("L", (128, 128), 90)), "L-MLO")
    message = str(refused.value)
    assert message.startswith("L-MLO: this does not look like a mammogram: it has almost no contrast")
    assert "flat areas of a few grey levels" in message and "<" not in message


def test_the_black_background_of_a_mammogram_is_left_out_of_the_flat_fill():
    rng = np.random.default_rng(0)
    tissue = rng.integers(40, 220, (64, 64)).astype(np.float64)
    on_black = np.where(np.arange(64)[None, :] < 40, tissue, 0.0)  # 38 % background, one grey level
    assert tissue_flat_fill(on_black) == pytest.approx(tissue_flat_fill(tissue[:, :40]), abs=0.02)
    assert tissue_flat_fill(on_black) < 0.2
    on_grey = np.where(np.arange(64)[None, :] < 40, tissue, 128.0)  # the same share of one mid-grey level counts
    assert tissue_flat_fill(on_grey) > 0.35
    assert tissue_flat_fill(np.zeros((64, 64))) == 1.0  # all background: every pixel counts


def test_thresholds_decide(check, gate, mammograms):
    """The criteria are live: a config that leaves no room refuses a mammogram, the default does not."""
    upload = decode_upload(mammograms[0])
    strict = MammogramCheck(replace(MammogramCheckConfig(), max_roughness=0.0), gate=gate)
    assert "roughness" in strict.all_failures(upload)[1] and check.all_failures(upload)[1] == {}
    strict = MammogramCheck(replace(MammogramCheckConfig(), max_chest_score=0.0), gate=gate)
    assert "chest" in strict.all_failures(upload)[1]


@pytest.mark.parametrize(("tags", "reasons"), [
    ({"Modality": "MG", "BodyPartExamined": "BREAST", "ViewPosition": "CC"}, set()),
    ({"Modality": "MG", "BodyPartExamined": "CHEST"}, set()),  # the header says mammography: trusted
    ({"Modality": "DX", "BodyPartExamined": "BREAST", "ViewPosition": "MLO"}, set()),  # CR/DX alone is not refused
    ({"Modality": "DX"}, set()),
    ({"Modality": "DX", "BodyPartExamined": "CHEST"}, {"body_part"}),
    ({"Modality": "CR", "ViewPosition": "PA"}, {"view"}),
    ({"Modality": "CT"}, {"modality"}),
    ({"Modality": "US", "BodyPartExamined": "BREAST"}, {"modality"}),
])
def test_dicom_header_rules(check, mammograms, tags, reasons):
    pixels = np.asarray(Image.open(mammograms[-1]).convert("L"))
    upload = decode_upload(write_dicom(None, pixels, **tags))
    assert set(check.dicom_failures(upload)) == reasons
    assert set(check.all_failures(upload)[1]) == reasons  # the pixels themselves pass


def test_header_rules_leave_non_dicom_files_alone(check, mammograms):
    assert check.dicom_failures(decode_upload(mammograms[0])) == {}


@pytest.mark.skipif(not (CBIS / "manifest.csv").is_file(), reason="the shared cbis_mass folder is not here")
def test_real_cbis_crops_pass_when_the_shared_folder_is_present(check):
    crops = sorted((CBIS / "images").glob("*.png"))[::60]  # ~22 crops spread over the folder, read in place
    assert len(crops) > 10
    refused = [path.name for path in crops if check.all_failures(decode_upload(path))[1]]
    assert refused == []


def test_the_measurement_script_runs_on_generated_data(tmp_path, capsys, monkeypatch):
    """scripts/measure_mammo_input_check.py end to end on a generated CBIS-shaped folder of synthetic views, tiny
    models and the bundled chest radiographs: prediction tables for both models, rejection table, tab cross-check."""
    from tests.helpers.cbis_mass import write_cbis_like_folder
    from tests.serving.test_space_mammo import save_tiny_mammo_models

    folder = write_cbis_like_folder(tmp_path / "cbis")
    write_synthetic_mammo(tmp_path / "views", 12, seed=1, config=SyntheticMammoConfig(size=64))
    views = sorted((tmp_path / "views" / "images").glob("*.png"))
    for target, source in zip(sorted((folder / "images").glob("*.png")), views, strict=False):
        target.write_bytes(source.read_bytes())  # noise crops -> generated mammograms, same manifest
    models = save_tiny_mammo_models(tmp_path / "models")
    chest = tmp_path / "chest"
    chest.mkdir()
    for path in RADIOGRAPHS:
        (chest / path.name).write_bytes(path.read_bytes())
    sys.path.insert(0, str(SCRIPTS))
    import measure_mammo_input_check as script

    monkeypatch.setattr(sys, "argv", [
        "measure", "--dataset", str(folder), "--single_model", str(models["single_view"]), "--multi_model",
        str(models["multi_view"]), "--chest", str(chest), "--validation_fraction", "0.5", "--per_kind", "2",
        "--tab_sample", "2", "--examples", "1",
    ])
    script.main()
    out = capsys.readouterr().out
    assert "single-view model:" in out and "multi-view model:" in out and "| pair |" in out
    assert "0 refused by the input check" in out
    chest_rows = [line.split(" | ") for line in out.splitlines() if line.startswith("| real chest X-rays")]
    assert len(chest_rows) == 2  # the rejection table, the chest-threshold table
    assert int(chest_rows[0][1]) == len(RADIOGRAPHS) and int(chest_rows[0][2]) >= len(RADIOGRAPHS) - 1
    assert chest_rows[1][1].startswith("100.0%")  # at the chest gate's own threshold, every one
    assert "matched the check on" in out and "the tab refused" not in out

"""The input check's learned gate and DICOM header rules: what they refuse, what they let through, how they load."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from hf_deitcxr.serving import NotARadiographError, RadiographCheck, RadiographGate, decode_upload
from hf_deitcxr.serving.input_check import InputCheckConfig, resize_for_statistics, thumbnail_of
from tests.helpers.dicom_files import write_dicom
from tests.helpers.serving_models import RADIOGRAPHS

SCRIPTS = Path(__file__).resolve().parents[2] / "scripts"


def _script(name: str):
    sys.path.insert(0, str(SCRIPTS))
    spec = importlib.util.spec_from_file_location(name, SCRIPTS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def outliers():
    return _script("radiograph_outliers")


@pytest.fixture(scope="module")
def check() -> RadiographCheck:
    return RadiographCheck()


def _png(tmp_path: Path, image: Image.Image, name: str = "x.png") -> Path:
    image.save(tmp_path / name)
    return tmp_path / name


def test_the_shipped_gate_passes_the_bundled_radiographs_and_says_how_it_was_fitted(check):
    scores = [check.statistics(decode_upload(path)).radiograph_score for path in RADIOGRAPHS]
    assert min(scores) > check.gate.threshold
    provenance = check.gate.provenance()
    assert provenance["calibration"]["refuse_quantile"] > 0 and provenance["fitted_on"]["train"] > 1000


@pytest.mark.parametrize(
    "kind", ["low contrast (x0.12-0.35)", "sideways (90/270 deg)", "viewer screenshot (dark)", "MRI slice"]
)
def test_design_outliers_of_real_radiographs_are_refused_by_the_gate(check, outliers, tmp_path, kind):
    rng = np.random.default_rng(7)
    refused = 0
    for path in RADIOGRAPHS:
        image = outliers.DESIGN_OUTLIERS[kind](rng, Image.open(path).convert("L"))
        stats, found = check.all_failures(decode_upload(_png(tmp_path, image)))
        refused += "gate" in found
        assert (stats.radiograph_score < check.gate.threshold) == ("gate" in found)
    assert refused >= len(RADIOGRAPHS) - 1


def test_benign_variants_of_real_radiographs_mostly_pass(check, outliers, tmp_path):
    rng = np.random.default_rng(3)
    passed = sum(
        "gate" not in check.all_failures(decode_upload(_png(tmp_path, outliers.benign_variant(rng, Image.open(p)))))[1]
        for p in RADIOGRAPHS * 2
    )
    assert passed >= 2 * len(RADIOGRAPHS) - 2


def test_a_refusal_by_the_gate_names_the_reason(check, outliers, tmp_path):
    image = outliers.DESIGN_OUTLIERS["viewer screenshot (dark)"](np.random.default_rng(0), Image.open(RADIOGRAPHS[0]))
    with pytest.raises(NotARadiographError, match="looks unlike the frontal chest radiographs"):
        check.check(decode_upload(_png(tmp_path, image)))


def test_the_gate_can_be_switched_off(outliers, tmp_path):
    check = RadiographCheck(InputCheckConfig(use_gate=False))
    stats, found = check.all_failures(decode_upload(RADIOGRAPHS[0]))
    assert check.gate is None and stats.radiograph_score is None and "gate" not in found


def test_gate_round_trip_keeps_scores_threshold_and_metadata(tmp_path):
    torch.manual_seed(0)
    gate = RadiographGate(threshold=0.25, metadata={"commit": "abc", "calibration": '{"refuse_quantile": 0.01}'})
    thumbnail = np.random.default_rng(0).uniform(0, 255, (64, 64))
    gate.save(tmp_path / "gate.safetensors")
    loaded = RadiographGate.load(tmp_path / "gate.safetensors")
    assert loaded.threshold == 0.25
    assert loaded.provenance() == {"commit": "abc", "calibration": {"refuse_quantile": 0.01}}
    assert loaded.score(thumbnail) == pytest.approx(gate.score(thumbnail), abs=1e-6)
    with pytest.raises(ValueError, match="64x64 thumbnail"):
        loaded.score(np.zeros((32, 32)))
    gate.train()  # a gate being fitted: scored in eval mode (batch-norm running statistics), left in training mode
    with torch.no_grad():
        gate.features[1].running_mean.fill_(3.0)  # batch statistics would ignore this; eval mode uses it
    in_training = gate.score(thumbnail)
    assert gate.training and in_training == pytest.approx(gate.eval().score(thumbnail), abs=1e-7)


def test_the_fitting_script_sees_the_thumbnail_the_space_computes(outliers):
    fit = _script("fit_radiograph_gate")
    image = Image.open(RADIOGRAPHS[0])
    np.testing.assert_array_equal(fit.thumbnail(image), thumbnail_of(resize_for_statistics(image.convert("L"))))
    x, y = fit.epoch_examples([image.convert("L")] * 6, np.random.default_rng(0))
    assert x.shape == (12, 64, 64) and sorted(y.tolist()) == [0.0] * 6 + [1.0] * 6


# --- DICOM header rules ---------------------------------------------------------------------------------------


def _dicom(tmp_path: Path, **tags) -> Path:
    path = tmp_path / "x.dcm"
    write_dicom(path, np.asarray(Image.open(RADIOGRAPHS[0]).convert("L")), **tags)
    return path


@pytest.mark.parametrize("modality", ["CR", "DX", "DR"])
def test_radiograph_modalities_pass(check, tmp_path, modality):
    assert check.dicom_failures(decode_upload(_dicom(tmp_path, Modality=modality))) == {}


@pytest.mark.parametrize(
    ("tags", "message"),
    [
        ({"Modality": "XA"}, "modality is XA"),
        ({"Modality": "OT"}, "modality is OT"),
        ({"Modality": ["CT", "DX"]}, "modality is CT\\\\DX"),
        ({"Modality": ""}, "names no Modality"),
        ({"BodyPartExamined": "ABDOMEN"}, "BodyPartExamined is ABDOMEN, not the chest"),
        ({"ViewPosition": "LL"}, "ViewPosition is LL, not a frontal view"),
        ({"ViewPosition": "RLO"}, "ViewPosition is RLO"),
    ],
)
def test_dicom_headers_of_other_modalities_body_parts_and_views_are_refused(check, tmp_path, tags, message):
    with pytest.raises(NotARadiographError, match=message):
        check.check(decode_upload(_dicom(tmp_path, **tags)))


@pytest.mark.parametrize(
    "tags", [{"BodyPartExamined": "CHEST"}, {"BodyPartExamined": "thorax "}, {"ViewPosition": "PA"},
             {"ViewPosition": "ap"}, {"BodyPartExamined": "PORT CHEST", "ViewPosition": "AP"}]
)
def test_chest_body_parts_and_frontal_views_pass(check, tmp_path, tags):
    assert check.dicom_failures(decode_upload(_dicom(tmp_path, **tags))) == {}


def test_header_rules_do_not_apply_to_other_files(check):
    assert check.dicom_failures(decode_upload(RADIOGRAPHS[0])) == {}

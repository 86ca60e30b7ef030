"""Temperature scaling: the fit recovers a known temperature, `calibrate_model` stores it in the saved config, and
every served path (model forward, fused Space forward, DenseNet) divides its logits by it while training losses and
the distillation teacher keep the raw logits."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from scipy.special import softmax

from hf_deitcxr import (
    DeiTCXRConfig,
    DeiTCXRForImageClassificationWithTeacher,
    DenseNetConfig,
    DenseNetForImageClassification,
    make_image_processor,
)
from hf_deitcxr.calibration import calibrate_model, calibration_summary, fit_temperature, negative_log_likelihood
from tests.helpers.synthetic import write_imagefolder
from tests.helpers.tiny_models import LABELS, tiny_deit_kwargs


def _overconfident(temperature: float, count: int = 4000, seed: int = 0):
    """Labels drawn from softmax(z); the logits handed over are z * temperature (over-confident by that factor)."""
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(count, 3)) * 1.5
    labels = np.array([rng.choice(3, p=p) for p in softmax(z, axis=1)])
    return z * temperature, labels


def test_the_fit_recovers_the_temperature_that_made_the_logits_overconfident():
    logits, labels = _overconfident(3.0)
    assert fit_temperature(logits, labels) == pytest.approx(3.0, rel=0.08)
    t = fit_temperature(logits, labels)
    assert negative_log_likelihood(logits, labels, t) < negative_log_likelihood(logits, labels)
    assert negative_log_likelihood(logits, labels, t) <= negative_log_likelihood(logits, labels, t * 1.05)
    with pytest.raises(ValueError, match="do not match"):
        fit_temperature(logits, labels[:-1])


def test_the_summary_reports_ece_before_after_and_cross_fitted_by_group():
    logits, labels = _overconfident(2.0)
    groups = [f"p{i // 2}" for i in range(len(labels))]  # two images per patient
    summary = calibration_summary(logits, labels, groups)
    assert summary["ece_after"] < summary["ece_before"] and summary["nll_after"] < summary["nll_before"]
    assert len(summary["cross_fitted_temperatures"]) == 2
    assert all(t == pytest.approx(2.0, rel=0.15) for t in summary["cross_fitted_temperatures"])
    assert summary["ece_after_cross_fitted"] < summary["ece_before"]
    assert "ece_after_cross_fitted" not in calibration_summary(logits, labels)


def test_calibrate_model_stores_the_temperature_and_the_served_logits_use_it(tmp_path):
    torch.manual_seed(0)
    folder = tmp_path / "model"
    model = DeiTCXRForImageClassificationWithTeacher(DeiTCXRConfig(**tiny_deit_kwargs()))
    with torch.no_grad():  # over-confident on purpose, so the fitted temperature is clearly above 1
        model.cls_classifier.weight.mul_(30)
        model.distillation_classifier.weight.mul_(30)
    model.save_pretrained(folder)
    make_image_processor(image_size=32).save_pretrained(folder)
    data = write_imagefolder(tmp_path / "data", {"train": 2, "validation": 10})

    summary = calibrate_model(folder, str(data), split="validation")
    config = json.loads((folder / "config.json").read_text())
    assert config["calibration_temperature"] == pytest.approx(summary["temperature"]) and summary["temperature"] > 1
    assert json.loads((folder / "calibration.json").read_text())["temperature"] == summary["temperature"]
    assert summary["ece_after"] <= summary["ece_before"] + 1e-9 and "ece_after_cross_fitted" in summary

    calibrated = DeiTCXRForImageClassificationWithTeacher.from_pretrained(folder).eval()
    pixels = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        served, raw = calibrated(pixel_values=pixels), model.eval()(pixel_values=pixels)
    torch.testing.assert_close(served.logits, raw.logits / summary["temperature"])
    torch.testing.assert_close(served.cls_logits, raw.cls_logits)  # the heads, which the losses use, stay raw
    assert torch.equal(served.logits.argmax(-1), raw.logits.argmax(-1))
    # A second calibration fits on the raw logits again: the same temperature, not one on top of the first.
    assert calibrate_model(folder, str(data))["temperature"] == pytest.approx(summary["temperature"], rel=1e-6)


def test_densenet_serves_scaled_logits_but_trains_on_raw_ones():
    torch.manual_seed(0)
    config = DenseNetConfig(growth_rate=8, block_config=[2, 2], num_init_features=16, num_labels=len(LABELS))
    plain = DenseNetForImageClassification(config).eval()
    scaled = DenseNetForImageClassification(DenseNetConfig(**{**config.to_dict(), "calibration_temperature": 4.0}))
    scaled.load_state_dict(plain.state_dict())
    scaled.eval()
    pixels, labels = torch.randn(3, 3, 32, 32), torch.tensor([0, 1, 2])
    with torch.no_grad():
        a, b = plain(pixel_values=pixels, labels=labels), scaled(pixel_values=pixels, labels=labels)
    torch.testing.assert_close(b.logits, a.logits / 4.0)
    torch.testing.assert_close(b.loss, a.loss)


def test_a_calibrated_teacher_distils_from_its_raw_logits(tmp_path):
    from hf_deitcxr.training.builders import load_trained_teacher

    config = DenseNetConfig(growth_rate=8, block_config=[2, 2], num_init_features=16, num_labels=len(LABELS),
                            id2label=dict(enumerate(LABELS)), calibration_temperature=3.0)
    DenseNetForImageClassification(config).save_pretrained(tmp_path / "teacher")
    teacher, _ = load_trained_teacher(str(tmp_path / "teacher"), LABELS)
    assert teacher.config.calibration_temperature == 1.0


@pytest.mark.parametrize("value", [0, -1.0, float("inf"), "2", True])
def test_invalid_temperatures_are_refused(value):
    with pytest.raises(ValueError, match="calibration_temperature"):
        DeiTCXRConfig(**tiny_deit_kwargs(calibration_temperature=value))
    with pytest.raises(ValueError, match="calibration_temperature"):
        DenseNetConfig(calibration_temperature=value)


def test_the_calibrate_command_prints_the_fit_and_refuses_a_folder_without_a_model(tmp_path, capsys):
    from hf_deitcxr.cli import main

    torch.manual_seed(1)
    folder = tmp_path / "model"
    DeiTCXRForImageClassificationWithTeacher(DeiTCXRConfig(**tiny_deit_kwargs())).save_pretrained(folder)
    make_image_processor(image_size=32).save_pretrained(folder)
    data = write_imagefolder(tmp_path / "data", {"train": 2, "validation": 6})
    assert main(["calibrate", str(folder), "--dataset", str(data)]) == 0
    printed = json.loads(capsys.readouterr().out)
    stored = json.loads((folder / "calibration.json").read_text())
    assert stored["split"] == "validation" and printed["temperature"] == stored["temperature"] > 0
    assert printed["ece_before"] == stored["ece_before"] and "nll_after_cross_fitted" in printed
    with pytest.raises(FileNotFoundError, match="config.json"):
        main(["calibrate", str(tmp_path / "empty"), "--dataset", str(data)])


def test_the_model_card_states_the_calibration(tmp_path):
    from hf_deitcxr.model_card import build_model_card
    from tests.helpers.model_folder import save_tiny_model_folder

    student = save_tiny_model_folder(tmp_path)
    assert "not calibrated; `hf-deitcxr calibrate`" in build_model_card(student).content
    data = write_imagefolder(tmp_path / "data", {"train": 2, "validation": 6})
    summary = calibrate_model(student, str(data))
    text = build_model_card(student).content
    assert f"T = {summary['temperature']:.3f}, fitted on the validation split" in text
    assert f"ECE {summary['ece_before']:.3f} → {summary['ece_after']:.3f}" in text

"""The shortcut audit on synthetic tasks: a source cue confounded with the label is found, a clean task is not
flagged, and `hf-deitcxr audit` writes its report (and the model card its section)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from hf_deitcxr import (
    DeiTCXRConfig,
    DeiTCXRForImageClassificationWithTeacher,
    DenseNetConfig,
    DenseNetForImageClassification,
    make_image_processor,
)
from hf_deitcxr.audit import confounding_table, default_perturbations, run_audit, source_probe
from hf_deitcxr.cli import main
from hf_deitcxr.model_card import build_model_card
from hf_deitcxr.models.deit_cxr.image_processing_deit_cxr import GreyPreprocessing
from tests.helpers.synthetic import write_imagefolder
from tests.helpers.tiny_models import tiny_deit_kwargs

CLASSES = ("normal", "pneumonia")
SIZE = 32
DARK, BRIGHT = 90, 160  # mean grey levels; the model calls an image pneumonia above their midpoint


def write_task(root: Path, confounded: bool, per_class: int = 20, seed: int = 0) -> Path:
    """validation/<class>/*.png + metadata.csv; pneumonia images are bright, normal ones dark.

    confounded: every pneumonia image comes from site 'bright_site', every normal one from 'dark_site' (so the
    brightness is a source cue). Otherwise both classes come from both sites equally (the cue is the label's own).
    """
    rng = np.random.default_rng(seed)
    split = root / "validation"
    rows = []
    for label, level in zip(CLASSES, (DARK, BRIGHT), strict=True):
        (split / label).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            pixels = np.clip(rng.normal(level, 20, (SIZE, SIZE)), 0, 255).astype(np.uint8)
            name = f"{label}/{label}_{i:03d}.png"
            Image.fromarray(pixels, "L").save(split / name)
            source = {"normal": "dark_site", "pneumonia": "bright_site"}[label] if confounded else f"site_{i % 2}"
            rows.append({"file_name": name, "label": label, "patient_id": f"{label}-{i // 2}", "source": source})
    with open(split / "metadata.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["file_name", "label", "patient_id", "source"])
        writer.writeheader()
        writer.writerows(rows)
    return root


def save_brightness_model(folder: Path, preprocessing: GreyPreprocessing | None = None) -> Path:
    """A hand-made tiny DenseNet whose pooled feature 0 is the mean brightness, and whose head thresholds it
    (of the image as `preprocessing` leaves it)."""
    config = DenseNetConfig(block_config=(1,), growth_rate=2, num_init_features=2, bn_size=1, image_size=SIZE,
                            id2label=dict(enumerate(CLASSES)), label2id={c: i for i, c in enumerate(CLASSES)})
    model = DenseNetForImageClassification(config).eval()
    processor = make_image_processor(image_size=SIZE, preprocessing=preprocessing)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.zero_()
        features = model.densenet.features
        features.conv0.weight[0] = 1.0 / features.conv0.weight[0].numel()  # channel 0: local mean
        for norm in (features.norm0, features.norm5, features.denseblock1.denselayer1.norm1,
                     features.denseblock1.denselayer1.norm2):
            norm.weight.fill_(1.0)
        features.norm0.bias.fill_(3.0)  # keeps the normalised mean positive through the ReLUs

        def feature(level: int) -> float:
            grey = Image.fromarray(np.full((SIZE, SIZE), level, np.uint8), "L")
            pixel_values = processor(images=[grey], return_tensors="pt")["pixel_values"]
            return float(model.densenet(pixel_values).pooler_output[0, 0])

        threshold, scale = feature((DARK + BRIGHT) // 2), 20.0
        model.classifier.weight[1, 0], model.classifier.bias[1] = scale, -scale * threshold
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def brightness_model(tmp_path_factory) -> Path:
    return save_brightness_model(tmp_path_factory.mktemp("brightness") / "model")


def test_a_confounded_source_cue_is_flagged(tmp_path, brightness_model):
    data = write_task(tmp_path / "data", confounded=True)
    result = run_audit(str(brightness_model), str(data), output_dir=tmp_path / "audit", num_resamples=200)
    audit = result.audit
    assert audit["groups"]["per_source"]["bright_site"]["accuracy"]["estimate"] == 1.0  # the model works, clean
    # (a) each class from one source
    assert audit["confounding"]["single_source_classes"] == {"normal": "dark_site", "pneumonia": "bright_site"}
    assert any(flag.startswith("confounding: class 'pneumonia'") for flag in result.flags)
    # (b) equalisation moves every image's brightness to mid-grey: the dark site's predictions flip
    equalised = audit["perturbations"]["hist_equalise"]["per_source"]["dark_site"]
    assert equalised["agreement"] < 0.9 and equalised["flagged"]
    assert audit["perturbations"]["gamma_0.6"]["per_source"]["dark_site"]["flagged"]
    assert not audit["perturbations"]["jpeg_q50"]["per_source"]["dark_site"]["flagged"]  # a mild change is not
    # (c) the features carry the cue, so the source is predictable from them
    assert audit["source_probe"]["auc"] > 0.9 and audit["source_probe"]["high"]
    assert audit["embedding"] == {"dim": 4, "kind": "global-average-pooled final features (pooler_output)"}
    assert {path.name for path in result.files} >= {"audit.json", "audit.md", "audit_agreement.png"}


INTENSITY_AND_FRAMING = ("hist_equalise", "gamma_0.6", "gamma_1.6", "contrast_0.7", "brightness_0.85",
                         "letterbox_10%")


def test_the_normalising_remedy_makes_the_intensity_flags_go_away(tmp_path, brightness_model):
    """The same brightness-reading model, once saved with equalisation + border removal in its image processor: the
    flags of the intensity and framing perturbations go away, and with them the cue (the model is at chance)."""
    data = write_task(tmp_path / "data", confounded=True)
    probes = [p for p in default_perturbations() if p.name in INTENSITY_AND_FRAMING]

    def flagged(model: Path, name: str) -> tuple[set[str], dict]:
        audit = run_audit(str(model), str(data), output_dir=tmp_path / name, num_resamples=100, perturbations=probes)
        return {p for p, result in audit.audit["perturbations"].items()
                for source, row in result["per_source"].items() if row["flagged"] and source != "all"}, audit.audit

    before, _ = flagged(brightness_model, "stock")
    assert {"hist_equalise", "gamma_0.6"} <= before
    remedied_model = save_brightness_model(tmp_path / "remedied", GreyPreprocessing("equalize", remove_border=True))
    after, audit = flagged(remedied_model, "remedied")
    assert after == set()
    assert audit["preprocessing"] == {"intensity_normalization": "equalize", "remove_border": True}
    assert audit["overall"]["accuracy"]["estimate"] == pytest.approx(0.5)  # brightness was all it read
    assert "intensity normalisation `equalize`" in (tmp_path / "remedied" / "audit.md").read_text()


def test_an_unconfounded_task_with_mild_perturbations_is_not_flagged(tmp_path, brightness_model):
    data = write_task(tmp_path / "data", confounded=False)
    mild = [p for p in default_perturbations() if p.name in ("blur_1.5", "jpeg_q50", "resample_0.25")]
    result = run_audit(str(brightness_model), str(data), output_dir=tmp_path / "audit", num_resamples=200,
                       perturbations=mild)
    assert result.flags == []
    assert not result.audit["confounding"]["confounded"]
    assert result.audit["source_probe"]["auc"] < 0.8
    assert set(result.audit["within_class_source_probes"]) == set(CLASSES)  # both classes from both sites


def test_source_probe_reads_the_source_from_informative_features_only():
    rng = np.random.default_rng(0)
    sources = np.array(["a", "b", "c"] * 30)
    patients = [f"p{i // 3}" for i in range(len(sources))]  # a patient's three images span all sources
    informative = rng.normal(size=(90, 4)) + 3.0 * (sources[:, None] == np.array(["a", "b", "c", "a"]))
    assert source_probe(informative, sources, patients)["auc"] > 0.95
    assert source_probe(rng.normal(size=(90, 4)), sources, patients)["auc"] < 0.75


def test_source_probe_says_why_when_a_source_has_too_few_patients_for_the_folds():
    rng = np.random.default_rng(0)
    sources = ["a"] * 20 + ["b"]  # one patient of source b: four of five training folds lack it
    result = source_probe(rng.normal(size=(21, 3)), sources, [f"p{i}" for i in range(21)])
    assert result["auc"] is None and "too few patients per source" in result["reason"]


def test_confounding_table_counts_and_warns_only_for_single_source_classes():
    table = confounding_table([0, 0, 1, 1, 2], ["x", "y", "x", "y", "z"], ["a", "b", "c"])
    assert table["counts"]["a"] == {"x": 1, "y": 1, "z": 0}
    assert table["single_source_classes"] == {"c": "z"} and table["confounded"]
    assert confounding_table([0, 1], ["x", "x"], ["a", "b"])["warnings"] == []  # one source: nothing to confound


def test_perturbations_keep_the_shape_and_change_the_image():
    grey = np.clip(np.random.default_rng(0).normal(100, 30, (48, 40)), 0, 255).astype(np.uint8)
    for perturbation in default_perturbations():
        out = perturbation.apply(grey)
        assert out.shape == grey.shape and out.dtype == np.uint8, perturbation.name
        assert not np.array_equal(out, grey), perturbation.name


def test_cli_audit_writes_the_report_into_the_model_folder_and_the_card_shows_it(tmp_path):
    torch.manual_seed(0)
    student = tmp_path / "student"
    DeiTCXRForImageClassificationWithTeacher(DeiTCXRConfig(**tiny_deit_kwargs())).save_pretrained(student)
    make_image_processor(image_size=32).save_pretrained(student)
    data = write_imagefolder(tmp_path / "data", {"train": 2, "validation": 8})
    assert main(["audit", str(student), "--dataset", str(data), "--num_resamples", "50", "--batch_size", "16"]) == 0
    for name in ("audit.json", "audit.md", "audit_agreement.png", "audit_source_accuracy.png", "audit_confounding.png"):
        assert (student / name).stat().st_size > 0, name
    audit = json.loads((student / "audit.json").read_text())
    assert audit["num_images"] == 24 and audit["embedding"]["dim"] == 2 * 32  # DeiT: class + distillation tokens
    assert audit["embedding"]["kind"].startswith("final layer-normed class + distillation")
    assert set(audit["groups"]["per_source"]) == {"site_a", "site_b"}
    assert "## Perturbation probe" in (student / "audit.md").read_text()
    # the CLI's precision is "auto": the training rule's, recorded in the report
    from hf_deitcxr.audit.inference import autocast_dtype_for
    assert audit["precision"] == ("bf16" if autocast_dtype_for("auto") is torch.bfloat16 else "fp32")
    assert f"forward in {audit['precision']}" in (student / "audit.md").read_text()
    card = str(build_model_card(student))
    assert "## Shortcut audit" in card and "Source probe" in card


def test_audit_precision_follows_the_training_rule_and_bf16_stays_close_to_fp32(tmp_path, monkeypatch):
    from hf_deitcxr import hardware
    from hf_deitcxr.audit.inference import autocast_dtype_for, predict_grey

    assert autocast_dtype_for("fp32") is None and autocast_dtype_for("bf16") is torch.bfloat16
    if not torch.cuda.is_available():
        for native, expected in ((True, torch.bfloat16), (False, None)):
            monkeypatch.setattr(hardware, "cpu_has_native_bf16", lambda native=native: native)
            assert autocast_dtype_for("auto") is expected
    with pytest.raises(ValueError, match="precision must be one of"):
        autocast_dtype_for("fp16")
    torch.manual_seed(0)
    model = DeiTCXRForImageClassificationWithTeacher(DeiTCXRConfig(**tiny_deit_kwargs())).eval()
    processor = make_image_processor(image_size=model.config.image_size)
    greys = [np.random.default_rng(i).integers(0, 256, (48, 48), dtype=np.uint8) for i in range(6)]
    exact = predict_grey(model, processor, greys, with_embeddings=True)
    mixed = predict_grey(model, processor, greys, with_embeddings=True, autocast_dtype=torch.bfloat16)
    assert mixed.probabilities.dtype == np.float32 and mixed.embeddings.dtype == np.float32
    assert not np.array_equal(mixed.probabilities, exact.probabilities)  # the forward did run in bf16
    assert np.abs(mixed.probabilities - exact.probabilities).max() < 0.05

"""`evaluate_model`: a saved model on a dataset split, with intervals that resample the split's patients."""

import csv
import json

import numpy as np
import torch

from hf_deitcxr import DeiTCXRConfig, DeiTCXRForImageClassificationWithTeacher, make_image_processor
from hf_deitcxr.evaluation import evaluate_model
from tests.helpers.synthetic import write_imagefolder
from tests.helpers.tiny_models import tiny_deit_kwargs


def test_evaluate_writes_intervals_over_the_splits_patients(tmp_path):
    torch.manual_seed(0)
    model_dir = tmp_path / "model"
    DeiTCXRForImageClassificationWithTeacher(DeiTCXRConfig(**tiny_deit_kwargs())).save_pretrained(model_dir)
    make_image_processor(image_size=32).save_pretrained(model_dir)
    data = write_imagefolder(tmp_path / "data", {"train": 2, "validation": 12})  # two images per patient

    report = evaluate_model(str(model_dir), str(data), output_dir=str(tmp_path / "eval"), seed=4, num_resamples=200)
    on_disk = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert on_disk == report
    assert set(on_disk) == {"label_names", "overall", "per_source", "extra", "intervals", "operating_points"}
    overall = on_disk["intervals"]["overall"]
    assert overall["resampled"] == "patient" and overall["num_examples"] == 36 and overall["num_clusters"] == 18
    assert overall["seed"] == 4 and overall["num_resamples"] == 200
    assert overall["accuracy"]["estimate"] == on_disk["overall"]["accuracy"]
    assert overall["accuracy"]["low"] <= overall["accuracy"]["estimate"] <= overall["accuracy"]["high"]
    # each source holds one image of each of its 18 patients (sources alternate within a patient)
    assert {source: values["num_clusters"] for source, values in on_disk["intervals"]["per_source"].items()} == {
        "site_a": 18, "site_b": 18}


def test_evaluate_writes_one_csv_row_per_image_matching_the_metrics(tmp_path):
    torch.manual_seed(1)
    model_dir = tmp_path / "model"
    DeiTCXRForImageClassificationWithTeacher(DeiTCXRConfig(**tiny_deit_kwargs())).save_pretrained(model_dir)
    make_image_processor(image_size=32).save_pretrained(model_dir)
    data = write_imagefolder(tmp_path / "data", {"train": 2, "validation": 4})
    report = evaluate_model(str(model_dir), str(data), output_dir=str(tmp_path / "eval"), num_resamples=50)

    with open(tmp_path / "eval" / "predictions.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    names = report["label_names"]
    assert len(rows) == report["overall"]["num_examples"] and [int(r["row"]) for r in rows] == list(range(len(rows)))
    assert {"image", "patient_id", "source", "label", "predicted", "correct"} <= set(rows[0])
    probabilities = np.array([[float(r[f"prob_{name}"]) for name in names] for r in rows])
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)
    assert all(r["predicted"] == names[int(np.argmax(p))] for r, p in zip(rows, probabilities, strict=True))
    assert np.mean([r["correct"] == "1" for r in rows]) == report["overall"]["accuracy"]
    assert all(r["image"].endswith(".png") and (data / "validation").as_posix() in r["image"] for r in rows)
    assert (tmp_path / "eval" / "reliability_diagram.png").stat().st_size > 1000
    assert set(report["operating_points"]) == set(names)

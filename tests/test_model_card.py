"""Model card: built from a saved folder's own files, parsed back with huggingface_hub, numbers equal metrics.json."""

import json
import re

import pytest
from huggingface_hub import ModelCard, metadata_load

from hf_deitcxr.model_card import build_model_card, write_model_card
from tests.helpers.model_folder import ALPHA, EPOCHS, IMAGE_SIZE, TAU, save_tiny_model_folder
from tests.helpers.tiny_models import LABELS

FAKE_TOKEN = "hf_FakeTokenForTestsOnly0123456789abcdef"
TOKEN_PATTERN = re.compile(r"hf_[A-Za-z0-9]{30,}")


@pytest.fixture
def student(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", FAKE_TOKEN)  # present in the environment: must never reach the card
    return save_tiny_model_folder(tmp_path)


def expected_model_index(metrics: dict) -> dict:
    """(dataset config, metric name) -> value, for every defined metric the card must publish."""
    summary = {"accuracy": "accuracy", "balanced_accuracy": "balanced accuracy", "macro_f1": "macro F1",
               "macro_auc": "macro ROC-AUC (one-vs-rest)", "ece": "expected calibration error"}
    per_class = {"sensitivity": "sensitivity", "specificity": "specificity", "ppv": "PPV", "npv": "NPV",
                 "f1": "F1", "auc": "ROC-AUC"}
    expected = {(None, name): metrics["overall"][key] for key, name in summary.items()}
    for label, values in metrics["overall"]["per_class"].items():
        expected.update({(None, f"{name} ({label})"): values[key] for key, name in per_class.items()})
    for source, values in metrics["per_source"].items():
        expected.update({(source, f"{name} ({source})"): values[key] for key, name in summary.items()})
    return {key: value for key, value in expected.items() if value is not None}


def test_card_round_trips_through_huggingface_hub_with_every_metric(student):
    path = write_model_card(student, repo_id="someone/deit-cxr-tiny")
    metrics = json.loads((student / "metrics.json").read_text())

    card = ModelCard.load(path)
    published = {(r.dataset_config, r.metric_name): r.metric_value for r in card.data.eval_results}
    expected = expected_model_index(metrics)
    assert published == pytest.approx(expected)
    # the fixture's "armiro" source holds one class: its AUC is undefined and must be absent, not 0 or NaN
    assert ("armiro", "macro ROC-AUC (one-vs-rest)") not in published
    assert {r.dataset_split for r in card.data.eval_results} == {"validation"}

    metadata = metadata_load(path)
    assert metadata["model-index"][0]["name"] == "someone/deit-cxr-tiny"
    assert metadata["pipeline_tag"] == "image-classification" and metadata["library_name"] == "transformers"
    configs = [result["dataset"].get("config") for result in metadata["model-index"][0]["results"]]
    assert sorted(configs, key=str) == sorted([None, "armiro", "kermany"], key=str)


def test_card_text_states_use_method_data_limits_and_citation(student):
    text = build_model_card(student, repo_id="someone/deit-cxr-tiny").content
    assert "**Not a medical device.**" in text and "Out of scope" in text
    method = text.split("## Method")[1].split("## Results")[0]
    assert f"alpha {ALPHA}" in method and f"tau {TAU}" in method and "**soft**" in method
    assert f"{IMAGE_SIZE} × {IMAGE_SIZE} px" in method and f"{EPOCHS:g} epoch(s)" in method
    # the fixture's teacher config keeps DenseNetConfig's 224 px, the student is at 32: the card says so
    assert ("DenseNet-121 at 224 px (`teacher`, validation accuracy 0.875; fed the student's 32-px pixels resized)"
            in method and "`oversample`" in method)
    assert "**by patient**" in text and "CC BY 4.0" in text  # data sources, licences, split
    assert "Source shortcuts" in text and "Paediatric vs adult" in text
    assert 'pipeline("image-classification", model="someone/deit-cxr-tiny"' in text
    assert "10.1109/EMBC48229.2022.9871372" in text
    for label in LABELS:  # per-class table rows
        assert re.search(rf"^\| {label} \| 8 \|", text, flags=re.MULTILINE)
    assert "| kermany | 16 | covid, normal |" in text


def test_card_leaks_no_token_and_no_local_path(student, tmp_path):
    text = write_model_card(student, repo_id="someone/deit-cxr-tiny").read_text()
    assert FAKE_TOKEN not in text and not TOKEN_PATTERN.search(text)
    assert str(tmp_path) not in text  # teacher and dataset folders are shown by name only


def test_card_without_metrics_has_no_model_index(tmp_path):
    folder = save_tiny_model_folder(tmp_path, with_metrics=False)
    card = ModelCard.load(write_model_card(folder))
    assert not card.data.eval_results and "model-index" not in metadata_load(folder / "README.md")
    assert "Not evaluated" in card.content


def test_folder_that_is_not_a_model_is_refused_clearly(tmp_path):
    with pytest.raises(FileNotFoundError, match="config.json is missing"):
        build_model_card(tmp_path)
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(ValueError, match="config.json is not valid JSON"):
        build_model_card(tmp_path)


def test_card_shows_the_intervals_of_metrics_json(student):
    metrics = json.loads((student / "metrics.json").read_text())
    intervals = metrics["intervals"]
    text = build_model_card(student, repo_id="someone/deit-cxr-tiny").content
    results = text.split("## Results")[1].split("## Limitations")[0]

    def shown(entry: dict) -> str:
        return f"{entry['estimate']:.3f} ({entry['low']:.3f}–{entry['high']:.3f})"

    overall = intervals["overall"]
    assert f"Accuracy {shown(overall['accuracy'])} · balanced accuracy {shown(overall['balanced_accuracy'])}" in results
    assert f"macro ROC-AUC {shown(overall['macro_auc'])} · ECE" in results
    for label in LABELS:
        assert re.search(rf"^\| {label} \| 8 \|.* \| {re.escape(shown(overall['per_class'][label]['auc']))} \|$",
                         results, flags=re.MULTILINE)
    kermany = intervals["per_source"]["kermany"]
    assert f"| kermany | 16 | covid, normal | {shown(kermany['accuracy'])} |" in results
    # 8 armiro images are too few to resample: the card says so rather than showing a made-up interval
    assert f"| armiro | 8 | pneumonia | {metrics['per_source']['armiro']['accuracy']:.3f} (CI n/a) |" in results
    assert ("2000 resamples (seed 0) of the validation split's 24 images, per source of that source's images. "
            "The data had no patient ids") in results


def test_card_from_metrics_without_intervals_shows_the_bare_values(student):
    metrics = json.loads((student / "metrics.json").read_text())
    del metrics["intervals"]  # written before intervals existed
    (student / "metrics.json").write_text(json.dumps(metrics))
    results = build_model_card(student).content.split("## Results")[1].split("## Limitations")[0]
    assert f"Accuracy {metrics['overall']['accuracy']:.3f} · balanced" in results
    assert "CI n/a" not in results and "In brackets" not in results and "–" not in results


def test_card_says_when_the_student_needs_remote_code_for_spt_and_lsa(student):
    stock_card = build_model_card(student).content
    assert "Shifted Patch Tokenization" not in stock_card and "trust_remote_code" not in stock_card.split("## ")[0]
    config = json.loads((student / "config.json").read_text())
    (student / "config.json").write_text(json.dumps({**config, "locality_self_attention": True}))
    text = build_model_card(student).content
    assert "uses Locality Self-Attention (Lee, Lee & Song 2021" in text
    assert "Shifted Patch Tokenization" not in text and "`trust_remote_code=True`, not with" in text


def test_card_describes_cached_view_logits_and_the_low_resolution_augmentation(student):
    arguments = json.loads((student / "training_args.json").read_text())
    assert "Teacher logits cached" not in build_model_card(student).content  # online: every step
    arguments["data"].update(augment=True, augmentation_preset="low_resolution", teacher_views=4)
    (student / "training_args.json").write_text(json.dumps(arguments))
    method = build_model_card(student).content.split("## Method")[1].split("## Results")[0]
    assert "cached once for 4 seeded augmented view(s)" in method and "sized for low resolution" in method
    arguments["data"].update(augment=False, teacher_views=0, teacher_logit_cache=True)
    (student / "training_args.json").write_text(json.dumps(arguments))
    method = build_model_card(student).content.split("## Method")[1].split("## Results")[0]
    assert "cached once per training image" in method and "augmentation off" in method


def test_card_lists_the_operating_points_of_metrics_json(student):
    metrics = json.loads((student / "metrics.json").read_text())
    points = metrics["operating_points"]
    results = build_model_card(student).content.split("## Results")[1].split("## Limitations")[0]
    assert "optimistic" in results and "reliability_diagram.png" in results
    for label in LABELS:
        youden = points[label]["youden"]
        assert (f"| {label} | Youden's J max | {youden['threshold']:.3f} | {youden['sensitivity']:.3f} | "
                f"{youden['specificity']:.3f} |") in results
    del metrics["operating_points"]  # a metrics.json written before operating points existed
    (student / "metrics.json").write_text(json.dumps(metrics))
    assert "Youden" not in build_model_card(student).content

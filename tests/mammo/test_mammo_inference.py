"""MammoPredictor against the model's own forward on pixels prepared by hand: orientation, resize, normalisation,
view slots and the exam aggregation, for single- and multi-view models."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from transformers import AutoModelForImageClassification

from hf_deitcxr.mammo.builders import build_single_view_model
from hf_deitcxr.mammo.inference import MammoPredictor
from hf_deitcxr.mammo.synthetic import SyntheticMammoConfig, write_synthetic_mammo
from tests.helpers.mammo_models import (
    LABELS,
    multiview_model,
    save_standin,
    save_with_processors,
    tiny_vit_config,
)

SIZE = 32  # the models' input size; the exam is written at 48 px, so the predictor has to resize
SLOTS = ("L-CC", "L-MLO", "R-CC", "R-MLO")


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    """Single-view models (max and mean exam aggregation) and a multi-view model, saved with their processors."""
    root = tmp_path_factory.mktemp("mammo_inference_models")
    save_standin(tiny_vit_config(), root / "standin")
    folders = {}
    for aggregation in ("max", "mean"):
        torch.manual_seed(1)
        single = build_single_view_model(str(root / "standin"), LABELS, SIZE)
        with torch.no_grad():  # a head with some spread, so that views get visibly different probabilities
            single.classifier.weight.normal_(0, 1.0)
        single.config.mammography = {"orientation": "laterality", "exam_aggregation": aggregation}
        folders[f"single_{aggregation}"] = single
    folders["multi_view"] = multiview_model()
    return save_with_processors(folders, root, SIZE)


@pytest.fixture(scope="module")
def exam(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("mammo_inference_exam")
    write_synthetic_mammo(root, 1, seed=3, config=SyntheticMammoConfig(size=48))
    return {"-".join(p.stem.split("_")[1:]): p for p in (root / "images").glob("*.png")}


def pixels_by_hand(path: Path, slot: str, folder: Path, mirror_right: bool = True) -> torch.Tensor:
    """(1, 3, SIZE, SIZE): grey, right breasts mirrored (chest wall on the left), PIL bicubic resize, /255,
    normalised with the mean/std written in the folder's preprocessor_config.json."""
    processor = json.loads((folder / "preprocessor_config.json").read_text())
    grey = np.asarray(Image.open(path).convert("L"))
    if mirror_right and slot.startswith("R"):
        grey = grey[:, ::-1]
    resized = np.asarray(Image.fromarray(np.ascontiguousarray(grey)).resize((SIZE, SIZE), Image.Resampling.BICUBIC))
    unit = torch.tensor(resized, dtype=torch.float32) / 255.0
    mean = torch.tensor(processor["image_mean"], dtype=torch.float32).view(3, 1, 1)
    std = torch.tensor(processor["image_std"], dtype=torch.float32).view(3, 1, 1)
    return ((unit.expand(3, SIZE, SIZE) - mean) / std)[None]


@pytest.mark.parametrize("aggregation", ["max", "mean"])
def test_single_view_probabilities_are_the_models_softmax_and_the_exam_aggregates_them(models, exam, aggregation):
    folder = models[f"single_{aggregation}"]
    model = AutoModelForImageClassification.from_pretrained(folder).eval()
    with torch.no_grad():
        per_view = {slot: model(pixel_values=pixels_by_hand(exam[slot], slot, folder)).logits.softmax(-1)[0].numpy()
                    for slot in SLOTS}
        unmirrored = model(pixel_values=pixels_by_hand(exam["R-CC"], "R-CC", folder, False)).logits.softmax(-1)[0]
    # tolerance 1e-6 below: orientation, and which view is which, move these probabilities by more than 10x that
    assert np.abs(unmirrored.numpy() - per_view["R-CC"]).max() > 1e-5

    prediction = MammoPredictor(str(folder)).predict({slot: exam[slot] for slot in reversed(SLOTS)})
    assert prediction.views_used == list(SLOTS)
    for slot in SLOTS:
        np.testing.assert_allclose([prediction.per_view[slot][name] for name in LABELS], per_view[slot], atol=1e-6)
    stacked = np.stack([per_view[slot] for slot in SLOTS])
    if aggregation == "max":  # the distribution of the view with the highest P(malignant)
        expected = stacked[np.argmax(stacked[:, LABELS.index("malignant")])]
    else:
        expected = stacked.mean(axis=0)
    np.testing.assert_allclose([prediction.exam[name] for name in LABELS], expected, atol=1e-6)
    assert np.abs(stacked.max(axis=0) - stacked.min(axis=0)).min() > 1e-5  # the views do get different scores


def test_multi_view_probabilities_are_the_models_softmax_with_absent_views_masked(models, exam):
    folder = models["multi_view"]
    model = AutoModelForImageClassification.from_pretrained(folder).eval()
    given = ("L-CC", "R-CC", "R-MLO")  # L-MLO missing
    values = torch.zeros(1, len(SLOTS), 3, SIZE, SIZE)
    mask = torch.zeros(1, len(SLOTS), dtype=torch.bool)
    for slot in given:
        values[0, SLOTS.index(slot)] = pixels_by_hand(exam[slot], slot, folder)[0]
        mask[0, SLOTS.index(slot)] = True
    swapped = values[:, [2, 1, 0, 3]]  # the left and right CC views in each other's slots
    with torch.no_grad():
        expected = model(pixel_values=values, view_mask=mask).logits.softmax(-1)[0].numpy()
        other = model(pixel_values=swapped, view_mask=mask).logits.softmax(-1)[0].numpy()
    assert np.abs(other - expected).max() > 1e-5  # the slots matter to this model (10x the tolerance below)

    prediction = MammoPredictor(str(folder)).predict({slot: exam[slot] for slot in given})
    assert prediction.views_used == list(given) and prediction.per_view == {}
    np.testing.assert_allclose([prediction.exam[name] for name in LABELS], expected, atol=1e-6)

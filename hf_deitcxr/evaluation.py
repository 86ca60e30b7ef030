"""Evaluate a saved classifier folder on a dataset split: metrics JSON with intervals and operating points, the
per-image predictions CSV, and the confusion matrix, ROC and reliability plots."""

from __future__ import annotations

import csv
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm
from transformers import AutoConfig, AutoImageProcessor, AutoModelForImageClassification

from .data import load_radiograph_dataset
from .data.collate import RadiographCollator
from .data.image_cache import CachedImageDataset, image_references
from .data.input_spec import InputSpec
from .metrics.intervals import DEFAULT_NUM_RESAMPLES
from .metrics.report import write_evaluation_report

PREDICTIONS_FILE = "predictions.csv"


@dataclass
class ModelOnSplit:
    """A saved model (eval mode) and a split's images decoded with its saved preprocessing."""

    model: torch.nn.Module
    data: CachedImageDataset
    label_names: list[str]
    spec: InputSpec
    images: list[str | None]  # each image's file, in the data's order

    def collator(self) -> RadiographCollator:
        spec = self.spec
        return RadiographCollator(size=spec.size, mean=spec.mean, std=spec.std, num_channels=spec.num_channels)


def load_model_on_split(model_path: str, dataset: str, split: str) -> ModelOnSplit:
    """The model at `model_path` and `split` of `dataset` in the model's class order and input convention."""
    config = AutoConfig.from_pretrained(model_path)
    label_names = [config.id2label[i] for i in range(config.num_labels)]
    datasets = load_radiograph_dataset(dataset, class_names=label_names)
    if split not in datasets:
        raise ValueError(f"split {split!r} not in {dataset}; available: {list(datasets)}")
    return model_on_split(model_path, datasets[split])


def model_on_split(model_path: str | os.PathLike, split, cache_dir: str | None = None) -> ModelOnSplit:
    """The model at `model_path` and the images of a loaded split (`datasets.Dataset`, labels already in the model's
    class order), decoded with the model's saved preprocessing (into `cache_dir`, or the default image cache)."""
    model = AutoModelForImageClassification.from_pretrained(model_path).eval()
    processor = AutoImageProcessor.from_pretrained(model_path)
    label_names = [model.config.id2label[i] for i in range(model.config.num_labels)]
    spec = InputSpec.from_processor(processor, model.config.num_channels)
    data = CachedImageDataset.from_hf_dataset(split, size=spec.size, cache_dir=cache_dir,
                                              preprocessing=spec.preprocessing)
    return ModelOnSplit(model, data, label_names, spec, image_references(split))


@torch.inference_mode()
def predict_logits(model, dataset: CachedImageDataset, collator, batch_size: int = 32) -> np.ndarray:
    """The model's served logits (float64, (N, C)) on every image of `dataset`, in order."""
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, collate_fn=collator)
    chunks = [model(pixel_values=batch["pixel_values"]).logits.double()
              for batch in tqdm(loader, desc="predicting", unit="batch")]
    return torch.cat(chunks).numpy()


def predict_probabilities(model, dataset: CachedImageDataset, collator, batch_size: int = 32) -> np.ndarray:
    logits = torch.from_numpy(predict_logits(model, dataset, collator, batch_size))
    return logits.float().softmax(dim=-1).numpy()


def evaluate_model(
    model_path: str,
    dataset: str,
    split: str = "validation",
    output_dir: str | None = None,
    batch_size: int = 32,
    *,
    seed: int = 0,
    num_resamples: int = DEFAULT_NUM_RESAMPLES,
) -> dict:
    """Metrics of the model at `model_path` on `split` of `dataset`, with 95 % bootstrap intervals.

    Written to `output_dir` (default: `<model_path>/eval-<split>`): metrics.json, the plots and `predictions.csv`
    (one row per image). The intervals resample the split's patients (its `patient_id` column) with `seed`; images
    where the data has no patient ids.
    """
    loaded = load_model_on_split(model_path, dataset, split)
    data, label_names = loaded.data, loaded.label_names
    probabilities = predict_probabilities(loaded.model, data, loaded.collator(), batch_size)
    target = Path(output_dir) if output_dir else Path(model_path) / f"eval-{split}"
    report = write_evaluation_report(
        target, probabilities, data.labels.numpy(), label_names, sources=data.extras.get("source"),
        extra={"model": str(model_path), "dataset": str(dataset), "split": split},
        patient_ids=data.extras.get("patient_id"), seed=seed, num_resamples=num_resamples,
    )
    write_predictions_csv(target / PREDICTIONS_FILE, probabilities, data.labels.numpy(), label_names,
                          images=loaded.images, extras=data.extras)
    return report


def write_predictions_csv(path: str | Path, probabilities: np.ndarray, labels: np.ndarray, label_names: Sequence[str],
                          *, images: Sequence[str | None] | None = None,
                          extras: dict[str, Sequence] | None = None) -> Path:
    """One row per image: its file, extra columns (patient_id, source), true and predicted label, correctness and
    each class's probability (`prob_<class>`), in the data's order."""
    probabilities, labels = np.asarray(probabilities), np.asarray(labels)
    extras = dict(extras or {})
    if images is not None and len(images) != len(labels):
        raise ValueError(f"{len(images)} image references for {len(labels)} labels")
    header = ["row", "image", *extras, "label", "predicted", "correct", *(f"prob_{name}" for name in label_names)]
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        for row, (probs, label) in enumerate(zip(probabilities, labels, strict=True)):
            predicted = int(np.argmax(probs))
            writer.writerow([row, "" if images is None or images[row] is None else images[row],
                             *(values[row] for values in extras.values()), label_names[int(label)],
                             label_names[predicted], int(predicted == int(label)),
                             *(f"{p:.6f}" for p in probs)])
    return Path(path)

"""Evaluate a saved classifier folder on a dataset split: metrics JSON, confusion matrix and ROC plots."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm
from transformers import AutoImageProcessor, AutoModelForImageClassification

from .data import load_radiograph_dataset
from .data.collate import RadiographCollator
from .data.image_cache import CachedImageDataset
from .data.input_spec import InputSpec
from .metrics.intervals import DEFAULT_NUM_RESAMPLES
from .metrics.report import write_evaluation_report


@torch.inference_mode()
def predict_probabilities(model, dataset: CachedImageDataset, collator, batch_size: int = 32) -> np.ndarray:
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, collate_fn=collator)
    chunks = []
    for batch in tqdm(loader, desc="evaluating", unit="batch"):
        chunks.append(model(pixel_values=batch["pixel_values"]).logits.float().softmax(dim=-1))
    return torch.cat(chunks).numpy()


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

    Written to `output_dir` (default: `<model_path>/eval-<split>`). The intervals resample the split's patients
    (its `patient_id` column) with `seed`; images where the data has no patient ids.
    """
    model = AutoModelForImageClassification.from_pretrained(model_path).eval()
    processor = AutoImageProcessor.from_pretrained(model_path)
    label_names = [model.config.id2label[i] for i in range(model.config.num_labels)]
    datasets = load_radiograph_dataset(dataset, class_names=label_names)
    if split not in datasets:
        raise ValueError(f"split {split!r} not in {dataset}; available: {list(datasets)}")
    spec = InputSpec.from_processor(processor, model.config.num_channels)
    data = CachedImageDataset.from_hf_dataset(datasets[split], size=spec.size, preprocessing=spec.preprocessing)
    collator = RadiographCollator(size=spec.size, mean=spec.mean, std=spec.std, num_channels=spec.num_channels)
    probabilities = predict_probabilities(model, data, collator, batch_size)
    target = Path(output_dir) if output_dir else Path(model_path) / f"eval-{split}"
    return write_evaluation_report(
        target, probabilities, data.labels.numpy(), label_names, sources=data.extras.get("source"),
        extra={"model": str(model_path), "dataset": str(dataset), "split": split},
        patient_ids=data.extras.get("patient_id"), seed=seed, num_resamples=num_resamples,
    )

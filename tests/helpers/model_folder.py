"""A tiny trained-looking model folder, as `hf-deitcxr train` leaves it, for the model-card and Hub-push tests."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from hf_deitcxr import DeiTCXRConfig, DeiTCXRForImageClassificationWithTeacher, DenseNetConfig, make_image_processor
from hf_deitcxr.metrics.report import write_evaluation_report

from .tiny_models import LABELS, tiny_deit_kwargs

# Unusual values, so a test can tell they were read from the folder and not from defaults.
ALPHA, TAU, EPOCHS, IMAGE_SIZE = 0.7, 2.5, 3.0, 32


def save_tiny_model_folder(root: Path, with_metrics: bool = True) -> Path:
    """`root/teacher` (config + metrics only) and `root/student`: weights, code, processor, metrics, run files."""
    teacher = root / "teacher"
    DenseNetConfig(block_config=(6, 12, 24, 16), id2label=dict(enumerate(LABELS))).save_pretrained(teacher)
    (teacher / "metrics.json").write_text(json.dumps({"overall": {"accuracy": 0.875}}))

    student = root / "student"
    torch.manual_seed(0)
    config = DeiTCXRConfig(**tiny_deit_kwargs(distillation_type="soft", distillation_alpha=ALPHA,
                                              distillation_tau=TAU, teacher_name_or_path=str(teacher)))
    DeiTCXRForImageClassificationWithTeacher(config).save_pretrained(student)
    make_image_processor(image_size=IMAGE_SIZE).save_pretrained(student)
    if with_metrics:
        write_metrics(student)
    (student / "training_args.json").write_text(json.dumps({
        "model": {"stage": "distill", "model_name_or_path": None, "teacher_name_or_path": str(teacher),
                  "image_size": IMAGE_SIZE, "distillation_type": "soft", "distillation_alpha": ALPHA,
                  "distillation_tau": TAU},
        "data": {"dataset": str(root / "data" / "cxr3"), "eval_split": "validation", "balancing": "oversample",
                 "augment": True, "allow_leakage": False, "validation_fraction": 0.15, "train_subset": None},
    }))
    (student / "trainer_state.json").write_text(json.dumps({"epoch": EPOCHS, "num_train_epochs": EPOCHS,
                                                            "global_step": 12, "train_batch_size": 8}))
    return student


def write_metrics(folder: Path) -> dict:
    """metrics.json from the project's own report writer, on fixed probabilities: 3 classes, 2 sources."""
    rng = np.random.default_rng(0)
    labels = np.array([0, 1, 2] * 8)
    logits = rng.normal(size=(len(labels), 3)) + 1.5 * np.eye(3)[labels]
    probabilities = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    sources = ["kermany" if label < 2 else "armiro" for label in labels]  # a source holding one class only
    return write_evaluation_report(folder, probabilities, labels, LABELS, sources=sources,
                                   extra={"eval_split": "validation", "num_train_images": 96})

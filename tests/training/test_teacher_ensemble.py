"""Distilling from a teacher ensemble (`--teacher_name_or_path a,b`): parsing, loading, the mean logits, a run."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from transformers import AutoModelForImageClassification

from hf_deitcxr import DenseNetConfig, make_image_processor
from hf_deitcxr.model_card import build_model_card
from hf_deitcxr.models.densenet import DenseNetForImageClassification
from hf_deitcxr.training.arguments import parse_training_arguments
from hf_deitcxr.training.builders import load_trained_teacher
from hf_deitcxr.training.run import run_training
from hf_deitcxr.training.teacher_ensemble import TeacherEnsemble, teacher_paths
from tests.helpers.standins import save_cxr_standins
from tests.helpers.synthetic import CLASSES, write_imagefolder


def save_teacher(folder: Path, seed: int, labels=CLASSES, size: int = 32) -> Path:
    torch.manual_seed(seed)
    config = DenseNetConfig(growth_rate=8, block_config=[2, 2], num_init_features=16, image_size=size,
                            id2label=dict(enumerate(labels)), label2id={n: i for i, n in enumerate(labels)})
    DenseNetForImageClassification(config).save_pretrained(folder)
    make_image_processor(size).save_pretrained(folder)
    return folder


def test_teacher_paths_are_one_or_several_distinct_members():
    assert teacher_paths("a") == ["a"] and teacher_paths(" a , b ") == ["a", "b"]
    for bad, match in (("a,", "empty member"), ("a,,b", "empty member"), ("a,a", "twice")):
        with pytest.raises(ValueError, match=match):
            teacher_paths(bad)
    with pytest.raises(ValueError, match="at least two"):
        TeacherEnsemble([torch.nn.Identity()])


def test_an_ensemble_answers_with_its_members_mean_logits(tmp_path):
    first, second = save_teacher(tmp_path / "t0", 0), save_teacher(tmp_path / "t1", 1)
    ensemble, spec = load_trained_teacher(f"{first},{second}", CLASSES)
    single, single_spec = load_trained_teacher(str(first), CLASSES)
    assert isinstance(ensemble, TeacherEnsemble) and spec == single_spec
    pixels = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        members = [AutoModelForImageClassification.from_pretrained(p).eval()(pixel_values=pixels).logits
                   for p in (first, second)]
        torch.testing.assert_close(ensemble.eval()(pixel_values=pixels).logits, (members[0] + members[1]) / 2)
    assert not torch.allclose(members[0], members[1])  # two different teachers, so the mean is not either one


def test_members_must_share_classes_and_input(tmp_path):
    first = save_teacher(tmp_path / "t0", 0)
    other_size = save_teacher(tmp_path / "t48", 1, size=48)
    with pytest.raises(ValueError, match="different inputs"):
        load_trained_teacher(f"{first},{other_size}", CLASSES)
    other_order = save_teacher(tmp_path / "reordered", 2, labels=list(reversed(CLASSES)))
    with pytest.raises(ValueError, match="predicts"):
        load_trained_teacher(f"{first},{other_order}", CLASSES)


def test_a_student_distils_from_an_ensemble_and_its_card_says_so(tmp_path):
    data = write_imagefolder(tmp_path / "data", {"train": 12, "validation": 6})
    save_cxr_standins(tmp_path)
    teachers = f"{save_teacher(tmp_path / 't0', 0)},{save_teacher(tmp_path / 't1', 1)}"
    output = tmp_path / "student"
    run_training(*parse_training_arguments([
        "--stage", "distill", "--model_name_or_path", str(tmp_path / "deit-distilled-standin"),
        "--teacher_name_or_path", teachers, "--dataset", str(data), "--output_dir", str(output),
        "--image_size", "32", "--patch_size", "8", "--per_device_train_batch_size", "12", "--max_steps", "2",
        "--eval_strategy", "no", "--save_strategy", "no", "--seed", "0", "--use_cpu", "true",
    ]))
    student = AutoModelForImageClassification.from_pretrained(output)
    assert student.config.teacher_name_or_path == teachers
    card = build_model_card(output)
    assert "an ensemble of 2 teachers" in str(card) and str(tmp_path) not in str(card)  # no local paths in public

"""Augmented distillation from cached view logits (`--teacher_views K`): the teacher's cached logits of each view equal
its online logits on the very pixels the student gets, the trainer looks them up by (view, sample), the options are
validated, the recipe passes them on, and a tiny run trains end to end."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForImageClassification, TrainingArguments

from hf_deitcxr import (
    DeiTCXRConfig,
    DeiTCXRForImageClassificationWithTeacher,
    DenseNetConfig,
    DenseNetForImageClassification,
    make_image_processor,
)
from hf_deitcxr.data.augmentation import RadiographAugmentation
from hf_deitcxr.data.image_cache import CachedImageDataset
from hf_deitcxr.data.input_spec import InputSpec
from hf_deitcxr.data.view_bank import AugmentedViewBank, ViewBankCollator
from hf_deitcxr.experiments.recipe import CPU_RECIPE, stage_arguments
from hf_deitcxr.models.deit_cxr.image_processing_deit_cxr import GreyPreprocessing
from hf_deitcxr.training import run
from hf_deitcxr.training.arguments import DataArguments, ModelArguments, parse_training_arguments
from hf_deitcxr.training.teacher import FrozenTeacher, TeacherInputAdapter
from hf_deitcxr.training.trainer import DistillationTrainer
from tests.helpers.standins import save_cxr_standins
from tests.helpers.synthetic import write_imagefolder
from tests.helpers.tiny_models import LABELS, tiny_deit_kwargs
from tests.helpers.tolerances import SAME_FORWARD

SIZE = 32
STUDENT_SPEC = InputSpec.create([0.5], [0.25], 3, SIZE)
TEACHER_SPEC = InputSpec.create([0.485, 0.456, 0.406], [0.229, 0.224, 0.225], 3, SIZE)  # so the adapter converts


def images(count: int = 12) -> CachedImageDataset:
    generator = torch.Generator().manual_seed(0)
    pixels = torch.randint(0, 256, (count, 1, SIZE, SIZE), dtype=torch.uint8, generator=generator)
    return CachedImageDataset(pixels, [i % len(LABELS) for i in range(count)])


def bank(num_views: int = 3, data: CachedImageDataset | None = None) -> AugmentedViewBank:
    return AugmentedViewBank.build(data or images(), num_views, size=SIZE, augmentation=RadiographAugmentation(),
                                   seed=0, mean=STUDENT_SPEC.mean, std=STUDENT_SPEC.std, num_channels=3, chunk_size=5)


def tiny_densenet() -> DenseNetForImageClassification:
    torch.manual_seed(0)
    return DenseNetForImageClassification(DenseNetConfig(growth_rate=8, block_config=[2, 2], num_init_features=16,
                                                         num_labels=len(LABELS)))


def save_teacher(folder: Path, preprocessing: GreyPreprocessing | None = None) -> Path:
    """An untrained tiny teacher folder (weights, labels, image processor): enough to check the plumbing."""
    model = tiny_densenet()
    model.config.id2label, model.config.label2id = dict(enumerate(LABELS)), {name: i for i, name in enumerate(LABELS)}
    model.save_pretrained(folder)
    make_image_processor(SIZE, 3, preprocessing).save_pretrained(folder)
    return folder


def frozen_teacher() -> FrozenTeacher:
    return FrozenTeacher(tiny_densenet(), TeacherInputAdapter(STUDENT_SPEC, TEACHER_SPEC))


def test_cached_view_logits_equal_online_logits_and_are_looked_up_by_view_and_sample():
    views = bank(3)
    teacher = frozen_teacher()
    cache = teacher.cache_view_logits(views, batch_size=5)
    assert cache.shape == (3, 12, len(LABELS)) and cache.dtype == torch.float32
    for view in range(3):
        everything = torch.arange(12)
        online = teacher.online_logits(views.pixel_values(torch.full_like(everything, view), everything))
        torch.testing.assert_close(cache[view], online, **SAME_FORWARD)
    assert not torch.equal(cache[0], cache[1])  # the views differ, so do their logits

    view_index, sample_index = torch.tensor([2, 0, 1]), torch.tensor([4, 4, 11])
    pixels = views.pixel_values(view_index, sample_index)
    looked_up = teacher(pixels, sample_index, view_index)
    torch.testing.assert_close(looked_up, torch.stack([cache[2, 4], cache[0, 4], cache[1, 11]]), rtol=0, atol=0)
    with pytest.raises(ValueError, match="view_index"):
        teacher(pixels, sample_index)
    with pytest.raises(ValueError, match="batch_size"):
        teacher.cache_view_logits(views, batch_size=0)


def test_the_student_trains_on_bank_views_with_their_cached_teacher_logits(tmp_path, one_torch_thread):
    data = images()
    views = bank(3, data)
    teacher = frozen_teacher()
    teacher.cache_view_logits(views, batch_size=5)
    model_calls = []
    teacher.model.register_forward_pre_hook(lambda *args: model_calls.append(1))
    torch.manual_seed(0)
    student = DeiTCXRForImageClassificationWithTeacher(DeiTCXRConfig(**tiny_deit_kwargs(distillation_type="soft")))
    received = []
    student.register_forward_pre_hook(
        lambda module, args, kwargs: received.append((kwargs["pixel_values"].clone(), kwargs["teacher_logits"]))
        if module.training else None, with_kwargs=True)
    args = TrainingArguments(str(tmp_path), max_steps=4, per_device_train_batch_size=4, learning_rate=1e-2,
                             save_strategy="no", use_cpu=True, report_to="none", disable_tqdm=True,
                             remove_unused_columns=False, label_names=["labels"])
    DistillationTrainer(model=student, args=args, train_dataset=data, data_collator=ViewBankCollator(views, seed=0),
                        teacher=teacher).train()

    assert len(received) == 4 and not model_calls  # every step answered from the cache
    for pixel_values, teacher_logits in received:
        assert teacher_logits is not None
        # the cached logits are the teacher's on exactly the student's pixels
        torch.testing.assert_close(teacher_logits, teacher.online_logits(pixel_values), **SAME_FORWARD)


@pytest.mark.parametrize(("overrides", "message"), [
    ({"teacher_views": 2, "augment": False}, "--augment true"),
    ({"teacher_views": 2, "teacher_logit_cache": True}, "--teacher_logit_cache false"),
    ({"teacher_views": -1}, "teacher_views"),
    ({"augmentation_preset": "strong"}, "augmentation_preset"),
])
def test_view_options_are_validated(overrides, message):
    with pytest.raises(ValueError, match=message):
        DataArguments(dataset="data", **overrides)
    assert DataArguments(dataset="data", teacher_views=4).teacher_views == 4


def test_teacher_views_need_the_distill_stage(tmp_path):
    model_args = ModelArguments(stage="baseline")
    training_args = TrainingArguments(str(tmp_path), use_cpu=True, report_to="none")
    with pytest.raises(ValueError, match="--stage distill"):
        run.run_training(model_args, DataArguments(dataset=str(tmp_path / "absent"), teacher_views=2), training_args)


def test_recipe_passes_views_preset_and_student_options_to_the_student_stages(tmp_path):
    _, data_args, _ = stage_arguments("distill", "data", tmp_path, CPU_RECIPE, images_seen=64, teacher_dir=tmp_path)
    assert data_args.teacher_views == 0 and data_args.teacher_logit_cache and data_args.augmentation_preset == "default"
    recipe = CPU_RECIPE.with_overrides(augment=True, teacher_views=4, student_augmentation_preset="low_resolution",
                                       shifted_patch_tokenization=True, locality_self_attention=True)
    model_args, data_args, _ = stage_arguments("distill", "data", tmp_path, recipe, images_seen=64,
                                               teacher_dir=tmp_path)
    assert data_args.teacher_views == 4 and not data_args.teacher_logit_cache and data_args.augment
    assert data_args.augmentation_preset == "low_resolution"
    assert model_args.shifted_patch_tokenization and model_args.locality_self_attention
    model_args, data_args, _ = stage_arguments("baseline", "data", tmp_path, recipe, images_seen=64)
    assert data_args.teacher_views == 0 and data_args.augmentation_preset == "low_resolution"
    assert model_args.shifted_patch_tokenization and model_args.locality_self_attention
    model_args, data_args, _ = stage_arguments("teacher", "data", tmp_path, recipe, images_seen=64)
    assert data_args.teacher_views == 0 and data_args.augmentation_preset == "default"
    assert not model_args.shifted_patch_tokenization and not model_args.locality_self_attention
    with pytest.raises(ValueError, match="--augment true"):
        stage_arguments("distill", "data", tmp_path, CPU_RECIPE.with_overrides(teacher_views=2), images_seen=64,
                        teacher_dir=tmp_path)


def test_build_model_passes_the_student_options_on(monkeypatch):
    seen = {}
    monkeypatch.setattr(run, "build_student", lambda labels, **kwargs: seen.update(kwargs))
    run.build_model(ModelArguments(stage="baseline", shifted_patch_tokenization=True), LABELS)
    assert seen["shifted_patch_tokenization"] is True and seen["locality_self_attention"] is False
    run.build_model(ModelArguments(stage="baseline", locality_self_attention=True), LABELS)
    assert seen["shifted_patch_tokenization"] is False and seen["locality_self_attention"] is True


def test_a_tiny_distillation_run_with_two_teacher_views(tmp_path, one_torch_thread):
    data = write_imagefolder(tmp_path / "data", {"train": 6, "validation": 3})
    _, student_init = save_cxr_standins(tmp_path)
    teacher_dir = save_teacher(tmp_path / "teacher")

    output = tmp_path / "student"
    report = run.run_training(*parse_training_arguments([
        "--stage", "distill", "--dataset", str(data), "--output_dir", str(output), "--teacher_name_or_path",
        str(teacher_dir), "--model_name_or_path", str(student_init), "--image_size", str(SIZE), "--patch_size", "8",
        "--teacher_views", "2", "--augment", "true", "--augmentation_preset", "low_resolution",
        "--distillation_type", "soft", "--max_steps", "3", "--per_device_train_batch_size", "4",
        "--per_device_eval_batch_size", "16", "--eval_strategy", "no", "--save_strategy", "no", "--seed", "0",
        "--use_cpu", "true", "--bf16", "false", "--report_to", "none", "--disable_tqdm", "true",
        "--logging_steps", "1",
    ]))
    extra = report["extra"]
    assert extra["teacher_views"] == 2 and extra["global_step"] == 3
    assert extra["view_bank_build_s"] > 0 and extra["teacher_view_logits_s"] > 0
    recorded = json.loads((output / "training_args.json").read_text())
    assert recorded["view_bank"]["num_views"] == 2 and recorded["view_bank"]["num_images"] == 18
    assert recorded["view_bank"]["augmentation"]["rotation_degrees"] == 5.0  # the low-resolution preset
    losses = [e for e in json.loads((output / "trainer_state.json").read_text())["log_history"] if "loss" in e]
    assert len(losses) == 3 and all("loss_distill" in entry for entry in losses)
    student = AutoModelForImageClassification.from_pretrained(output).eval()
    with torch.no_grad():
        logits = student(pixel_values=torch.randn(2, 3, SIZE, SIZE)).logits
    assert logits.shape == (2, len(LABELS)) and bool(torch.isfinite(logits).all())


def test_the_benchmark_compares_view_caches_with_online_distillation(tmp_path, one_torch_thread, capsys):
    from scripts import bench_view_cache

    data = write_imagefolder(tmp_path / "data", {"train": 4, "validation": 3})
    # the CPU recipe's student preprocessing, which the teacher must share
    teacher_dir = save_teacher(tmp_path / "teacher", GreyPreprocessing(CPU_RECIPE.intensity_normalization,
                                                                       CPU_RECIPE.remove_border))
    output = tmp_path / "bench"
    assert bench_view_cache.main(["--dataset", str(data), "--teacher_dir", str(teacher_dir), "--output_dir",
                                  str(output), "--image_size", str(SIZE), "--images_seen", "32",
                                  "--views", "0,2", "--recipe_overrides", "locality_self_attention=true"]) == 0
    rows = json.loads((output / "bench_view_cache.json").read_text())["rows"]
    assert [row["views"] for row in rows] == [0, 2] and all(row["images_seen"] == 32 for row in rows)
    assert rows[0]["view_bank_build_s"] == 0 and rows[1]["view_bank_build_s"] > 0
    assert rows[1]["teacher_view_logits_s"] > 0 and set(rows[1]["per_source_accuracy"]) == {"site_a", "site_b"}
    printed = capsys.readouterr().out
    assert "CPU: " in printed and "| 0 (online) |" in printed and "| 1.00x | 1.00x |" in printed
    assert "| 2 |" in printed
    for run_dir in ("views-0", "views-2"):  # each K its own run, the views recorded with the run
        recorded = json.loads((output / run_dir / "training_args.json").read_text())
        assert recorded["data"]["teacher_views"] == int(run_dir[-1]) and recorded["data"]["augment"] is True
        assert recorded["data"]["augmentation_preset"] == "low_resolution"
        assert recorded["model"]["locality_self_attention"] is True  # --recipe_overrides reach every K
    with pytest.raises(ValueError, match="unknown recipe field"):
        bench_view_cache.ViewCacheArguments(dataset="d", teacher_dir="t", recipe_overrides="no_such_field=1")

"""The accelerator training benchmark (experiments/gpu_benchmark.py), run end to end on the CPU at a tiny size."""

import json

import pytest

from hf_deitcxr.experiments.gpu_benchmark import (
    GpuBenchmarkArguments,
    StepTimer,
    gpu_benchmark_main,
    peak_tflops,
    training_flops_per_image,
)
from hf_deitcxr.experiments.recipe import CPU_RECIPE
from tests.helpers.synthetic import write_imagefolder


def test_flops_per_image_add_the_teacher_forward_only_when_it_runs_each_step():
    recipe = CPU_RECIPE.with_overrides(image_size=32, patch_size=8)
    student = training_flops_per_image("distill", recipe, teacher_forward_per_step=False)
    distill = training_flops_per_image("distill", recipe, teacher_forward_per_step=True)
    teacher = training_flops_per_image("teacher", recipe, teacher_forward_per_step=False)
    # DeiT-tiny, 16 tokens + 2: forward ~ 2 x 5.5M params x 18 tokens; backward ~ 2x forward
    assert 0.3e9 < student < 1.5e9
    # the teacher's forward is about a third of its own training step (forward + 2x for backward)
    assert distill - student == pytest.approx(teacher / 3, rel=0.15)


def test_step_timer_uses_the_second_half_of_the_steps():
    timer = StepTimer()
    timer.times = [0.0, 5.0, 6.0, 7.0, 8.0, 9.0]  # a 5 s first step (warm-up), then 1 s steps
    assert timer.steady_images_per_s(32) == pytest.approx(32.0)
    assert StepTimer().steady_images_per_s(32) is None


def test_arguments_are_checked(tmp_path):
    with pytest.raises(ValueError, match="budgets"):
        GpuBenchmarkArguments(student_images_seen=0)
    with pytest.raises(ValueError, match="teacher_dir"):
        GpuBenchmarkArguments(teacher_dir=str(tmp_path))
    with pytest.raises(ValueError, match="unknown recipe field"):
        GpuBenchmarkArguments(overrides="tau=2")
    assert peak_tflops(123.0) == 123.0


def test_benchmark_trains_both_stages_and_reports_mfu(tmp_path):
    data = write_imagefolder(tmp_path / "data", {"train": 8, "validation": 4})
    out = tmp_path / "bench"
    argv = ["--dataset", str(data), "--output_dir", str(out), "--image_size", "32", "--patch_size", "8",
            "--overrides", "batch_size=8,teacher_batch_size=8,augment=false", "--teacher_images_seen", "16",
            "--student_images_seen", "24", "--peak_tflops", "1", "--dataloader_num_workers", "0"]
    assert gpu_benchmark_main(argv) == 0
    payload = json.loads((out / "bench_gpu.json").read_text())
    teacher, student = payload["rows"]
    assert (teacher["stage"], teacher["images_seen"]) == ("teacher", 16)
    assert (student["stage"], student["images_seen"]) == ("distill", 24)
    assert student["teacher_logit_cache"] and not student["augment"] and teacher["augment"]
    for row in (teacher, student):
        assert row["images_per_s_steady"] > 0 and 0 <= row["accuracy"] <= 1
        assert row["mfu_steady"] == pytest.approx(row["gflop_per_image"] * row["images_per_s_steady"] / 1e3)
        assert set(row["per_source_accuracy"]) == {"site_a", "site_b"}
    recipe = CPU_RECIPE.with_overrides(image_size=32, patch_size=8)  # the logit cache: no teacher forward per step
    assert student["gflop_per_image"] * 1e9 == pytest.approx(training_flops_per_image("distill", recipe, False))
    table = (out / "bench_gpu.md").read_text()
    assert "| teacher | 16 |" in table and "| distill | 24 |" in table and "1 TFLOP/s" in table

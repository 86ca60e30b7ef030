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


def deit_forward_flops(image: int, patch: int, hidden=192, layers=12, mlp=768, channels=3, labels=3):
    """(patch embedding, whole forward) FLOPs of DeiT-tiny counted by hand: 2 per multiply-add of each matmul."""
    patches = (image // patch) ** 2
    tokens = patches + 2  # + the class and distillation tokens
    embedding = 2 * channels * patch * patch * hidden * patches  # the patch conv, one matmul per patch
    layer = (2 * tokens * hidden * 3 * hidden  # q, k, v projections
             + 2 * 2 * tokens * tokens * hidden  # q k^T and (attention) v, summed over heads
             + 2 * tokens * hidden * hidden  # output projection
             + 2 * 2 * tokens * hidden * mlp)  # MLP up and down
    heads = 2 * 2 * hidden * labels  # class and distillation heads, one token each
    return embedding, embedding + layers * layer + heads


def densenet121_forward_flops(image: int, channels=3, growth=32, blocks=(6, 12, 24, 16), stem=64, bottleneck=4,
                              labels=3):
    """(stem conv, whole forward) FLOPs of torchvision's DenseNet-121 by the convolution formula
    2 x C_in x k^2 x C_out x H_out x W_out (batch norm, ReLU and pooling: no multiply-adds counted)."""
    side = (image + 2 * 3 - 7) // 2 + 1  # conv0: 7x7, stride 2, padding 3
    stem_flops = 2 * channels * 7 * 7 * stem * side * side
    flops = stem_flops
    side = (side + 2 * 1 - 3) // 2 + 1  # pool0: 3x3 max pool, stride 2, padding 1
    features = stem
    for index, count in enumerate(blocks):
        for _ in range(count):  # dense layer: 1x1 conv to 4k channels, then 3x3 conv to k, concatenated
            flops += 2 * features * bottleneck * growth * side * side
            flops += 2 * bottleneck * growth * 3 * 3 * growth * side * side
            features += growth
        if index < len(blocks) - 1:  # transition: 1x1 conv halving the channels, then 2x2 average pool
            flops += 2 * features * (features // 2) * side * side
            features //= 2
            side //= 2
    return stem_flops, flops + 2 * features * labels


def test_flops_per_image_match_a_hand_count_of_the_matmuls_and_convolutions():
    recipe = CPU_RECIPE.with_overrides(image_size=32, teacher_image_size=None, patch_size=8)
    student = training_flops_per_image("distill", recipe, teacher_forward_per_step=False)
    distill = training_flops_per_image("distill", recipe, teacher_forward_per_step=True)
    teacher = training_flops_per_image("teacher", recipe, teacher_forward_per_step=False)
    # A training step is the forward plus a backward of twice its FLOPs (the gradients of each layer's input and
    # of its weights), less the gradient of the pixels, which nothing needs: the first layer's input gradient.
    embedding, deit = deit_forward_flops(32, 8)
    stem, densenet = densenet121_forward_flops(32)
    assert student == 3 * deit - embedding
    assert teacher == 3 * densenet - stem
    assert distill == student + densenet  # the frozen teacher's forward, when the step runs it
    # a larger teacher input costs the teacher's stage and the distillation step its own size's FLOPs
    larger = recipe.with_overrides(teacher_image_size=64)
    stem64, densenet64 = densenet121_forward_flops(64)
    assert training_flops_per_image("teacher", larger, teacher_forward_per_step=False) == 3 * densenet64 - stem64
    assert training_flops_per_image("distill", larger, teacher_forward_per_step=True) == student + densenet64


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
    embedding, deit = deit_forward_flops(32, 8)  # the logit cache: no teacher forward per step
    assert student["gflop_per_image"] * 1e9 == pytest.approx(3 * deit - embedding)
    stem, densenet = densenet121_forward_flops(32)
    assert teacher["gflop_per_image"] * 1e9 == pytest.approx(3 * densenet - stem)
    table = (out / "bench_gpu.md").read_text()
    assert "| teacher | 16 |" in table and "| distill | 24 |" in table and "1 TFLOP/s" in table

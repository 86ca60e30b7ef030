"""The recipe's per-stage input sizes reach every experiment that trains a stage."""

import pytest

from hf_deitcxr.experiments.benchmark_runs import BenchmarkArguments
from hf_deitcxr.experiments.gpu_benchmark import GpuBenchmarkArguments
from hf_deitcxr.experiments.loso import LosoArguments
from hf_deitcxr.experiments.recipe import CPU_RECIPE, stage_arguments


@pytest.mark.parametrize("teacher_size, expected", [(None, 64), (96, 96)])
def test_the_teacher_stage_gets_the_teacher_size_and_the_students_keep_theirs(tmp_path, teacher_size, expected):
    recipe = CPU_RECIPE.with_overrides(image_size=64, teacher_image_size=teacher_size)
    sizes = {stage: stage_arguments(stage, "data", tmp_path / stage, recipe, images_seen=64,
                                    teacher_dir=tmp_path / "teacher")[0].image_size
             for stage in ("teacher", "distill", "baseline")}
    assert sizes == {"teacher": expected, "distill": 64, "baseline": 64}


def test_loso_trains_teachers_at_the_teacher_size():
    assert LosoArguments().image_size == CPU_RECIPE.image_size_for("teacher")


def test_benchmark_sizes_reach_its_recipe_and_summary():
    args = BenchmarkArguments(image_size=48, teacher_image_size=80, patch_size=8)
    assert (args.recipe().image_size, args.recipe().image_size_for("teacher")) == (48, 80)
    assert args.input_sizes_note() == "48 px (student patch 8; teachers at 80 px)"
    same = BenchmarkArguments(image_size=48, teacher_image_size=None, patch_size=8)
    assert same.recipe().image_size_for("teacher") == 48 and same.input_sizes_note() == "48 px (student patch 8)"


def test_the_gpu_run_trains_both_stages_at_its_size_unless_told_otherwise():
    assert GpuBenchmarkArguments(image_size=224).recipe().image_size_for("teacher") == 224
    told = GpuBenchmarkArguments(image_size=224, overrides="teacher_image_size=256").recipe()
    assert told.image_size_for("teacher") == 256


def test_another_student_size_takes_the_teacher_along_unless_told():
    assert CPU_RECIPE.teacher_image_size is not None  # the recipe's teacher has its own input size
    assert CPU_RECIPE.at_size(CPU_RECIPE.image_size).image_size_for("teacher") == CPU_RECIPE.teacher_image_size
    assert CPU_RECIPE.at_size(32).image_size_for("teacher") == 32
    assert CPU_RECIPE.at_size(32, 48).image_size_for("teacher") == 48
    assert BenchmarkArguments().recipe().image_size_for("teacher") == CPU_RECIPE.teacher_image_size


def test_plain_and_spt_methods_fix_the_students_patch_embedding_whatever_the_recipe(tmp_path):
    from hf_deitcxr.experiments.benchmark_runs import METHODS

    recipe = BenchmarkArguments().recipe()
    for method, spt in (("distill_plain", False), ("baseline_plain", False), ("distill_spt", True),
                        ("baseline_spt", True)):
        stage, overrides = METHODS[method]
        model_args = stage_arguments(stage, "data", tmp_path / method, recipe.with_overrides(**overrides),
                                     images_seen=64, teacher_dir=tmp_path / "teacher")[0]
        assert (model_args.shifted_patch_tokenization, model_args.locality_self_attention) == (spt, False), method


def stage_data_arguments(tmp_path, recipe):
    return {stage: stage_arguments(stage, "data", tmp_path / stage, recipe, images_seen=64,
                                   teacher_dir=tmp_path / "teacher")[1] for stage in ("teacher", "distill", "baseline")}


def test_processing_variants_are_per_stage_and_their_targets_need_cached_logits(tmp_path):
    recipe = CPU_RECIPE.with_overrides(processing_variants=2, teacher_processing_variants=3, variant_targets="original")
    data = stage_data_arguments(tmp_path, recipe)
    assert {stage: (d.processing_variants, d.variant_targets) for stage, d in data.items()} == {
        "teacher": (3, "own"), "distill": (2, "original"), "baseline": (2, "own")}
    # an augmenting student distils online: no cached logits for the originals to share
    augmented = stage_data_arguments(tmp_path, recipe.with_overrides(augment=True))["distill"]
    assert (augmented.processing_variants, augmented.variant_targets) == (2, "own")
    off = stage_data_arguments(tmp_path, recipe.with_overrides(processing_variants=0))["distill"]
    assert (off.processing_variants, off.variant_targets) == (0, "own")


def test_the_cpu_recipe_gives_variants_to_the_student_only(tmp_path):
    data = stage_data_arguments(tmp_path, CPU_RECIPE)
    assert data["teacher"].processing_variants == 0
    assert (data["distill"].processing_variants, data["distill"].variant_targets) == (2, "original")


def test_loso_passes_the_teachers_and_the_students_variants_separately():
    default = LosoArguments().recipe()
    assert (default.teacher_processing_variants, default.processing_variants) == (
        CPU_RECIPE.teacher_processing_variants, CPU_RECIPE.processing_variants)
    told = LosoArguments(processing_variants=4, student_processing_variants=0).recipe()
    assert (told.processing_variants_for("teacher"), told.processing_variants_for("distill")) == (4, 0)
    assert told.image_size_for("teacher") == LosoArguments().image_size

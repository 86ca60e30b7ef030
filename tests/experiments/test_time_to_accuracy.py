"""`hf-deitcxr benchmark --budgets`: what it trains (with a recording stand-in for `run_training`), resuming, the
summary computed from the rows, single-budget mode untouched, and one tiny real run of the small-data methods."""

import json
import math
from pathlib import Path

import numpy as np
import pytest
from transformers import HfArgumentParser

from hf_deitcxr.cli import main
from hf_deitcxr.experiments import benchmark_runs, time_to_accuracy
from hf_deitcxr.experiments.benchmark import BenchmarkArguments, run_benchmark
from hf_deitcxr.experiments.recipe import CPU_RECIPE
from hf_deitcxr.experiments.time_to_accuracy import budget_runs
from hf_deitcxr.hardware import cpu_description
from hf_deitcxr.metrics.intervals import SUMMARY_KEYS
from tests.helpers.synthetic import write_imagefolder

FAKE_CPU = "Test CPU 9000; 2 logical CPUs"


def fake_report(model_args, data_args, training_args) -> dict:
    """A metrics.json whose numbers depend on what was asked, so that a mix-up shows in the tables."""
    steps, seed = training_args.max_steps, training_args.seed
    small_data = model_args.shifted_patch_tokenization and model_args.locality_self_attention
    f1 = 0.3 + 0.01 * steps + 0.05 * seed + 0.1 * (model_args.stage == "distill") + 0.02 * small_data
    runtime = (20.0 if model_args.stage == "teacher" else 6.0) * steps + seed
    entry = {"low": f1 - 0.1, "high": f1 + 0.1}
    return {
        "overall": {"accuracy": f1 + 0.1, "macro_f1": f1, "macro_auc": 0.9,
                    "per_class": {"covid": {"sensitivity": 0.5}}},
        "per_source": {"site_a": {"accuracy": f1 + 0.05}, "site_b": {"accuracy": f1 - 0.05}},
        "extra": {"train_runtime_s": runtime, "num_train_images": 48, "train_samples_per_second": 1.0,
                  # a cached distillation's teacher-logit pass, outside the train loop
                  **({"teacher_logit_cache_s": 3.0 + seed} if model_args.stage == "distill" else {})},
        "intervals": {"overall": {"resampled": "patient", "confidence": 0.95, "num_resamples": 2000,
                                  **{key: entry for key in SUMMARY_KEYS}},
                      "per_source": {s: {"accuracy": entry} for s in ("site_a", "site_b")}},
    }


@pytest.fixture
def fake_training(monkeypatch):
    """Replace the training by a recorder that writes the run's config.json and metrics.json; returns the calls."""
    from hf_deitcxr.training import run

    calls = []

    def fake_run_training(model_args, data_args, training_args):
        report = fake_report(model_args, data_args, training_args)
        calls.append({"stage": model_args.stage, "dir": training_args.output_dir, "steps": training_args.max_steps,
                      "seed": training_args.seed, "teacher": model_args.teacher_name_or_path,
                      "spt": model_args.shifted_patch_tokenization, "lsa": model_args.locality_self_attention,
                      "distillation_type": model_args.distillation_type, "train_subset": data_args.train_subset})
        out = Path(training_args.output_dir)
        out.mkdir(parents=True, exist_ok=True)
        (out / "config.json").write_text("{}")  # what the single-budget mode checks its teacher by
        (out / "metrics.json").write_text(json.dumps(report))
        return report

    monkeypatch.setattr(run, "run_training", fake_run_training)
    monkeypatch.setattr(benchmark_runs, "count_parameters", lambda model_dir: 5_000_000)
    monkeypatch.setattr(benchmark_runs, "cpu_latency_ms", lambda *args, **kwargs: 1.5)
    monkeypatch.setattr(time_to_accuracy, "cpu_description", lambda: FAKE_CPU)
    return calls


def budget_args(out, **overrides) -> BenchmarkArguments:
    options = dict(dataset="data", output_dir=str(out), budgets="32,96", train_sizes="all", seeds="0,1",
                   methods="teacher,baseline,distill_soft,distill_small_data", teacher_images_seen=64)
    return BenchmarkArguments(**{**options, **overrides})


def test_budget_mode_trains_one_teacher_per_seed_and_every_method_at_every_budget(tmp_path, fake_training):
    out = tmp_path / "bench"
    rows = run_benchmark(budget_args(out))
    calls = fake_training
    shared = [c for c in calls if c["dir"].endswith("-teacher/teacher")]
    # one students' teacher per seed, at teacher_images_seen (64 images = 2 steps of 32), in its own folder
    assert sorted((c["dir"], c["steps"], c["seed"]) for c in shared) == [
        (str(out / "runs" / f"nall-seed{seed}-teacher" / "teacher"), 2, seed) for seed in (0, 1)]
    runs = [c for c in calls if c not in shared]
    assert sorted((c["dir"], c["steps"]) for c in runs) == sorted(
        (str(out / "runs" / f"nall-seed{seed}-b{budget}" / method), math.ceil(budget / 32))
        for budget in (32, 96) for seed in (0, 1) for method in ("teacher", "baseline", "distill_soft",
                                                                 "distill_small_data"))
    for c in runs:
        distilled = c["stage"] == "distill"
        assert c["teacher"] == (str(out / "runs" / f"nall-seed{c['seed']}-teacher" / "teacher") if distilled else None)
        # students have the recipe's architecture unless the method overrides it; teachers have no such fields
        small_data, student = c["dir"].endswith("small_data"), c["stage"] != "teacher"
        assert c["spt"] is (small_data or (student and CPU_RECIPE.shifted_patch_tokenization))
        assert c["lsa"] is (small_data or (student and CPU_RECIPE.locality_self_attention))
        assert c["train_subset"] is None
    assert {c["distillation_type"] for c in runs if c["stage"] == "distill"} == {"soft"}

    assert len(rows) == 16 and all(r["cpu"] == FAKE_CPU for r in rows)
    assert sorted((r["images_seen"], r["seed"], r["method"]) for r in rows) == sorted(
        (b, s, m) for b in (32, 96) for s in (0, 1) for m in ("teacher", "baseline", "distill_soft",
                                                                "distill_small_data"))
    for r in rows:
        teacher_s = 20.0 * 2 + r["seed"]  # the fake teacher's runtime at 2 steps
        assert r.get("teacher_train_s") == (teacher_s if r["method"].startswith("distill") else None)
        # the students' teacher's input size: the recipe's at the benchmark's image size
        assert r.get("teacher_image_size") == (CPU_RECIPE.image_size_for("teacher") if r["method"].startswith(
            "distill") else None)
        assert r["train_runtime_s"] == (20.0 if r["method"] == "teacher" else 6.0) * math.ceil(r["images_seen"] / 32) \
            + r["seed"]

    # a rerun trains nothing; a new budget trains only its runs, from the teachers already there
    calls.clear()
    assert len(run_benchmark(budget_args(out))) == 16 and calls == []
    rows = run_benchmark(budget_args(out, budgets="96,32,160"))
    assert sorted((c["dir"].split("/")[-2], c["dir"].split("/")[-1]) for c in calls) == sorted(
        (f"nall-seed{s}-b160", m) for s in (0, 1) for m in ("teacher", "baseline", "distill_soft",
                                                             "distill_small_data"))
    assert len(rows) == 24
    assert {r["teacher_train_s"] for r in rows if r["images_seen"] == 160 and r["method"] == "distill_soft"} == {40, 41}


def expected_table_row(rows: list[dict], method: str, budget: int) -> str:
    """The time_to_accuracy.md row of (method, budget), recomputed here from the result rows."""
    group = [r for r in rows if r["method"] == method and r["images_seen"] == budget]
    teacher = [r for r in rows if r["method"] == "teacher" and r["images_seen"] == budget]
    student_s = [r["train_runtime_s"] + r["teacher_logits_s"] for r in group]  # the logit pass is the student's
    minutes = np.mean(student_s) / 60
    teacher_minutes = np.mean([r["train_runtime_s"] for r in teacher]) / 60
    distilled = method.startswith("distill")
    assert all(r["teacher_logits_s"] == (3.0 + r["seed"] if distilled else 0.0) for r in group)
    with_teacher = (np.mean([s + r["teacher_train_s"] for s, r in zip(student_s, group, strict=True)]) / 60
                    if distilled else None)
    wall = np.mean([r["wall_s"] for r in group]) / 60
    ratio = f"{minutes / teacher_minutes:.2f}×" + (
        f" ({with_teacher / teacher_minutes:.2f}× incl. teacher)" if distilled else "")
    f1 = [r["macro_f1"] for r in group]
    lows = [r["intervals"]["macro_f1"][0] for r in group]
    highs = [r["intervals"]["macro_f1"][1] for r in group]
    sources = [np.mean([r["per_source_accuracy"][s] for r in group]) for s in ("site_a", "site_b")]
    label = f"{method} ({group[0]['teacher_image_size']}-px teacher)" if distilled else method
    cells = [label, str(budget), f"{minutes:.2f}", f"{with_teacher:.2f}" if distilled else "n/a", f"{wall:.2f}",
             ratio, f"{np.mean(f1):.3f} [{min(f1):.3f}–{max(f1):.3f}]", str(len(group)),
             f"{min(lows):.3f}–{max(highs):.3f}"] + [f"{v:.3f}" for v in sources]
    return "| " + " | ".join(cells) + " |"


def test_summary_holds_the_numbers_of_the_rows_and_names_the_cpu(tmp_path, fake_training):
    out = tmp_path / "bench"
    rows = run_benchmark(budget_args(out))
    text = (out / "time_to_accuracy.md").read_text()
    for method in ("teacher", "baseline", "distill_soft", "distill_small_data"):
        for budget in (32, 96):
            assert expected_table_row(rows, method, budget) in text
    assert f"CPU: {FAKE_CPU}." in text and "### N = all" in text and "trained on 64 images" in text
    assert "| teacher | 32 | " in text and "| 1.00× |" in text  # the teacher against itself
    assert (out / "time_to_accuracy.png").stat().st_size > 1000
    assert not (out / "benchmark.md").exists()  # the N tables would mix budgets
    # the rows of an older benchmark without images_seen read as its --images_seen
    legacy = {key: value for key, value in rows[0].items() if key not in ("images_seen", "cpu")}
    points = time_to_accuracy.time_points([legacy], default_images_seen=9600)
    assert list(points) == [("all", legacy["method"], 9600, None)]
    assert "not recorded" in time_to_accuracy.describe_cpus([legacy])


def test_single_budget_mode_trains_and_records_as_before(tmp_path, fake_training):
    out = tmp_path / "bench"
    args = BenchmarkArguments(dataset="data", output_dir=str(out), methods="teacher,distill_soft",
                              train_sizes="24,all", seeds="0,1", multi_seed_below=30, images_seen=64)
    rows = run_benchmark(args)
    runs = [("n24-seed0", "teacher"), ("n24-seed0", "distill_soft"), ("n24-seed1", "teacher"),
            ("n24-seed1", "distill_soft"), ("nall-seed0", "teacher"), ("nall-seed0", "distill_soft")]
    assert [(c["dir"], c["steps"]) for c in fake_training] == [(str(out / "runs" / d / m), 2) for d, m in runs]
    assert all(c["teacher"] == str(out / "runs" / c["dir"].split("/")[-2] / "teacher")
               for c in fake_training if c["stage"] == "distill")
    assert {tuple(sorted(r)) for r in rows} == {tuple(sorted([
        "method", "train_size", "seed", "num_train_images", "accuracy", "macro_f1", "macro_auc", "sensitivity",
        "per_source_accuracy", "train_runtime_s", "wall_s", "train_images_per_s", "parameters", "latency_ms_batch1",
        "image_size", "intervals", "teacher_logits_s"]))}
    assert (out / "benchmark.md").is_file() and not (out / "time_to_accuracy.md").exists()
    assert BenchmarkArguments(dataset="x").method_list == ["teacher", "baseline", "distill_hard", "distill_soft"]

    # budget rows in the same file are not single-budget runs: that mode neither skips nor tabulates them
    run_benchmark(budget_args(out, budgets="64", seeds="0", methods="distill_soft"))
    fake_training.clear()
    assert len(run_benchmark(args)) == 6 and fake_training == []


@pytest.mark.parametrize("budgets", ["0", "100,x", ",", "-5"])
def test_bad_budgets_are_refused(budgets):
    with pytest.raises(ValueError, match="budgets"):
        BenchmarkArguments(dataset="x", budgets=budgets)


def test_the_documented_command_line_plans_every_seed_at_every_budget():
    (args,) = HfArgumentParser(BenchmarkArguments).parse_args_into_dataclasses(args=[
        "--budgets", "4800,9600,20000", "--train_sizes", "all", "--seeds", "0,1,2",
        "--methods", "teacher,baseline,distill_soft,distill_small_data"])
    assert args.budget_list == [4800, 9600, 20000] and args.teacher_images_seen == 4800
    assert budget_runs(args) == [("all", b, s) for b in (4800, 9600, 20000) for s in (0, 1, 2)]
    assert args.method_list == ["teacher", "baseline", "distill_soft", "distill_small_data"]


def test_small_data_methods_train_for_real_with_spt_and_lsa(tmp_path, capsys):
    data = write_imagefolder(tmp_path / "data", {"train": 8, "validation": 6})
    out = tmp_path / "bench"
    argv = ["benchmark", "--dataset", str(data), "--output_dir", str(out), "--budgets", "32", "--seeds", "0",
            "--train_sizes", "all", "--methods", "baseline_small_data,distill_small_data",
            "--teacher_images_seen", "32", "--image_size", "32", "--latency_repeats", "1"]
    assert main(argv) == 0
    teacher_size = CPU_RECIPE.at_size(32).image_size_for("teacher")  # a distilled series names its teacher's size
    assert f"| distill_small_data ({teacher_size}-px teacher) | 32 |" in capsys.readouterr().out  # summary printed
    rows = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert sorted(r["method"] for r in rows) == ["baseline_small_data", "distill_small_data"]
    teacher_dir = out / "runs" / "nall-seed0-teacher" / "teacher"
    teacher_s = json.loads((teacher_dir / "metrics.json").read_text())["extra"]["train_runtime_s"]
    for r in rows:
        config = json.loads((out / "runs" / "nall-seed0-b32" / r["method"] / "config.json").read_text())
        assert config["shifted_patch_tokenization"] is True and config["locality_self_attention"] is True
        assert r["images_seen"] == 32 and r["cpu"] == cpu_description() and 0 <= r["macro_f1"] <= 1
        assert r.get("teacher_train_s") == (teacher_s if r["method"] == "distill_small_data" else None)
    distilled = json.loads((out / "runs" / "nall-seed0-b32" / "distill_small_data" / "config.json").read_text())
    assert distilled["teacher_name_or_path"] == str(teacher_dir) and distilled["distillation_type"] == "soft"
    assert (out / "time_to_accuracy.png").stat().st_size > 1000


def test_cpu_description_has_one_copy_that_names_the_machine():
    import os

    from scripts import bench_view_cache

    described = cpu_description()
    assert f"{os.cpu_count()} logical CPUs" in described and "torch threads" in described and "flags:" in described
    assert bench_view_cache.cpu_description is cpu_description


def test_spt_only_methods_switch_on_shifted_patches_and_leave_attention_stock(tmp_path, fake_training):
    run_benchmark(budget_args(tmp_path / "bench", budgets="32", seeds="0", methods="distill_spt,baseline_spt"))
    students = {c["dir"].split("/")[-1]: c for c in fake_training if c["stage"] != "teacher"}
    assert set(students) == {"distill_spt", "baseline_spt"}
    assert all(c["spt"] is True and c["lsa"] is False for c in students.values())
    assert students["distill_spt"]["distillation_type"] == "soft" and students["baseline_spt"]["teacher"] is None


def test_benchmarks_with_teachers_of_two_sizes_pool_into_one_summary_with_a_series_each(tmp_path, fake_training):
    small = run_benchmark(budget_args(tmp_path / "t32", teacher_image_size=32, methods="teacher,distill_soft"))
    large = run_benchmark(budget_args(tmp_path / "t48", teacher_image_size=48, methods="distill_soft"))
    assert {r["teacher_image_size"] for r in small if r["method"] == "distill_soft"} == {32}
    assert {r["teacher_image_size"] for r in large} == {48}
    pooled = small + large
    points = time_to_accuracy.time_points(pooled, default_images_seen=9600)
    assert sorted(k for k in points if k[2] == 32) == [
        ("all", "distill_soft", 32, 32), ("all", "distill_soft", 32, 48), ("all", "teacher", 32, None)]
    assert points[("all", "distill_soft", 96, 48)]["macro_f1"] == pytest.approx(
        np.mean([r["macro_f1"] for r in large if r["images_seen"] == 96]))
    text = time_to_accuracy.time_to_accuracy_markdown(pooled, budget_args(tmp_path / "pooled"))
    assert "| distill_soft (32-px teacher) | 32 | " in text and "| distill_soft (48-px teacher) | 96 | " in text
    assert "(32 px, 48 px)" in text and "rows are at 32 px" in text
    # one benchmark's teachers are all of one size: no pooling note
    assert "pooled here" not in time_to_accuracy.time_to_accuracy_markdown(small, budget_args(tmp_path / "t32"))
    time_to_accuracy.plot_time_to_accuracy(pooled, tmp_path / "pooled.png", 9600)
    assert (tmp_path / "pooled.png").stat().st_size > 1000


@pytest.mark.parametrize("methods", ["teacher,distill_soft", "distill_soft,teacher"])
def test_the_teacher_row_at_the_students_teacher_budget_is_that_teacher_trained_once(tmp_path, fake_training, methods):
    out = tmp_path / "bench"
    rows = run_benchmark(budget_args(out, budgets="32,64", seeds="0", methods=methods))
    teacher_calls = [c for c in fake_training if c["stage"] == "teacher"]
    shared = str(out / "runs" / "nall-seed0-teacher" / "teacher")
    # the 32-image teacher and the students' 64-image teacher, nothing at 64 twice
    assert sorted((c["dir"], c["steps"]) for c in teacher_calls) == sorted(
        [(str(out / "runs" / "nall-seed0-b32" / "teacher"), 1), (shared, 2)])
    (row,) = [r for r in rows if r["method"] == "teacher" and r["images_seen"] == 64]
    report = json.loads((Path(shared) / "metrics.json").read_text())
    assert row["macro_f1"] == report["overall"]["macro_f1"] and row["students_teacher"] is True
    assert row["train_runtime_s"] == report["extra"]["train_runtime_s"] and row["wall_s"] is not None
    students = [r for r in rows if r["method"] == "distill_soft"]
    assert {r["teacher_train_s"] for r in students} == {row["train_runtime_s"]}
    # a later process finds the 64-image teacher (and its wall time) on disk: it trains only the 32-image one
    (out / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows if r["method"] != "teacher"))
    fake_training.clear()
    again = run_benchmark(budget_args(out, budgets="32,64", seeds="0", methods=methods))
    assert [c["dir"] for c in fake_training] == [str(out / "runs" / "nall-seed0-b32" / "teacher")]
    (row_again,) = [r for r in again if r["method"] == "teacher" and r["images_seen"] == 64]
    assert row_again["wall_s"] == row["wall_s"] and row_again["macro_f1"] == row["macro_f1"]


def test_single_budget_mode_trains_the_teacher_for_its_own_budget_when_given(tmp_path, fake_training):
    out = tmp_path / "bench"
    args = BenchmarkArguments(dataset="data", output_dir=str(out), methods="teacher,distill_soft", train_sizes="all",
                              seeds="0", images_seen=96, teacher_images_seen=32)
    run_benchmark(args)
    assert [(c["stage"], c["steps"]) for c in fake_training] == [("teacher", 1), ("distill", 3)]
    assert "Budget: 96 training images seen per run (32 for the teacher), " in (out / "benchmark.md").read_text()
    # by default every run of this mode has --images_seen, the teacher too; with --budgets the quickstart teacher's
    assert BenchmarkArguments(dataset="x", images_seen=96).teacher_images_seen == 96
    assert BenchmarkArguments(dataset="x", budgets="96").teacher_images_seen == 4800

"""`hf-deitcxr benchmark`: a tiny real run on synthetic data (tables, curve, resume) and its argument checks."""

import json

import numpy as np
import pytest

from hf_deitcxr.cli import main
from hf_deitcxr.experiments.benchmark import (
    BenchmarkArguments,
    benchmark_rows,
    curve_cell,
    curve_points,
    full_table,
    gap_table,
    planned_runs,
    summary_markdown,
)
from hf_deitcxr.experiments.benchmark_runs import row_intervals
from hf_deitcxr.experiments.recipe import CPU_RECIPE, stage_arguments
from hf_deitcxr.metrics.report import write_evaluation_report
from tests.helpers.synthetic import write_imagefolder
from tests.helpers.tiny_models import LABELS


def test_planned_runs_use_every_seed_only_for_small_sizes():
    args = BenchmarkArguments(dataset="x", train_sizes="250,500,1000,all", seeds="0,1", multi_seed_below=1000)
    assert planned_runs(args) == [(250, 0), (250, 1), (500, 0), (500, 1), (1000, 0), ("all", 0)]


def test_every_seed_at_all_adds_the_full_split_seeds():
    args = BenchmarkArguments(dataset="x", train_sizes="250,all", seeds="0,1,2", multi_seed_below=100,
                              every_seed_at_all=True)
    assert planned_runs(args) == [(250, 0), ("all", 0), ("all", 1), ("all", 2)]


@pytest.mark.parametrize("bad", [dict(methods="teacher,vit"), dict(train_sizes="100,-5"), dict(images_seen=0)])
def test_bad_benchmark_arguments_are_refused(bad):
    with pytest.raises(ValueError):
        BenchmarkArguments(dataset="x", **bad)


def test_budget_is_the_same_number_of_steps_whatever_the_data_size(tmp_path):
    _, data_args, training_args = stage_arguments("baseline", "data", tmp_path, CPU_RECIPE, images_seen=1000,
                                                  train_subset=250)
    assert training_args.max_steps == -(-1000 // CPU_RECIPE.batch_size) and data_args.train_subset == 250
    with pytest.raises(ValueError, match="exactly one training budget"):
        stage_arguments("baseline", "data", tmp_path, CPU_RECIPE, epochs=1, images_seen=1000)


def test_benchmark_runs_end_to_end_and_resumes(tmp_path, capsys):
    data = write_imagefolder(tmp_path / "data", {"train": 16, "validation": 6})
    out = tmp_path / "bench"
    argv = ["benchmark", "--dataset", str(data), "--output_dir", str(out), "--methods",
            "teacher,distill_soft", "--train_sizes", "24,all", "--seeds", "0,1", "--multi_seed_below", "30",
            "--images_seen", "32", "--image_size", "32", "--latency_repeats", "2"]
    assert main(argv) == 0
    rows = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    # N=24 with both seeds, N=all with the first: 3 runs x 3 methods, each on the patient subset asked for
    assert sorted((r["train_size"], r["seed"], r["method"]) for r in rows) == sorted(
        (size, seed, method) for size, seed in [("24", 0), ("24", 1), ("all", 0)]
        for method in ("teacher", "distill_soft")
    )
    assert {r["num_train_images"] for r in rows if r["train_size"] == "all"} == {48}
    assert all(r["num_train_images"] < 48 for r in rows if r["train_size"] == "24")
    assert all(0 <= r["macro_f1"] <= 1 and r["parameters"] > 0 and r["latency_ms_batch1"] > 0 for r in rows)
    assert set(rows[0]["per_source_accuracy"]) == {"site_a", "site_b"}
    assert all(set(r["intervals"]["per_source_accuracy"]) == {"site_a", "site_b"} for r in rows)
    table = (out / "benchmark.md").read_text()
    assert "| distill_soft |" in table and "N=all" in table
    assert (out / "data_efficiency.png").stat().st_size > 1000
    assert [p[4] for p in curve_points(rows)["teacher"]] == [2, 1]  # seeds per N

    # a rerun finds every run done and trains nothing
    capsys.readouterr()
    assert main(argv) == 0
    assert "[benchmark] N=" not in capsys.readouterr().out
    assert len((out / "results.jsonl").read_text().splitlines()) == len(rows)


def test_gap_table_pairs_each_student_with_the_baseline_and_teacher_of_its_own_seed():
    rows = [bench_row("teacher", 0, 0.80, None, "24"), bench_row("teacher", 1, 0.90, None, "24"),
            bench_row("baseline", 0, 0.50, None, "24"), bench_row("baseline", 1, 0.70, None, "24"),
            bench_row("distill_soft", 0, 0.60, None, "24"), bench_row("distill_soft", 1, 0.65, None, "24"),
            bench_row("distill_soft", 0, 0.70, None), bench_row("teacher", 0, 0.75, None)]
    table = gap_table(rows)
    # seed 0: +0.10 and +0.20; seed 1: -0.05 and +0.25 (not the difference of the means alone)
    assert "| 24 | distill_soft | +0.025 [-0.050 to +0.100], 2 pairs | +0.225 [+0.200 to +0.250], 2 pairs |" in table
    assert "| all | distill_soft | n/a | +0.050 (1 pair) |" in table
    assert gap_table([bench_row("teacher", 0, 0.8, None)]) == ""
    assert "paired by seed" in summary_markdown(rows, BenchmarkArguments(dataset="x"))


def bench_row(method: str, seed: int, macro_f1: float, bounds: list[float] | None, size: str = "all") -> dict:
    """A results.jsonl row as `result_row` writes it, with a made-up macro-F1 interval (None: too few patients)."""
    intervals = {"resampled": "patient", "confidence": 0.95, "num_resamples": 2000, "accuracy": [0.7, 0.9],
                 "balanced_accuracy": [0.6, 0.9], "macro_f1": bounds, "macro_auc": None,
                 "per_source_accuracy": {"site_a": [0.55, 0.95]}}
    return {"method": method, "train_size": size, "seed": seed, "num_train_images": 48, "accuracy": 0.8,
            "macro_f1": macro_f1, "macro_auc": 0.9, "sensitivity": {"covid": 0.5},
            "per_source_accuracy": {"site_a": 0.75}, "train_runtime_s": 3.0, "parameters": 5e6,
            "latency_ms_batch1": 1.0, "intervals": intervals}


def test_tables_give_each_accuracy_type_figure_its_interval_and_say_when_seeds_are_pooled():
    rows = [bench_row("teacher", 0, 0.7, [0.6, 0.8], "24"), bench_row("teacher", 1, 0.8, [0.65, 0.9], "24"),
            bench_row("teacher", 0, 0.85, [0.8, 0.9])]
    old = {key: value for key, value in bench_row("baseline", 0, 0.5, None).items() if key != "intervals"}
    args = BenchmarkArguments(dataset="x")
    text = summary_markdown(rows + [old], args)
    full = full_table(rows + [old], "all")
    assert "| teacher | 0 | 0.800 (0.700–0.900) | 0.850 (0.800–0.900) | 0.900 (CI n/a) | 0.500 | " \
           "0.750 (0.550–0.950) |" in full
    assert "| baseline | 0 | 0.800 | 0.500 | 0.900 | 0.500 | 0.750 |" in full  # recorded before intervals
    # several seeds: mean [range], how many, and the span of their intervals; one seed: its own interval
    assert "| teacher | 0.750 [0.700–0.800], 2 seeds, CIs 0.600–0.900 | 0.850 (0.800–0.900) |" in text
    assert "95% percentile bootstrap intervals resampling the evaluation split's patients (2000 resamples" in text
    assert "1 older run(s) without intervals" in text
    assert curve_cell([bench_row("teacher", 0, 0.7, None), bench_row("teacher", 1, 0.8, [0.6, 0.9])]) == \
        "0.750 [0.700–0.800], 2 seeds"


def test_rows_take_their_intervals_from_the_runs_metrics(tmp_path):
    rng = np.random.default_rng(0)
    labels = np.arange(60) % 3
    probs = rng.dirichlet(np.ones(3), size=60)
    report = write_evaluation_report(tmp_path, probs, labels, LABELS, sources=["site_a"] * 60,
                                     patient_ids=[f"p{i // 2}" for i in range(60)], num_resamples=100)
    got = row_intervals(report)
    overall = report["intervals"]["overall"]
    assert got["resampled"] == "patient" and got["num_resamples"] == 100
    assert got["macro_f1"] == [overall["macro_f1"]["low"], overall["macro_f1"]["high"]]
    assert got["per_source_accuracy"]["site_a"] == [report["intervals"]["per_source"]["site_a"]["accuracy"]["low"],
                                                    report["intervals"]["per_source"]["site_a"]["accuracy"]["high"]]
    assert row_intervals({"overall": {}}) == {}  # a report from before intervals


def test_benchmark_over_two_folds_reports_mean_and_sd(tmp_path, capsys):
    data = write_imagefolder(tmp_path / "data", {"train": 6, "validation": 4})
    out = tmp_path / "bench_cv"
    argv = ["benchmark", "--dataset", str(data), "--output_dir", str(out), "--methods", "teacher,distill_soft",
            "--train_sizes", "all", "--seeds", "0", "--cv_folds", "2", "--images_seen", "16", "--image_size", "32",
            "--latency_repeats", "1"]
    assert main(argv) == 0
    rows = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    # one row per (method, fold); each fold's student distilled from that fold's teacher (a teacher that saw the
    # held-out fold would be refused)
    assert sorted((r["method"], r["fold"], r["cv_folds"]) for r in rows) == [
        (method, fold, 2) for method in ("distill_soft", "teacher") for fold in (0, 1)]
    students = sorted((r for r in rows if r["method"] == "distill_soft"), key=lambda r: r["fold"])
    assert sum(r["eval_images"] for r in students) == 30  # every pooled image held out once
    assert all(r["num_train_images"] + r["eval_images"] == 30 for r in rows)
    summary = json.loads((out / "cross_validation.json").read_text())
    assert [(entry["method"], entry["folds"]) for entry in summary] == [("teacher", [0, 1]), ("distill_soft", [0, 1])]
    f1 = [r["macro_f1"] for r in students]
    assert summary[1]["macro_f1"]["values"] == f1
    assert summary[1]["macro_f1"]["mean"] == pytest.approx(np.mean(f1))
    assert summary[1]["macro_f1"]["sd"] == pytest.approx(np.std(f1, ddof=1))
    table = (out / "benchmark.md").read_text()
    assert "mean ± sd over the folds" in table and f"{np.mean(f1):.3f} ± {np.std(f1, ddof=1):.3f}" in table
    assert "| distill_soft | all | 0 | 2 |" in table and "2-fold patient-grouped" in table

    capsys.readouterr()  # a rerun finds every fold done and trains nothing
    assert main(argv) == 0
    assert "[benchmark] N=" not in capsys.readouterr().out


def test_cross_validation_table_and_arguments():
    rows = [{**bench_row("teacher", 0, f1, None), "fold": fold, "cv_folds": 3}
            for fold, f1 in enumerate([0.6, 0.7, 0.8])]
    rows[2]["macro_auc"] = None  # a fold without every class has no AUC
    text = summary_markdown(rows, BenchmarkArguments(dataset="x", cv_folds=3))
    assert "| teacher | all | 0 | 3 | 0.800 ± 0.000 | 0.700 ± 0.100 | 0.900 ± 0.000 (2 of 3) |" in text
    assert "| teacher | 0 | 2 |" in full_table(rows, "all")  # the per-fold rows, with their fold
    assert curve_cell(rows) == "0.700 [0.600–0.800], 3 folds"
    assert BenchmarkArguments(dataset="x", cv_folds=3).fold_list == [0, 1, 2]
    assert BenchmarkArguments(dataset="x").fold_list == [None]
    plain = bench_row("teacher", 0, 0.5, None)  # the rows of the other mode (and of other K) are left out
    assert benchmark_rows(rows + [plain], 3) == rows and benchmark_rows(rows + [plain], None) == [plain]
    assert benchmark_rows(rows, 5) == []
    for bad in (dict(cv_folds=1), dict(cv_folds=3, budgets="100")):
        with pytest.raises(ValueError):
            BenchmarkArguments(dataset="x", **bad)

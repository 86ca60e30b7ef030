"""`hf-deitcxr benchmark`: a tiny real run on synthetic data (tables, curve, resume) and its argument checks."""

import json

import pytest

from hf_deitcxr.cli import main
from hf_deitcxr.experiments.benchmark import BenchmarkArguments, curve_points, planned_runs
from hf_deitcxr.experiments.recipe import CPU_RECIPE, stage_arguments
from tests.helpers.synthetic import write_imagefolder


def test_planned_runs_use_every_seed_only_for_small_sizes():
    args = BenchmarkArguments(dataset="x", train_sizes="250,500,1000,all", seeds="0,1", multi_seed_below=1000)
    assert planned_runs(args) == [(250, 0), (250, 1), (500, 0), (500, 1), (1000, 0), ("all", 0)]


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
    table = (out / "benchmark.md").read_text()
    assert "| distill_soft |" in table and "N=all" in table
    assert (out / "data_efficiency.png").stat().st_size > 1000
    assert [p[4] for p in curve_points(rows)["teacher"]] == [2, 1]  # seeds per N

    # a rerun finds every run done and trains nothing
    capsys.readouterr()
    assert main(argv) == 0
    assert "[benchmark] N=" not in capsys.readouterr().out
    assert len((out / "results.jsonl").read_text().splitlines()) == len(rows)

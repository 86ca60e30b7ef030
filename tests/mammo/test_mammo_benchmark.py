"""`hf-deitcxr benchmark --task mammo` on a generated folder shaped like shared/data/cbis_mass: the plan, one
command writing results.jsonl + benchmark.md + benchmark.json, resuming without retraining, and the tables."""

from __future__ import annotations

import json

import numpy as np
import pytest

from hf_deitcxr.cli import main as cli_main
from hf_deitcxr.mammo import bench_runs
from hf_deitcxr.mammo.bench_runs import parse_method
from hf_deitcxr.mammo.bench_summary import summarise
from hf_deitcxr.mammo.benchmark import MammoBenchmarkArguments, chosen_encoder, planned_runs, run_benchmark
from tests.helpers.cbis_mass import write_cbis_like_folder

TINY = ["--image_size", "32", "--epochs", "1", "--multi_view_epochs", "1", "--hidden_size", "16", "--num_layers",
        "1", "--num_heads", "2", "--densenet_growth_rate", "4", "--batch_size", "8", "--multi_view_batch_size", "4",
        "--validation_fraction", "0.4", "--num_resamples", "50", "--threads", "1"]


def tiny_args(tmp_path, **overrides) -> MammoBenchmarkArguments:
    values = dict(dataset=str(write_cbis_like_folder(tmp_path / "cbis")), output_dir=str(tmp_path / "bench"),
                  image_size=32, epochs=1, multi_view_epochs=1, hidden_size=16, num_layers=1, num_heads=2,
                  densenet_growth_rate=4, batch_size=8, multi_view_batch_size=4, validation_fraction=0.4,
                  num_resamples=50, threads=1)
    return MammoBenchmarkArguments(**{**values, **overrides})


def test_method_names_parse_into_a_base_and_options() -> None:
    spec = parse_method("deit_noaug_unbalanced")
    assert (spec.base, spec.augment, spec.balancing) == ("deit", False, "none")
    assert parse_method("pvt_v2_oversample").balancing == "oversample"
    assert parse_method("multi_view").is_multi_view
    assert parse_method("deit_noaug_half").train_fraction == 0.5
    with pytest.raises(ValueError, match="unknown method"):
        parse_method("resnet")


def test_the_plan_runs_dependencies_first_and_final_methods_at_every_seed(tmp_path) -> None:
    args = MammoBenchmarkArguments(dataset="x", methods="swin,deit_distilled,vit,multi_view", screen_seeds="0",
                                   seeds="0,1", final_methods="multi_view", multi_view_encoder="vit")
    assert planned_runs(args) == [("swin", 0), ("densenet", 0), ("deit_distilled", 0), ("vit", 0),
                                  ("multi_view", 0), ("vit", 1), ("multi_view", 1)]
    assert [m for m, _ in planned_runs(MammoBenchmarkArguments(dataset="x", methods="deit_distilled,multi_view"))
            ][:3] == ["densenet", "deit_distilled", "multi_view"]
    with pytest.raises(ValueError, match="ViT/DeiT"):
        MammoBenchmarkArguments(dataset="x", multi_view_encoder="swin")


def test_best_encoder_is_chosen_from_the_screen_then_run_at_every_seed() -> None:
    args = MammoBenchmarkArguments(dataset="x", methods="vit,deit,swin,multi_view", seeds="0,1")
    assert planned_runs(args) == [("vit", 0), ("deit", 0), ("swin", 0), ("multi_view", 0)]

    def row(method: str, good: bool) -> dict:
        return {"method": method, "seed": 0, "exam_labels": [0, 1, 0, 1],
                "exam_scores": {"mean": [0.1, 0.9, 0.2, 0.8] if good else [0.9, 0.1, 0.2, 0.8]}}

    assert chosen_encoder(args, [row("vit", True)]) is None  # deit has not run yet
    assert chosen_encoder(args, [row("vit", False), row("deit", True), row("swin", True)]) == "deit"
    assert planned_runs(args, "deit")[-2:] == [("deit", 1), ("multi_view", 1)]


def test_one_command_writes_the_tables_and_a_rerun_trains_nothing(tmp_path, monkeypatch, capsys) -> None:
    folder = write_cbis_like_folder(tmp_path / "cbis")
    out = tmp_path / "bench"
    argv = ["benchmark", "--task", "mammo", "--dataset", str(folder), "--output_dir", str(out), "--methods",
            "deit,multi_view", "--screen_seeds", "0", "--seeds", "0,1", "--multi_view_encoder", "best", *TINY]
    assert cli_main(argv) == 0
    rows = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert [(r["method"], r["seed"]) for r in rows] == [("deit", 0), ("multi_view", 0), ("deit", 1),
                                                        ("multi_view", 1)]
    assert len(rows[0]["view_scores"]) == len(rows[0]["view_labels"]) > len(rows[0]["exam_labels"])
    assert set(rows[0]["exam_scores"]) == {"max", "mean"} and set(rows[1]["exam_scores"]) == {"multi_view"}
    assert all(r["wall_s"] > 0 and r["started_utc"] for r in rows)
    table = (out / "benchmark.md").read_text()
    assert "late fusion (mean)" in table and "multi-view model" in table and "Multi-view minus `deit`" in table
    report = json.loads((out / "benchmark.json").read_text())
    assert set(report["summary"]["multi_view_gains"]["mean|all"]["per_seed"]) == {"0", "1"}

    def no_training(*args, **kwargs):
        raise AssertionError("a finished run was trained again")

    monkeypatch.setattr("hf_deitcxr.mammo.benchmark.run_method", no_training)
    assert cli_main(argv) == 0
    assert len((out / "results.jsonl").read_text().splitlines()) == 4
    assert "Mammography on real crops" in capsys.readouterr().out


def test_a_run_past_the_deadline_is_listed_not_started(tmp_path) -> None:
    report = run_benchmark(tiny_args(tmp_path, methods="vit", deadline_utc="2000-01-01 00:00"))
    assert report["not_run"] == ["vit seed 0"] and report["runs"] == []


@pytest.mark.slow
def test_every_default_method_trains_on_the_generated_folder(tmp_path) -> None:
    report = run_benchmark(tiny_args(tmp_path, methods="vit,swin,pvt_v2,densenet,deit_noaug,deit_oversample,"
                                     "deit_student,deit_distilled,deit_distilled_noaug,multi_view"))
    methods = {run["method"]: run for run in report["runs"]}
    assert methods["deit_distilled"]["teacher_logits"] == "online"
    assert methods["deit_distilled_noaug"]["teacher_logits"] == "cached"
    assert "vit|mean" in report["summary"]["scores"]  # the default encoder is deit; vit was asked for


def test_summary_intervals_resample_patients_and_gains_are_paired() -> None:
    rng = np.random.default_rng(0)
    labels = np.tile([0, 1], 20)
    patients = [f"p{i // 2}" for i in range(40)]

    def row(method: str, seed: int, key: str, shift: float) -> dict:
        scores = np.clip(labels * shift + rng.uniform(0, 1, 40), 0, 1)
        return {"method": method, "seed": seed, "wall_s": 1.0, "exam_scores": {key: scores.tolist()},
                "exam_labels": labels.tolist(), "exam_patients": patients, "exam_num_views": [2] * 40}

    rows = [row("deit", s, "mean", 0.2) for s in (0, 1)] + [row("multi_view", s, "multi_view", 0.6) for s in (0, 1)]
    summary = summarise(rows, ["benign", "malignant"], num_resamples=200, reference="deit")
    entry = summary["scores"]["multi_view|multi_view"]["all"]["0"]
    assert entry["patients"] == 20 and entry["low"] < entry["auc"] < entry["high"]
    assert summary["multi_view_gains"]["mean|all"]["mean"] > 0


def test_half_the_training_patients_keeps_every_exam_of_a_kept_patient(tmp_path) -> None:
    data = bench_runs.load_bench_data(str(write_cbis_like_folder(tmp_path / "cbis")), 16, validation_fraction=0.0001)
    half = bench_runs.patient_subset(data.train, 0.5, seed=0)
    kept = set(half.patient_ids)
    assert len(kept) == round(len(set(data.train.patient_ids)) / 2)
    assert len(half) == sum(patient in kept for patient in data.train.patient_ids)
    assert bench_runs.patient_subset(data.train, 1.0, seed=0) is data.train


def test_bench_runs_refuse_a_multi_view_without_an_encoder(tmp_path) -> None:
    with pytest.raises(ValueError, match="single-view ViT/DeiT"):
        bench_runs.build_model(parse_method("multi_view"), None, bench_runs.Budget(), None)

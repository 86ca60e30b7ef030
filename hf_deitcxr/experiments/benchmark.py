"""`hf-deitcxr benchmark`: the seed's claim measured on real data, and how it changes with the amount of data.

For every training-set size N (patient-level stratified subsets) and seed, it trains the DenseNet-121 teacher,
then a DeiT-tiny without teacher (`baseline`), and DeiT-tiny with hard and with soft distillation from that
teacher; all at the same resolution and the same budget (images seen = optimiser steps x batch, whatever N; the
teacher's own with `--teacher_images_seen`, as the quickstart trains it on 4800 images and its student on 9600), and
evaluates each on the full validation split. Results go to `<output_dir>/results.jsonl` (one line a run; a rerun
skips runs already there, so an interrupted benchmark continues), `benchmark.md` (tables) and
`data_efficiency.png` (macro-F1 vs N, one line per method).

With `--cv_folds K`, a fold axis joins N and seed: every (N, seed, method) runs once per fold of a patient-grouped,
class-stratified K-fold cross-validation of the pooled train (+ validation) splits, folds seeded by the seed
(`hf_deitcxr.data.cross_validation`), N drawn from the fold's training part and evaluation on the held-out fold;
results.jsonl holds one row per fold, `cross_validation.json` and the first table of benchmark.md the mean ± sd over
the folds of each (method, N, seed).

With `--budgets`, every (N, budget, seed, method) is its own full run of that many images seen instead, and the
summary is a time-to-accuracy curve (macro-F1 vs training minutes); see `time_to_accuracy.py`.
"""

from __future__ import annotations

import itertools
import json
import logging
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

import numpy as np

from ..training.arguments import configure_logging
from .benchmark_runs import (
    ALL,
    METHODS,
    BenchmarkArguments,
    format_metric,
    interval_note,
    mean_sd_cell,
    metric_cell,
    read_results,
    result_row,
    size_key,
)
from .recipe import stage_arguments

logger = logging.getLogger(__name__)

def planned_runs(args: BenchmarkArguments) -> list[tuple[int | str, int]]:
    """(N, seed) pairs: every seed below `multi_seed_below` (and at N=all with `every_seed_at_all`), else the first."""
    runs = []
    for size in args.size_list:
        small = args.every_seed_at_all if size == ALL else size < args.multi_seed_below
        runs.extend((size, seed) for seed in (args.seed_list if small else args.seed_list[:1]))
    return runs


def run_benchmark(args: BenchmarkArguments) -> list[dict]:
    if args.budget_list is not None:
        from .time_to_accuracy import run_time_to_accuracy

        return run_time_to_accuracy(args)
    from ..training.run import run_training

    root = Path(args.output_dir)
    root.mkdir(parents=True, exist_ok=True)
    results_file = root / "results.jsonl"
    done = {run_key(r["train_size"], r["seed"], r.get("fold"), r["method"])
            for r in benchmark_rows(read_results(results_file), args.cv_folds)}
    recipe = args.recipe()
    cache = args.pixel_cache_dir or str(root / "pixel_cache")
    methods = args.method_list
    needs_teacher = any(METHODS[m][0] == "distill" for m in methods)
    # the fold axis next to N and seed: [None] (the validation split) without --cv_folds
    for (size, seed), fold in itertools.product(planned_runs(args), args.fold_list):
        run_dir = root / "runs" / (f"n{size}-seed{seed}" + ("" if fold is None else f"-fold{fold}of{args.cv_folds}"))
        where = f"N={size} seed={seed}" + ("" if fold is None else f" fold={fold}")
        order = (["teacher"] if needs_teacher or "teacher" in methods else []) + [m for m in methods if m != "teacher"]
        for method in order:
            if run_key(size, seed, fold, method) in done:
                continue
            stage, overrides = METHODS[method]
            method_recipe = recipe.with_overrides(**overrides)
            teacher_dir = run_dir / "teacher"
            if stage == "distill" and not (teacher_dir / "config.json").is_file():
                raise RuntimeError(f"teacher for {where} missing at {teacher_dir}")
            if method == "teacher" and (teacher_dir / "metrics.json").is_file() and "teacher" not in methods:
                continue
            arguments = stage_arguments(
                stage, args.dataset, run_dir / method, method_recipe,
                images_seen=args.teacher_images_seen if stage == "teacher" else args.images_seen,
                train_subset=None if size == ALL else size, subset_seed=seed, seed=seed, teacher_dir=teacher_dir,
                pixel_cache_dir=cache, progress_bars=False, cv_folds=args.cv_folds, fold=fold,
                cv_pool=args.cv_pool,
            )
            start = time.perf_counter()
            report = run_training(*arguments)
            wall = time.perf_counter() - start
            row = result_row(method, size, seed, report, run_dir / method, wall, recipe, args.latency_repeats)
            if method in methods:
                with results_file.open("a") as handle:
                    handle.write(json.dumps(row) + "\n")
            logger.info("%s %s: macro-F1 %.3f (%.0f s)", where, method, row["macro_f1"], wall)
            print(f"[benchmark] {where} {method}: accuracy {row['accuracy']:.3f}, "
                  f"macro-F1 {row['macro_f1']:.3f}, {wall:.0f} s", flush=True)
    results = benchmark_rows(read_results(results_file), args.cv_folds)
    write_summary(root, results, args)
    return results


def run_key(size: int | str, seed: int, fold: int | None, method: str) -> tuple[str, int, int | None, str]:
    return str(size), seed, fold, method


def single_budget_rows(rows: Sequence[dict]) -> list[dict]:
    """The rows of single-budget runs: time-to-accuracy rows (they record `images_seen`) belong to --budgets."""
    return [r for r in rows if "images_seen" not in r]


def benchmark_rows(rows: Sequence[dict], cv_folds: int | None) -> list[dict]:
    """The single-budget rows of this mode: the K-fold runs with --cv_folds K, else the validation-split runs."""
    return [r for r in single_budget_rows(rows) if r.get("cv_folds") == cv_folds]


# --------------------------------------------------------------------------------------------------------------
# Summary: tables and the data-efficiency curve
# --------------------------------------------------------------------------------------------------------------


def write_summary(root: Path, results: Sequence[dict], args: BenchmarkArguments) -> None:
    if not results:
        return
    (root / "benchmark.md").write_text(summary_markdown(results, args))
    if args.cv_folds is not None:  # the per-fold rows stay in results.jsonl
        (root / "cross_validation.json").write_text(json.dumps(cv_summary(results), indent=2))
    plot_data_efficiency(results, root / "data_efficiency.png")


def summary_markdown(results: Sequence[dict], args: BenchmarkArguments) -> str:
    largest = max((r["train_size"] for r in results), key=size_key)
    evaluation = ("evaluation on the full validation split." if args.cv_folds is None else
                  f"evaluation on each held-out fold of a {args.cv_folds}-fold patient-grouped, class-stratified "
                  f"cross-validation of {args.cv_pool} (folds seeded by the seed; N drawn from each fold's rest).")
    teacher_budget = ("" if args.teacher_images_seen == args.images_seen else
                      f" ({args.teacher_images_seen} for the teacher)")
    budget = (f"Budget: {args.images_seen} training images seen per run{teacher_budget}, {args.input_sizes_note()}, "
              f"{evaluation}")
    lines = [budget, interval_note(results), ""]
    if args.cv_folds is not None:
        lines += ["### Cross-validation: mean ± sd over the folds", "", "Sample sd over the folds of one seed "
                  "(one run per fold; results.jsonl and cross_validation.json hold every fold).", "",
                  cv_table(results), ""]
    lines += [f"### N = {largest}", "", full_table(results, largest), "",
              "### Data efficiency (macro-F1)", "", "One run: value (95 % interval). Several seeds or folds: their "
              "mean [min–max over the runs], how many, and the lowest to highest bound of their 95 % intervals.",
              "", curve_table(results)]
    gaps = gap_table(results)
    if gaps:
        lines += ["", "### Distillation's gain and the teacher's lead (macro-F1, paired by seed)", "",
                  "Differences within a seed (and fold): the distilled student minus the baseline trained on the same "
                  "subset, and the teacher minus the student it taught; mean [min–max over the pairs], how many.",
                  "", gaps]
    return "\n".join(lines) + "\n"


def paired_differences(results: Sequence[dict], minuend: str, subtrahend: str, size: str) -> list[float]:
    """macro-F1 of `minuend` minus `subtrahend` at N = `size`, one value per (seed, fold) that ran both."""
    scores = {(r["method"], r["seed"], r.get("fold")): r["macro_f1"] for r in results if r["train_size"] == size}
    return [value - scores[(subtrahend, seed, fold)] for (method, seed, fold), value in sorted(
        scores.items(), key=lambda item: (item[0][1], item[0][2] or 0))
        if method == minuend and (subtrahend, seed, fold) in scores]


def gap_table(results: Sequence[dict]) -> str:
    """Per N and distilled method: its gain over `baseline` and the `teacher`'s lead over it ('' if none ran)."""
    sizes = sorted({r["train_size"] for r in results}, key=size_key)
    ran = {r["method"] for r in results}
    students = [m for m in METHODS if METHODS[m][0] == "distill" and m in ran]
    lines = []
    for size, student in itertools.product(sizes, students):
        gain = paired_differences(results, student, "baseline", size)
        lead = paired_differences(results, "teacher", student, size)
        if gain or lead:
            lines.append(f"| {size} | {student} | {difference_cell(gain)} | {difference_cell(lead)} |")
    if not lines:
        return ""
    return "\n".join(["| N | distilled | distilled − baseline | teacher − distilled |", "|---|---|---|---|", *lines])


def difference_cell(values: Sequence[float]) -> str:
    if not values:
        return "n/a"
    if len(values) == 1:
        return f"{values[0]:+.3f} (1 pair)"
    return f"{np.mean(values):+.3f} [{min(values):+.3f} to {max(values):+.3f}], {len(values)} pairs"


CV_KEYS = ("accuracy", "macro_f1", "macro_auc")


def cv_summary(results: Sequence[dict]) -> list[dict]:
    """Per (method, N, seed): the folds run and the mean and sample sd of each of `CV_KEYS` over them."""
    grouped: dict[tuple[str, str, int], list[dict]] = defaultdict(list)
    for r in results:
        grouped[(r["method"], r["train_size"], r["seed"])].append(r)
    summary = []
    for (method, size, seed), rows in sorted(grouped.items(), key=lambda item: (
            list(METHODS).index(item[0][0]), size_key(item[0][1]), item[0][2])):
        entry = {"method": method, "train_size": size, "seed": seed, "folds": sorted(r.get("fold") for r in rows)}
        for key in CV_KEYS:
            values = [r[key] for r in rows if r.get(key) is not None]
            entry[key] = {"mean": float(np.mean(values)) if values else None,
                          "sd": float(np.std(values, ddof=1)) if len(values) > 1 else None,
                          "values": [r.get(key) for r in sorted(rows, key=lambda r: r.get("fold"))]}
        summary.append(entry)
    return summary


def cv_table(results: Sequence[dict]) -> str:
    lines = ["| method | N | seed | folds | accuracy | macro-F1 | macro AUC |", "|---|---|---|---|---|---|---|"]
    for entry in cv_summary(results):
        cells = [entry["method"], entry["train_size"], str(entry["seed"]), str(len(entry["folds"]))]
        cells += [mean_sd_cell(entry[key]["values"]) for key in CV_KEYS]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def full_table(results: Sequence[dict], size: str) -> str:
    rows = [r for r in results if r["train_size"] == size]
    classes = sorted({name for r in rows for name in r["sensitivity"]})
    sources = sorted({name for r in rows for name in r["per_source_accuracy"]})
    folds = any(r.get("fold") is not None for r in rows)
    header = (["method", "seed"] + (["fold"] if folds else []) + ["accuracy", "macro-F1", "macro AUC"]
              + [f"sens. {c}" for c in classes] + [f"acc. {s}" for s in sources]
              + ["train s", "params (M)", "CPU latency b1 (ms)"])
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r in sorted(rows, key=lambda r: (list(METHODS).index(r["method"]), r["seed"], r.get("fold") or 0)):
        cells = [r["method"], str(r["seed"])] + ([str(r.get("fold"))] if folds else [])
        cells += [metric_cell(r, key) for key in ("accuracy", "macro_f1", "macro_auc")]
        cells += [format_metric(r["sensitivity"].get(c)) for c in classes]
        cells += [metric_cell(r, "per_source_accuracy", s) for s in sources]
        cells += [f"{r['train_runtime_s']:.0f}" if r.get("train_runtime_s") else "n/a",
                  f"{r['parameters'] / 1e6:.2f}", f"{r['latency_ms_batch1']:.1f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def curve_points(results: Sequence[dict]) -> dict[str, list[tuple[str, float, float, float, int]]]:
    """method -> [(N, mean, min, max, number of seeds)] of macro-F1, N ascending."""
    grouped: dict[tuple[str, str], list[float]] = defaultdict(list)
    for r in results:
        grouped[(r["method"], r["train_size"])].append(r["macro_f1"])
    points: dict[str, list] = defaultdict(list)
    for (method, size), values in sorted(grouped.items(), key=lambda item: size_key(item[0][1])):
        points[method].append((size, float(np.mean(values)), min(values), max(values), len(values)))
    return points


def curve_table(results: Sequence[dict]) -> str:
    sizes = sorted({r["train_size"] for r in results}, key=size_key)
    lines = ["| method | " + " | ".join(f"N={s}" for s in sizes) + " |", "|" + "---|" * (len(sizes) + 1)]
    for method in (m for m in METHODS if any(r["method"] == m for r in results)):
        cells = [curve_cell([r for r in results if r["method"] == method and r["train_size"] == size])
                 for size in sizes]
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def curve_cell(rows: Sequence[dict]) -> str:
    """Macro-F1 of one (method, N): one run with its interval; several as mean [range], how many runs, bounds."""
    if not rows:
        return "n/a"
    if len(rows) == 1:
        return metric_cell(rows[0], "macro_f1")
    values = [r["macro_f1"] for r in rows]
    cell = f"{np.mean(values):.3f} [{min(values):.3f}–{max(values):.3f}], {run_count(rows)}"
    bounds = [(r.get("intervals") or {}).get("macro_f1") for r in rows]
    if all(bounds):
        cell += f", CIs {min(b[0] for b in bounds):.3f}–{max(b[1] for b in bounds):.3f}"
    return cell


def run_count(rows: Sequence[dict]) -> str:
    """'2 seeds', '3 folds' or '3 folds × 2 seeds': what the runs of one cell vary over."""
    seeds, folds = len({r["seed"] for r in rows}), len({r.get("fold") for r in rows})
    if folds == 1:
        return f"{len(rows)} seeds"
    return f"{folds} folds" + (f" × {seeds} seeds" if seeds > 1 else "")


def plot_data_efficiency(results: Sequence[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    sizes_in_images = {r["train_size"]: r["num_train_images"] for r in results if r.get("num_train_images")}
    figure = Figure(figsize=(6, 4), dpi=120)
    ax = figure.subplots()
    for method, points in curve_points(results).items():
        x = [sizes_in_images.get(p[0], size_key(p[0])) for p in points]
        mean = np.array([p[1] for p in points])
        low, high = mean - np.array([p[2] for p in points]), np.array([p[3] for p in points]) - mean
        ax.errorbar(x, mean, yerr=[low, high], marker="o", capsize=3, label=method)
    ax.set_xscale("log")
    ticks = sorted({sizes_in_images.get(r["train_size"], size_key(r["train_size"])) for r in results})
    ax.minorticks_off()
    ax.set_xticks(ticks, [str(t) for t in ticks])
    ax.set_xlabel("training images (patient-level subset)")
    ax.set_ylabel("macro-F1 (validation)")
    ax.set_title("Data efficiency on cxr3 (bars: min-max over seeds and folds)")
    ax.grid(True, alpha=0.3)
    ax.legend()
    figure.tight_layout()
    figure.savefig(path)


def benchmark_main(argv: Sequence[str] | None = None) -> int:
    import sys

    from transformers import HfArgumentParser

    configure_logging()
    (args,) = HfArgumentParser(BenchmarkArguments).parse_args_into_dataclasses(
        args=list(sys.argv[1:] if argv is None else argv)
    )
    run_benchmark(args)
    summary = "time_to_accuracy.md" if args.budget_list is not None else "benchmark.md"
    print((Path(args.output_dir) / summary).read_text())
    print(json.dumps(asdict(args)))
    return 0

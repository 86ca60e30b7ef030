"""`hf-deitcxr benchmark --budgets ...`: a wall-clock axis for the benchmark (time to accuracy).

Each point of the curve is a full run of its own length (its own cosine schedule), not an evaluation in the middle of
a longer schedule: for every training-set size N, budget B (images seen), seed and method, the method is trained for B
images into `runs/n{N}-seed{seed}-b{B}/{method}`. The distilled students of an (N, seed) all learn from one teacher
trained once on `teacher_images_seen` images in `runs/n{N}-seed{seed}-teacher/teacher`; their rows record its training
time (`teacher_train_s`), so that they can be charged with it. The `teacher` method's own points are teachers trained
at each budget; at `teacher_images_seen` that is the students' teacher itself (the same recipe, data and seed: trained
once, recorded for both). Rows go to `results.jsonl` with `images_seen` and the CPU they were timed on (`cpu`); a
rerun skips the (N, budget, seed, method) already there. A distilled row records its teacher's input size
(`teacher_image_size`), so that the results of benchmarks with different teachers can be pooled into one summary: each
(method, teacher size) is a series of its own. The summary is `time_to_accuracy.md` (a row per method and budget) and
`time_to_accuracy.png` (macro-F1 vs training minutes).
"""

from __future__ import annotations

import json
import logging
import time
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..hardware import cpu_description
from .benchmark_runs import (
    ALL,
    METHODS,
    BenchmarkArguments,
    format_metric,
    interval_note,
    read_results,
    result_row,
    size_key,
)
from .recipe import Recipe, stage_arguments

logger = logging.getLogger(__name__)


def row_images_seen(row: dict, default: int) -> int:
    """A row's budget; a single-budget row (no `images_seen`) ran `default` (its benchmark's --images_seen)."""
    return int(row.get("images_seen", default))


def budget_key(row: dict, default: int) -> tuple[str, int, int, str]:
    return row["train_size"], row_images_seen(row, default), row["seed"], row["method"]


def row_teacher_size(row: dict) -> int | None:
    """The input size of a distilled row's teacher (None: not distilled, or a row of before it was recorded)."""
    return row.get("teacher_image_size") if METHODS[row["method"]][0] == "distill" else None


def series_label(method: str, teacher_size: int | None) -> str:
    return method if teacher_size is None else f"{method} ({teacher_size}-px teacher)"


def series_order(key: tuple) -> tuple[int, int]:
    """Sort key of a (method, teacher size) series: `METHODS` order, then the teacher's size."""
    method, teacher_size = key
    return list(METHODS).index(method), teacher_size or 0


def budget_runs(args: BenchmarkArguments) -> list[tuple[int | str, int, int]]:
    """(N, budget, seed) in training order: every seed at every N (the curve's bars need them), the smallest budgets
    first, so that an interrupted benchmark already has the cheap end of every curve."""
    return [(size, budget, seed) for size in args.size_list for budget in args.budget_list for seed in args.seed_list]


def run_time_to_accuracy(args: BenchmarkArguments) -> list[dict]:
    """Train what `budget_runs` plans and `results.jsonl` lacks, then write the summary; returns every row."""
    from ..training.run import run_training

    root = Path(args.output_dir)
    root.mkdir(parents=True, exist_ok=True)
    results_file = root / "results.jsonl"
    done = {budget_key(r, args.images_seen) for r in read_results(results_file)}
    recipe, cpu = args.recipe(), cpu_description()
    cache = args.pixel_cache_dir or str(root / "pixel_cache")
    teachers: dict[tuple[int | str, int], tuple[dict, float | None]] = {}

    def train(stage: str, output_dir: Path, method_recipe: Recipe, images_seen: int, size, seed: int,
              teacher_dir: Path | None = None) -> tuple[dict, float]:
        arguments = stage_arguments(
            stage, args.dataset, output_dir, method_recipe, images_seen=images_seen,
            train_subset=None if size == ALL else size, subset_seed=seed, seed=seed, teacher_dir=teacher_dir,
            pixel_cache_dir=cache, progress_bars=False,
        )
        start = time.perf_counter()
        report = run_training(*arguments)
        return report, time.perf_counter() - start

    def shared_teacher(size, seed: int) -> tuple[Path, dict, float | None]:
        """The (N, seed) teacher of the distilled students, trained on first use: its folder, report and the wall
        seconds of its run (kept beside it, for the `teacher` row of the same budget; None if not recorded)."""
        teacher_dir = root / "runs" / f"n{size}-seed{seed}-teacher" / "teacher"
        wall_file = teacher_dir.parent / "wall.json"
        if (size, seed) not in teachers:
            metrics = teacher_dir / "metrics.json"  # written once the run is complete
            if metrics.is_file():
                report = json.loads(metrics.read_text())
                wall = json.loads(wall_file.read_text())["wall_s"] if wall_file.is_file() else None
            else:
                report, wall = train("teacher", teacher_dir, recipe, args.teacher_images_seen, size, seed)
                wall_file.write_text(json.dumps({"wall_s": wall}))
                print(f"[benchmark] N={size} seed={seed} teacher of the students ({args.teacher_images_seen} images): "
                      f"macro-F1 {report['overall']['macro_f1']:.3f}, {wall:.0f} s", flush=True)
            teachers[(size, seed)] = report, wall
        return teacher_dir, *teachers[(size, seed)]

    for size, budget, seed in budget_runs(args):
        run_dir = root / "runs" / f"n{size}-seed{seed}-b{budget}"
        for method in args.method_list:
            if (str(size), budget, seed, method) in done:
                continue
            stage, overrides = METHODS[method]
            extra = {"images_seen": budget, "cpu": cpu}
            teacher_dir = None
            if stage == "distill":
                teacher_dir, teacher_report, _ = shared_teacher(size, seed)
                extra["teacher_train_s"] = teacher_report.get("extra", {}).get("train_runtime_s")
                extra["teacher_images_seen"] = args.teacher_images_seen
                extra["teacher_image_size"] = recipe.image_size_for("teacher")
            method_recipe = recipe.with_overrides(**overrides)
            if method == "teacher" and budget == args.teacher_images_seen:
                model_dir, report, wall = shared_teacher(size, seed)
                extra["students_teacher"] = True
            else:
                model_dir = run_dir / method
                report, wall = train(stage, model_dir, method_recipe, budget, size, seed, teacher_dir)
            row = {**result_row(method, size, seed, report, model_dir, wall, method_recipe, args.latency_repeats),
                   **extra}
            with results_file.open("a") as handle:
                handle.write(json.dumps(row) + "\n")
            logger.info("N=%s budget=%s seed=%s %s: macro-F1 %.3f (%.0f s)", size, budget, seed, method,
                        row["macro_f1"], wall)
            print(f"[benchmark] N={size} images_seen={budget} seed={seed} {method}: macro-F1 {row['macro_f1']:.3f}, "
                  f"train {row['train_runtime_s'] or 0:.0f} s, {wall:.0f} s in all", flush=True)
    results = read_results(results_file)
    write_time_to_accuracy(root, results, args)
    return results


# --------------------------------------------------------------------------------------------------------------
# Summary: the table and the curve
# --------------------------------------------------------------------------------------------------------------


def time_points(rows: Sequence[dict], default_images_seen: int) -> dict[tuple[str, str, int, int | None], dict]:
    """(N, method, budget, teacher size of a distilled row or None) -> the seeds' aggregates: minutes (mean train
    loop; incl. the teacher for distilled students), wall minutes, macro-F1 mean / min / max, seeds, the span of their
    macro-F1 intervals and the mean accuracy on each source."""
    grouped: dict[tuple[str, str, int, int | None], list[dict]] = defaultdict(list)
    for r in rows:
        grouped[(r["train_size"], r["method"], row_images_seen(r, default_images_seen), row_teacher_size(r))].append(r)
    points = {}
    for key, group in grouped.items():
        own = [(run_seconds(r), r.get("teacher_train_s")) for r in group]
        train_s = [seconds for seconds, _ in own if seconds is not None]
        with_teacher = [seconds + teacher for seconds, teacher in own if seconds is not None and teacher is not None]
        f1 = [r["macro_f1"] for r in group]
        bounds = [(r.get("intervals") or {}).get("macro_f1") for r in group]
        sources = sorted({s for r in group for s in r["per_source_accuracy"]})
        points[key] = {
            "minutes": np.mean(train_s) / 60 if train_s else None,
            "minutes_with_teacher": np.mean(with_teacher) / 60 if with_teacher else None,
            "wall_minutes": np.mean([r["wall_s"] for r in group if r.get("wall_s") is not None] or [np.nan]) / 60,
            "macro_f1": float(np.mean(f1)), "macro_f1_min": min(f1), "macro_f1_max": max(f1), "seeds": len(group),
            "ci": (min(b[0] for b in bounds), max(b[1] for b in bounds)) if all(bounds) else None,
            "per_source_accuracy": {s: float(np.mean([r["per_source_accuracy"][s] for r in group
                                                      if s in r["per_source_accuracy"]])) for s in sources},
        }
    return points


def run_seconds(row: dict) -> float | None:
    """A run's own training seconds: its train loop plus a cached distillation's teacher-logit pass (None when the
    row has no train time)."""
    if row.get("train_runtime_s") is None:
        return None
    return row["train_runtime_s"] + row.get("teacher_logits_s", 0.0)


def describe_cpus(rows: Sequence[dict]) -> str:
    """The CPU(s) the rows were timed on, most rows first."""
    counts: dict[str, int] = defaultdict(int)
    for r in rows:
        counts[r.get("cpu") or "not recorded"] += 1
    if len(counts) == 1:
        return next(iter(counts))
    return "; ".join(f"{cpu} ({n} runs)" for cpu, n in sorted(counts.items(), key=lambda item: -item[1]))


def _minutes(value: float | None) -> str:
    return "n/a" if value is None or np.isnan(value) else f"{value:.2f}"


def _ratio(point: dict, teacher: dict | None) -> str:
    """A method's minutes over the teacher's at the same budget (distilled: also with their teacher's minutes)."""
    if not teacher or not teacher["minutes"] or point["minutes"] is None:
        return "n/a"
    text = f"{point['minutes'] / teacher['minutes']:.2f}×"
    if point["minutes_with_teacher"] is not None:
        text += f" ({point['minutes_with_teacher'] / teacher['minutes']:.2f}× incl. teacher)"
    return text


def time_to_accuracy_table(points: dict[tuple[str, str, int, int | None], dict], size: str) -> str:
    """One row per (series, budget) of training-set size `size`, methods in `METHODS` order."""
    keys = sorted((k for k in points if k[0] == size), key=lambda k: (*series_order((k[1], k[3])), k[2]))
    sources = sorted({s for k in keys for s in points[k]["per_source_accuracy"]})
    header = (["method", "images seen", "train min", "min incl. teacher", "wall min", "min vs teacher",
               "macro-F1 mean [min–max]", "seeds", "macro-F1 95 % CIs (lowest–highest bound)"]
              + [f"acc. {s} (mean)" for s in sources])
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for key in keys:
        p = points[key]
        f1 = f"{p['macro_f1']:.3f}" + (f" [{p['macro_f1_min']:.3f}–{p['macro_f1_max']:.3f}]" if p["seeds"] > 1 else "")
        cells = [series_label(key[1], key[3]), str(key[2]), _minutes(p["minutes"]), _minutes(p["minutes_with_teacher"]),
                 _minutes(p["wall_minutes"]), _ratio(p, points.get((size, "teacher", key[2], None))), f1,
                 str(p["seeds"]),
                 f"{p['ci'][0]:.3f}–{p['ci'][1]:.3f}" if p["ci"] else "n/a"]
        cells += [format_metric(p["per_source_accuracy"].get(s)) for s in sources]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def time_to_accuracy_markdown(rows: Sequence[dict], args: BenchmarkArguments) -> str:
    points = time_points(rows, args.images_seen)
    sizes = sorted({r["train_size"] for r in rows}, key=size_key)
    lines = [
        f"Time to accuracy on {args.dataset}: each row is a full run of that many training images seen (its own "
        f"cosine schedule), {args.input_sizes_note()}, evaluated on the full "
        "validation split; seeds pooled as mean [min–max].",
        f"CPU: {describe_cpus(rows)}.",
        "train min: the Trainer's training loop, plus a cached distillation's teacher-logit pass (mean over seeds). "
        "Distilled students learn from one teacher per "
        f"(N, seed) trained on {args.teacher_images_seen} images; 'min incl. teacher' adds its training minutes. "
        "wall min: the whole run (data, the distilled students' one-off teacher-logit pass, training, evaluation). "
        "min vs teacher: train min over the `teacher` method's train min at the same budget.",
        interval_note(rows),
        *pooled_teachers_note(rows),
    ]
    for size in sizes:
        lines += ["", f"### N = {size}", "", time_to_accuracy_table(points, size)]
    return "\n".join(lines) + "\n"


def pooled_teachers_note(rows: Sequence[dict]) -> list[str]:
    """A line when the rows hold teachers of more than one input size (benchmarks pooled into one summary)."""
    distilled = {row_teacher_size(r) for r in rows} - {None}
    teachers = {r.get("image_size") for r in rows if METHODS[r["method"]][0] == "teacher"} - {None}
    if len(distilled | teachers) < 2:
        return []
    sizes = ", ".join(f"{size} px" for size in sorted(distilled | teachers))
    own = ", ".join(f"{size} px" for size in sorted(teachers)) or "none"
    return [f"Teachers of several input sizes are pooled here ({sizes}): a distilled row names its teacher's size; "
            f"the `teacher` method's rows are at {own}."]


def plot_time_to_accuracy(rows: Sequence[dict], path: Path, default_images_seen: int) -> None:
    """Macro-F1 vs training minutes, one panel per N and one line per method, bars min-max over seeds."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure
    from matplotlib.ticker import ScalarFormatter

    points = time_points(rows, default_images_seen)
    sizes = sorted({k[0] for k in points}, key=size_key)
    figure = Figure(figsize=(7 * len(sizes), 5), dpi=120)
    axes = np.atleast_1d(figure.subplots(1, len(sizes)))
    colors = matplotlib.colormaps["tab10"]
    series = sorted({(k[1], k[3]) for k in points}, key=series_order)
    for ax, size in zip(axes, sizes, strict=True):
        for index, (method, teacher_size) in enumerate(series):  # a series keeps its colour in every panel
            keys = sorted((k for k in points if (k[0], k[1], k[3]) == (size, method, teacher_size)), key=lambda k: k[2])
            if not keys:
                continue
            name = series_label(method, teacher_size)
            distilled = METHODS[method][0] == "distill"
            for axis_key, dashed in (("minutes_with_teacher" if distilled else "minutes", False),
                                     *((("minutes", True),) if distilled else ())):
                shown = [points[k] for k in keys if points[k][axis_key] is not None]
                if not shown:
                    continue
                mean = np.array([p["macro_f1"] for p in shown])
                error = [mean - [p["macro_f1_min"] for p in shown], [p["macro_f1_max"] for p in shown] - mean]
                ax.errorbar([p[axis_key] for p in shown], mean, yerr=error, capsize=3, color=colors(index),
                            linestyle="--" if dashed else "-", marker="o", mfc="none" if dashed else colors(index),
                            alpha=0.6 if dashed else 1.0,
                            label=f"{name}, student only" if dashed else name + (", incl. teacher" * distilled))
            for k in keys:  # the budget of each point, next to its main marker
                x = points[k]["minutes_with_teacher" if distilled else "minutes"]
                if x is not None:
                    label = f"{k[2] / 1000:g}k" if k[2] >= 1000 else str(k[2])
                    ax.annotate(label, (x, points[k]["macro_f1"]), fontsize=6, textcoords="offset points",
                                xytext=(4, 4))
        ax.set_xscale("log")
        # minutes as plain numbers on the log axis (matplotlib's default would print 2x10^0)
        ax.xaxis.set_major_formatter(ScalarFormatter())
        ax.xaxis.set_minor_formatter(ScalarFormatter())
        ax.set_xlabel("training minutes (train loop, mean over seeds)\ndistilled: incl. their teacher's (solid), "
                      "student only (dashed, hollow)")
        ax.set_ylabel("macro-F1 (validation)")
        ax.set_title(f"Time to accuracy, N={size} (labels: images seen; bars: min-max over seeds)", fontsize=9)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7)
    figure.suptitle(f"CPU: {describe_cpus(rows)}", fontsize=8)
    figure.tight_layout()
    figure.savefig(path)


def write_time_to_accuracy(root: Path, rows: Sequence[dict], args: BenchmarkArguments) -> None:
    if not rows:
        return
    (root / "time_to_accuracy.md").write_text(time_to_accuracy_markdown(rows, args))
    plot_time_to_accuracy(rows, root / "time_to_accuracy.png", args.images_seen)


__all__ = [
    "budget_runs", "plot_time_to_accuracy", "row_images_seen", "run_time_to_accuracy", "time_points",
    "time_to_accuracy_markdown", "time_to_accuracy_table",
]

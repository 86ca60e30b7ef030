"""`hf-deitcxr benchmark`: the seed's claim measured on real data, and how it changes with the amount of data.

For every training-set size N (patient-level stratified subsets) and seed, it trains the DenseNet-121 teacher,
then a DeiT-tiny without teacher (`baseline`), and DeiT-tiny with hard and with soft distillation from that
teacher; all at the same resolution and the same budget (images seen = optimiser steps x batch, whatever N), and
evaluates each on the full validation split. Results go to `<output_dir>/results.jsonl` (one line a run; a rerun
skips runs already there, so an interrupted benchmark continues), `benchmark.md` (tables) and
`data_efficiency.png` (macro-F1 vs N, one line per method).

With `--budgets`, every (N, budget, seed, method) is its own full run of that many images seen instead, and the
summary is a time-to-accuracy curve (macro-F1 vs training minutes); see `time_to_accuracy.py`.
"""

from __future__ import annotations

import json
import logging
import statistics
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..metrics.intervals import SUMMARY_KEYS, format_interval, interval_bounds
from ..training.arguments import configure_logging
from .recipe import CPU_RECIPE, Recipe, stage_arguments

logger = logging.getLogger(__name__)

# The small-data ViT changes of Lee et al. (2021): shifted patch tokenization and locality self-attention.
SMALL_DATA_VIT = {"shifted_patch_tokenization": True, "locality_self_attention": True}
METHODS: dict[str, tuple[str, dict]] = {
    # method: (training stage, overrides of the benchmark's recipe)
    "teacher": ("teacher", {}),
    "baseline": ("baseline", {}),
    "distill_hard": ("distill", {"distillation_type": "hard"}),
    "distill_soft": ("distill", {"distillation_type": "soft"}),
    "distill_small_data": ("distill", {"distillation_type": "soft", **SMALL_DATA_VIT}),
    "baseline_small_data": ("baseline", SMALL_DATA_VIT),
}
DEFAULT_METHODS = ("teacher", "baseline", "distill_hard", "distill_soft")
ALL = "all"


@dataclass
class BenchmarkArguments:
    dataset: str = field(default="../shared/data/cxr3", metadata={"help": "Dataset with train + validation splits"})
    output_dir: str = field(default="outputs/benchmark")
    methods: str = field(default=",".join(DEFAULT_METHODS),
                         metadata={"help": f"Comma-separated subset of {list(METHODS)}"})
    train_sizes: str = field(default="250,500,1000,all", metadata={"help": "Training-set sizes N ('all' = full)"})
    seeds: str = field(default="0,1", metadata={"help": "Seeds (subset + initialisation) for the small N"})
    multi_seed_below: int = field(
        default=1000, metadata={"help": "N below this runs every seed; larger N run the first seed only "
                                "(without --budgets)"}
    )
    images_seen: int = field(default=9600, metadata={"help": "Training budget of every run, in images"})
    budgets: str | None = field(
        default=None, metadata={"help": "Comma-separated images-seen budgets, e.g. 4800,9600,20000: time-to-accuracy "
                                "mode, each (N, budget, seed, method) its own full run, every seed at every N, "
                                "distilled students from one teacher per (N, seed); default: one run of "
                                "--images_seen per (N, seed, method)"})
    teacher_images_seen: int = field(
        default=4800, metadata={"help": "With --budgets: the budget of the teacher the distilled students learn from"})
    image_size: int = field(default=CPU_RECIPE.image_size)
    patch_size: int = field(default=CPU_RECIPE.patch_size, metadata={"help": "Student patch size"})
    balancing: str = field(default=CPU_RECIPE.balancing, metadata={"help": "Class balancing of every run"})
    distillation_alpha: float = field(default=CPU_RECIPE.distillation_alpha)
    distillation_tau: float = field(default=CPU_RECIPE.distillation_tau)
    pixel_cache_dir: str | None = field(default=None, metadata={"help": "Default: <output_dir>/pixel_cache"})
    latency_repeats: int = field(default=30, metadata={"help": "Timed batch-1 forwards for the CPU latency column"})

    def __post_init__(self) -> None:
        unknown = [m for m in self.method_list if m not in METHODS]
        if unknown:
            raise ValueError(f"unknown methods {unknown}; choose from {list(METHODS)}")
        self.size_list  # noqa: B018 - validates the sizes early
        if self.images_seen <= 0 or self.teacher_images_seen <= 0:
            raise ValueError("images_seen and teacher_images_seen must be positive")
        self.budget_list  # noqa: B018 - validates the budgets early

    @property
    def method_list(self) -> list[str]:
        return [m.strip() for m in self.methods.split(",") if m.strip()]

    @property
    def size_list(self) -> list[int | str]:
        sizes = []
        for item in (s.strip() for s in self.train_sizes.split(",") if s.strip()):
            if item != ALL and (not item.isdigit() or int(item) <= 0):
                raise ValueError(f"train sizes must be positive integers or '{ALL}', got {item!r}")
            sizes.append(ALL if item == ALL else int(item))
        return sizes

    @property
    def budget_list(self) -> list[int] | None:
        """The images-seen budgets, ascending and without repeats; None without --budgets."""
        if self.budgets is None:
            return None
        items = [s.strip() for s in self.budgets.split(",") if s.strip()]
        if not items or any(not s.isdigit() or int(s) <= 0 for s in items):
            raise ValueError(f"budgets must be positive integers, got {self.budgets!r}")
        return sorted({int(s) for s in items})

    @property
    def seed_list(self) -> list[int]:
        return [int(s) for s in self.seeds.split(",") if s.strip()]

    def recipe(self) -> Recipe:
        return CPU_RECIPE.with_overrides(
            image_size=self.image_size, patch_size=self.patch_size, balancing=self.balancing,
            distillation_alpha=self.distillation_alpha, distillation_tau=self.distillation_tau,
        )


def planned_runs(args: BenchmarkArguments) -> list[tuple[int | str, int]]:
    """(N, seed) pairs: every seed below `multi_seed_below`, the first seed above it."""
    runs = []
    for size in args.size_list:
        small = size != ALL and size < args.multi_seed_below
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
    done = {(r["train_size"], r["seed"], r["method"]) for r in single_budget_rows(read_results(results_file))}
    recipe = args.recipe()
    cache = args.pixel_cache_dir or str(root / "pixel_cache")
    methods = args.method_list
    needs_teacher = any(METHODS[m][0] == "distill" for m in methods)
    for size, seed in planned_runs(args):
        run_dir = root / "runs" / f"n{size}-seed{seed}"
        order = (["teacher"] if needs_teacher or "teacher" in methods else []) + [m for m in methods if m != "teacher"]
        for method in order:
            if (str(size), seed, method) in done:
                continue
            stage, overrides = METHODS[method]
            method_recipe = recipe.with_overrides(**overrides)
            teacher_dir = run_dir / "teacher"
            if stage == "distill" and not (teacher_dir / "config.json").is_file():
                raise RuntimeError(f"teacher for N={size}, seed {seed} missing at {teacher_dir}")
            if method == "teacher" and (teacher_dir / "metrics.json").is_file() and "teacher" not in methods:
                continue
            arguments = stage_arguments(
                stage, args.dataset, run_dir / method, method_recipe, images_seen=args.images_seen,
                train_subset=None if size == ALL else size, subset_seed=seed, seed=seed, teacher_dir=teacher_dir,
                pixel_cache_dir=cache, progress_bars=False,
            )
            start = time.perf_counter()
            report = run_training(*arguments)
            wall = time.perf_counter() - start
            row = result_row(method, size, seed, report, run_dir / method, wall, recipe, args.latency_repeats)
            if method in methods:
                with results_file.open("a") as handle:
                    handle.write(json.dumps(row) + "\n")
            logger.info("N=%s seed=%s %s: macro-F1 %.3f (%.0f s)", size, seed, method, row["macro_f1"], wall)
            print(f"[benchmark] N={size} seed={seed} {method}: accuracy {row['accuracy']:.3f}, "
                  f"macro-F1 {row['macro_f1']:.3f}, {wall:.0f} s", flush=True)
    results = single_budget_rows(read_results(results_file))
    write_summary(root, results, args)
    return results


def single_budget_rows(rows: Sequence[dict]) -> list[dict]:
    """The rows of single-budget runs: time-to-accuracy rows (they record `images_seen`) belong to --budgets."""
    return [r for r in rows if "images_seen" not in r]


def result_row(method: str, size, seed: int, report: dict, model_dir: Path, wall: float, recipe: Recipe,
               latency_repeats: int = 30) -> dict:
    overall, extra = report["overall"], report.get("extra", {})
    return {
        "method": method, "train_size": str(size), "seed": seed,
        "num_train_images": extra.get("num_train_images"),
        "accuracy": overall["accuracy"], "macro_f1": overall["macro_f1"], "macro_auc": overall.get("macro_auc"),
        "sensitivity": {name: values.get("sensitivity") for name, values in overall.get("per_class", {}).items()},
        "per_source_accuracy": {s: v["accuracy"] for s, v in (report.get("per_source") or {}).items()},
        "train_runtime_s": extra.get("train_runtime_s"), "wall_s": round(wall, 1),
        "train_images_per_s": extra.get("train_samples_per_second"),
        "parameters": count_parameters(model_dir),
        "latency_ms_batch1": cpu_latency_ms(model_dir, recipe.image_size, repeats=latency_repeats),
        "image_size": recipe.image_size, "intervals": row_intervals(report),
    }


def row_intervals(report: dict) -> dict:
    """[low, high] of a run's accuracy-type figures, from its metrics.json intervals ({} when it has none)."""
    intervals = report.get("intervals")
    if not intervals:
        return {}
    overall = intervals["overall"]
    return {
        "resampled": overall["resampled"], "confidence": overall["confidence"],
        "num_resamples": overall["num_resamples"], **{key: interval_bounds(overall[key]) for key in SUMMARY_KEYS},
        "per_source_accuracy": {source: interval_bounds(values["accuracy"])
                                for source, values in intervals["per_source"].items()},
    }


def metric_cell(row: dict, key: str, source: str | None = None) -> str:
    """A row's figure (`key`, or the accuracy on `source`) with its 95 % interval: '0.872 (0.851–0.890)'."""
    value = row.get(key) if source is None else row["per_source_accuracy"].get(source)
    intervals = row.get("intervals")
    if not intervals:  # a row recorded before runs saved intervals
        return format_metric(value)
    bounds = intervals.get(key) if source is None else intervals["per_source_accuracy"].get(source)
    return format_interval(value, bounds)


def interval_note(results: Sequence[dict]) -> str:
    """How the table's intervals were computed, from the rows themselves."""
    recorded = [r["intervals"] for r in results if r.get("intervals")]
    if not recorded:
        return "No run recorded intervals."
    units = sorted({"patients" if i["resampled"] == "patient" else "images" for i in recorded})
    resamples = sorted({i["num_resamples"] for i in recorded})
    missing = len(results) - len(recorded)
    return (f"In brackets: {recorded[0]['confidence']:.0%} percentile bootstrap intervals resampling the evaluation "
            f"split's {' or '.join(units)} ({'/'.join(map(str, resamples))} resamples; each run's metrics.json)"
            + (f"; {missing} older run(s) without intervals." if missing else "."))


def read_results(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _load(model_dir: Path):
    from transformers import AutoModelForImageClassification

    return AutoModelForImageClassification.from_pretrained(model_dir).eval()


def count_parameters(model_dir: Path) -> int:
    return sum(p.numel() for p in _load(model_dir).parameters())


@torch.inference_mode()
def cpu_latency_ms(model_dir: Path, image_size: int, repeats: int = 30, warmup: int = 3) -> float:
    """Median fp32 forward time of one image (batch 1) on the current torch threads."""
    model = _load(model_dir)
    pixels = torch.randn(1, model.config.num_channels, image_size, image_size)
    times = []
    for index in range(warmup + repeats):
        start = time.perf_counter()
        model(pixel_values=pixels)
        if index >= warmup:
            times.append(time.perf_counter() - start)
    return round(1000 * statistics.median(times), 2)


# --------------------------------------------------------------------------------------------------------------
# Summary: tables and the data-efficiency curve
# --------------------------------------------------------------------------------------------------------------


def write_summary(root: Path, results: Sequence[dict], args: BenchmarkArguments) -> None:
    if not results:
        return
    (root / "benchmark.md").write_text(summary_markdown(results, args))
    plot_data_efficiency(results, root / "data_efficiency.png")


def summary_markdown(results: Sequence[dict], args: BenchmarkArguments) -> str:
    largest = max((r["train_size"] for r in results), key=_size_key)
    budget = (f"Budget: {args.images_seen} training images seen per run, {args.image_size} px (student patch "
              f"{args.patch_size}), evaluation on the full validation split.")
    lines = [budget, interval_note(results), "", f"### N = {largest}", "", full_table(results, largest), "",
             "### Data efficiency (macro-F1)", "", "One seed: value (95 % interval). Several seeds: their mean "
             "[min–max over the seeds], how many seeds, and the lowest to highest bound of their 95 % intervals.",
             "", curve_table(results)]
    return "\n".join(lines) + "\n"


def full_table(results: Sequence[dict], size: str) -> str:
    rows = [r for r in results if r["train_size"] == size]
    classes = sorted({name for r in rows for name in r["sensitivity"]})
    sources = sorted({name for r in rows for name in r["per_source_accuracy"]})
    header = (["method", "seed", "accuracy", "macro-F1", "macro AUC"] + [f"sens. {c}" for c in classes]
              + [f"acc. {s}" for s in sources] + ["train s", "params (M)", "CPU latency b1 (ms)"])
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r in sorted(rows, key=lambda r: (list(METHODS).index(r["method"]), r["seed"])):
        cells = [r["method"], str(r["seed"])] + [metric_cell(r, key) for key in ("accuracy", "macro_f1", "macro_auc")]
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
    for (method, size), values in sorted(grouped.items(), key=lambda item: _size_key(item[0][1])):
        points[method].append((size, float(np.mean(values)), min(values), max(values), len(values)))
    return points


def curve_table(results: Sequence[dict]) -> str:
    sizes = sorted({r["train_size"] for r in results}, key=_size_key)
    lines = ["| method | " + " | ".join(f"N={s}" for s in sizes) + " |", "|" + "---|" * (len(sizes) + 1)]
    for method in (m for m in METHODS if any(r["method"] == m for r in results)):
        cells = [curve_cell([r for r in results if r["method"] == method and r["train_size"] == size])
                 for size in sizes]
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def curve_cell(rows: Sequence[dict]) -> str:
    """Macro-F1 of one (method, N): one seed with its interval; several seeds as mean [range], k seeds, bounds."""
    if not rows:
        return "n/a"
    if len(rows) == 1:
        return metric_cell(rows[0], "macro_f1")
    values = [r["macro_f1"] for r in rows]
    cell = f"{np.mean(values):.3f} [{min(values):.3f}–{max(values):.3f}], {len(rows)} seeds"
    bounds = [(r.get("intervals") or {}).get("macro_f1") for r in rows]
    if all(bounds):
        cell += f", CIs {min(b[0] for b in bounds):.3f}–{max(b[1] for b in bounds):.3f}"
    return cell


def plot_data_efficiency(results: Sequence[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    sizes_in_images = {r["train_size"]: r["num_train_images"] for r in results if r.get("num_train_images")}
    figure = Figure(figsize=(6, 4), dpi=120)
    ax = figure.subplots()
    for method, points in curve_points(results).items():
        x = [sizes_in_images.get(p[0], _size_key(p[0])) for p in points]
        mean = np.array([p[1] for p in points])
        low, high = mean - np.array([p[2] for p in points]), np.array([p[3] for p in points]) - mean
        ax.errorbar(x, mean, yerr=[low, high], marker="o", capsize=3, label=method)
    ax.set_xscale("log")
    ticks = sorted({sizes_in_images.get(r["train_size"], _size_key(r["train_size"])) for r in results})
    ax.minorticks_off()
    ax.set_xticks(ticks, [str(t) for t in ticks])
    ax.set_xlabel("training images (patient-level subset)")
    ax.set_ylabel("macro-F1 (validation)")
    ax.set_title("Data efficiency on cxr3 (bars: min-max over seeds)")
    ax.grid(True, alpha=0.3)
    ax.legend()
    figure.tight_layout()
    figure.savefig(path)


def _size_key(size: str) -> float:
    return float("inf") if size == ALL else float(size)


def format_metric(value: float | None) -> str:
    """A metric as a table cell (3 decimals; n/a when missing)."""
    return "n/a" if value is None else f"{value:.3f}"


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

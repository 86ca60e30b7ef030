"""What a benchmark run is, shared by `benchmark` (the data-efficiency sweep) and `time_to_accuracy` (the wall-clock
axis): the arguments, the methods, a run's result row (with its intervals, parameter count and CPU latency), reading
results back, and the cell formats of the tables."""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..data.cross_validation import CV_POOLS, DEFAULT_CV_POOL, check_fold_arguments
from ..metrics.intervals import SUMMARY_KEYS, format_interval, interval_bounds
from .quickstart import QUICKSTART_IMAGES_SEEN
from .recipe import CPU_RECIPE, Recipe

# The small-data ViT changes of Lee et al. (2021): shifted patch tokenization and locality self-attention.
SMALL_DATA_VIT = {"shifted_patch_tokenization": True, "locality_self_attention": True}
SPT_ONLY = {"shifted_patch_tokenization": True, "locality_self_attention": False}
# Plain 8-px patch embeddings, the student before `CPU_RECIPE` adopted SPT (the seed's DeiT)
PLAIN_PATCHES = {"shifted_patch_tokenization": False, "locality_self_attention": False}
METHODS: dict[str, tuple[str, dict]] = {
    # method: (training stage, overrides of the benchmark's recipe); without an SPT/LSA override a student has the
    # recipe's architecture
    "teacher": ("teacher", {}),
    "baseline": ("baseline", {}),
    "distill_hard": ("distill", {"distillation_type": "hard"}),
    "distill_soft": ("distill", {"distillation_type": "soft"}),
    "distill_small_data": ("distill", {"distillation_type": "soft", **SMALL_DATA_VIT}),
    "baseline_small_data": ("baseline", SMALL_DATA_VIT),
    "distill_spt": ("distill", {"distillation_type": "soft", **SPT_ONLY}),
    "baseline_spt": ("baseline", SPT_ONLY),
    "distill_plain": ("distill", {"distillation_type": "soft", **PLAIN_PATCHES}),
    "baseline_plain": ("baseline", PLAIN_PATCHES),
}
DEFAULT_METHODS = ("teacher", "baseline", "distill_hard", "distill_soft")
ALL = "all"
# `run_training` summary timings of the teacher-logit caches (plain, or K augmented views and their bank)
TEACHER_LOGIT_TIMINGS = ("teacher_logit_cache_s", "view_bank_build_s", "teacher_view_logits_s")


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
    every_seed_at_all: bool = field(
        default=False, metadata={"help": "Run every seed at N=all too (default: the first seed only; without "
                                 "--budgets)"}
    )
    images_seen: int = field(default=9600, metadata={"help": "Training budget of every run, in images"})
    budgets: str | None = field(
        default=None, metadata={"help": "Comma-separated images-seen budgets, e.g. 4800,9600,20000: time-to-accuracy "
                                "mode, each (N, budget, seed, method) its own full run, every seed at every N, "
                                "distilled students from one teacher per (N, seed); default: one run of "
                                "--images_seen per (N, seed, method)"})
    teacher_images_seen: int | None = field(
        default=None, metadata={"help": "The budget of the teacher the distilled students learn from (without "
                                "--budgets also the `teacher` method's); default: with --budgets the quickstart "
                                "teacher's 4800, without them --images_seen (every run alike)"})
    image_size: int = field(default=CPU_RECIPE.image_size, metadata={"help": "The students' input size"})
    teacher_image_size: int | None = field(
        default=None, metadata={"help": "The teachers' input size (default: the recipe's teacher size at the "
                                "recipe's --image_size, else --image_size)"})
    patch_size: int = field(default=CPU_RECIPE.patch_size, metadata={"help": "Student patch size"})
    balancing: str = field(default=CPU_RECIPE.balancing, metadata={"help": "Class balancing of every run"})
    distillation_alpha: float = field(default=CPU_RECIPE.distillation_alpha)
    distillation_tau: float = field(default=CPU_RECIPE.distillation_tau)
    pixel_cache_dir: str | None = field(default=None, metadata={"help": "Default: <output_dir>/pixel_cache"})
    latency_repeats: int = field(default=30, metadata={"help": "Timed batch-1 forwards for the CPU latency column"})
    cv_folds: int | None = field(
        default=None, metadata={"help": "K-fold patient-grouped cross-validation: every (N, seed, method) runs once "
                                "per fold (folds seeded by the seed, N drawn from each fold's training part) and the "
                                "tables give mean ± sd over the folds; default: evaluate on the validation split"})
    cv_pool: str = field(default=DEFAULT_CV_POOL, metadata={"help": "With --cv_folds: the splits pooled before "
                                                            "folding", "choices": list(CV_POOLS)})

    def __post_init__(self) -> None:
        unknown = [m for m in self.method_list if m not in METHODS]
        if unknown:
            raise ValueError(f"unknown methods {unknown}; choose from {list(METHODS)}")
        self.size_list  # noqa: B018 - validates the sizes early
        if self.teacher_images_seen is None:
            budget_mode = self.budgets is not None
            self.teacher_images_seen = QUICKSTART_IMAGES_SEEN["teacher"] if budget_mode else self.images_seen
        if self.images_seen <= 0 or self.teacher_images_seen <= 0:
            raise ValueError("images_seen and teacher_images_seen must be positive")
        self.budget_list  # noqa: B018 - validates the budgets early
        if self.cv_folds is not None:
            check_fold_arguments(self.cv_folds, 0, self.cv_pool)
            if self.budgets is not None:
                raise ValueError("--cv_folds is not supported with --budgets (time to accuracy) yet")

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
    def fold_list(self) -> list[int | None]:
        """The evaluation folds of each (N, seed): [None] (the validation split) without --cv_folds."""
        return [None] if self.cv_folds is None else list(range(self.cv_folds))

    @property
    def seed_list(self) -> list[int]:
        return [int(s) for s in self.seeds.split(",") if s.strip()]

    def input_sizes_note(self) -> str:
        """The runs' input sizes for a summary, e.g. "64 px (student patch 8; teachers at 96 px)"."""
        teacher = self.recipe().image_size_for("teacher")
        teacher_note = f"; teachers at {teacher} px" if teacher != self.image_size else ""
        return f"{self.image_size} px (student patch {self.patch_size}{teacher_note})"

    def recipe(self) -> Recipe:
        return CPU_RECIPE.at_size(self.image_size, self.teacher_image_size).with_overrides(
            patch_size=self.patch_size, balancing=self.balancing,
            distillation_alpha=self.distillation_alpha, distillation_tau=self.distillation_tau,
        )


def result_row(method: str, size, seed: int, report: dict, model_dir: Path, wall: float | None, recipe: Recipe,
               latency_repeats: int = 30) -> dict:
    overall, extra = report["overall"], report.get("extra", {})
    image_size = recipe.image_size_for(METHODS[method][0])
    return {
        "method": method, "train_size": str(size), "seed": seed,
        "num_train_images": extra.get("num_train_images"),
        "accuracy": overall["accuracy"], "macro_f1": overall["macro_f1"], "macro_auc": overall.get("macro_auc"),
        "sensitivity": {name: values.get("sensitivity") for name, values in overall.get("per_class", {}).items()},
        "per_source_accuracy": {s: v["accuracy"] for s, v in (report.get("per_source") or {}).items()},
        "train_runtime_s": extra.get("train_runtime_s"), "wall_s": None if wall is None else round(wall, 1),
        # the teacher-logit pass of a cached distillation, outside Trainer's train loop but part of the student's cost
        "teacher_logits_s": round(sum(extra.get(key) or 0.0 for key in TEACHER_LOGIT_TIMINGS), 1),
        "train_images_per_s": extra.get("train_samples_per_second"),
        "parameters": count_parameters(model_dir),
        "latency_ms_batch1": cpu_latency_ms(model_dir, image_size, repeats=latency_repeats),
        "image_size": image_size, "intervals": row_intervals(report), **fold_fields(extra),
    }


def fold_fields(extra: dict) -> dict:
    """The fold of a cross-validation run ({} for a run on the validation split): its index, K and held-out sizes."""
    fold = extra.get("cross_validation")
    if not fold:
        return {}
    return {"fold": fold["fold"], "cv_folds": fold["n_splits"], "eval_images": fold["eval_images"],
            "eval_patients": fold["eval_patients"]}


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


def size_key(size: str) -> float:
    return float("inf") if size == ALL else float(size)


def mean_sd_cell(values: Sequence[float | None]) -> str:
    """'0.812 ± 0.034' over the runs that have the figure (sample sd); one value alone; 'n/a' when none has it."""
    present = [v for v in values if v is not None]
    if not present:
        return "n/a"
    if len(present) == 1:
        return format_metric(present[0])
    cell = f"{statistics.mean(present):.3f} ± {statistics.stdev(present):.3f}"
    return cell if len(present) == len(values) else f"{cell} ({len(present)} of {len(values)})"


def format_metric(value: float | None) -> str:
    """A metric as a table cell (3 decimals; n/a when missing)."""
    return "n/a" if value is None else f"{value:.3f}"

"""Recipe tuning on the validation split: one named configuration = `CPU_RECIPE` with a few fields overridden.

Each run goes through the same harness as the benchmark and the quickstart (`stage_arguments` + `run_training`)
against a fixed, already trained teacher, and appends one line to `<output_dir>/results.jsonl`: the full recipe,
the budget in images seen, validation accuracy / macro-F1 / per-class sensitivity / per-source accuracy, wall
time and, with `--eval_every_images`, the learning curve of the run (macro-F1 vs images seen; its last point is
the final model at the real end of the schedule). A rerun skips (name, seed, images_seen) already recorded, so an
interrupted study continues. `tuning.md` gets the tables.

    hf-deitcxr tune --teacher_dir outputs/quickstart/teacher --output_dir outputs/tuning \\
        --name lr1e-3 --overrides student_learning_rate=1e-3,drop_path_rate=0 --images_seen 9600
"""

from __future__ import annotations

import json
import logging
import time
import types
import typing
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..training.arguments import STAGES, configure_logging
from .benchmark_runs import format_metric, interval_note, metric_cell, read_results, row_intervals
from .recipe import CPU_RECIPE, Recipe, stage_arguments

logger = logging.getLogger(__name__)


@dataclass
class TuneArguments:
    teacher_dir: str = field(default=None, metadata={"help": "Trained teacher folder (fixed for the whole study)"})
    dataset: str = field(default="../shared/data/cxr3", metadata={"help": "Dataset with train + validation splits"})
    output_dir: str = field(default="outputs/tuning")
    name: str = field(default="cpu_recipe", metadata={"help": "Name of this configuration in the tables"})
    overrides: str = field(
        default="", metadata={"help": "Comma-separated Recipe field=value, e.g. distillation_tau=2,augment=false"}
    )
    stage: str = field(default="distill", metadata={"choices": list(STAGES)})
    images_seen: int = field(default=9600, metadata={"help": "Training budget in images (steps x batch)"})
    eval_every_images: int | None = field(
        default=None, metadata={"help": "Also evaluate on the validation split every this many training images"}
    )
    seeds: str = field(default="0", metadata={"help": "Comma-separated seeds; one run each"})
    pixel_cache_dir: str | None = field(default=None, metadata={"help": "Default: <output_dir>/pixel_cache"})

    def __post_init__(self) -> None:
        if self.stage == "distill" and not (self.teacher_dir and (Path(self.teacher_dir) / "config.json").is_file()):
            raise ValueError(f"--teacher_dir must be a trained teacher folder (config.json), got {self.teacher_dir!r}")
        if self.images_seen <= 0:
            raise ValueError("images_seen must be positive")
        if not self.name or "/" in self.name:
            raise ValueError(f"name must be a non-empty folder-safe string, got {self.name!r}")
        self.recipe()  # validates the overrides early

    @property
    def seed_list(self) -> list[int]:
        return [int(s) for s in self.seeds.split(",") if s.strip()]

    def recipe(self) -> Recipe:
        return CPU_RECIPE.with_overrides(**parse_overrides(self.overrides))


def parse_overrides(text: str) -> dict:
    """'a=1,b=false' -> {'a': 1, 'b': False}, each value cast to the type of its `Recipe` field ('none' where the
    field may be None)."""
    hints = typing.get_type_hints(Recipe)
    overrides = {}
    for item in (part.strip() for part in text.split(",") if part.strip()):
        key, sep, value = (s.strip() for s in item.partition("="))
        if not sep or not value:
            raise ValueError(f"override {item!r} is not field=value")
        if key not in hints:
            raise ValueError(f"unknown recipe field {key!r}; fields: {sorted(hints)}")
        overrides[key] = _cast(key, value, hints[key])
    return overrides


def _cast(key: str, value: str, hint):
    if isinstance(hint, types.UnionType):  # `int | None`
        if value.lower() == "none":
            return None
        (hint,) = [kind for kind in typing.get_args(hint) if kind is not type(None)]
    return _cast_to(key, value, hint)


def _cast_to(key: str, value: str, kind: type):
    if kind is bool:
        if value.lower() not in ("true", "false", "1", "0"):
            raise ValueError(f"{key} must be true or false, got {value!r}")
        return value.lower() in ("true", "1")
    try:
        return kind(value)
    except ValueError as error:
        raise ValueError(f"{key} must be a {kind.__name__}, got {value!r}") from error


def run_tuning(args: TuneArguments) -> list[dict]:
    from ..training.run import run_training

    root = Path(args.output_dir)
    root.mkdir(parents=True, exist_ok=True)
    results_file = root / "results.jsonl"
    recipe = args.recipe()
    batch_size = recipe.batch_size_for(args.stage)
    images_seen = _rounded_budget(args.images_seen, batch_size)
    done = {(r["name"], r["seed"], r["images_seen"]) for r in read_results(results_file)}
    for seed in args.seed_list:
        if (args.name, seed, images_seen) in done:
            print(f"[tune] {args.name} seed={seed} images={images_seen}: already in {results_file}", flush=True)
            continue
        run_dir = root / "runs" / f"{args.name}-i{images_seen}-seed{seed}"
        arguments = stage_arguments(
            args.stage, args.dataset, run_dir, recipe, images_seen=images_seen, seed=seed,
            teacher_dir=args.teacher_dir, pixel_cache_dir=args.pixel_cache_dir or str(root / "pixel_cache"),
            progress_bars=False, eval_every_images=args.eval_every_images,
        )
        start = time.perf_counter()
        report = run_training(*arguments)
        row = tuning_row(args, recipe, seed, images_seen, report, run_dir, time.perf_counter() - start)
        with results_file.open("a") as handle:
            handle.write(json.dumps(row) + "\n")
        print(f"[tune] {args.name} seed={seed} images={images_seen}: macro-F1 {row['macro_f1']:.3f}, "
              f"accuracy {row['accuracy']:.3f}, {row['wall_s']:.0f} s", flush=True)
    results = read_results(results_file)
    (root / "tuning.md").write_text(summary_markdown(results))
    return results


def _rounded_budget(images_seen: int, batch_size: int) -> int:
    """The images a run really sees: whole optimiser steps."""
    return -(-images_seen // batch_size) * batch_size


def tuning_row(args: TuneArguments, recipe: Recipe, seed: int, images_seen: int, report: dict, run_dir: Path,
               wall: float) -> dict:
    overall, extra = report["overall"], report.get("extra", {})
    return {
        "name": args.name, "seed": seed, "images_seen": images_seen, "stage": args.stage,
        "overrides": parse_overrides(args.overrides), "recipe": asdict(recipe),
        "num_train_images": extra.get("num_train_images"),
        "accuracy": overall["accuracy"], "macro_f1": overall["macro_f1"],
        "balanced_accuracy": overall.get("balanced_accuracy"), "macro_auc": overall.get("macro_auc"),
        "sensitivity": {name: values.get("sensitivity") for name, values in overall.get("per_class", {}).items()},
        "per_source_accuracy": {s: v["accuracy"] for s, v in (report.get("per_source") or {}).items()},
        "curve": learning_curve(run_dir, recipe.batch_size_for(args.stage), images_seen, overall["macro_f1"]),
        "train_runtime_s": extra.get("train_runtime_s"), "train_images_per_s": extra.get("train_samples_per_second"),
        "wall_s": round(wall, 1), "teacher_dir": args.teacher_dir, "teacher_macro_f1": teacher_macro_f1(args),
        "intervals": row_intervals(report),
    }


def learning_curve(run_dir: Path, batch_size: int, images_seen: int, final_macro_f1: float) -> list[list[float]]:
    """[[images seen, validation macro-F1], ...] from the mid-run evaluations, ending with the final model."""
    state_file = Path(run_dir) / "trainer_state.json"
    history = json.loads(state_file.read_text()).get("log_history", []) if state_file.is_file() else []
    points = [[entry["step"] * batch_size, round(entry["eval_macro_f1"], 4)] for entry in history
              if "eval_macro_f1" in entry and entry["step"] * batch_size < images_seen]
    return points + [[images_seen, round(final_macro_f1, 4)]]


def teacher_macro_f1(args: TuneArguments) -> float | None:
    metrics = Path(args.teacher_dir or "") / "metrics.json"
    return json.loads(metrics.read_text())["overall"]["macro_f1"] if metrics.is_file() else None


# --------------------------------------------------------------------------------------------------------------
# Tables
# --------------------------------------------------------------------------------------------------------------


def summary_markdown(results: Sequence[dict]) -> str:
    teacher = next((r["teacher_macro_f1"] for r in results if r.get("teacher_macro_f1") is not None), None)
    head = f"Teacher validation macro-F1: {teacher:.3f}." if teacher is not None else "No teacher metrics."
    curves = "Learning curves (validation macro-F1 at images seen; the last point is the end of the schedule):"
    return "\n".join([head, interval_note(results), "", results_table(results, teacher), "", curves, "",
                      curve_table(results)]) + "\n"


def results_table(results: Sequence[dict], teacher: float | None = None) -> str:
    classes = sorted({c for r in results for c in r["sensitivity"]})
    sources = sorted({s for r in results for s in r["per_source_accuracy"]})
    header = (["config", "overrides", "seed", "images seen", "accuracy", "macro-F1", "teacher - student"]
              + [f"sens. {c}" for c in classes] + [f"acc. {s}" for s in sources] + ["wall s"])
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r in sorted(results, key=lambda r: (r["name"], r["images_seen"], r["seed"])):
        overrides = ", ".join(f"{k}={v}" for k, v in r["overrides"].items()) or "(CPU_RECIPE)"
        gap = "n/a" if teacher is None else f"{teacher - r['macro_f1']:+.3f}"
        cells = [r["name"], overrides, str(r["seed"]), str(r["images_seen"]), metric_cell(r, "accuracy"),
                 metric_cell(r, "macro_f1"), gap]
        cells += [format_metric(r["sensitivity"].get(c)) for c in classes]
        cells += [metric_cell(r, "per_source_accuracy", s) for s in sources]
        cells.append(f"{r['wall_s']:.0f}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def curve_table(results: Sequence[dict]) -> str:
    lines = ["| config | seed | macro-F1 at images seen |", "|---|---|---|"]
    for r in sorted(results, key=lambda r: (r["name"], r["images_seen"], r["seed"])):
        points = ", ".join(f"{int(images)}: {f1:.3f}" for images, f1 in r["curve"])
        lines.append(f"| {r['name']} | {r['seed']} | {points} |")
    return "\n".join(lines)


def tune_main(argv: Sequence[str] | None = None) -> int:
    import sys

    from transformers import HfArgumentParser

    configure_logging()
    (args,) = HfArgumentParser(TuneArguments).parse_args_into_dataclasses(
        args=list(sys.argv[1:] if argv is None else argv)
    )
    run_tuning(args)
    print((Path(args.output_dir) / "tuning.md").read_text())
    return 0

"""What augmented distillation from cached view logits (`--teacher_views K`, FKD) costs and gives, against online
augmented distillation (K = 0: the teacher runs on every augmented batch), measured in the same run.

Each K trains the CPU recipe's distill stage (`stage_arguments` + `run_training`) with the student's augmentation on
(`augment=True`, `student_augmentation_preset`), the same seed and the same number of images seen, into
`<output_dir>/views-<K>/`. Reported per K: the bank build and teacher-logit times (once per run), the training time,
time per step and images/s, the ratios of time per step and of the whole cost (bank + logits + training) to online
distillation, macro-F1 with its 95 % bootstrap interval and each source's accuracy (with its interval) on the
evaluation split. Rows also go to `<output_dir>/bench_view_cache.json`.

    python scripts/bench_view_cache.py --dataset ../shared/data/cxr3 --teacher_dir outputs/teacher \
        --output_dir outputs/bench_view_cache --views 0,1,4,8
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from transformers import HfArgumentParser

from hf_deitcxr.data.augmentation import AUGMENTATION_PRESETS
from hf_deitcxr.experiments.recipe import CPU_RECIPE, stage_arguments
from hf_deitcxr.experiments.tuning import parse_overrides
from hf_deitcxr.hardware import cpu_description
from hf_deitcxr.metrics.intervals import format_entry
from hf_deitcxr.training.arguments import configure_logging
from hf_deitcxr.training.run import run_training


@dataclass
class ViewCacheArguments:
    dataset: str = field(metadata={"help": "Data set of the distill stage (as --dataset of hf-deitcxr train)"})
    teacher_dir: str = field(metadata={"help": "Trained teacher folder (the CPU recipe's teacher stage)"})
    output_dir: str = field(default="outputs/bench_view_cache")
    seed: int = field(default=0)
    images_seen: int = field(default=9600, metadata={"help": "Training budget of every run, in images"})
    views: str = field(default="0,1,4,8", metadata={"help": "Comma-separated K; 0 = online distillation"})
    augmentation_preset: str = field(default="low_resolution", metadata={"choices": list(AUGMENTATION_PRESETS)})
    image_size: int = field(default=CPU_RECIPE.image_size)
    pixel_cache_dir: str | None = field(default=None, metadata={"help": "Reuse decoded pixels between the runs"})
    recipe_overrides: str = field(
        default="", metadata={"help": "More CPU_RECIPE fields for every K, as `hf-deitcxr tune --overrides`, e.g. "
                              "'shifted_patch_tokenization=true,locality_self_attention=true'"})

    def __post_init__(self) -> None:
        self.view_counts = [int(k) for k in self.views.split(",") if k.strip()]
        if not self.view_counts or any(k < 0 for k in self.view_counts):
            raise ValueError(f"--views must list K >= 0 (0 = online), got {self.views!r}")
        self.overrides = parse_overrides(self.recipe_overrides)  # unknown fields fail here, before any training


def run_one(args: ViewCacheArguments, num_views: int) -> dict:
    """Train the distill stage with K views (0: online) and return its row."""
    recipe = CPU_RECIPE.with_overrides(**{**args.overrides, "augment": True, "teacher_views": num_views,
                                          "image_size": args.image_size,
                                          "student_augmentation_preset": args.augmentation_preset})
    model_args, data_args, training_args = stage_arguments(
        "distill", args.dataset, Path(args.output_dir) / f"views-{num_views}", recipe, images_seen=args.images_seen,
        seed=args.seed, teacher_dir=args.teacher_dir, pixel_cache_dir=args.pixel_cache_dir, progress_bars=False,
    )
    start = time.perf_counter()
    report = run_training(model_args, data_args, training_args)
    wall = time.perf_counter() - start
    extra, intervals = report["extra"], report["intervals"]
    steps = extra["global_step"]
    train_s = extra["train_runtime_s"]
    return {
        "views": num_views, "seed": args.seed, "images_seen": steps * training_args.per_device_train_batch_size,
        "view_bank_build_s": extra.get("view_bank_build_s", 0.0),
        "teacher_view_logits_s": extra.get("teacher_view_logits_s", 0.0),
        "train_s": train_s, "step_s": train_s / steps,
        "images_per_s": steps * training_args.per_device_train_batch_size / train_s, "wall_s": wall,
        "macro_f1": report["overall"]["macro_f1"], "macro_f1_interval": intervals["overall"]["macro_f1"],
        "per_source_accuracy": {name: metrics["accuracy"] for name, metrics in sorted(report["per_source"].items())},
        "per_source_accuracy_interval": {name: intervals["per_source"][name]["accuracy"]
                                         for name in sorted(report["per_source"])},
        "interval_method": {key: intervals["overall"][key] for key in ("resampled", "confidence", "num_resamples")},
    }


def format_table(rows: list[dict]) -> str:
    """The markdown table; the ratios are against the K = 0 (online) row of the same run, when there is one."""
    online = next((row for row in rows if row["views"] == 0), None)
    sources = sorted({name for row in rows for name in row["per_source_accuracy"]})
    header = (["K", "bank build s", "teacher-logit s", "train s", "s/step", "images/s", "s/step vs online",
               "total s vs online", "macro-F1 (95 % CI)"] + [f"acc. {name} (95 % CI)" for name in sources])
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        total = row["view_bank_build_s"] + row["teacher_view_logits_s"] + row["train_s"]
        if online is not None:
            step_ratio = f"{row['step_s'] / online['step_s']:.2f}x"
            total_ratio = f"{total / online['train_s']:.2f}x"
        else:
            step_ratio = total_ratio = "n/a"
        cells = [str(row["views"]) if row["views"] else "0 (online)", f"{row['view_bank_build_s']:.1f}",
                 f"{row['teacher_view_logits_s']:.1f}", f"{row['train_s']:.1f}", f"{row['step_s']:.3f}",
                 f"{row['images_per_s']:.1f}", step_ratio, total_ratio, format_entry(row["macro_f1_interval"])]
        cells += [format_entry(row["per_source_accuracy_interval"].get(name)) for name in sources]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    (args,) = HfArgumentParser(ViewCacheArguments).parse_args_into_dataclasses(args=argv)
    configure_logging()
    cpu = cpu_description()
    rows = [run_one(args, num_views) for num_views in args.view_counts]
    output = Path(args.output_dir)
    output.mkdir(parents=True, exist_ok=True)
    (output / "bench_view_cache.json").write_text(json.dumps(
        {"args": asdict(args), "cpu": cpu, "rows": rows}, indent=2))
    method = rows[0]["interval_method"]
    print(f"CPU: {cpu}")
    print(f"CPU recipe distill stage{' with ' + args.recipe_overrides if args.overrides else ''}, "
          f"{args.image_size} px, augmentation preset {args.augmentation_preset}, "
          f"{rows[0]['images_seen']} images seen, seed {args.seed}; K = 0 is online distillation; intervals: "
          f"{method['confidence']:.0%} percentile bootstrap over {method['resampled']}s "
          f"({method['num_resamples']} resamples)")
    print(format_table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Training throughput, MFU and accuracy of the teacher -> student recipe on an accelerator.

Trains the DenseNet-121 teacher, then the distilled DeiT-tiny student, through the same harness as the benchmark
(`stage_arguments` + `run_training`, so the same `Trainer`, data and metrics), at the paper's 224 px / patch 16 by
default, in bf16 where the device has it, under `accelerate launch` (one process per GPU):

    accelerate launch --num_processes 1 -m hf_deitcxr.cli gpu-benchmark --dataset ../shared/data/cxr3 \\
        --output_dir outputs/bench_gpu --teacher_images_seen 150000 --student_images_seen 300000

Per stage it reports: images/s over the whole run (the Trainer's figure) and in steady state (the second half of
the optimiser steps, timed by a callback), the model FLOPs of one training image (torch's FlopCounterMode: forward +
backward, plus the teacher's forward for a distillation step that runs it), the achieved TFLOP/s and MFU against
the device's dense bf16 peak (datasheet figures below, or `--peak_tflops`), and the validation accuracy, macro-F1
and per-source accuracy of the final model. Rank 0 writes `bench_gpu.json` and `bench_gpu.md`.
"""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from transformers import TrainerCallback

from ..training.arguments import configure_logging
from ..training.builders import build_student, build_teacher
from ..training.harness import seed_everything
from .benchmark_runs import format_metric
from .recipe import CPU_RECIPE, Recipe, stage_arguments
from .tuning import parse_overrides

# Dense (no sparsity) bf16 tensor-core peaks from NVIDIA's datasheets, TFLOP/s; matched on the device name.
# A constant of the hardware, not a measurement: MFU = achieved model FLOP/s / this.
DENSE_BF16_PEAK_TFLOPS = (
    ("H200", 989.4),
    ("H100 PCIe", 756.0),
    ("H100", 989.4),
    ("A100", 312.0),
)
LABELS = ("covid", "normal", "pneumonia")


@dataclass
class GpuBenchmarkArguments:
    dataset: str = field(default="../shared/data/cxr3", metadata={"help": "Dataset with train + validation splits"})
    output_dir: str = field(default="outputs/bench_gpu")
    image_size: int = field(default=224)
    patch_size: int = field(default=16, metadata={"help": "Student patch size"})
    overrides: str = field(default="", metadata={"help": "Comma-separated Recipe field=value (as hf-deitcxr tune)"})
    teacher_images_seen: int = field(default=150_000, metadata={"help": "Teacher budget in images"})
    student_images_seen: int = field(default=300_000, metadata={"help": "Student budget in images"})
    teacher_dir: str | None = field(
        default=None, metadata={"help": "Use this trained teacher instead of training one (no teacher row)"}
    )
    peak_tflops: float | None = field(
        default=None, metadata={"help": "Dense bf16 peak per device; default: from the device name (CUDA only)"}
    )
    dataloader_num_workers: int = field(default=8, metadata={"help": "Collation/augmentation worker processes"})
    seed: int = field(default=0)

    def __post_init__(self) -> None:
        if self.teacher_images_seen <= 0 or self.student_images_seen <= 0:
            raise ValueError("the image budgets must be positive")
        if self.teacher_dir and not (Path(self.teacher_dir) / "config.json").is_file():
            raise ValueError(f"--teacher_dir must be a trained teacher folder (config.json), got {self.teacher_dir!r}")
        if self.peak_tflops is not None and self.peak_tflops <= 0:
            raise ValueError("peak_tflops must be positive")
        self.recipe()  # validates the overrides early

    def recipe(self) -> Recipe:
        # at 224 px the teacher takes the student's size, as in the paper, unless an override sets it
        return CPU_RECIPE.at_size(self.image_size).with_overrides(patch_size=self.patch_size,
                                                                  **parse_overrides(self.overrides))


class StepTimer(TrainerCallback):
    """Wall-clock time of every optimiser step end, to separate steady-state speed from start-up costs."""

    def __init__(self) -> None:
        self.times: list[float] = []

    def on_train_begin(self, args, state, control, **kwargs):
        self.times = [time.perf_counter()]

    def on_step_end(self, args, state, control, **kwargs):
        if torch.cuda.is_available():
            torch.cuda.synchronize()  # kernels are queued asynchronously: time what has run, not what was queued
        self.times.append(time.perf_counter())

    def steady_images_per_s(self, images_per_step: int) -> float | None:
        """Median speed over the second half of the steps (cudnn autotuning and warm-up excluded)."""
        durations = [b - a for a, b in zip(self.times[:-1], self.times[1:], strict=True)]
        tail = durations[len(durations) // 2:]
        return images_per_step / statistics.median(tail) if tail else None


def peak_tflops(override: float | None) -> float | None:
    if override is not None:
        return override
    if not torch.cuda.is_available():
        return None
    name = torch.cuda.get_device_name()
    return next((peak for key, peak in DENSE_BF16_PEAK_TFLOPS if key in name), None)


def training_step_flops(stage: str, image_size: int, patch_size: int, batch: int, seed: int = 0) -> int:
    """Model FLOPs (torch's FlopCounterMode) of forward + backward of the model `stage` trains, on one batch:
    the DenseNet teacher for "teacher", the DeiT student otherwise. Counted on the CPU: FLOPs do not depend on the
    device. Attention runs in SDPA's math backend here: FlopCounterMode counts nothing for the CPU's fused SDPA
    kernel, which would leave the attention matmuls out."""
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from torch.utils.flop_counter import FlopCounterMode

    seed_everything(seed)  # the same model and batch every time
    pixels = torch.randn(batch, 3, image_size, image_size)
    labels = torch.zeros(batch, dtype=torch.long)
    if stage == "teacher":
        model = build_teacher(list(LABELS), image_size=image_size)
    else:
        model = build_student(list(LABELS), image_size=image_size, patch_size=patch_size, drop_path_rate=0.0)
    with sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter:
        model(pixel_values=pixels, labels=labels).loss.backward()
    return counter.get_total_flops()


def teacher_forward_flops(image_size: int, batch: int, seed: int = 0) -> int:
    """Model FLOPs of the frozen teacher's forward on one batch, as a distillation step runs it."""
    from torch.utils.flop_counter import FlopCounterMode

    seed_everything(seed)
    teacher = build_teacher(list(LABELS), image_size=image_size).eval()
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        teacher(pixel_values=torch.randn(batch, 3, image_size, image_size))
    return counter.get_total_flops()


def training_flops_per_image(stage: str, recipe: Recipe, teacher_forward_per_step: bool, batch: int = 2) -> float:
    """Model FLOPs of one training image: forward + backward of the trained model, plus the frozen teacher's forward
    when a distillation step runs it (not with the logit cache)."""
    flops = training_step_flops(stage, recipe.image_size_for(stage), recipe.patch_size, batch)
    if stage == "distill" and teacher_forward_per_step:
        flops += teacher_forward_flops(recipe.image_size_for("teacher"), batch)
    return flops / batch


def run_stage(stage: str, args: GpuBenchmarkArguments, recipe: Recipe, teacher_dir: Path, peak: float | None):
    from ..training.run import run_training

    images_seen = args.teacher_images_seen if stage == "teacher" else args.student_images_seen
    model_args, data_args, training_args = stage_arguments(
        stage, args.dataset, Path(args.output_dir) / stage, recipe, images_seen=images_seen, seed=args.seed,
        teacher_dir=teacher_dir, pixel_cache_dir=str(Path(args.output_dir) / "pixel_cache"), progress_bars=False,
    )
    training_args.dataloader_num_workers = args.dataloader_num_workers
    timer = StepTimer()
    start = time.perf_counter()
    report = run_training(model_args, data_args, training_args, callbacks=[timer])
    wall = time.perf_counter() - start
    flops = training_flops_per_image(stage, recipe, teacher_forward_per_step=not data_args.teacher_logit_cache)
    return stage_row(stage, report, wall, timer, flops, peak, training_args, data_args)


def stage_row(stage: str, report: dict, wall: float, timer: StepTimer, flops: float, peak: float | None,
              training_args, data_args) -> dict:
    """One table row; `report` is `run_training`'s (its bare summary on ranks other than 0)."""
    world = training_args.world_size
    images_per_step = training_args.per_device_train_batch_size * world * training_args.gradient_accumulation_steps
    extra = report.get("extra", report)
    overall = report.get("overall", {})
    run_speed = extra.get("train_samples_per_second")
    steady = timer.steady_images_per_s(images_per_step)
    row = {
        "stage": stage, "images_seen": extra.get("global_step", 0) * images_per_step, "wall_s": round(wall, 1),
        "train_runtime_s": extra.get("train_runtime_s"), "images_per_s_run": run_speed,
        "images_per_s_steady": steady, "gflop_per_image": flops / 1e9, "processes": world,
        "batch_per_device": training_args.per_device_train_batch_size, "bf16": training_args.bf16,
        "augment": data_args.augment, "teacher_logit_cache": data_args.teacher_logit_cache,
        "accuracy": overall.get("accuracy"), "macro_f1": overall.get("macro_f1"),
        "per_source_accuracy": {s: v["accuracy"] for s, v in (report.get("per_source") or {}).items()},
    }
    for key, speed in (("run", run_speed), ("steady", steady)):
        achieved = flops * speed / 1e12 if speed else None
        row[f"tflops_{key}"] = achieved
        row[f"mfu_{key}"] = achieved / (peak * world) if achieved is not None and peak else None
    return row


def device_description() -> str:
    if torch.cuda.is_available():
        return f"{torch.cuda.device_count()} x {torch.cuda.get_device_name()}, torch {torch.__version__}"
    return f"CPU, torch {torch.__version__}"


def results_markdown(rows: Sequence[dict], args: GpuBenchmarkArguments, peak: float | None) -> str:
    sources = sorted({s for r in rows for s in r["per_source_accuracy"]})
    header = (["stage", "images seen", "wall s", "img/s (run)", "img/s (steady)", "GFLOP/img", "TFLOP/s (steady)",
               "MFU (run)", "MFU (steady)", "accuracy", "macro-F1"] + [f"acc. {s}" for s in sources])
    lines = [f"Device: {device_description()}; dense bf16 peak per device: "
             f"{f'{peak:g} TFLOP/s' if peak else 'unknown (MFU not computed)'}; "
             f"{args.image_size} px, student patch {args.patch_size}; recipe overrides: {args.overrides or 'none'}.",
             "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r in rows:
        cells = [r["stage"], str(r["images_seen"]), f"{r['wall_s']:.0f}", _number(r["images_per_s_run"]),
                 _number(r["images_per_s_steady"]), f"{r['gflop_per_image']:.2f}", _number(r["tflops_steady"], 1),
                 _percent(r["mfu_run"]), _percent(r["mfu_steady"]), format_metric(r["accuracy"]),
                 format_metric(r["macro_f1"])] + [format_metric(r["per_source_accuracy"].get(s)) for s in sources]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _number(value: float | None, digits: int = 0) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def _percent(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.1f}%"


def run_gpu_benchmark(args: GpuBenchmarkArguments) -> list[dict]:
    recipe = args.recipe()
    peak = peak_tflops(args.peak_tflops)
    teacher_dir = Path(args.teacher_dir) if args.teacher_dir else Path(args.output_dir) / "teacher"
    rows = [] if args.teacher_dir else [run_stage("teacher", args, recipe, teacher_dir, peak)]
    rows.append(run_stage("distill", args, recipe, teacher_dir, peak))
    if _is_main_process():
        root = Path(args.output_dir)
        payload = {"device": device_description(), "peak_tflops": peak, "arguments": asdict(args),
                   "recipe": asdict(recipe), "rows": rows}
        (root / "bench_gpu.json").write_text(json.dumps(payload, indent=2))
        (root / "bench_gpu.md").write_text(results_markdown(rows, args, peak))
    return rows


def _is_main_process() -> bool:
    return not torch.distributed.is_initialized() or torch.distributed.get_rank() == 0


def gpu_benchmark_main(argv: Sequence[str] | None = None) -> int:
    import sys

    from transformers import HfArgumentParser

    configure_logging()
    (args,) = HfArgumentParser(GpuBenchmarkArguments).parse_args_into_dataclasses(
        args=list(sys.argv[1:] if argv is None else argv)
    )
    run_gpu_benchmark(args)
    if _is_main_process():
        print((Path(args.output_dir) / "bench_gpu.md").read_text())
    return 0

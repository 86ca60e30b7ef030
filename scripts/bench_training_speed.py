"""Training speed: a plain DeiT student step vs a distillation step (student + frozen DenseNet teacher).

Baseline: the plain student step (`student`), measured in the same run. Each configuration runs in its own
process, so its peak memory (max RSS) is its own. A step is what `DistillationTrainer` does: collate cached uint8
images with the random augmentation, teacher forward under no_grad (eval mode, autocast like the student), student
forward + DeiT loss, backward, AdamW step.

    python scripts/bench_training_speed.py --image_size 112 --batch_size 32 --steps 12
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from contextlib import nullcontext

CONFIGS = {
    # name: (distillation source, bf16 autocast, teacher channels_last)
    "student": (None, False, False),
    "distill": ("teacher", False, False),
    "distill+channels_last": ("teacher", False, True),
    "distill+cache": ("cache", False, False),
    "student+bf16": (None, True, False),
    "distill+bf16": ("teacher", True, False),
    "distill+bf16+channels_last": ("teacher", True, True),
    "distill+bf16+cache": ("cache", True, False),
}


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--image_size", type=int, default=112)
    parser.add_argument("--patch_size", type=int, default=16)
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--steps", type=int, default=12, help="timed steps per configuration")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--configs", default=",".join(CONFIGS), help="comma-separated subset of " + ",".join(CONFIGS))
    parser.add_argument("--json", default=None, help="also write the results to this JSON file")
    parser.add_argument("--one", default=None, help=argparse.SUPPRESS)  # worker mode: one configuration
    return parser.parse_args(argv)


def measure(name: str, args: argparse.Namespace) -> dict:
    """Time `args.steps` training steps of one configuration in this process."""
    import torch

    from hf_deitcxr.data.augmentation import AugmentationConfig, RadiographAugmentation
    from hf_deitcxr.data.collate import RadiographCollator
    from hf_deitcxr.training.builders import build_student, build_teacher
    from hf_deitcxr.training.harness import seed_everything
    from hf_deitcxr.training.teacher import FrozenTeacher

    torch.set_num_threads(args.threads)
    seed_everything(0)  # the same weights, images and augmentations in every configuration's process
    source, bf16, channels_last = CONFIGS[name]
    labels = ["normal", "pneumonia", "covid"]
    student = build_student(labels, image_size=args.image_size, patch_size=args.patch_size,
                            distillation_type="hard" if source else "none").train()
    teacher = None
    if source == "teacher":
        model = build_teacher(labels, image_size=args.image_size)
        if channels_last:
            model = model.to(memory_format=torch.channels_last)
        teacher = FrozenTeacher(model, autocast_dtype=torch.bfloat16 if bf16 else None)
    optimizer = torch.optim.AdamW(student.parameters(), lr=5e-4, weight_decay=0.05)
    collator = RadiographCollator(size=args.image_size, mean=(0.5,) * 3, std=(0.25,) * 3, num_channels=3,
                                  augmentation=RadiographAugmentation(AugmentationConfig()))
    pixels = torch.randint(0, 256, (args.batch_size, 1, args.image_size, args.image_size), dtype=torch.uint8)
    features = [{"pixels": pixels[i], "labels": i % 3, "index": i} for i in range(args.batch_size)]
    cached_logits = torch.randn(args.batch_size, 3)
    autocast = (lambda: torch.autocast("cpu", dtype=torch.bfloat16)) if bf16 else nullcontext
    baseline_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss

    def step() -> None:
        batch = collator(features)
        teacher_logits = None
        if teacher is not None:
            teacher_logits = teacher(batch["pixel_values"])
        elif source == "cache":
            teacher_logits = cached_logits[torch.arange(args.batch_size)]
        with autocast():
            loss = student(pixel_values=batch["pixel_values"], labels=batch["labels"],
                           teacher_logits=teacher_logits).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    for _ in range(args.warmup):
        step()
    times = []
    for _ in range(args.steps):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    median = statistics.median(times)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"config": name, "step_s_median": median, "images_per_s": args.batch_size / median,
            "peak_rss_mib": peak / 1024, "model_rss_mib": (peak - baseline_rss) / 1024}


def flop_profile(args: argparse.Namespace) -> dict:
    """FLOPs of a student training step vs a teacher forward (torch's FlopCounterMode): why distillation costs
    what it costs, independent of how busy the machine is."""
    from hf_deitcxr.experiments.gpu_benchmark import teacher_forward_flops, training_step_flops

    step = training_step_flops("baseline", args.image_size, args.patch_size, args.batch_size)
    forward = teacher_forward_flops(args.image_size, args.batch_size)
    return {"student_step_gflop": step / 1e9, "teacher_forward_gflop": forward / 1e9,
            "distill_over_student_flops": (step + forward) / step}


def run_in_subprocess(name: str, args: argparse.Namespace) -> dict:
    command = [sys.executable, __file__, "--one", name, "--image_size", str(args.image_size), "--patch_size",
               str(args.patch_size), "--batch_size", str(args.batch_size), "--steps", str(args.steps),
               "--warmup", str(args.warmup), "--threads", str(args.threads)]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"configuration {name} failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def format_table(rows: list[dict]) -> str:
    baselines = {False: None, True: None}
    for row in rows:
        if row["config"] in ("student", "student+bf16"):
            baselines[row["config"] == "student+bf16"] = row["images_per_s"]
    lines = ["| configuration | step (s) | images/s | cost vs plain student step (same precision) | peak RSS (MiB) |",
             "|---|---|---|---|---|"]
    for row in rows:
        base = baselines[CONFIGS[row["config"]][1]]
        ratio = f"{base / row['images_per_s']:.2f}x" if base else "n/a"
        lines.append(f"| {row['config']} | {row['step_s_median']:.3f} | {row['images_per_s']:.1f} | {ratio} | "
                     f"{row['peak_rss_mib']:.0f} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.one:
        print(json.dumps(measure(args.one, args)))
        return 0
    names = [name.strip() for name in args.configs.split(",") if name.strip()]
    unknown = [name for name in names if name not in CONFIGS]
    if unknown:
        raise SystemExit(f"unknown configurations {unknown}; choose from {list(CONFIGS)}")
    rows = []
    for name in names:
        rows.append(run_in_subprocess(name, args))
        print(f"{name}: {rows[-1]['images_per_s']:.1f} images/s", file=sys.stderr)
    print(f"DeiT-tiny/{args.patch_size} student, DenseNet-121 teacher, {args.image_size} px, batch {args.batch_size}, "
          f"{args.threads} threads, median of {args.steps} steps")
    print(format_table(rows))
    flops = flop_profile(args)
    print(f"FLOPs per batch: student training step {flops['student_step_gflop']:.1f} GFLOP, teacher forward "
          f"{flops['teacher_forward_gflop']:.1f} GFLOP -> a distillation step does "
          f"{flops['distill_over_student_flops']:.2f}x the arithmetic of a plain step")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump({"args": vars(args), "rows": rows, "flops": flops}, handle, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())

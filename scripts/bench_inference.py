"""Inference latency of the DeiT student vs the DenseNet-121 teacher: p50/p95 at batch 1 and 16, peak memory.

Baseline: the teacher (the CNN the student replaces), measured in the same run. Each (model, precision) runs in its
own process so its peak RSS is its own. Weights are random: latency does not depend on their values.

    python scripts/bench_inference.py --image_size 224 --threads 2
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

import numpy as np

MODELS = ("student", "teacher")
PRECISIONS = ("fp32", "bf16")


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--image_size", type=int, default=224)
    parser.add_argument("--patch_size", type=int, default=16)
    parser.add_argument("--batch_sizes", default="1,16")
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--precisions", default=",".join(PRECISIONS))
    parser.add_argument("--one", default=None, help=argparse.SUPPRESS)  # worker mode: "model,precision"
    return parser.parse_args(argv)


def measure(model_name: str, precision: str, args: argparse.Namespace) -> list[dict]:
    import torch

    from hf_deitcxr.training.builders import build_student, build_teacher

    torch.set_num_threads(args.threads)
    labels = ["normal", "pneumonia", "covid"]
    if model_name == "student":
        model = build_student(labels, image_size=args.image_size, patch_size=args.patch_size)
    else:
        model = build_teacher(labels, image_size=args.image_size)
        model = model.to(memory_format=torch.channels_last)
    model.eval()
    parameters = sum(p.numel() for p in model.parameters())
    autocast = torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16")
    rows = []
    for batch_size in (int(b) for b in args.batch_sizes.split(",")):
        pixels = torch.randn(batch_size, 3, args.image_size, args.image_size)
        repeats = max(5, args.repeats // batch_size * 2) if batch_size > 1 else args.repeats
        times = []
        with torch.inference_mode(), autocast:
            for index in range(3 + repeats):
                start = time.perf_counter()
                model(pixel_values=pixels)
                if index >= 3:
                    times.append(time.perf_counter() - start)
        rows.append({"model": model_name, "precision": precision, "batch_size": batch_size,
                     "p50_ms": 1000 * float(np.percentile(times, 50)), "p95_ms": 1000 * float(np.percentile(times, 95)),
                     "images_per_s": batch_size / float(np.median(times)), "parameters": parameters})
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return [{**row, "peak_rss_mib": peak} for row in rows]


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.one:
        model_name, precision = args.one.split(",")
        print(json.dumps(measure(model_name, precision, args)))
        return 0
    rows = []
    for precision in args.precisions.split(","):
        for model_name in MODELS:
            command = [sys.executable, __file__, "--one", f"{model_name},{precision}"] + [
                f"--{k}={v}" for k, v in vars(args).items() if k != "one"]
            result = subprocess.run(command, capture_output=True, text=True, check=False)
            if result.returncode:
                raise RuntimeError(result.stderr[-3000:])
            rows.extend(json.loads(result.stdout.strip().splitlines()[-1]))
    teacher = {(r["precision"], r["batch_size"]): r["p50_ms"] for r in rows if r["model"] == "teacher"}
    print(f"{args.image_size} px, student patch {args.patch_size}, {args.threads} threads, random weights")
    print("| model | precision | batch | p50 (ms) | p95 (ms) | images/s | teacher p50 / this p50 | params (M) | "
          "peak RSS (MiB) |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        speedup = teacher[(r["precision"], r["batch_size"])] / r["p50_ms"]
        print(f"| {r['model']} | {r['precision']} | {r['batch_size']} | {r['p50_ms']:.1f} | {r['p95_ms']:.1f} | "
              f"{r['images_per_s']:.1f} | {speedup:.2f}x | {r['parameters'] / 1e6:.2f} | {r['peak_rss_mib']:.0f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Which class-balancing default? The same model and budget trained with each option, on a skewed training set.

Baseline: `none` (plain cross-entropy, natural sampling), measured in the same run. Each option runs through the
benchmark harness (hf_deitcxr/experiments/benchmark.py) into `<output_dir>/<option>/`, so an interrupted run continues.
Reported: macro-F1, balanced accuracy (mean per-class sensitivity) and the sensitivity of the rarest class.

    python scripts/bench_balancing.py --dataset ../shared/data/cxr3 --method teacher --train_size 1000
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from hf_deitcxr.experiments.benchmark import BenchmarkArguments, run_benchmark
from hf_deitcxr.training.arguments import BALANCING


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="../shared/data/cxr3")
    parser.add_argument("--output_dir", default="outputs/bench_balancing")
    parser.add_argument("--method", default="teacher", choices=["teacher", "baseline"])
    parser.add_argument("--train_size", default="1000")
    parser.add_argument("--seeds", default="0", help="comma-separated; every seed is run")
    parser.add_argument("--images_seen", type=int, default=3200)
    parser.add_argument("--image_size", type=int, default=64)
    parser.add_argument("--options", default=",".join(BALANCING))
    args = parser.parse_args(argv)

    rows = []
    for option in args.options.split(","):
        bench = BenchmarkArguments(
            dataset=args.dataset, output_dir=str(Path(args.output_dir) / option), methods=args.method,
            train_sizes=args.train_size, seeds=args.seeds, multi_seed_below=10**9, images_seen=args.images_seen,
            image_size=args.image_size, balancing=option, latency_repeats=1,
        )
        rows.extend({**row, "balancing": option} for row in run_benchmark(bench))
    print(f"{args.method}, N={args.train_size}, {args.images_seen} images seen, {args.image_size} px; "
          f"seeds {args.seeds}; validation split")
    print(format_table(rows))
    return 0


def format_table(rows: list[dict]) -> str:
    classes = sorted(rows[0]["sensitivity"])
    lines = ["| balancing | seed | macro-F1 | balanced accuracy | accuracy | " + " | ".join(
        f"sens. {c}" for c in classes) + " |", "|" + "---|" * (5 + len(classes))]
    for row in rows:
        sensitivities = [row["sensitivity"][c] for c in classes]
        lines.append(f"| {row['balancing']} | {row['seed']} | {row['macro_f1']:.3f} | "
                     f"{sum(sensitivities) / len(sensitivities):.3f} | {row['accuracy']:.3f} | "
                     + " | ".join(f"{v:.3f}" for v in sensitivities) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())

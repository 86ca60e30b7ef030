"""Accuracy / data-efficiency benchmark on cxr3 (same as `hf-deitcxr benchmark`); see hf_deitcxr/benchmark.py.

    python scripts/bench_accuracy.py --dataset ../shared/data/cxr3 --output_dir outputs/benchmark
"""

import sys

from hf_deitcxr.experiments.benchmark import benchmark_main

if __name__ == "__main__":
    sys.exit(benchmark_main())

"""Teacher + distilled student training on an accelerator: images/s, MFU and accuracy (hf_deitcxr/gpu_benchmark.py).

    accelerate launch --num_processes 1 scripts/bench_gpu_training.py --dataset ../shared/data/cxr3 \
        --output_dir outputs/bench_gpu --teacher_images_seen 150000 --student_images_seen 300000
"""

import sys

from hf_deitcxr.experiments.gpu_benchmark import gpu_benchmark_main

if __name__ == "__main__":
    sys.exit(gpu_benchmark_main())

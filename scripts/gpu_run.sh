#!/usr/bin/env bash
# Runs ON the device machine (see scripts/gpu_run_prepare.sh): install the carried wheels and this checkout without
# touching the image's torch, then train teacher + distilled student at 224 px in bf16 under accelerate and leave
# bench_gpu.md / bench_gpu.json and the log in $OUT. Budgets are sized to end well inside one 10-minute call.
set -euo pipefail
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
python3 -m pip install -q --no-index --no-deps --no-build-isolation --no-compile --target /tmp/site .
export PYTHONPATH=/tmp/site PYTHONUNBUFFERED=1 OUT=${OUT:-outputs/gpu_run}
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.txt"
python3 -m accelerate.commands.launch --num_processes 1 --mixed_precision bf16 -m hf_deitcxr.cli gpu-benchmark \
    --dataset .device_data/cxr3 --output_dir /tmp/bench_gpu \
    --teacher_images_seen "${TEACHER_IMAGES:-100000}" --student_images_seen "${STUDENT_IMAGES:-200000}" \
    2>&1 | tee "$OUT/bench_gpu.log"
cp /tmp/bench_gpu/bench_gpu.md /tmp/bench_gpu/bench_gpu.json "$OUT/"
cp /tmp/bench_gpu/teacher/metrics.json "$OUT/teacher_metrics.json"
cp /tmp/bench_gpu/distill/metrics.json "$OUT/distill_metrics.json"

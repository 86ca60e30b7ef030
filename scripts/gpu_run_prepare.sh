#!/usr/bin/env bash
# Prepare the device run of `hf-deitcxr gpu-benchmark` (scripts/gpu_run.sh), here on the CPU machine.
# The device machine has torch, transformers, accelerate and most of our needs, but no internet: carry the rest as
# Python 3.12 wheels (.whl/) and the chest X-rays (.device_data/cxr3, 48 MB), both kept out of git.
# Then call the device tool's run with carry [".whl", ".device_data"] and the command `bash scripts/gpu_run.sh`.
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${1:-../shared/data/cxr3}
grep -qsx '/.whl/' .git/info/exclude || echo '/.whl/' >> .git/info/exclude
grep -qsx '/.device_data/' .git/info/exclude || echo '/.device_data/' >> .git/info/exclude
rm -rf .whl .device_data && mkdir -p .whl .device_data
# Our dependencies missing from the device image (its package list: the device README's KINDS.md), at the versions
# the test suite runs here.
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d .whl \
    datasets==5.2.0 evaluate==0.4.6 kornia==0.9.0 kornia_rs==0.2.0 pydicom==3.0.2 dill==0.4.1 multiprocess==0.70.19
cp -r "$DATA" .device_data/cxr3
du -sh .whl .device_data

"""The machine a timing was measured on, in words: CPU timings mean little without it."""

from __future__ import annotations

import os
import platform
import re
import subprocess
from pathlib import Path

import torch

# CPU flags that decide the speed of these kernels (vector width, bf16 / AMX matrix units).
FLAGS_OF_INTEREST = ("avx2", "fma", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile")


def cpu_description() -> str:
    """The CPU model (lscpu, else /proc/cpuinfo), its logical CPUs and the flags of interest it has."""
    model = platform.processor() or "unknown CPU"
    try:
        lscpu = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
        if found := re.search(r"^Model name:\s*(.+)$", lscpu, re.MULTILINE):
            model = found.group(1).strip()
    except OSError:
        pass
    cpuinfo = _cpuinfo()
    if model.startswith("unknown") and (found := re.search(r"^model name\s*:\s*(.+)$", cpuinfo, re.MULTILINE)):
        model = found.group(1).strip()
    flags = cpu_flags()
    present = [flag for flag in FLAGS_OF_INTEREST if flag in flags]
    return (f"{model}; {os.cpu_count()} logical CPUs, {torch.get_num_threads()} torch threads; "
            f"flags: {', '.join(present) or 'none of ' + ', '.join(FLAGS_OF_INTEREST)}")


def cpu_flags() -> set[str]:
    """The CPU's feature flags (Linux /proc/cpuinfo; empty elsewhere)."""
    if found := re.search(r"^flags\s*:\s*(.+)$", _cpuinfo(), re.MULTILINE):
        return set(found.group(1).split())
    return set()


def cpu_has_native_bf16() -> bool:
    """AVX512-BF16 or AMX-BF16: bf16 matrix products in hardware (elsewhere bf16 is emulated and slower than fp32)."""
    return bool({"avx512_bf16", "amx_bf16"} & cpu_flags())


def bf16_training_device() -> bool:
    """Whether the recipe trains in bf16 here: a CUDA GPU with bf16, or a CPU with native bf16 instructions. The one
    rule of training's `bf16` flag and of the audit's "auto" precision, so an audit runs as its model was trained."""
    return torch.cuda.is_bf16_supported() if torch.cuda.is_available() else cpu_has_native_bf16()


def _cpuinfo() -> str:
    try:
        return Path("/proc/cpuinfo").read_text()
    except OSError:
        return ""


__all__ = ["FLAGS_OF_INTEREST", "bf16_training_device", "cpu_description", "cpu_flags", "cpu_has_native_bf16"]

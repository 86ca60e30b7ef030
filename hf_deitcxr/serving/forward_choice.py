"""Which forward serves the DeiT student on this machine: chosen at start-up by timing the candidates.

Which is fastest depends on the CPU (AVX2, AVX512-BF16, AMX) and its load, so it is measured rather than assumed:
- "torch fp32": the fused PyTorch forward (`fast_deit.FusedDeiT`), checked against the model's forward at load;
- "onnxruntime fp32": the same forward exported to ONNX (`onnx_deit.OnnxDeiT`), used only if its probabilities are
  within 1e-4 of the PyTorch forward's and its attention maps close, on a probe input;
- "torch bf16": the fused forward in bf16, a candidate only where the CPU has native bf16 (AVX512-BF16 or AMX), and
  only if it gives the same labels as fp32 on the probe inputs.
Each candidate runs on the probe input (with the attention maps when the heatmap is served, as in the Space) in
interleaved rounds for a bounded time; the lowest median wins. `forward` ("auto" | "torch" | "onnx", or the
`HF_DEITCXR_FORWARD` environment variable) overrides: "onnx" uses ONNX Runtime whenever it works, "torch" is the
previous behaviour (the fused PyTorch forward, bf16 on "auto" only with AMX, nothing timed). `precision` keeps its
meaning: "fp32" excludes bf16, "bf16" forces the bf16 PyTorch forward.
"""

from __future__ import annotations

import logging
import os
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn

from .. import hardware
from .fast_deit import FusedDeiT
from .onnx_deit import OnnxDeiT

logger = logging.getLogger(__name__)

FORWARDS = ("auto", "torch", "onnx")
FORWARD_ENV = "HF_DEITCXR_FORWARD"
TORCH_FP32, ONNX_FP32, TORCH_BF16 = "torch fp32", "onnxruntime fp32", "torch bf16"
Forward = Callable[..., tuple[torch.Tensor, tuple[torch.Tensor, ...] | None]]


@dataclass(frozen=True)
class ForwardChoice:
    forward: Forward | None  # (pixel_values, output_attentions) -> (logits, attentions); None: the model's own
    dtype: torch.dtype  # of the weights and the input the forward takes
    name: str  # "torch fp32", "onnxruntime fp32", "torch bf16", or "transformers <precision>"
    median_ms: dict[str, float] = field(default_factory=dict)  # each timed candidate on the probe; empty if none


def resolve_forward(forward: str | None) -> str:
    """`forward`, else `$HF_DEITCXR_FORWARD`, else "auto"; a clear error for anything else."""
    value = (forward or os.environ.get(FORWARD_ENV) or "auto").strip().lower()
    if value not in FORWARDS:
        raise ValueError(f"forward must be one of {FORWARDS} (argument or ${FORWARD_ENV}), got {value!r}")
    return value


def choose_forward(
    model: nn.Module,
    fused: FusedDeiT | None,
    *,
    precision: str = "auto",
    forward: str | None = None,
    with_attentions: bool = True,
    budget_s: float = 2.0,
    cache_dir: str | os.PathLike | None = None,
) -> ForwardChoice:
    """The forward to serve `model` with. fused: its checked fp32 fused forward, or None (then the model's own
    forward, in bf16 only with `precision="bf16"` or, on "auto", on CPUs with AMX, as before)."""
    forward = resolve_forward(forward)
    if fused is None or forward == "torch":  # no timing: the previous rule, bf16 only if asked or, on auto, with AMX
        bf16 = precision == "bf16" or (precision == "auto" and "amx_bf16" in hardware.cpu_flags())
        if fused is None:
            return ForwardChoice(None, torch.bfloat16 if bf16 else torch.float32,
                                 f"transformers {'bf16' if bf16 else 'fp32'}")
        return ForwardChoice(_bf16_copy(model), torch.bfloat16, TORCH_BF16) if bf16 else (
            ForwardChoice(fused, torch.float32, TORCH_FP32))
    if precision == "bf16":  # forced, as before: no agreement check
        return ForwardChoice(_bf16_copy(model), torch.bfloat16, TORCH_BF16)
    probes = _probes(fused)
    onnx = OnnxDeiT.from_fused(fused, model, cache_dir=cache_dir)
    if onnx is not None and not _same_outputs(onnx, fused, probes, with_attentions):
        logger.warning("the ONNX Runtime forward differs from the PyTorch forward: not used")
        onnx = None
    if forward == "onnx":
        if onnx is None:
            logger.warning("forward='onnx' asked for but unusable: using the PyTorch forward")
            return ForwardChoice(fused, torch.float32, TORCH_FP32)
        return ForwardChoice(onnx, torch.float32, ONNX_FP32)
    candidates: dict[str, tuple[Forward, torch.dtype]] = {TORCH_FP32: (fused, torch.float32)}
    if onnx is not None:
        candidates[ONNX_FP32] = (onnx, torch.float32)
    if precision == "auto" and hardware.cpu_has_native_bf16():
        bf16 = _bf16_copy(model)
        if bf16 is not None and _same_labels(bf16, fused, probes):
            candidates[TORCH_BF16] = (bf16, torch.bfloat16)
    if len(candidates) == 1:
        return ForwardChoice(fused, torch.float32, TORCH_FP32)
    median_ms = time_candidates(candidates, probes[0], with_attentions, budget_s)
    name = min(median_ms, key=median_ms.get)
    logger.info("DeiT forward: %s (median ms on a probe: %s)", name,
                ", ".join(f"{k} {v:.2f}" for k, v in median_ms.items()))
    return ForwardChoice(candidates[name][0], candidates[name][1], name, median_ms)


def time_candidates(
    candidates: dict[str, tuple[Forward, torch.dtype]], probe: torch.Tensor, with_attentions: bool,
    budget_s: float, min_rounds: int = 3,
) -> dict[str, float]:
    """Median ms of each candidate on `probe`, interleaved rounds (load hits all alike) for about `budget_s`."""
    inputs = {name: probe.to(dtype) for name, (_, dtype) in candidates.items()}
    samples: dict[str, list[float]] = {name: [] for name in candidates}
    deadline = time.perf_counter() + budget_s
    with torch.inference_mode():
        for name, (call, _) in candidates.items():  # warm-up: first calls allocate and plan
            call(inputs[name], output_attentions=with_attentions)
        rounds = 0
        while rounds < min_rounds or time.perf_counter() < deadline:
            for name, (call, _) in candidates.items():
                start = time.perf_counter()
                call(inputs[name], output_attentions=with_attentions)
                samples[name].append(time.perf_counter() - start)
            rounds += 1
    return {name: statistics.median(values) * 1000.0 for name, values in samples.items()}


def _probes(fused: FusedDeiT, count: int = 3) -> list[torch.Tensor]:
    shape = (1, *fused.input_shape)
    return [torch.randn(shape, generator=torch.Generator().manual_seed(seed)) for seed in range(count)]


def _bf16_copy(model: nn.Module) -> FusedDeiT | None:
    fused = FusedDeiT.from_model(model)  # a copy of the weights: the fp32 one stays the reference
    return fused.to(torch.bfloat16) if fused is not None else None


@torch.inference_mode()
def _same_outputs(candidate: Forward, reference: Forward, probes: list[torch.Tensor], with_attentions: bool) -> bool:
    """Probabilities within 1e-4 and attention maps within 1e-5 of the reference's, on every probe."""
    for probe in probes:
        logits, attentions = candidate(probe, output_attentions=with_attentions)
        expected, expected_attentions = reference(probe, output_attentions=with_attentions)
        if not torch.allclose(logits.softmax(-1), expected.softmax(-1), atol=1e-4, rtol=0):
            return False
        if with_attentions and not all(
            torch.allclose(ours, theirs, atol=1e-5, rtol=1e-4)
            for ours, theirs in zip(attentions, expected_attentions, strict=True)
        ):
            return False
    return True


@torch.inference_mode()
def _same_labels(candidate: Forward, reference: Forward, probes: list[torch.Tensor]) -> bool:
    """The same top label as the fp32 reference on every probe (a bf16 forward cannot match probabilities)."""
    return all(
        bool((candidate(probe.bfloat16())[0].float().argmax(-1) == reference(probe)[0].argmax(-1)).all())
        for probe in probes
    )


__all__ = [
    "FORWARDS",
    "FORWARD_ENV",
    "ForwardChoice",
    "choose_forward",
    "resolve_forward",
    "time_candidates",
]

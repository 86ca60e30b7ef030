"""How close the Space's batch-1 DeiT forward is to this CPU's matrix-multiply speed, and what that leaves to gain.

    OMP_WAIT_POLICY=PASSIVE python scripts/bench_forward_ceiling.py --model_name_or_path outputs/quickstart/distill \
        --threads 1,2 --compile

For each thread count, interleaved over `iterations` rounds (median ms):
- `fused forward`: the forward the Space serves (`fast_deit.FusedDeiT`, with attention maps for the heatmap);
- `transformers forward`: the model's own eager forward with attention maps (what `pipeline` runs, less the maps);
- `matmuls only`: the forward's matrix products alone, at the forward's own shapes (every `F.linear` / `@` of one
  forward, replayed back to back on preallocated tensors): a floor for any fp32 forward that keeps this arithmetic;
- `--compile`: the fused forward under `torch.compile` (inductor; compile time reported).
The FLOPs of one forward come from `torch.utils.flop_counter.FlopCounterMode`; GFLOP/s = FLOPs / median time, and
the reference rate is a 512x512x512 fp32 matrix product on the same threads.
Ratio columns: transformers forward / this (the forward's share of the Space-vs-pipeline comparison).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch.utils.flop_counter import FlopCounterMode
from transformers import HfArgumentParser

from hf_deitcxr.experiments.timing import time_interleaved
from hf_deitcxr.serving import RadiographClassifier


@dataclass
class CeilingArguments:
    model_name_or_path: str = field(metadata={"help": "Saved DeiT student folder or Hub id"})
    threads: str = field(default="1,2", metadata={"help": "Comma-separated torch thread counts"})
    iterations: int = field(default=300)
    warmup: int = field(default=20)
    compile: bool = field(default=False, metadata={"help": "Also time torch.compile of the fused forward"})


def recorded_matmuls(forward: Callable[[], object]) -> list[Callable[[], object]]:
    """Every matrix product of one forward as a replayable call on fresh tensors of the same shapes."""
    calls: list[Callable[[], object]] = []
    linear, matmul, addmm = torch.nn.functional.linear, torch.Tensor.__matmul__, torch.addmm

    def record_linear(x, weight, bias=None):
        a = torch.randn(x.shape)
        calls.append(lambda: linear(a, weight, bias))
        return linear(x, weight, bias)

    def record_matmul(x, y):
        a, b = torch.randn(x.shape), torch.randn(y.shape)
        calls.append(lambda: matmul(a, b))
        return matmul(x, y)

    def record_addmm(bias, x, y):
        c, a, b = bias, torch.randn(x.shape), torch.randn(y.shape)
        calls.append(lambda: addmm(c, a, b))
        return addmm(bias, x, y)

    torch.nn.functional.linear, torch.Tensor.__matmul__, torch.addmm = record_linear, record_matmul, record_addmm
    try:
        forward()
    finally:
        torch.nn.functional.linear, torch.Tensor.__matmul__, torch.addmm = linear, matmul, addmm
    return calls


def main() -> None:
    (args,) = HfArgumentParser(CeilingArguments).parse_args_into_dataclasses()
    classifier = RadiographClassifier.from_pretrained(args.model_name_or_path, precision="fp32", forward="torch")
    if classifier.fused is None:
        raise SystemExit(f"{args.model_name_or_path} has no fused DeiT forward (not a DeiT classifier?)")
    model, fused = classifier.model, classifier.fused
    pixels = torch.randn(1, classifier.num_channels, classifier.size, classifier.size)
    with torch.inference_mode():
        with FlopCounterMode(display=False) as counter:
            fused(pixels, output_attentions=True)
        flops = counter.get_total_flops()
        matmuls = recorded_matmuls(lambda: fused(pixels, output_attentions=True))
        big_a, big_b = torch.randn(512, 512), torch.randn(512, 512)
        variants: dict[str, Callable[[torch.Tensor], object]] = {
            "fused forward (the Space)": lambda x: fused(x, output_attentions=True),
            "transformers forward": lambda x: model(pixel_values=x, output_attentions=True),
            "matmuls only (fp32 floor)": lambda _: [call() for call in matmuls],
            "512^3 sgemm (reference rate)": lambda _: big_a @ big_b,
        }
        if args.compile:
            compiled = torch.compile(lambda x: fused(x, output_attentions=True), dynamic=False)
            start = time.perf_counter()
            compiled(pixels)
            print(f"torch.compile of the fused forward: {time.perf_counter() - start:.1f} s")
            variants["torch.compile(fused forward)"] = compiled
        print(f"{args.model_name_or_path}: {flops / 1e9:.3f} GFLOP per batch-1 forward, {len(matmuls)} matmuls")
        print("| threads | variant | median ms | GFLOP/s | transformers forward / this |")
        print("|---:|---|---:|---:|---:|")
        for threads in (int(t) for t in args.threads.split(",")):
            torch.set_num_threads(threads)
            times = time_interleaved(variants, [pixels], args.iterations, args.warmup)
            medians = {name: statistics.median(values) for name, values in times.items()}
            reference = medians.pop("512^3 sgemm (reference rate)")
            for name, seconds in medians.items():
                ratio = medians["transformers forward"] / seconds
                print(f"| {threads} | {name} | {seconds * 1e3:.2f} | {flops / seconds / 1e9:.1f} | {ratio:.2f}x |")
            print(f"| {threads} | 512^3 sgemm | {reference * 1e3:.2f} | {2 * 512**3 / reference / 1e9:.1f} | |")


if __name__ == "__main__":
    main()

"""Interleaved latency timing shared by the speed benchmarks (scripts/bench_space.py, scripts/bench_forward_ceiling.py).

Each round runs every variant once on the same input, so load from other processes hits all variants alike.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Sequence
from typing import TypeVar

Input = TypeVar("Input")


def time_interleaved(variants: dict[str, Callable[[Input], object]], inputs: Sequence[Input], iterations: int,
                     warmup: int, seed: int | None = None) -> dict[str, list[float]]:
    """Seconds of each variant over `iterations` rounds after `warmup` rounds; round i uses inputs[i % len(inputs)].

    With a `seed` the variants run in a freshly shuffled order each round (no variant always first); without one,
    in the order of `variants`.
    """
    rng = random.Random(seed) if seed is not None else None
    times: dict[str, list[float]] = {name: [] for name in variants}
    order = list(variants)
    for round_ in range(warmup + iterations):
        item = inputs[round_ % len(inputs)]
        if rng is not None:
            rng.shuffle(order)
        for name in order:
            start = time.perf_counter()
            variants[name](item)
            elapsed = time.perf_counter() - start
            if round_ >= warmup:
                times[name].append(elapsed)
    return times


__all__ = ["time_interleaved"]

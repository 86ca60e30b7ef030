"""experiments.timing.time_interleaved: warm-up rounds dropped, inputs cycled, order fixed or shuffled by seed."""

from __future__ import annotations

from hf_deitcxr.experiments.timing import time_interleaved


def recording_variants(log: list[tuple[str, int]]):
    return {name: (lambda item, name=name: log.append((name, item))) for name in ("a", "b", "c")}


def test_every_variant_runs_each_round_on_the_same_cycled_input_and_warmup_is_not_timed():
    log: list[tuple[str, int]] = []
    times = time_interleaved(recording_variants(log), [10, 20], iterations=5, warmup=2)
    assert {name: len(values) for name, values in times.items()} == {"a": 5, "b": 5, "c": 5}
    assert [item for _, item in log] == [10] * 3 + [20] * 3 + [10] * 3 + [20] * 3 + [10] * 3 + [20] * 3 + [10] * 3
    assert [name for name, _ in log] == ["a", "b", "c"] * 7  # no seed: the order of the dict


def test_a_seed_shuffles_the_order_of_each_round_reproducibly():
    first: list[tuple[str, int]] = []
    second: list[tuple[str, int]] = []
    time_interleaved(recording_variants(first), [0], iterations=20, warmup=0, seed=3)
    time_interleaved(recording_variants(second), [0], iterations=20, warmup=0, seed=3)
    rounds = [tuple(name for name, _ in first[i:i + 3]) for i in range(0, 60, 3)]
    assert first == second
    assert all(sorted(r) == ["a", "b", "c"] for r in rounds) and len(set(rounds)) > 1

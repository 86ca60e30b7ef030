#!/usr/bin/env python
"""Load test of the Space's `predict` endpoint: N concurrent gradio_client clients x M requests on loopback.

Each client is its own `gradio_client.Client` (own session) in its own thread and sends the bundled sample
radiographs (hf_deitcxr/sample_data/cxr3_sample, PNG/JPEG as a user would upload them) one request after another.
Reports errors, latency percentiles (submit -> result, as a user waits, queueing included) and throughput, and the
baseline: the same requests from one client, sequentially, in the same run.

`--mix hostile`: each request is drawn (seeded, per client) from three groups: valid radiographs (the sample as
JPEG, PNG, 8/16-bit DICOM; must succeed with the four outputs), hostile files (every refused kind of
scripts/malformed_inputs.py: bombs, malformed DICOM, random bytes, ...; must be refused with a clear `gr.Error`
message) and near-limit files (just under the pixel budget / upload limit: must succeed; just over the pixel
budget: must be refused). "Unexpected" is anything else: a crash, the generic "Server error" message (an exception
the app did not foresee), a timeout, a valid file refused or a hostile one accepted. Latency is reported per group.

    python scripts/load_test_space.py --model_id outputs/quickstart/distill --teacher_id outputs/quickstart/teacher \
        --clients 8 --requests_per_client 50
    python scripts/load_test_space.py --model_id outputs/quickstart/distill --teacher_id outputs/quickstart/teacher \
        --clients 16 --requests_per_client 20 --mix hostile --baseline_requests 40
"""

from __future__ import annotations

import json
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from space_cases import ProfileCase, answer_outcome, hostile_cases, near_limit_cases, sample_files, valid_cases  # noqa: E402
from space_server import peak_memory_mib, proc_status_mib, reset_peak, running_space  # noqa: E402


@dataclass
class LoadTestArguments:
    model_id: str | None = field(default=None, metadata={"help": "MODEL_ID of the app to start (folder or Hub id)"})
    teacher_id: str | None = field(default=None, metadata={"help": "TEACHER_ID of the app to start (optional)"})
    url: str | None = field(default=None, metadata={"help": "Test an app already running here instead"})
    clients: int = field(default=8)
    requests_per_client: int = field(default=50)
    baseline_requests: int = field(default=20, metadata={"help": "Sequential single-client requests first"})
    timeout_s: float = field(default=300.0)
    mix: str = field(default="valid", metadata={"help": "valid: the sample radiographs only; hostile: a mix of "
                                                        "valid, hostile and near-limit files",
                                                "choices": ["valid", "hostile"]})
    near_limit_fraction: float = field(default=0.1, metadata={"help": "--mix hostile: share of near-limit files"})
    hostile_fraction: float = field(default=0.4, metadata={"help": "--mix hostile: share of hostile files"})
    hostile_per_kind: int = field(default=3, metadata={"help": "--mix hostile: files per hostile kind"})
    seed: int = field(default=0)
    output_json: str | None = field(default=None)

    def __post_init__(self) -> None:
        if not (self.model_id or self.url):
            raise ValueError("give --model_id (start space/app.py) or --url (connect to a running app)")
        if self.mix not in ("valid", "hostile"):
            raise ValueError(f"--mix must be valid or hostile, not {self.mix!r}")


def is_unexpected(expected: str | None, outcome: str) -> bool:
    """Valid files must succeed, hostile ones be refused clearly; None (either) still rules out crashes/timeouts."""
    if expected is None:
        return outcome not in ("success", "clear_error")
    return outcome != expected


def mixed_plan(pools: dict[str, list], requests: int, fractions: dict[str, float], seed) -> list:
    """`requests` items drawn from `pools` (group -> cases): the group with probability `fractions[group]` (the rest
    of the probability goes to "valid"), then a case of that group uniformly; deterministic for `seed`."""
    rest = 1.0 - sum(fractions.get(g, 0.0) for g in pools if g != "valid")
    if rest < 0:
        raise ValueError(f"fractions {fractions} add up to more than 1")
    groups = list(pools)
    weights = np.array([rest if g == "valid" else fractions.get(g, 0.0) for g in groups])
    rng = np.random.default_rng(seed)
    picks = rng.choice(len(groups), size=requests, p=weights / weights.sum())
    return [pools[groups[g]][int(rng.integers(len(pools[groups[g]])))] for g in picks]


def sample_plan(requests: int, offset: int) -> list:
    """The bundled sample radiographs in turn from `offset` (the default, valid-only load)."""

    files = sample_files()
    return [ProfileCase("sample", "valid", "success", files[(offset + i) % len(files)]) for i in range(requests)]


def mixed_pools(folder: Path, hostile_per_kind: int, seed: int) -> dict[str, list]:
    """valid / hostile / near_limit cases (memory_profile_space's inputs) for `--mix hostile`."""

    samples = [ProfileCase("sample_jpeg", "valid", "success", p) for p in sample_files()]
    valid = samples + [c for c in valid_cases(folder / "valid", 4) if c.kind != "valid_jpeg"]
    hostile = [c for c in hostile_cases(folder / "hostile", hostile_per_kind, seed) if c.group == "hostile"]
    return {"valid": valid, "hostile": hostile, "near_limit": near_limit_cases(folder / "near_limit")}


def client_session(url: str, plan: list, timeout_s: float, start_barrier=None) -> list[dict]:
    from gradio_client import Client, handle_file

    client = Client(url, verbose=False, download_files=False)
    if start_barrier is not None:
        start_barrier.wait()  # all clients connected: start together
    results = []
    for case in plan:
        start = time.perf_counter()
        try:
            job = client.submit(handle_file(str(case.path)), api_name="/predict")
            output, error = job.result(timeout=timeout_s), None
        except Exception as exc:  # noqa: BLE001 - every failure is classified and counted
            output, error = None, exc
        seconds = time.perf_counter() - start
        outcome, detail = answer_outcome(output, error)
        unexpected = is_unexpected(case.expected, outcome)
        results.append({"seconds": seconds, "group": case.group, "kind": case.kind, "outcome": outcome,
                        "error": f"{case.kind} {case.path.name}: {outcome}: {detail}"[:240] if unexpected else None})
    return results


def stats(results: list[dict], wall_s: float) -> dict:
    """Errors = unexpected answers; latency over the expected ones (valid-only load: the successes)."""
    seconds = np.array([r["seconds"] for r in results if r["error"] is None])
    errors = [r["error"] for r in results if r["error"] is not None]
    return {"requests": len(results), "errors": len(errors), "error_examples": sorted(set(errors))[:5],
            "p50_s": float(np.percentile(seconds, 50)) if len(seconds) else None,
            "p95_s": float(np.percentile(seconds, 95)) if len(seconds) else None,
            "mean_s": float(seconds.mean()) if len(seconds) else None,
            "wall_s": wall_s, "throughput_rps": len(results) / wall_s if wall_s else None}


def group_stats(results: list[dict]) -> dict:
    """Per group: requests, unexpected, outcomes and latency percentiles of all its answers."""
    out = {}
    for group in sorted({r["group"] for r in results}):
        mine = [r for r in results if r["group"] == group]
        seconds = np.array([r["seconds"] for r in mine])
        outcomes: dict[str, int] = {}
        for r in mine:
            outcomes[r["outcome"]] = outcomes.get(r["outcome"], 0) + 1
        out[group] = {"requests": len(mine), "unexpected": sum(r["error"] is not None for r in mine),
                      "outcomes": outcomes, "p50_s": float(np.percentile(seconds, 50)),
                      "p95_s": float(np.percentile(seconds, 95)), "max_s": float(seconds.max())}
    return out


def run(args: LoadTestArguments) -> dict:
    server = (
        running_space(args.model_id, extra_env=_teacher_env(args.teacher_id))
        if not args.url else nullcontext((args.url, None))
    )
    if args.mix == "hostile":
        pools = mixed_pools(Path(tempfile.mkdtemp(prefix="load_mix_")), args.hostile_per_kind, args.seed)
        fractions = {"hostile": args.hostile_fraction, "near_limit": args.near_limit_fraction}

        def plan(requests: int, k: int) -> list:
            return mixed_plan(pools, requests, fractions, [args.seed, k])
    else:
        def plan(requests: int, k: int) -> list:
            return sample_plan(requests, k * 3)
    with server as (url, process):
        client_session(url, sample_plan(2, 0), args.timeout_s)  # warm-up (first request initialises lazily)
        rss_before = proc_status_mib(process.pid, "VmRSS") if process is not None else None
        if process is not None:
            reset_peak(process.pid)
        start = time.perf_counter()
        baseline = client_session(url, plan(args.baseline_requests, 10_000), args.timeout_s)
        baseline_stats = stats(baseline, time.perf_counter() - start)
        baseline_peak = peak_memory_mib(process.pid) if process is not None else None

        if process is not None:
            reset_peak(process.pid)
        barrier = threading.Barrier(args.clients)
        with ThreadPoolExecutor(max_workers=args.clients) as pool:
            futures = [pool.submit(client_session, url, plan(args.requests_per_client, k), args.timeout_s, barrier)
                       for k in range(args.clients)]
            start = time.perf_counter()
            concurrent = [r for f in futures for r in f.result()]
        concurrent_stats = stats(concurrent, time.perf_counter() - start)
        peak = peak_memory_mib(process.pid) if process is not None else None
        alive = process is None or process.poll() is None
        time.sleep(5.0)  # idle: is the memory of the load given back?
        rss_after = proc_status_mib(process.pid, "VmRSS") if process is not None else None
    report = {"baseline_1_client": baseline_stats, f"concurrent_{args.clients}_clients": concurrent_stats,
              "server_peak_rss_mib": peak, "server_peak_rss_baseline_mib": baseline_peak,
              "server_rss_before_mib": rss_before, "server_rss_5s_after_load_mib": rss_after,
              "server_alive_at_end": alive, "mix": args.mix}
    if args.mix == "hostile":
        report["groups_baseline"] = group_stats(baseline)
        report[f"groups_{args.clients}_clients"] = group_stats(concurrent)
        report["pool_sizes"] = {g: len(cases) for g, cases in pools.items()}
    return report


def _teacher_env(teacher_id: str | None) -> dict[str, str]:
    """TEACHER_ID for the started app: the given one, or none (not inherited from this shell)."""
    return {"TEACHER_ID": teacher_id or ""}


def main(argv: list[str] | None = None) -> int:
    from transformers import HfArgumentParser

    (args,) = HfArgumentParser(LoadTestArguments).parse_args_into_dataclasses(args=argv)
    report = run(args)
    print(f"{'run':<24} {'requests':>8} {'errors':>6} {'p50 s':>7} {'p95 s':>7} {'req/s':>7}")
    for name, row in report.items():
        if isinstance(row, dict) and "throughput_rps" in row:
            print(f"{name:<24} {row['requests']:>8} {row['errors']:>6} {row['p50_s'] or 0:>7.3f} "
                  f"{row['p95_s'] or 0:>7.3f} {row['throughput_rps'] or 0:>7.2f}")
    base, load = report["baseline_1_client"], report[f"concurrent_{args.clients}_clients"]
    if base["throughput_rps"] and load["throughput_rps"]:
        ratio = load["throughput_rps"] / base["throughput_rps"]
        print(f"throughput ratio {args.clients} clients / 1 client: {ratio:.2f}; "
              f"p50 latency ratio: {load['p50_s'] / base['p50_s']:.2f}")
    for name, groups in report.items():
        if name.startswith("groups_"):
            print(f"{name}: " + "; ".join(
                f"{g} {row['requests']} req, {row['unexpected']} unexpected, {row['outcomes']}, "
                f"p50 {row['p50_s']:.3f} s, p95 {row['p95_s']:.3f} s, max {row['max_s']:.3f} s"
                for g, row in groups.items()))
    print(f"server peak RSS {report['server_peak_rss_mib']} MiB under load "
          f"({report['server_peak_rss_baseline_mib']} MiB in the baseline), "
          f"alive at end: {report['server_alive_at_end']}; RSS {report['server_rss_before_mib']} MiB after the "
          f"warm-up, {report['server_rss_5s_after_load_mib']} MiB 5 s after the load")
    errors = [row.get("error_examples") for row in report.values() if isinstance(row, dict) and row.get("errors")]
    for examples in errors:
        print("errors:", *examples, sep="\n  ")
    if args.output_json:
        Path(args.output_json).write_text(json.dumps(report, indent=2))
    return 0 if not errors and report["server_alive_at_end"] else 1


if __name__ == "__main__":
    sys.exit(main())

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

`--designs 1x1,8x8 --clients 1,8,16 --rounds 2`: the app's serving design, CONCURRENCYxMAX_BATCH_SIZE (1x1: one
request at a time, no batching, the app before micro-batching), each started afresh, at each client count (1 = the
sequential baseline of `baseline_requests` requests), the designs alternating round by round so that drifting load
from other processes hits each alike. Per row: latency, throughput, the server's peak RSS and its CPU seconds per
request; the throughput ratio is against the first design at the same client count. `--reference_checkout DIR`
adds, first in every round, the app and package of another checkout (e.g. `git worktree add DIR <commit>`: the app
before a change), started with its own code (PYTHONPATH=DIR) and its own defaults.
"""

from __future__ import annotations

import json
import os
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
from space_server import peak_memory_mib, proc_status_mib, reset_peak, running_space, space_client  # noqa: E402


@dataclass
class LoadTestArguments:
    model_id: str | None = field(default=None, metadata={"help": "MODEL_ID of the app to start (folder or Hub id)"})
    teacher_id: str | None = field(default=None, metadata={"help": "TEACHER_ID of the app to start (optional)"})
    url: str | None = field(default=None, metadata={"help": "Test an app already running here instead"})
    clients: str = field(default="8", metadata={"help": "Concurrent client counts, comma-separated (e.g. 1,8,16); "
                                                        "the 1-client sequential baseline always runs first"})
    requests_per_client: int = field(default=50)
    baseline_requests: int = field(default=20, metadata={"help": "Sequential single-client requests"})
    designs: str = field(default="", metadata={"help": "Serving designs CONCURRENCYxMAX_BATCH_SIZE, comma-separated "
                                                       "(e.g. 1x1,8x8); empty: the app's defaults / environment"})
    rounds: int = field(default=1, metadata={"help": "Repetitions of the designs, alternating"})
    reference_checkout: str | None = field(default=None, metadata={
        "help": "A checkout of another commit (e.g. a `git worktree` of the app before a change): its space/app.py "
                "and package run as the first design of every round, so every ratio is against it"})
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
        self.client_counts = sorted({1, *parse_counts(self.clients)})
        self.design_list = parse_designs(self.designs)
        if self.url and (self.design_list != [None] or self.reference_checkout):
            raise ValueError("--designs and --reference_checkout start the app: they do not apply to --url")
        if self.reference_checkout:
            if not (Path(self.reference_checkout) / "space" / "app.py").is_file():
                raise ValueError(f"--reference_checkout {self.reference_checkout} has no space/app.py")
            self.design_list = ["reference", *self.design_list]
        if self.rounds < 1:
            raise ValueError(f"--rounds must be at least 1, got {self.rounds}")


def parse_counts(text: str) -> list[int]:
    try:
        counts = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise ValueError(f"--clients must be whole numbers separated by commas, got {text!r}") from None
    if not counts or min(counts) < 1:
        raise ValueError(f"--clients needs at least one count of 1 or more, got {text!r}")
    return counts


def parse_designs(text: str) -> list[tuple[int, int] | None]:
    """"1x1,8x8" -> [(1, 1), (8, 8)] (CONCURRENCY, MAX_BATCH_SIZE); "" -> [None] (the app as configured)."""
    designs = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        concurrency, sep, batch = part.lower().partition("x")
        if not (sep and concurrency.isdigit() and batch.isdigit() and int(concurrency) >= 1 and int(batch) >= 1):
            raise ValueError(f"a design is CONCURRENCYxMAX_BATCH_SIZE, e.g. 8x8; got {part!r}")
        designs.append((int(concurrency), int(batch)))
    return designs or [None]


def design_name(design: tuple[int, int] | str | None) -> str:
    if isinstance(design, str):
        return design
    return "as configured" if design is None else f"{design[0]}x{design[1]}"


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
    from gradio_client import handle_file

    client = space_client(url)
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
    plan = _planner(args)
    rows = []
    for round_index in range(args.rounds):
        for design in args.design_list:
            rows += run_design(args, design, plan, round_index)
    return {"rows": rows, "mix": args.mix, "server_alive_at_end": all(r["server_alive"] for r in rows)}


def _planner(args: LoadTestArguments):
    """plan(requests, client index) -> the cases one client sends."""
    if args.mix != "hostile":
        return lambda requests, k: sample_plan(requests, k * 3)
    pools = mixed_pools(Path(tempfile.mkdtemp(prefix="load_mix_")), args.hostile_per_kind, args.seed)
    fractions = {"hostile": args.hostile_fraction, "near_limit": args.near_limit_fraction}
    return lambda requests, k: mixed_plan(pools, requests, fractions, [args.seed, k])


def run_design(args: LoadTestArguments, design: tuple[int, int] | str | None, plan, round_index: int) -> list[dict]:
    """Start the app with `design` (or connect to --url), warm it up, then load it at each client count."""
    env = _teacher_env(args.teacher_id)
    app = {}
    if design == "reference":  # the other checkout's app with its own package (ahead of the installed one)
        checkout = Path(args.reference_checkout).resolve()
        env |= {"PYTHONPATH": str(checkout)}
        app = {"app": checkout / "space" / "app.py"}
    elif design is not None:
        env |= {"CONCURRENCY": str(design[0]), "MAX_BATCH_SIZE": str(design[1])}
    server = running_space(args.model_id, extra_env=env, **app) if not args.url else nullcontext((args.url, None))
    rows = []
    with server as (url, process):
        client_session(url, sample_plan(2, 0), args.timeout_s)  # warm-up (first request initialises lazily)
        rss_before = proc_status_mib(process.pid, "VmRSS") if process is not None else None
        for clients in args.client_counts:
            requests = args.baseline_requests if clients == 1 else args.requests_per_client
            row = load_phase(url, process, clients, requests, plan, args.timeout_s)
            row |= {"design": design_name(design), "round": round_index, "server_rss_before_mib": rss_before}
            rows.append(row)
    return rows


def load_phase(url: str, process, clients: int, requests: int, plan, timeout_s: float) -> dict:
    """`clients` clients x `requests` each, started together; stats, the server's peak RSS and CPU per request."""
    if process is not None:
        reset_peak(process.pid)
    cpu_before = process_cpu_s(process.pid) if process is not None else None
    clients_cpu_before = process_cpu_s(os.getpid())  # the load generator shares the machine: its cost, too
    barrier = threading.Barrier(clients)
    with ThreadPoolExecutor(max_workers=clients) as pool:
        offset = 10_000 if clients == 1 else 0  # the baseline's plan differs from the first concurrent client's
        futures = [pool.submit(client_session, url, plan(requests, k + offset), timeout_s, barrier)
                   for k in range(clients)]
        start = time.perf_counter()
        results = [r for f in futures for r in f.result()]
    row = stats(results, time.perf_counter() - start) | {"clients": clients, "groups": group_stats(results)}
    row["clients_cpu_s_per_request"] = (process_cpu_s(os.getpid()) - clients_cpu_before) / len(results)
    if process is not None:
        row["server_peak_rss_mib"] = peak_memory_mib(process.pid)
        row["server_cpu_s_per_request"] = (process_cpu_s(process.pid) - cpu_before) / len(results)
    row["server_alive"] = process is None or process.poll() is None
    return row


def process_cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process (Linux /proc), all its threads."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _teacher_env(teacher_id: str | None) -> dict[str, str]:
    """TEACHER_ID for the started app: the given one, or none (not inherited from this shell)."""
    return {"TEACHER_ID": teacher_id or ""}


def print_report(report: dict) -> None:
    rows = report["rows"]
    reference = {(r["round"], r["clients"]): r for r in rows if r["design"] == rows[0]["design"]}
    print(f"{'design':<14} {'round':>5} {'clients':>7} {'requests':>8} {'errors':>6} {'p50 s':>7} {'p95 s':>7} "
          f"{'req/s':>7} {'x ref':>6} {'peak MiB':>8} {'server cpu s/req':>16} {'clients cpu s/req':>17}")
    for r in rows:
        ref = reference.get((r["round"], r["clients"]))
        ratio = r["throughput_rps"] / ref["throughput_rps"] if ref and ref["throughput_rps"] else float("nan")
        print(f"{r['design']:<14} {r['round']:>5} {r['clients']:>7} {r['requests']:>8} {r['errors']:>6} "
              f"{r['p50_s'] or 0:>7.3f} {r['p95_s'] or 0:>7.3f} {r['throughput_rps'] or 0:>7.2f} {ratio:>6.2f} "
              f"{r.get('server_peak_rss_mib') or 0:>8.0f} {r.get('server_cpu_s_per_request') or 0:>16.3f} "
              f"{r['clients_cpu_s_per_request']:>17.3f}")
        if report["mix"] == "hostile":
            print("    " + "; ".join(
                f"{g} {row['requests']} req, {row['unexpected']} unexpected, {row['outcomes']}, "
                f"p50 {row['p50_s']:.3f} s, p95 {row['p95_s']:.3f} s, max {row['max_s']:.3f} s"
                for g, row in r["groups"].items()))
    for r in rows:
        if r["errors"]:
            print(f"errors ({r['design']}, {r['clients']} clients):", *r["error_examples"], sep="\n  ")
    print(f"server alive at the end of every run: {report['server_alive_at_end']}")


def main(argv: list[str] | None = None) -> int:
    from transformers import HfArgumentParser

    (args,) = HfArgumentParser(LoadTestArguments).parse_args_into_dataclasses(args=argv)
    report = run(args)
    print_report(report)
    if args.output_json:
        Path(args.output_json).write_text(json.dumps(report, indent=2))
    errors = any(r["errors"] for r in report["rows"])
    return 0 if not errors and report["server_alive_at_end"] else 1


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python
"""Peak resident memory and time of the Space's `predict` endpoint per input kind, measured from outside the app.

The app (space/app.py) runs in its own process on loopback (scripts/space_server.py). Before each request this
script writes "5" to /proc/<pid>/clear_refs, which resets the process's peak resident set size (VmHWM) to its
current RSS; after the answer (and `--settle_s`) it reads VmHWM (the request's peak) and VmRSS (what the request
left resident: memory returned, or kept). Linux only.

Input kinds: valid radiographs (the bundled sample as PNG, JPEG, 8-bit and 16-bit DICOM); near-limit files (an
8-bit and a 16-bit PNG and a deflated DICOM just under the pixel budget, an uncompressed DICOM just under the upload
size limit, and the same three just over the pixel budget); every hostile kind of scripts/malformed_inputs.py
(decompression bombs, the deflated DICOM bomb, malformed DICOM, random bytes, ...). Valid kinds run first, then the
hostile ones, then the near-limit ones, then the valid PNGs again (`valid_png_after_large`: does a small request
find the memory of the large ones returned?).

    python scripts/memory_profile_space.py --model_id outputs/quickstart/distill \
        --teacher_id outputs/quickstart/teacher --output_json memory.json
"""

from __future__ import annotations

import json
import statistics
import sys
import tempfile
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from space_cases import ProfileCase, answer_outcome, hostile_cases, near_limit_cases, valid_cases  # noqa: E402
from space_server import proc_status_mib, reset_peak, running_space, space_client  # noqa: E402

# Near-limit sizes: the pixel budget is PIL.Image.MAX_IMAGE_PIXELS (89,478,485 samples, side 9459); the upload
# limit is the app's DEFAULT_MAX_FILE_SIZE (50 MiB = 52,428,800 bytes).


@dataclass
class MemoryProfileArguments:
    model_id: str = field(metadata={"help": "MODEL_ID of the app to start (folder or Hub id)"})
    teacher_id: str | None = field(default=None, metadata={"help": "TEACHER_ID of the app to start (optional)"})
    max_per_kind: int = field(default=6, metadata={"help": "At most this many files of each kind"})
    near_limit_repeats: int = field(default=3, metadata={"help": "Requests per near-limit file"})
    seed: int = field(default=0)
    settle_s: float = field(default=0.5, metadata={"help": "Wait after each answer before reading VmHWM/VmRSS"})
    timeout_s: float = field(default=300.0)
    cases_dir: str | None = field(default=None, metadata={"help": "Keep the generated inputs here"})
    app_log: str | None = field(default=None)
    output_json: str | None = field(default=None)


# --- measuring ---------------------------------------------------------------------------------------------------


def measure(client, pid: int, case: ProfileCase, timeout_s: float, settle_s: float) -> dict:
    """One request: outcome, seconds, RSS before, peak RSS during, RSS after (MiB)."""
    from gradio_client import handle_file

    reset_peak(pid)
    before = proc_status_mib(pid, "VmRSS")
    start = time.perf_counter()
    try:
        result, error = client.submit(handle_file(str(case.path)), api_name="/predict").result(timeout=timeout_s), None
    except Exception as exc:  # noqa: BLE001 - classified below
        result, error = None, exc
    seconds = time.perf_counter() - start
    time.sleep(settle_s)
    outcome, detail = answer_outcome(result, error)
    return {"kind": case.kind, "group": case.group, "file": case.path.name, "bytes": case.path.stat().st_size,
            "expected": case.expected, "outcome": outcome, "detail": detail[:200], "seconds": seconds,
            "rss_before_mib": before, "peak_mib": proc_status_mib(pid, "VmHWM"),
            "rss_after_mib": proc_status_mib(pid, "VmRSS")}


def summarise(records: list[dict], idle_mib: float) -> list[dict]:
    """One row per kind (in first-seen order): requests, outcomes, peak/increase/time/RSS after."""
    rows = []
    for kind in dict.fromkeys(r["kind"] for r in records):
        mine = [r for r in records if r["kind"] == kind]
        peak = max(r["peak_mib"] for r in mine)
        seconds = [r["seconds"] for r in mine]
        outcomes = Counter(r["outcome"] for r in mine)
        rows.append({"kind": kind, "group": mine[0]["group"], "requests": len(mine),
                     "outcomes": dict(outcomes), "largest_file_mb": max(r["bytes"] for r in mine) / 1e6,
                     "peak_mib": peak, "peak_over_idle_mib": peak - idle_mib,
                     "request_increase_mib": max(r["peak_mib"] - r["rss_before_mib"] for r in mine),
                     "p50_s": statistics.median(seconds), "max_s": max(seconds),
                     "rss_after_mib": mine[-1]["rss_after_mib"], "rss_after_max_mib": max(r["rss_after_mib"]
                                                                                          for r in mine),
                     "unexpected": sum(1 for r in mine if r["expected"] and r["outcome"] != r["expected"])})
    return rows


def markdown_table(rows: list[dict]) -> str:
    lines = ["| input kind | group | requests | outcome | largest file MB | peak RSS MiB | peak − idle MiB | "
             "peak − RSS before MiB | time p50 / max s | RSS after MiB (last / max) |",
             "|---|---|---:|---|---:|---:|---:|---:|---:|---:|"]
    for row in rows:
        outcome = ", ".join(f"{n} {name.replace('_', ' ')}" for name, n in sorted(row["outcomes"].items()))
        lines.append(f"| {row['kind']} | {row['group']} | {row['requests']} | {outcome} | "
                     f"{row['largest_file_mb']:.2f} | {row['peak_mib']:.0f} | {row['peak_over_idle_mib']:+.0f} | "
                     f"{row['request_increase_mib']:+.0f} | "
                     f"{row['p50_s']:.3f} / {row['max_s']:.3f} | {row['rss_after_mib']:.0f} / "
                     f"{row['rss_after_max_mib']:.0f} |")
    return "\n".join(lines)


def run(args: MemoryProfileArguments) -> dict:

    workdir = Path(args.cases_dir) if args.cases_dir else Path(tempfile.mkdtemp(prefix="memory_profile_"))
    valid = valid_cases(workdir / "valid", args.max_per_kind)
    hostile = hostile_cases(workdir / "hostile", args.max_per_kind, args.seed)
    near = near_limit_cases(workdir / "near_limit")
    after = [ProfileCase("valid_png_after_large", "valid", "success", c.path) for c in valid if c.kind == "valid_png"]
    plan = valid + hostile + [c for c in near for _ in range(args.near_limit_repeats)] + after
    with running_space(args.model_id, log_path=args.app_log, extra_env={"TEACHER_ID": args.teacher_id or ""}) as (
            url, process):
        client = space_client(url)
        for case in valid[:2]:  # warm-up: first requests initialise lazily
            measure(client, process.pid, case, args.timeout_s, args.settle_s)
        time.sleep(1.0)
        idle_start = proc_status_mib(process.pid, "VmRSS")
        records = [measure(client, process.pid, case, args.timeout_s, args.settle_s) for case in plan]
        time.sleep(5.0)
        idle_end = proc_status_mib(process.pid, "VmRSS")
        alive = process.poll() is None
    rows = summarise(records, idle_start)
    return {"idle_rss_start_mib": idle_start, "idle_rss_end_mib": idle_end, "server_alive_at_end": alive,
            "requests": len(records), "unexpected": sum(r["unexpected"] for r in rows),
            "outcomes": dict(Counter(r["outcome"] for r in records)), "kinds": rows, "records": records,
            "args": asdict(args)}


def main(argv: list[str] | None = None) -> int:
    from transformers import HfArgumentParser

    (args,) = HfArgumentParser(MemoryProfileArguments).parse_args_into_dataclasses(args=argv)
    report = run(args)
    print(markdown_table(report["kinds"]))
    print(f"\nidle RSS {report['idle_rss_start_mib']:.0f} MiB before the first measured request, "
          f"{report['idle_rss_end_mib']:.0f} MiB 5 s after the last; {report['requests']} requests, outcomes "
          f"{report['outcomes']}, {report['unexpected']} not as expected; "
          f"server alive: {report['server_alive_at_end']}")
    if args.output_json:
        Path(args.output_json).write_text(json.dumps(report, indent=2, default=str))
    return 0 if report["server_alive_at_end"] and not report["outcomes"].get("crash") else 1


if __name__ == "__main__":
    sys.exit(main())

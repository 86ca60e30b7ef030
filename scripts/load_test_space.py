#!/usr/bin/env python
"""Load test of the Space's `predict` endpoint: N concurrent gradio_client clients x M requests on loopback.

Each client is its own `gradio_client.Client` (own session) in its own thread and sends the bundled sample
radiographs (hf_deitcxr/sample_data/cxr3_sample, PNG/JPEG as a user would upload them) one request after another.
Reports errors, latency percentiles (submit -> result, as a user waits, queueing included) and throughput, and the
baseline: the same requests from one client, sequentially, in the same run.

    python scripts/load_test_space.py --model_id outputs/quickstart/distill --teacher_id outputs/quickstart/teacher \
        --clients 8 --requests_per_client 50
"""

from __future__ import annotations

import json
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from space_server import peak_memory_mib, running_space  # noqa: E402

SAMPLES = Path(__file__).resolve().parents[1] / "hf_deitcxr" / "sample_data" / "cxr3_sample"


@dataclass
class LoadTestArguments:
    model_id: str | None = field(default=None, metadata={"help": "MODEL_ID of the app to start (folder or Hub id)"})
    teacher_id: str | None = field(default=None, metadata={"help": "TEACHER_ID of the app to start (optional)"})
    url: str | None = field(default=None, metadata={"help": "Test an app already running here instead"})
    clients: int = field(default=8)
    requests_per_client: int = field(default=50)
    baseline_requests: int = field(default=20, metadata={"help": "Sequential single-client requests first"})
    timeout_s: float = field(default=300.0)
    output_json: str | None = field(default=None)

    def __post_init__(self) -> None:
        if not (self.model_id or self.url):
            raise ValueError("give --model_id (start space/app.py) or --url (connect to a running app)")


def sample_files() -> list[Path]:
    files = sorted(p for p in SAMPLES.rglob("*") if p.suffix.lower() in (".png", ".jpg", ".jpeg"))
    if not files:
        raise FileNotFoundError(f"no sample radiographs under {SAMPLES}")
    return files


def client_session(url: str, requests: int, offset: int, timeout_s: float, start_barrier=None) -> list[dict]:
    from gradio_client import Client, handle_file

    client = Client(url, verbose=False, download_files=False)
    files = sample_files()
    if start_barrier is not None:
        start_barrier.wait()  # all clients connected: start together
    results = []
    for i in range(requests):
        path = files[(offset + i) % len(files)]
        start = time.perf_counter()
        try:
            output = client.submit(handle_file(str(path)), api_name="/predict").result(timeout=timeout_s)
            ok = isinstance(output, (list, tuple)) and isinstance(output[0], dict) and output[0].get("confidences")
            error = None if ok else f"unexpected output {str(output)[:120]}"
        except Exception as exc:  # noqa: BLE001 - every failure is counted and reported
            error = f"{type(exc).__name__}: {exc}"[:200]
        results.append({"seconds": time.perf_counter() - start, "error": error})
    return results


def stats(results: list[dict], wall_s: float) -> dict:
    seconds = np.array([r["seconds"] for r in results if r["error"] is None])
    errors = [r["error"] for r in results if r["error"] is not None]
    return {"requests": len(results), "errors": len(errors), "error_examples": sorted(set(errors))[:5],
            "p50_s": float(np.percentile(seconds, 50)) if len(seconds) else None,
            "p95_s": float(np.percentile(seconds, 95)) if len(seconds) else None,
            "mean_s": float(seconds.mean()) if len(seconds) else None,
            "wall_s": wall_s, "throughput_rps": len(seconds) / wall_s if wall_s else None}


def run(args: LoadTestArguments) -> dict:
    server = (
        running_space(args.model_id, extra_env=_teacher_env(args.teacher_id))
        if not args.url else nullcontext((args.url, None))
    )
    with server as (url, process):
        client_session(url, 2, 0, args.timeout_s)  # warm-up (first request loads/initialises lazily, if anything)
        start = time.perf_counter()
        baseline = client_session(url, args.baseline_requests, 0, args.timeout_s)
        baseline_stats = stats(baseline, time.perf_counter() - start)

        barrier = threading.Barrier(args.clients)
        with ThreadPoolExecutor(max_workers=args.clients) as pool:
            futures = [pool.submit(client_session, url, args.requests_per_client, k * 3, args.timeout_s, barrier)
                       for k in range(args.clients)]
            start = time.perf_counter()
            concurrent = [r for f in futures for r in f.result()]
        concurrent_stats = stats(concurrent, time.perf_counter() - start)
        peak = peak_memory_mib(process.pid) if process is not None else None
        alive = process is None or process.poll() is None
    return {"baseline_1_client": baseline_stats, f"concurrent_{args.clients}_clients": concurrent_stats,
            "server_peak_rss_mib": peak, "server_alive_at_end": alive}


def _teacher_env(teacher_id: str | None) -> dict[str, str]:
    """TEACHER_ID for the started app: the given one, or none (not inherited from this shell)."""
    return {"TEACHER_ID": teacher_id or ""}


def main(argv: list[str] | None = None) -> int:
    from transformers import HfArgumentParser

    (args,) = HfArgumentParser(LoadTestArguments).parse_args_into_dataclasses(args=argv)
    report = run(args)
    print(f"{'run':<24} {'requests':>8} {'errors':>6} {'p50 s':>7} {'p95 s':>7} {'req/s':>7}")
    for name, row in report.items():
        if isinstance(row, dict):
            print(f"{name:<24} {row['requests']:>8} {row['errors']:>6} {row['p50_s'] or 0:>7.3f} "
                  f"{row['p95_s'] or 0:>7.3f} {row['throughput_rps'] or 0:>7.2f}")
    base, load = report["baseline_1_client"], report[f"concurrent_{args.clients}_clients"]
    if base["throughput_rps"] and load["throughput_rps"]:
        ratio = load["throughput_rps"] / base["throughput_rps"]
        print(f"throughput ratio {args.clients} clients / 1 client: {ratio:.2f}; "
              f"p50 latency ratio: {load['p50_s'] / base['p50_s']:.2f}")
    print(f"server peak RSS {report['server_peak_rss_mib']} MiB, alive at end: {report['server_alive_at_end']}")
    errors = [row.get("error_examples") for row in report.values() if isinstance(row, dict) and row.get("errors")]
    for examples in errors:
        print("errors:", *examples, sep="\n  ")
    if args.output_json:
        Path(args.output_json).write_text(json.dumps(report, indent=2))
    return 0 if not errors and report["server_alive_at_end"] else 1


if __name__ == "__main__":
    sys.exit(main())

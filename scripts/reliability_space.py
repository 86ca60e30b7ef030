#!/usr/bin/env python
"""Send >= 200 malformed/unusual uploads to the Space's `predict` endpoint and count how the app answers.

Each answer is one of:
- success: the four outputs came back (student label with confidences first);
- clear error: the app raised `gr.Error("<message>")`, which the client receives as an `AppError` with that message;
- crash: anything else: the generic "has raised an exception" error (an exception the app did not turn into a
  message), another client exception, no answer within --timeout_s, or the server process gone.
After the malformed inputs, a valid radiograph must still be predicted (the server survived and still works).

    python scripts/reliability_space.py --model_id outputs/quickstart/distill \
        --teacher_id outputs/quickstart/teacher                                      # starts space/app.py
    python scripts/reliability_space.py --url http://127.0.0.1:7860/                 # an app already running
Exit status 0 only with zero crashes and a working server at the end. Inputs: scripts/malformed_inputs.py.
"""

from __future__ import annotations

import json
import statistics
import sys
import tempfile
import time
from collections import Counter, defaultdict
from concurrent.futures import TimeoutError as FutureTimeout
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from malformed_inputs import valid_radiograph_png, write_cases  # noqa: E402
from space_server import answers, peak_memory_mib, running_space, space_client  # noqa: E402

GENERIC_ERROR = "has raised an exception but has not enabled verbose error reporting"


@dataclass
class ReliabilityArguments:
    model_id: str | None = field(default=None, metadata={"help": "MODEL_ID of the app to start (folder or Hub id)"})
    teacher_id: str | None = field(default=None, metadata={"help": "TEACHER_ID of the app to start (optional)"})
    url: str | None = field(default=None, metadata={"help": "Test an app already running here instead"})
    count: int = field(default=200, metadata={"help": "At least this many malformed inputs"})
    seed: int = field(default=0)
    timeout_s: float = field(default=120.0, metadata={"help": "Per request; longer counts as a crash (hang)"})
    cases_dir: str | None = field(default=None, metadata={"help": "Keep the generated inputs here"})
    output_json: str | None = field(default=None, metadata={"help": "Write the full result here"})
    app_log: str | None = field(default=None, metadata={"help": "Write the started app's output here"})

    def __post_init__(self) -> None:
        if not (self.model_id or self.url):
            raise ValueError("give --model_id (start space/app.py) or --url (connect to a running app)")


def classify(client, path: Path, timeout_s: float) -> tuple[str, str, float]:
    """(outcome, detail, seconds) of one upload."""
    from gradio_client import handle_file
    from gradio_client.exceptions import AppError

    start = time.perf_counter()
    try:
        result = client.submit(handle_file(str(path)), api_name="/predict").result(timeout=timeout_s)
    except AppError as error:
        message = str(error.message or "").strip()
        outcome = "crash" if (not message or GENERIC_ERROR in message) else "clear_error"
        return outcome, message[:300], time.perf_counter() - start
    except FutureTimeout:
        return "crash", f"no answer within {timeout_s:.0f} s", time.perf_counter() - start
    except Exception as error:  # noqa: BLE001 - anything else is exactly what this script counts as a crash
        return "crash", f"{type(error).__name__}: {error}"[:300], time.perf_counter() - start
    seconds = time.perf_counter() - start
    label = result[0] if isinstance(result, (list, tuple)) and len(result) == 4 else None
    if not (isinstance(label, dict) and label.get("confidences")):
        return "crash", f"unexpected result shape: {str(result)[:200]}", seconds
    return "success", str(label.get("label")), seconds


def run(args: ReliabilityArguments) -> dict:

    workdir = Path(args.cases_dir) if args.cases_dir else Path(tempfile.mkdtemp(prefix="reliability_"))
    cases = write_cases(workdir / "inputs", args.count, seed=args.seed)
    valid = workdir / "valid_radiograph.png"
    valid.write_bytes(valid_radiograph_png())
    server = (
        running_space(args.model_id, log_path=args.app_log, extra_env=_teacher_env(args.teacher_id))
        if not args.url else nullcontext((args.url, None))
    )
    with server as (url, process):
        client = space_client(url)
        before = classify(client, valid, args.timeout_s)
        records = []
        for case in cases:
            outcome, detail, seconds = classify(client, case.path, args.timeout_s)
            if process is not None and process.poll() is not None:
                outcome, detail = "crash", f"server process exited ({process.returncode}); {detail}"
            records.append({"file": case.path.name, "kind": case.kind, "outcome": outcome, "detail": detail,
                            "seconds": round(seconds, 3)})
            if outcome == "crash" and not answers(url):
                records[-1]["detail"] += " [server not answering]"
        after = classify(client, valid, args.timeout_s)
        peak = peak_memory_mib(process.pid) if process is not None else None
    return summarise(records, before, after, peak)


def summarise(records: list[dict], before, after, peak_mib) -> dict:
    by_kind: dict[str, Counter] = defaultdict(Counter)
    for record in records:
        by_kind[record["kind"]][record["outcome"]] += 1
    totals = Counter(record["outcome"] for record in records)
    seconds = sorted(record["seconds"] for record in records)
    return {
        "inputs": len(records), "totals": dict(totals), "by_kind": {k: dict(v) for k, v in sorted(by_kind.items())},
        "valid_before": before[:2], "valid_after": after[:2],
        "latency_s": {"p50": statistics.median(seconds), "max": seconds[-1]},
        "server_peak_rss_mib": peak_mib,
        "crashes": [r for r in records if r["outcome"] == "crash"],
        "clear_error_examples": sorted({r["detail"] for r in records if r["outcome"] == "clear_error"})[:40],
        "records": records,
    }


def print_report(report: dict) -> None:
    def row(name: str, counts: dict) -> str:
        return (f"{name:<20} {counts.get('success', 0):>8} {counts.get('clear_error', 0):>12} "
                f"{counts.get('crash', 0):>6}")

    print(f"{'kind':<20} {'success':>8} {'clear error':>12} {'crash':>6}")
    for kind, counts in report["by_kind"].items():
        print(row(kind, counts))
    print(row("TOTAL", report["totals"]) + f"   ({report['inputs']} inputs)")
    print(f"valid radiograph before: {report['valid_before']}, after: {report['valid_after']}")
    print(f"latency p50 {report['latency_s']['p50']:.3f} s, max {report['latency_s']['max']:.3f} s; "
          f"server peak RSS {report['server_peak_rss_mib']} MiB")
    for crash in report["crashes"]:
        print(f"CRASH {crash['file']}: {crash['detail']}")
    print("clear error messages (sample):", *report["clear_error_examples"][:12], sep="\n  ")


def _teacher_env(teacher_id: str | None) -> dict[str, str]:
    """TEACHER_ID for the started app: the given one, or none (not inherited from this shell)."""
    return {"TEACHER_ID": teacher_id or ""}


def main(argv: list[str] | None = None) -> int:
    from transformers import HfArgumentParser

    (args,) = HfArgumentParser(ReliabilityArguments).parse_args_into_dataclasses(args=argv)
    report = run(args)
    print_report(report)
    if args.output_json:
        Path(args.output_json).write_text(json.dumps(report, indent=2))
    ok = not report["crashes"] and report["valid_after"][0] == "success"
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

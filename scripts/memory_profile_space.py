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

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))

import malformed_inputs as mi  # noqa: E402
from load_test_space import answer_outcome, sample_files  # noqa: E402
from space_server import running_space  # noqa: E402

# Near-limit sizes: the pixel budget is PIL.Image.MAX_IMAGE_PIXELS (89,478,485 samples, side 9459); the upload
# limit is the app's DEFAULT_MAX_FILE_SIZE (50 MiB = 52,428,800 bytes).
UNDER_BUDGET_SIDE = 9400  # 88.4 Mpixel
OVER_BUDGET_SIDE = 9500  # 90.3 Mpixel
UNDER_UPLOAD_LIMIT_DICOM_SIDE = 5000  # 16-bit uncompressed: 50,000,000 bytes of pixels


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


@dataclass(frozen=True)
class ProfileCase:
    kind: str
    group: str  # valid | near_limit | hostile | mixed
    expected: str | None  # success | clear_error | None (either: a valid encoding the input check may refuse)
    path: Path


# --- inputs ------------------------------------------------------------------------------------------------------


def _grey(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("L"))


def valid_cases(folder: Path, count: int = 6) -> list[ProfileCase]:
    """The bundled sample radiographs as JPEG (as shipped), PNG, 8-bit and 16-bit (12 bits stored) DICOM."""
    folder.mkdir(parents=True, exist_ok=True)
    cases = []
    for i, source in enumerate(sample_files()[:count]):
        grey = _grey(source)
        height, width = grey.shape
        files = {"valid_jpeg": (".jpg", source.read_bytes()),
                 "valid_png": (".png", mi._encode(Image.fromarray(grey), "PNG")),
                 "valid_dicom_8bit": (".dcm", mi._dicom(height, width, grey.tobytes(), bits=8)),
                 "valid_dicom_16bit": (".dcm", mi._dicom(height, width, (grey.astype(np.uint16) * 16).tobytes(),
                                                         bits_stored=12))}
        for kind, (suffix, data) in files.items():
            path = folder / f"{kind}_{i:02d}{suffix}"
            path.write_bytes(data)
            cases.append(ProfileCase(kind, "valid", "success", path))
    return cases


def near_limit_cases(folder: Path) -> list[ProfileCase]:
    """A radiograph upscaled to just under (valid) and just over (refused) the pixel budget and the upload limit."""
    from pydicom.uid import DeflatedExplicitVRLittleEndian

    folder.mkdir(parents=True, exist_ok=True)
    grey = Image.fromarray(_grey(sample_files()[0]))
    cases = []
    for side, expected, tag in ((UNDER_BUDGET_SIDE, "success", "under"), (OVER_BUDGET_SIDE, "clear_error", "over")):
        big = np.asarray(grey.resize((side, side), Image.Resampling.BILINEAR))
        big16 = big.astype(np.uint16) * 257
        files = {f"png8_{side}px_{tag}_budget": (".png", mi._encode(Image.fromarray(big), "PNG")),
                 f"png16_{side}px_{tag}_budget": (".png", mi._encode(Image.fromarray(big16), "PNG")),
                 f"dicom16_deflated_{side}px_{tag}_budget": (".dcm", mi._patched_dicom(
                     big16, transfer_syntax=DeflatedExplicitVRLittleEndian))}
        del big, big16
        for kind, (suffix, data) in files.items():
            path = folder / f"{kind}{suffix}"
            path.write_bytes(data)
            cases.append(ProfileCase(kind, "near_limit", expected, path))
    side = UNDER_UPLOAD_LIMIT_DICOM_SIDE
    pixels = np.asarray(grey.resize((side, side), Image.Resampling.BILINEAR)).astype(np.uint16) * 16
    path = folder / f"dicom16_{side}px_under_upload_limit.dcm"
    path.write_bytes(mi._dicom(side, side, pixels.tobytes(), bits_stored=12))
    cases.append(ProfileCase(path.stem, "near_limit", "success", path))
    return cases


def hostile_cases(folder: Path, per_kind: int = 6, seed: int = 0) -> list[ProfileCase]:
    """Every generator of malformed_inputs (round 0, then 1, ...) up to `per_kind` files each, spread over its
    variants; the deflated DICOM bomb is a kind of its own. radiograph_encoding is group "mixed" (valid encodings
    of which the input check refuses some), everything else must be refused with a clear message."""
    folder.mkdir(parents=True, exist_ok=True)
    cases = []
    for kind, make in mi.GENERATORS:
        made: list[tuple[str, str, bytes]] = []
        round_index = 0
        while (len(made) < per_kind or round_index < 2) and round_index < 4:  # >= 2 rounds: both deflate bombs
            rng = np.random.default_rng([seed, round_index])
            if kind == "malformed_dicom":
                for label, data in mi.malformed_dicom_cases(rng, round_index):
                    made.append(("deflated_dicom_bomb" if label == "deflated-bomb" else kind, ".dcm", data))
            else:
                made += [(kind, suffix, data) for suffix, data in make(rng, round_index)]
            round_index += 1
        for sub_kind in dict.fromkeys(k for k, _, _ in made):
            items = [(s, d) for k, s, d in made if k == sub_kind]
            picks = np.unique(np.linspace(0, len(items) - 1, min(per_kind, len(items))).round().astype(int))
            for i in picks:
                suffix, data = items[i]
                path = folder / f"{sub_kind}_{i:03d}{suffix}"
                path.write_bytes(data)
                mixed = sub_kind == "radiograph_encoding"
                cases.append(ProfileCase(sub_kind, "mixed" if mixed else "hostile", None if mixed else "clear_error",
                                         path))
    return cases


# --- measuring ---------------------------------------------------------------------------------------------------


def proc_status_mib(pid: int, key: str) -> float | None:
    """A memory line of /proc/<pid>/status (VmRSS, VmHWM, ...) in MiB."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def reset_peak(pid: int) -> None:
    """Reset VmHWM to the current RSS (Linux >= 4.0: "5" > /proc/<pid>/clear_refs)."""
    Path(f"/proc/{pid}/clear_refs").write_text("5")


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
    from gradio_client import Client

    workdir = Path(args.cases_dir) if args.cases_dir else Path(tempfile.mkdtemp(prefix="memory_profile_"))
    valid = valid_cases(workdir / "valid", args.max_per_kind)
    hostile = hostile_cases(workdir / "hostile", args.max_per_kind, args.seed)
    near = near_limit_cases(workdir / "near_limit")
    after = [ProfileCase("valid_png_after_large", "valid", "success", c.path) for c in valid if c.kind == "valid_png"]
    plan = valid + hostile + [c for c in near for _ in range(args.near_limit_repeats)] + after
    with running_space(args.model_id, log_path=args.app_log, extra_env={"TEACHER_ID": args.teacher_id or ""}) as (
            url, process):
        client = Client(url, verbose=False, download_files=False)
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

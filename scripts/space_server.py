"""Start `space/app.py` as a separate process on loopback for the reliability and load scripts and the browser test.

A separate process, so a crash, hang or out-of-memory kill in the app is observed (and reported) rather than taking
the measuring script down with it.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def space_client(url: str):
    """A `gradio_client.Client` for the app at `url`, without downloading output files.

    Over plain HTTP (the loopback app) TLS never happens, so certificate verification is switched off: with it on,
    httpx loads the CA bundle into a new SSL context for every request gradio_client sends (two thirds of the load
    generator's CPU in a profile, docs/RESULTS.md), which on a 2-core machine is taken from the app under test.
    """
    from gradio_client import Client

    return Client(url, verbose=False, download_files=False, ssl_verify=not url.startswith("http://"))


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextmanager
def running_space(model_id: str, app: str | Path = ROOT / "space" / "app.py", startup_timeout: float = 300.0,
                  log_path: str | Path | None = None, extra_env: dict[str, str] | None = None):
    """Yield (url, process) of the app serving `model_id`; its output goes to `log_path` (default: discarded)."""
    port = free_port()
    env = {**os.environ, "MODEL_ID": str(model_id), "GRADIO_SERVER_NAME": "127.0.0.1",
           "GRADIO_SERVER_PORT": str(port), "GRADIO_ANALYTICS_ENABLED": "False", "HF_HUB_OFFLINE": "1",
           "HF_HUB_DISABLE_TELEMETRY": "1", "PYTHONUNBUFFERED": "1", **(extra_env or {})}
    log = open(log_path, "wb") if log_path else subprocess.DEVNULL  # noqa: SIM115 - closed below
    process = subprocess.Popen([sys.executable, str(app)], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    try:
        wait_until_serving(url, process, startup_timeout)
        yield url, process
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if log is not subprocess.DEVNULL:
            log.close()


def wait_until_serving(url: str, process: subprocess.Popen, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the app exited with status {process.returncode} before serving {url}")
        if answers(url):
            return
        time.sleep(0.5)
    raise TimeoutError(f"the app did not serve {url} within {timeout:.0f} s")


def answers(url: str, timeout: float = 5.0) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status == 200
    except OSError:
        return False


def peak_memory_mib(pid: int) -> float | None:
    """Peak resident memory (VmHWM) of a live process, Linux only."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


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

"""hf_deitcxr.serving.memory.release_memory: freed heap goes back to the OS (glibc), a no-op elsewhere."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from hf_deitcxr.serving import memory
from hf_deitcxr.serving.memory import release_memory


def _rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def test_returns_a_bool_and_can_be_called_repeatedly():
    assert isinstance(release_memory(), bool)
    assert isinstance(release_memory(), bool)


@pytest.mark.skipif(not Path("/proc/self/status").exists() or memory._malloc_trim() is None,
                    reason="needs Linux with glibc (malloc_trim)")
def test_freed_heap_of_a_worker_thread_is_returned_to_the_os():
    """~180 MB in 60 kB pieces (below glibc's mmap threshold, so on the heap of a thread arena) allocated and freed
    in a worker thread, as a Gradio request would: glibc keeps it resident; release_memory gives it back."""

    def request(out: list) -> None:
        chunks = [b"\x01" * 60_000 for _ in range(3000)]
        out.append(chunks[-1])  # one piece outlives the request, so the arena cannot simply shrink from the top

    survivors: list = []
    thread = threading.Thread(target=request, args=(survivors,))
    thread.start()
    thread.join()
    before = _rss_mib()
    assert release_memory() is True
    after = _rss_mib()
    assert before - after > 100, f"RSS {before:.0f} -> {after:.0f} MiB: freed heap not returned"


def test_no_malloc_trim_is_a_no_op(monkeypatch):
    monkeypatch.setattr(memory, "_malloc_trim", lambda: None)
    assert release_memory() is False


def test_a_failing_trim_does_not_raise(monkeypatch):
    def broken(pad):
        raise OSError("boom")

    monkeypatch.setattr(memory, "_malloc_trim", lambda: broken)
    assert release_memory() is False

"""hf_deitcxr.serving.memory.release_memory: freed heap goes back to the OS (glibc), a no-op elsewhere."""

from __future__ import annotations

import sys
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


def test_the_failed_requests_frames_are_cleared_so_their_memory_is_freed():
    """A refusal raised from deep inside (as the app's gr.Error from the decoder's error): the decoded data held by
    the finished frames of the traceback chain is freed; the running frame (the caller's) is left alone."""
    import weakref

    class Decoded:  # stands in for the decoded upload
        pass

    alive: list = []

    def decode():
        image = Decoded()
        alive.append(weakref.ref(image))
        raise ValueError("unreadable")

    def run_prediction():
        marker = "still here"
        try:
            decode()
        except ValueError as err:
            raise RuntimeError("refused") from err
        finally:
            assert alive[0]() is not None  # held by the traceback
            release_memory(sys.exc_info()[1])
            assert alive[0]() is None, "the decoded data outlived release_memory"
            assert marker == "still here"

    with pytest.raises(RuntimeError, match="refused") as info:
        run_prediction()
    assert "unreadable" in str(info.value.__cause__)  # the chain itself is kept (for logging)


def test_no_malloc_trim_is_a_no_op(monkeypatch):
    monkeypatch.setattr(memory, "_malloc_trim", lambda: None)
    assert release_memory() is False


def test_a_failing_trim_does_not_raise(monkeypatch):
    def broken(pad):
        raise OSError("boom")

    monkeypatch.setattr(memory, "_malloc_trim", lambda: broken)
    assert release_memory() is False


# --- scripts/load_test_space.py --mix hostile: what counts as unexpected -------------------------------------------


@pytest.fixture(scope="module")
def load_test():
    from scripts import load_test_space

    return load_test_space


def _four_outputs():
    return ({"label": "covid", "confidences": [{"label": "covid", "confidence": 0.9}]}, None, None, "status")


def test_answer_outcome_tells_success_clear_error_generic_error_timeout_and_crash(load_test):
    from gradio_client.exceptions import AppError

    from scripts.space_cases import GENERIC_ERROR  # importable once the fixture put scripts/ on sys.path

    outcome = load_test.answer_outcome
    assert outcome(_four_outputs(), None)[0] == "success"
    assert outcome(("x", None, None), None)[0] == "crash"  # three outputs: not the endpoint's contract
    assert outcome(({"label": "covid"}, None, None, "s"), None)[0] == "crash"  # no confidences
    assert outcome(None, AppError("Could not read this file as an image: x.png: truncated", title="Unreadable file")) \
        == ("clear_error", "Could not read this file as an image: x.png: truncated")
    assert outcome(None, AppError("Something went wrong while processing this file; it has been logged.",
                                  title="Server error"))[0] == "generic_error"
    assert outcome(None, AppError(f"The upstream Gradio app {GENERIC_ERROR}. To enable ..."))[0] == "crash"
    assert outcome(None, AppError("   "))[0] == "crash"
    assert outcome(None, TimeoutError())[0] == "timeout"
    assert outcome(None, ConnectionError("refused"))[0] == "crash"


def test_unexpected_is_a_valid_file_refused_a_hostile_file_accepted_or_any_failure(load_test):
    unexpected = load_test.is_unexpected
    assert not unexpected("success", "success") and not unexpected("clear_error", "clear_error")
    assert unexpected("success", "clear_error")  # a valid radiograph refused
    assert unexpected("clear_error", "success")  # a hostile file accepted
    for failure in ("generic_error", "timeout", "crash"):
        assert unexpected("success", failure) and unexpected("clear_error", failure) and unexpected(None, failure)
    assert not unexpected(None, "success") and not unexpected(None, "clear_error")


def test_mixed_plan_draws_each_group_in_proportion_and_is_deterministic(load_test):
    pools = {"valid": ["v1", "v2"], "hostile": ["h1", "h2", "h3"], "near_limit": ["n1"]}
    fractions = {"hostile": 0.4, "near_limit": 0.1}
    plan = load_test.mixed_plan(pools, 2000, fractions, seed=[0, 3])
    assert plan == load_test.mixed_plan(pools, 2000, fractions, seed=[0, 3])
    assert plan != load_test.mixed_plan(pools, 2000, fractions, seed=[0, 4])
    share = {g: sum(item in cases for item in plan) / len(plan) for g, cases in pools.items()}
    assert abs(share["valid"] - 0.5) < 0.05 and abs(share["hostile"] - 0.4) < 0.05
    assert abs(share["near_limit"] - 0.1) < 0.03
    assert set(plan) == {item for cases in pools.values() for item in cases}
    with pytest.raises(ValueError):
        load_test.mixed_plan(pools, 10, {"hostile": 0.8, "near_limit": 0.3}, seed=0)


def test_memory_profile_summary_per_kind():
    """scripts/memory_profile_space.summarise: the peak is the max over the kind, increases are against idle and
    against the RSS before each request, and outcomes other than the expected one are counted."""
    from scripts import memory_profile_space as profile

    def record(kind, outcome, expected, before, peak, after, seconds, size=1000):
        return {"kind": kind, "group": "g", "bytes": size, "expected": expected, "outcome": outcome,
                "seconds": seconds, "rss_before_mib": before, "peak_mib": peak, "rss_after_mib": after}

    records = [record("big", "success", "success", 640, 1200, 700, 2.0, 5_000_000),
               record("big", "success", "success", 700, 1100, 650, 1.0),
               record("bomb", "clear_error", "clear_error", 650, 655, 650, 0.1),
               record("bomb", "success", "clear_error", 650, 651, 650, 0.3)]
    big, bomb = profile.summarise(records, idle_mib=640)
    assert (big["kind"], big["requests"], big["peak_mib"], big["peak_over_idle_mib"]) == ("big", 2, 1200, 560)
    assert big["request_increase_mib"] == 560 and big["rss_after_mib"] == 650 and big["rss_after_max_mib"] == 700
    assert big["p50_s"] == 1.5 and big["max_s"] == 2.0 and big["largest_file_mb"] == 5.0 and big["unexpected"] == 0
    assert bomb["outcomes"] == {"clear_error": 1, "success": 1} and bomb["unexpected"] == 1
    table = profile.markdown_table([big, bomb])
    assert "| big | g | 2 | 2 success | 5.00 | 1200 | +560 | +560 | 1.500 / 2.000 | 650 / 700 |" in table

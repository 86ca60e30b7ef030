"""Give freed heap memory back to the operating system after a request (glibc's `malloc_trim`).

A request that decodes a large upload (an 8000x8000 PNG, a DICOM near the pixel budget) allocates hundreds of MB in
many pieces; after they are freed, glibc's allocator keeps most of that memory mapped in the process's arenas for
reuse, so the server's resident memory stays at the peak of its largest request. `malloc_trim(0)` returns the free
pages of every arena to the kernel. No library we use does this: Python's allocator only frees its own small-object
arenas, numpy/PIL/torch allocate large buffers with glibc's `malloc` and leave trimming to the C library, whose
automatic trimming (M_TRIM_THRESHOLD) only covers the top of the main arena, not the per-thread arenas Gradio's
worker threads use.

A request that ends in an exception (a refused upload) still holds its memory when the app's `finally:` runs: the
exception's traceback keeps the frames of the calls that raised, with their local variables (the decoded image),
until Gradio drops the exception after answering. `release_memory(error)` clears those finished frames first.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import logging
import traceback

logger = logging.getLogger(__name__)


@functools.cache
def _malloc_trim():
    """glibc's `malloc_trim`, or None where there is none (macOS, Windows, musl)."""
    name = ctypes.util.find_library("c") or "libc.so.6"
    try:
        trim = ctypes.CDLL(name).malloc_trim
    except (OSError, AttributeError):
        return None
    trim.argtypes, trim.restype = [ctypes.c_size_t], ctypes.c_int
    return trim


def release_memory(error: BaseException | None = None) -> bool:
    """Return freed heap pages to the OS; True if any were released, False if none or not supported here.

    error: the exception the request is ending with, if any; the local variables of the finished frames in its
    traceback, and in those of the exceptions it was raised from, are cleared first so their memory is free (a
    frame still running, such as the caller's, is left alone). The tracebacks keep their lines for logging.
    """
    seen: set[int] = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        traceback.clear_frames(error.__traceback__)
        error = error.__cause__ or error.__context__
    trim = _malloc_trim()
    if trim is None:
        return False
    try:
        return bool(trim(0))
    except Exception:  # noqa: BLE001 - best effort: never let housekeeping fail a request
        logger.debug("malloc_trim failed", exc_info=True)
        return False

"""Dynamic batching of concurrent requests: whatever is waiting when the model is free runs as one forward pass.

The Space serves several requests at once (Gradio's `concurrency_limit`). Each request decodes and checks its own
upload in its own thread, then hands its model input to a `MicroBatcher`, whose single worker thread runs the model
on all inputs queued at that moment (up to `max_batch_size`) and hands each request its own result. A batch of 8
costs far less than 8 single forwards on a CPU (the matrix products of one 64 px image are too small to keep the cores
busy), and a lone request does not wait for company unless `max_wait_s` asks it to: batches form because requests
arrive while the previous batch runs.

Why not Gradio's own `batch=True`: it batches the whole event function, so one unreadable or refused upload would
fail every request of its batch, and decoding would be serialised again. Here only the model forward is batched;
every request keeps its own errors. (TorchServe and Triton batch the same way, with a queue and a delay bound; neither
runs inside a Gradio process.)
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from typing import Generic, TypeVar

Item = TypeVar("Item")
Result = TypeVar("Result")


class MicroBatcher(Generic[Item, Result]):
    """`submit(item)` -> a Future of `run_batch([..., item, ...])[its index]`, run on one worker thread.

    run_batch: takes a list of items and returns one result per item, in order. If it raises, every request of that
    batch gets the exception (the inputs were checked before; a failure here is the server's, not the upload's).
    max_batch_size: most items per call. max_wait_s: how long the worker waits for more items after the first one
    (0: none; take only what is already queued).
    """

    def __init__(
        self,
        run_batch: Callable[[list[Item]], Sequence[Result]],
        max_batch_size: int = 8,
        max_wait_s: float = 0.0,
        name: str = "micro-batcher",
    ) -> None:
        if max_batch_size < 1:
            raise ValueError(f"max_batch_size must be at least 1, got {max_batch_size}")
        if max_wait_s < 0:
            raise ValueError(f"max_wait_s must not be negative, got {max_wait_s}")
        self.run_batch = run_batch
        self.max_batch_size = max_batch_size
        self.max_wait_s = max_wait_s
        self.name = name
        self.batch_sizes: list[int] = []  # every batch run so far (for load tests and the log)
        self._queue: queue.SimpleQueue[tuple[Item, Future] | None] = queue.SimpleQueue()
        self._worker: threading.Thread | None = None
        self._start_lock = threading.Lock()
        self._closed = False

    def submit(self, item: Item) -> Future:
        if self._closed:
            raise RuntimeError(f"{self.name} is closed")
        future: Future = Future()
        self._queue.put((item, future))
        self._ensure_worker()
        return future

    def __call__(self, item: Item) -> Result:
        return self.submit(item).result()

    def close(self) -> None:
        """Stop the worker after the items already queued; later `submit`s raise."""
        self._closed = True
        self._queue.put(None)
        if self._worker is not None:
            self._worker.join()

    def _ensure_worker(self) -> None:
        # started lazily, so an object built before a fork (or never used) holds no thread
        with self._start_lock:
            if self._worker is None:
                self._worker = threading.Thread(target=self._serve, name=self.name, daemon=True)
                self._worker.start()

    def _serve(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            batch, stop = self._collect(first)
            self._run(batch)
            if stop:
                return

    def _collect(self, first: tuple[Item, Future]) -> tuple[list[tuple[Item, Future]], bool]:
        """The first item and whatever else arrives before the batch is full or the wait is over."""
        batch = [first]
        deadline = time.monotonic() + self.max_wait_s
        while len(batch) < self.max_batch_size:
            remaining = deadline - time.monotonic()
            try:
                entry = self._queue.get(timeout=remaining) if remaining > 0 else self._queue.get_nowait()
            except queue.Empty:
                break
            if entry is None:
                return batch, True
            batch.append(entry)
        return batch, False

    def _run(self, batch: list[tuple[Item, Future]]) -> None:
        live = [(item, future) for item, future in batch if future.set_running_or_notify_cancel()]
        if not live:
            return
        self.batch_sizes.append(len(live))
        try:
            results = list(self.run_batch([item for item, _ in live]))
            if len(results) != len(live):
                raise RuntimeError(f"{self.name}: run_batch returned {len(results)} results for {len(live)} items")
        except Exception as error:  # noqa: BLE001 - handed to every waiting request, never lost in this thread
            for _, future in live:
                future.set_exception(error)
            return
        for (_, future), result in zip(live, results, strict=True):
            future.set_result(result)


__all__ = ["MicroBatcher"]

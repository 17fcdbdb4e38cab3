"""Executors run the batches the scheduler forms. The in-process one runs a callable in ONE worker thread.

The protocol is what the Triton executor implements too: `execute` takes inputs stacked along axis 0
and returns outputs with the same number of rows; `close` frees what it holds. An executor that can
also stop answering outside serving (Triton: unload the model) implements `suspend` / `restore`,
which a session calls on halt and resume.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import queue
import threading
import time
from collections.abc import Callable
from typing import Protocol, runtime_checkable

import numpy as np

Batch = dict[str, np.ndarray]
BatchFunction = Callable[[Batch], Batch]


@runtime_checkable
class Executor(Protocol):
    async def execute(self, batch: Batch) -> Batch: ...

    async def close(self) -> None: ...


@runtime_checkable
class SuspendableExecutor(Executor, Protocol):
    async def suspend(self) -> None: ...

    async def restore(self) -> None: ...


def default_torch_threads() -> int:
    """Intra-op threads for torch: every core but one, which the event loop (gRPC, scheduling) keeps."""
    return max(1, (os.cpu_count() or 1) - 1)


def limit_blas_threads(threads: int) -> None:
    """numpy's BLAS (OpenBLAS) to `threads` threads, process-wide. The numpy runtimes' matrix products run
    in an executor thread like torch's, and BLAS's own pool would otherwise take every core, the event
    loop's included: under load a HaltAll then waited behind a running batch it was meant to cancel."""
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=threads, user_api="blas")


def _torch_setup(threads: int) -> Callable[[], contextlib.AbstractContextManager]:
    import torch  # only executors that run torch pay for the import

    torch.set_num_threads(threads)  # process-wide; every in-process executor asks for the same number
    return torch.inference_mode


def _resolve(future: asyncio.Future, result: Batch | None, error: BaseException | None) -> None:
    if future.done():  # the awaiting side went away (loop closing, cancelled step)
        return
    if error is None:
        future.set_result(result)
    else:
        future.set_exception(error)


class InProcessExecutor:
    """Runs `fn(batch)` in one dedicated thread, off the event loop, or on the loop when it is tiny.

    A plain thread and a SimpleQueue rather than a ThreadPoolExecutor: one hop there and one
    call_soon_threadsafe back is the whole per-batch cost (~15 µs less than run_in_executor).
    With `torch_threads` set, the thread sets torch's intra-op threads once and runs every batch
    under torch.inference_mode.

    With `inline_below_s`, a model whose batches take less than that (a running average over the
    last batches, measured in the thread first) runs on the event loop instead: for a model of tens of
    microseconds the thread hop and the GIL hand-offs cost more than the model, and a batch that short
    blocks the loop no longer than parsing one request does. One batch over `_INLINE_GIVE_UP` times the
    limit sends the model back to the thread.
    """

    _WARMUP_BATCHES = 8
    _INLINE_GIVE_UP = 4.0

    def __init__(self, fn: BatchFunction, *, torch_threads: int | None = None, name: str = "mlmesh-executor",
                 inline_below_s: float | None = None) -> None:
        self._fn = fn
        self._torch_threads = torch_threads
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._work, name=name, daemon=True)
        self._started = False
        self._closed = False
        self._inline_below_s = inline_below_s
        self._average_s: float | None = None   # running average of batch times, for the inline decision
        self._batches = 0
        self._inline_context: Callable[[], contextlib.AbstractContextManager] | None = None

    @property
    def inline(self) -> bool:
        """Whether batches now run on the event loop."""
        return (self._inline_below_s is not None and self._batches >= self._WARMUP_BATCHES
                and self._average_s is not None and self._average_s < self._inline_below_s)

    async def execute(self, batch: Batch) -> Batch:
        if self._closed:
            raise RuntimeError("executor is closed")
        if self.inline:
            return self.run_inline(batch)
        if not self._started:
            self._thread.start()
            self._started = True
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self._queue.put((batch, future, loop))
        return await future

    def run_inline(self, batch: Batch) -> Batch:
        """Runs `batch` here, on the caller's thread (the event loop); only while `inline` holds."""
        if self._inline_context is None:
            self._inline_context = (_torch_setup(self._torch_threads) if self._torch_threads
                                    else contextlib.nullcontext)
        started = time.perf_counter()
        try:
            with self._inline_context():
                return self._fn(batch)
        finally:
            elapsed = time.perf_counter() - started
            if elapsed > self._INLINE_GIVE_UP * self._inline_below_s:
                self._average_s = elapsed  # back to the thread at once
            else:
                self._observe(elapsed)

    def _observe(self, elapsed_s: float) -> None:
        # Called from the worker thread too: a float and an int written under the GIL, read by the loop.
        self._batches += 1
        average = self._average_s
        self._average_s = elapsed_s if average is None else 0.8 * average + 0.2 * elapsed_s

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._started:
            self._queue.put(None)
            await asyncio.to_thread(self._thread.join)

    def _work(self) -> None:
        context = _torch_setup(self._torch_threads) if self._torch_threads else contextlib.nullcontext
        fn, measure = self._fn, self._inline_below_s is not None
        while (item := self._queue.get()) is not None:
            batch, future, loop = item
            # This thread's CPU time, not the wall clock: waiting for the GIL while the loop runs would
            # make a 10 µs model look slow and keep it here, the case inline execution is for.
            started = time.thread_time()
            try:
                with context():
                    result, error = fn(batch), None
            except BaseException as exc:  # handed to the awaiting side, which decides what it means
                result, error = None, exc
            if measure:
                self._observe(time.thread_time() - started)
            try:
                loop.call_soon_threadsafe(_resolve, future, result, error)
            except RuntimeError:
                pass  # the loop closed while the batch ran; nobody waits for it

"""What both engine loops share: admission (bounded queue, deadlines, cancellation), the loop task's
lifecycle, and halt / resume / close. Subclasses implement `_run`: schedule -> execute -> update.

asyncio objects are made in `start()`, inside the running loop, never at construction.
"""

from __future__ import annotations

import asyncio
import logging
import time
from abc import ABC, abstractmethod
from collections.abc import Callable

import numpy as np
from opentelemetry.trace import Tracer

from services.core.errors import DeadlineExceeded, InvalidArgument, MLMeshError, Unavailable
from services.serving.engine.config import BatchingConfig
from services.serving.engine.executor import Executor
from services.serving.engine.request import DISCARDED, DONE, RUNNING, WAITING, Completion, Request
from services.serving.engine.scheduler import Scheduler
from services.serving.engine.stats import EngineStats
from services.serving.engine.tracing import BatchSpans, current_span_context

log = logging.getLogger("mlmesh.serving")

OutcomeListener = Callable[[bool], None]   # told after every executor call: did it succeed?


def copy_error(error: MLMeshError) -> MLMeshError:
    # One instance per request: an exception raised in many tasks would grow one shared traceback.
    return type(error)(error.message, field=error.field)


class LoopDriver(ABC):
    batch_span_name = "serving.batch"

    def __init__(self, executor: Executor, config: BatchingConfig, *, stats: EngineStats | None = None,
                 on_outcome: OutcomeListener | None = None, tracer: Tracer | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.executor = executor
        # None unless this process records traces (or a test injects a tracer): then nothing is captured
        self._batch_spans = (BatchSpans(tracer, self.batch_span_name, type(executor).__name__) if tracer is not None
                             else BatchSpans.of_process(self.batch_span_name, type(executor).__name__))
        self.config = config
        self.stats = stats or EngineStats()
        self.scheduler = Scheduler(config.max_queue_size, self._expire)
        self._on_outcome = on_outcome
        self._refusal: MLMeshError | None = Unavailable("engine not started")
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Event | None = None
        self._task: asyncio.Task | None = None
        self._clock = clock   # deadlines and batch times; tests inject one

    # ---- lifecycle ----
    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        self._task = asyncio.create_task(self._guarded_run(), name=type(self).__name__)
        self._refusal = None

    def halt(self, error: MLMeshError, *, cancel_running: bool = False) -> None:
        """Refuse new requests with `error` and fail every queued one with it. The running batch is left
        to finish (answered in full) unless `cancel_running`: then its requests fail now, whole."""
        self._refusal = error
        for request in self.scheduler.drain_waiting():
            self._fail(request, copy_error(error))
        if cancel_running:
            self._fail_running(error)

    def resume(self) -> None:
        self._refusal = None

    async def close(self, error: MLMeshError | None = None) -> None:
        """Stops the loop for good: everything queued or running fails with `error`; the executor closes."""
        error = error or Unavailable("undeployed")
        self.halt(error, cancel_running=True)
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        await self.executor.close()

    # ---- admission ----
    def enqueue(self, inputs: dict[str, np.ndarray], rows: int, *, steps: int = 1, priority: int = 0,
                timeout_s: float | None = None) -> Request:
        self.stats.requests_total += 1
        if self._refusal is not None:
            self.stats.requests_refused += 1
            raise copy_error(self._refusal)
        if rows > self.config.max_batch_size:
            self.stats.requests_refused += 1
            raise InvalidArgument(f"{rows} rows exceed the session's max_batch_size of "
                                  f"{self.config.max_batch_size}; split the request", field="rows")
        loop = self._loop
        now = self._clock()
        request = Request(inputs, rows, steps, priority, None if timeout_s is None else now + timeout_s,
                          loop.create_future(), now)
        if self._batch_spans is not None:
            request.span_context = current_span_context()   # the caller's span (the RPC's server span)
        try:
            self.scheduler.add(request)
        except MLMeshError:
            self.stats.requests_refused += 1
            raise
        if timeout_s is not None:
            request.timer = loop.call_at(loop.time() + timeout_s, self._expire, request)
        self._wake.set()
        return request

    async def infer(self, inputs: dict[str, np.ndarray], rows: int, *, steps: int = 1, priority: int = 0,
                    timeout_s: float | None = None) -> Completion:
        """Queues one request and waits for its own rows of the output. A cancelled caller's request is
        removed from the queue (or, already running, its result is dropped)."""
        request = self.enqueue(inputs, rows, steps=steps, priority=priority, timeout_s=timeout_s)
        try:
            return await request.future
        except asyncio.CancelledError:
            self._abandon(request)
            raise

    # ---- per-request endings ----
    def _abandon(self, request: Request) -> None:
        if request.state == DONE:
            return
        self.scheduler.discard(request)
        request.state = DONE
        if request.timer is not None:
            request.timer.cancel()
        self.stats.requests_cancelled += 1

    def _expire(self, request: Request) -> None:
        """A request's deadline passed: answered DEADLINE_EXCEEDED once, whichever sees it first, its own
        timer or the scheduler's take (which has already taken it out of the queue: DISCARDED)."""
        if request.state == WAITING:
            self.scheduler.discard(request)
        elif request.state not in (RUNNING, DISCARDED):
            return   # DONE: answered, failed or abandoned already
        self._fail(request, DeadlineExceeded("deadline passed before the model answered"))

    def _fail(self, request: Request, error: BaseException) -> None:
        request.state = DONE
        if request.timer is not None:
            request.timer.cancel()
        if not request.future.done():
            request.future.set_exception(error)
            self.stats.requests_failed += 1

    def _answer(self, request: Request, completion: Completion) -> bool:
        request.state = DONE
        if request.timer is not None:
            request.timer.cancel()
        if request.future.done():
            return False  # cancelled, expired or halted while running: its result is dropped
        request.future.set_result(completion)
        return True

    def _fail_running(self, error: BaseException) -> None:
        for request in self.scheduler.running:
            self._fail(request, copy_error(error) if isinstance(error, MLMeshError) else error)

    def _outcome(self, ok: bool) -> None:
        """Called after every executor call, while the batch is still `scheduler.running`."""
        if self._batch_spans is not None:
            self._batch_spans.record(self.scheduler.running, self._batch_started(), self._clock(), ok)
        if self._on_outcome is not None:
            self._on_outcome(ok)

    async def _yield_if_inline(self) -> None:
        """After a batch that ran on the event loop (an inline executor never suspends): let the loop read
        new calls, halts and cancellations before the next batch or step, or a long forecast would hold
        the loop for all its steps."""
        if getattr(self.executor, "inline", False):
            await asyncio.sleep(0)

    async def _idle(self) -> None:
        """Sleeps until something is queued."""
        self._wake.clear()
        if not self.scheduler.waiting:
            await self._wake.wait()

    def _batch_started(self) -> float:
        """When the running batch reached the executor (a request-level batch: its requests' `started`)."""
        running = self.scheduler.running
        return running[0].started if running else self._clock()

    async def _guarded_run(self) -> None:
        try:
            await self._run()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a bug in the loop: fail everyone rather than hang them
            log.exception("%s stopped", type(self).__name__)
            self.halt(Unavailable(f"engine stopped: {type(exc).__name__}"), cancel_running=True)

    @abstractmethod
    async def _run(self) -> None: ...

    @property
    def queue_depth(self) -> int:
        return self.scheduler.waiting

    @property
    def running(self) -> int:
        return len(self.scheduler.running)

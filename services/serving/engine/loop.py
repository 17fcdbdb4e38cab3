"""EngineLoop: request-level continuous batching. Whenever the executor is free it takes ALL that waits,
up to max_batch_size rows, runs it as one batch and answers each request with its own rows.

schedule (Scheduler.take) -> execute (Executor.execute, off the loop) -> update (split, answer, stats).
With max_queue_delay set, a batch below max waits at most that long for more rows; at max it goes at once.

When the executor runs batches inline (a model of microseconds, see InProcessExecutor) and the engine is
idle, a request runs at once in its caller's task as a batch of its own: the same rule (a free executor
takes what waits) without the queue, the wake-up and the two task switches that cost more than the model.
"""

from __future__ import annotations

import asyncio

from services.core.errors import DeadlineExceeded, MLMeshError
from services.serving.engine.batch import assemble, check_outputs, split
from services.serving.engine.driver import LoopDriver, copy_error
from services.serving.engine.request import Completion, Request
from services.serving.engine.tracing import current_span_context


class EngineLoop(LoopDriver):
    _filled: asyncio.Event | None = None

    async def start(self) -> None:
        self._filled = asyncio.Event()
        await super().start()

    def enqueue(self, *args, **kwargs) -> Request:
        request = super().enqueue(*args, **kwargs)
        if self.scheduler.waiting_rows >= self.config.max_batch_size:
            self._filled.set()
        return request

    async def infer(self, inputs, rows: int, *, steps: int = 1, priority: int = 0,
                    timeout_s: float | None = None) -> Completion:
        if (getattr(self.executor, "inline", False) and not self.scheduler.waiting and not self.scheduler.running
                and self._refusal is None and rows <= self.config.max_batch_size
                and self.config.max_queue_delay_s == 0):
            return self._run_now(inputs, rows, timeout_s)
        return await super().infer(inputs, rows, steps=steps, priority=priority, timeout_s=timeout_s)

    def _run_now(self, inputs, rows: int, timeout_s: float | None) -> Completion:
        """One request as its own batch, on the loop, with no await: nothing can halt it half-way."""
        stats = self.stats
        stats.requests_total += 1
        if timeout_s is not None and timeout_s <= 0:
            stats.requests_failed += 1
            raise DeadlineExceeded("deadline passed before the model answered")
        started = self._clock()
        try:
            outputs = self.executor.run_inline(inputs)
            check_outputs(outputs, rows)
        except Exception as exc:
            finished = self._clock()
            stats.requests_failed += 1
            stats.record_batch(rows, finished - started, finished)
            self._span_alone(inputs, rows, started, finished, False)
            self._outcome(False)
            raise copy_error(exc) if isinstance(exc, MLMeshError) else exc
        finished = self._clock()
        compute = finished - started
        stats.record_batch(rows, compute, finished, [compute])
        self._span_alone(inputs, rows, started, finished, True)
        self._outcome(True)
        return Completion(outputs, rows, 0.0, compute)

    def _span_alone(self, inputs, rows: int, started: float, finished: float, ok: bool) -> None:
        """The batch span of a request that ran at once (the queued path records its batch in _outcome)."""
        if self._batch_spans is not None:
            request = Request(inputs, rows, 1, 0, None, None, started)
            request.span_context = current_span_context()
            self._batch_spans.record((request,), started, finished, ok)

    async def _run(self) -> None:
        scheduler, config = self.scheduler, self.config
        while True:
            if not scheduler.waiting:
                await self._idle()
                continue
            if config.max_queue_delay_s > 0 and scheduler.waiting_rows < config.max_batch_size:
                await self._wait_for_fill(config.max_queue_delay_s)
            batch = scheduler.take(config.max_batch_size, self._clock())
            if batch:
                await self._execute(batch)
                await self._yield_if_inline()

    async def _wait_for_fill(self, delay_s: float) -> None:
        filled = self._filled
        filled.clear()
        if self.scheduler.waiting_rows >= self.config.max_batch_size:
            return
        timer = self._loop.call_later(delay_s, filled.set)
        try:
            await filled.wait()
        finally:
            timer.cancel()

    async def _execute(self, batch: list[Request]) -> None:
        inputs = assemble(batch)
        rows = self.scheduler.running_rows
        started = self._clock()
        for request in batch:
            request.started = started
        try:
            outputs = await self.executor.execute(inputs)
            check_outputs(outputs, rows)
        except asyncio.CancelledError:
            raise  # close(): it fails the running requests itself
        except Exception as exc:
            finished = self._clock()
            self._fail_running(exc)
            self.stats.record_batch(rows, finished - started, finished)
            self._outcome(False)
        else:
            finished = self._clock()
            compute = finished - started
            latencies = [finished - request.enqueued
                         for request, own in zip(batch, split(outputs, batch))
                         if self._answer(request, Completion(own, rows, started - request.enqueued, compute))]
            self.stats.record_batch(rows, compute, finished, latencies)
            self._outcome(True)
        finally:
            self.scheduler.set_running([])

"""EngineLoop: request-level continuous batching. Whenever the executor is free it takes ALL that waits,
up to max_batch_size rows, runs it as one batch and answers each request with its own rows.

schedule (Scheduler.take) -> execute (Executor.execute, off the loop) -> update (split, answer, stats).
With max_queue_delay set, a batch below max waits at most that long for more rows; at max it goes at once.
"""

from __future__ import annotations

import asyncio

from services.serving.engine.batch import assemble, check_outputs, split
from services.serving.engine.driver import LoopDriver
from services.serving.engine.request import Completion, Request


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

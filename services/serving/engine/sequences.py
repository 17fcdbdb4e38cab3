"""SequenceLoop: batching for autoregressive forecasters, always in the scheduler whatever the executor.

Each step runs the one-step model once over every active sequence's current window, appends each
prediction to its window, and answers the sequences whose horizon is done. With `continuous`
(iteration-level batching) waiting sequences join at every step boundary; without it (request-level,
the baseline a benchmark compares against) a batch admitted together runs until its last member is done
before anyone joins. A halt fails the running sequences at once (the step in flight is discarded):
finishing them would mean running the model for many more steps after the kill switch.
"""

from __future__ import annotations

import asyncio

import numpy as np

from services.core.errors import MLMeshError
from services.serving.engine.config import BatchingConfig
from services.serving.engine.driver import LoopDriver
from services.serving.engine.executor import Executor
from services.serving.engine.request import Completion


class SequenceLoop(LoopDriver):
    """Requests carry `inputs[input_key]` of shape (1, window) and `steps` = horizon; each gets back
    `{output_key: (horizon,)}`. The executor maps `{input_key: (n, window)}` to `{output_key: (n,)}`."""

    batch_span_name = "serving.step"
    _step_started = 0.0

    def __init__(self, executor: Executor, config: BatchingConfig, *, continuous: bool | None = None,
                 input_key: str = "window", output_key: str = "next", **kwargs) -> None:
        super().__init__(executor, config, **kwargs)
        self.continuous = config.iteration_level if continuous is None else continuous
        self.input_key = input_key
        self.output_key = output_key
        self._windows: np.ndarray | None = None   # (active, window), rows aligned with scheduler.running
        self._generation = 0                       # bumped when halt/close drop the running set

    def halt(self, error: MLMeshError, *, cancel_running: bool = False) -> None:
        super().halt(error, cancel_running=True)
        self._drop_running()

    def _drop_running(self) -> None:
        self._generation += 1
        self.scheduler.set_running([])
        self._windows = None

    async def _run(self) -> None:
        scheduler = self.scheduler
        while True:
            self._prune()
            if self.continuous or not scheduler.running:
                capacity = self.config.max_batch_size - len(scheduler.running)
                if capacity > 0 and scheduler.waiting:
                    self._join(scheduler.take(capacity, self._clock()))
            if not scheduler.running:
                await self._idle()
                continue
            await self._step()
            await self._yield_if_inline()

    def _batch_started(self) -> float:
        return self._step_started   # a step's batch: its requests joined at earlier steps

    def _join(self, joined: list) -> None:
        if not joined:
            return
        now = self._clock()
        for request in joined:
            request.out = np.empty(request.steps, dtype=np.float32)
            request.started = now
            request.batch_size = len(self.scheduler.running)
        fresh = np.concatenate([r.inputs[self.input_key] for r in joined]).astype(np.float32, copy=False)
        self._windows = fresh if self._windows is None else np.concatenate([self._windows, fresh])

    def _prune(self) -> None:
        """Drops running sequences whose caller went away or whose deadline passed."""
        running = self.scheduler.running
        keep = [not r.future.done() for r in running]
        if all(keep):
            return
        self.scheduler.set_running([r for r, k in zip(running, keep) if k])
        self._windows = self._windows[np.asarray(keep)] if any(keep) else None

    async def _step(self) -> None:
        running, windows, generation = self.scheduler.running, self._windows, self._generation
        started = self._step_started = self._clock()
        try:
            outputs = await self.executor.execute({self.input_key: windows})
            predicted = np.asarray(outputs[self.output_key], dtype=np.float32).reshape(-1)
            if len(predicted) != len(running):
                raise RuntimeError(f"executor gave {len(predicted)} values for {len(running)} sequences")
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            finished = self._clock()
            self._outcome(False)  # while the step's sequences are still running: its span links them
            if generation == self._generation:
                self._fail_running(exc)
                self._drop_running()
            self.stats.record_batch(len(running), finished - started, finished)
            return
        finished = self._clock()
        self._outcome(True)
        if generation != self._generation:  # halted during the step: nobody gets this step's values
            return
        done, latencies = [], []
        for index, request in enumerate(running):
            request.out[request.step] = predicted[index]
            request.step += 1
            if request.step >= request.steps:
                done.append(index)
                if self._answer(request, Completion({self.output_key: request.out}, request.batch_size,
                                                    request.started - request.enqueued, finished - request.started)):
                    latencies.append(finished - request.enqueued)
        self.stats.record_batch(len(running), finished - started, finished, latencies)
        windows = np.concatenate([windows[:, 1:], predicted[:, None]], axis=1)
        if done:
            keep = np.ones(len(running), dtype=bool)
            keep[done] = False
            self.scheduler.set_running([r for r, k in zip(running, keep) if k])
            windows = windows[keep] if keep.any() else None
        self._windows = windows

"""Iteration-level batching of autoregressive forecasters: sequences with different horizons join at
step boundaries and leave when done, and every forecast equals the sequence run alone."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from services.core.errors import Unavailable
from services.serving.engine import BatchingConfig, InProcessExecutor, SequenceLoop
from services.serving.interfaces.backends import torch_backend
from services.serving.interfaces.calls import ForecastCall
from tests.serving.conftest import WINDOW, GatedExecutor


def step(batch):
    """A toy one-step model: the next value is the window's mean plus its last value's tenth."""
    w = batch["window"]
    return {"next": (w.mean(axis=1) + w[:, -1] / 10).astype(np.float32)}


def alone(window: np.ndarray, horizon: int) -> np.ndarray:
    out, w = [], window.copy()
    for _ in range(horizon):
        value = step({"window": w})["next"]
        out.append(value[0])
        w = np.concatenate([w[:, 1:], value[:, None]], axis=1)
    return np.asarray(out, dtype=np.float32)


class StepRecorder(GatedExecutor):
    """Records steps; with `delay_s` each step takes that long, so later arrivals join running ones."""

    def __init__(self, fn, *, gated=False, delay_s=0.0):
        super().__init__(fn, gated=gated)
        self.delay_s = delay_s

    async def execute(self, batch):
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        return await super().execute(batch)


@pytest.mark.parametrize("continuous", [True, False])
async def test_horizons_1_to_10_joining_at_different_times_equal_running_alone(continuous):
    executor = StepRecorder(step, delay_s=0.002)
    loop = SequenceLoop(executor, BatchingConfig(max_batch_size=16), continuous=continuous)
    await loop.start()
    windows = [np.arange(6, dtype=np.float32)[None, :] + i for i in range(10)]
    tasks = []
    for i, window in enumerate(windows):
        tasks.append(asyncio.create_task(loop.infer({"window": window}, 1, steps=i + 1)))
        await asyncio.sleep(0.001 * (i % 3))  # arrive spread over the first steps
    done = await asyncio.gather(*tasks)
    for i, (window, completion) in enumerate(zip(windows, done)):
        np.testing.assert_allclose(completion.outputs["next"], alone(window, i + 1), rtol=1e-6)
    sizes = [len(b["window"]) for b in executor.batches]
    assert max(sizes) > 1 and sum(sizes) == sum(range(1, 11))  # one model row per sequence per step
    await loop.close()


async def test_iteration_level_joins_running_batches_request_level_does_not():
    for continuous, expected in ((True, [1, 2, 2]), (False, [1, 1, 1, 1, 1])):
        executor = StepRecorder(step, gated=True)
        loop = SequenceLoop(executor, BatchingConfig(max_batch_size=8), continuous=continuous)
        await loop.start()
        first = asyncio.create_task(loop.infer({"window": np.ones((1, 4), np.float32)}, 1, steps=3))
        await executor.wait_entered()
        second = asyncio.create_task(loop.infer({"window": np.ones((1, 4), np.float32)}, 1, steps=2))
        await asyncio.sleep(0)
        for _ in range(len(expected)):
            executor.release()
            await asyncio.sleep(0.001)
        await asyncio.gather(first, second)
        # joined: the second sequence shares steps 2-3; static: it waits for the first to finish
        assert [len(b["window"]) for b in executor.batches] == expected, continuous
        await loop.close()


async def test_lstm_forecasts_batched_equal_forecasts_alone(price_forecaster):
    metadata, weights = price_forecaster
    backend = torch_backend("forecaster", artifact_id="sha256:lstm", metadata=metadata, state_dict=weights)
    loop = SequenceLoop(InProcessExecutor(backend.run, torch_threads=1), BatchingConfig(max_batch_size=32))
    await loop.start()
    rng = np.random.default_rng(0)
    histories = [list(100 + rng.normal(size=WINDOW + i)) for i in range(12)]
    calls = [ForecastCall(h, 1 + i % 7) for i, h in enumerate(histories)]

    async def served(call):
        prepared = backend.preprocess(call)
        done = await loop.infer(prepared.inputs, 1, steps=prepared.steps)
        return backend.postprocess(prepared, done.outputs)

    batched = await asyncio.gather(*(served(c) for c in calls))
    for call, forecast in zip(calls, batched):
        reference = await backend.direct(call)
        assert len(forecast.values) == call.horizon
        np.testing.assert_allclose(forecast.values, reference.values, rtol=1e-5)
    await loop.close()


async def test_halt_fails_running_sequences_whole_and_discards_the_step_in_flight():
    executor = StepRecorder(step, gated=True)
    loop = SequenceLoop(executor, BatchingConfig(max_batch_size=8))
    await loop.start()
    running = asyncio.create_task(loop.infer({"window": np.ones((1, 4), np.float32)}, 1, steps=5))
    await executor.wait_entered()
    queued = asyncio.create_task(loop.infer({"window": np.ones((1, 4), np.float32)}, 1, steps=5))
    await asyncio.sleep(0)
    loop.halt(Unavailable("halted"))
    executor.release()
    for task in (running, queued):
        with pytest.raises(Unavailable, match="halted"):
            await task
    await asyncio.sleep(0.001)
    assert len(executor.batches) == 1  # nothing ran after the halt
    await loop.close()


async def test_a_cancelled_sequence_leaves_at_the_next_step():
    executor = StepRecorder(step, gated=True)
    loop = SequenceLoop(executor, BatchingConfig(max_batch_size=8))
    await loop.start()
    a = asyncio.create_task(loop.infer({"window": np.ones((1, 4), np.float32)}, 1, steps=3))
    b = asyncio.create_task(loop.infer({"window": np.ones((1, 4), np.float32)}, 1, steps=3))
    await executor.wait_entered()
    a.cancel()
    for _ in range(3):
        executor.release()
        await asyncio.sleep(0.001)
    assert len((await b).outputs["next"]) == 3
    assert [len(x["window"]) for x in executor.batches] == [2, 1, 1]
    await loop.close()

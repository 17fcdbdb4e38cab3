"""The request-level batching engine: right results under concurrency, batch formation, cancellation,
deadlines, the bounded queue, priorities, rows per request, queue delay, executor failures, stats."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from services.core.errors import DeadlineExceeded, InvalidArgument, ResourceExhausted, Unavailable
from services.serving.engine import BatchingConfig, EngineLoop, InProcessExecutor
from tests.serving.conftest import GatedExecutor, ThreadGate, row


async def started(executor, **config) -> EngineLoop:
    loop = EngineLoop(executor, BatchingConfig(**config))
    await loop.start()
    return loop


async def test_200_concurrent_requests_each_get_their_own_result():
    weights = np.arange(12, dtype=np.float32).reshape(4, 3)
    model = InProcessExecutor(lambda b: {"y": b["x"] @ weights + b["x"][:, :1] ** 2})
    loop = await started(model, max_batch_size=16)
    inputs = [np.random.default_rng(i).normal(size=(1, 4)).astype(np.float32) + i for i in range(200)]
    done = await asyncio.gather(*(loop.infer({"x": x}, 1) for x in inputs))
    for x, completion in zip(inputs, done):
        np.testing.assert_allclose(completion.outputs["y"], x @ weights + x[:, :1] ** 2, rtol=1e-6)
    stats = loop.stats.snapshot(loop.queue_depth, loop.running)
    assert stats.requests_total == 200 and stats.requests_failed == 0
    assert max(stats.batch_size_counts) <= 16 and stats.batch_size_mean > 1  # batches formed, never over max
    await loop.close()


async def test_requests_arriving_while_the_executor_is_busy_form_one_batch():
    gate = ThreadGate(lambda b: {"y": b["x"] * 2})
    loop = await started(InProcessExecutor(gate), max_batch_size=32)
    first = asyncio.create_task(loop.infer({"x": row(0)}, 1))
    while not gate.calls:
        await asyncio.sleep(0.001)
    rest = [asyncio.create_task(loop.infer({"x": row(i)}, 1)) for i in range(1, 11)]
    await asyncio.sleep(0.01)
    assert loop.queue_depth == 10
    gate.go.set()
    results = await asyncio.gather(first, *rest)
    assert gate.calls == [1, 10]  # no fixed wait: the first ran alone, the ten that waited ran together
    assert [float(c.outputs["y"][0, 0]) for c in results] == [2.0 * i for i in range(11)]
    assert {c.batch_size for c in results[1:]} == {10}
    await loop.close()


async def test_rows_per_request_are_concatenated_and_split_back():
    executor = GatedExecutor(gated=True)
    loop = await started(executor, max_batch_size=8)
    blocker = asyncio.create_task(loop.infer({"x": row(-1)}, 1))
    await executor.wait_entered()
    sizes = [3, 1, 2, 4]  # 3+1+2 = 6 fit in 8; the 4 waits for the next batch
    tasks = [asyncio.create_task(loop.infer({"x": np.full((n, 2), i, np.float32)}, n)) for i, n in enumerate(sizes)]
    await asyncio.sleep(0)
    executor.release()
    await executor.wait_entered()
    executor.release()
    await executor.wait_entered()
    executor.release()
    done = await asyncio.gather(blocker, *tasks)
    assert [len(b["x"]) for b in executor.batches] == [1, 6, 4]
    for i, (n, completion) in enumerate(zip(sizes, done[1:])):
        np.testing.assert_array_equal(completion.outputs["y"], np.full((n, 2), 2 * i + 1, np.float32))
    with pytest.raises(InvalidArgument, match="max_batch_size"):
        await loop.infer({"x": np.zeros((9, 2), np.float32)}, 9)
    await loop.close()


async def test_higher_priority_is_served_first_when_the_executor_frees():
    executor = GatedExecutor(gated=True)
    loop = await started(executor, max_batch_size=1)
    blocker = asyncio.create_task(loop.infer({"x": row(0)}, 1))
    await executor.wait_entered()
    order = [(1, 0), (2, 5), (3, 0), (4, 9), (5, 5)]  # (value, priority)
    tasks = [asyncio.create_task(loop.infer({"x": row(v)}, 1, priority=p)) for v, p in order]
    await asyncio.sleep(0)
    for _ in range(len(order) + 1):
        executor.release()
        await asyncio.sleep(0.001)
    await asyncio.gather(blocker, *tasks)
    served = [float(b["x"][0, 0]) for b in executor.batches[1:]]
    assert served == [4, 2, 5, 1, 3]  # priority 9, then 5s in arrival order, then 0s in arrival order
    await loop.close()


async def test_a_full_queue_refuses_at_once():
    executor = GatedExecutor(gated=True)
    loop = await started(executor, max_batch_size=1, max_queue_size=3)
    blocker = asyncio.create_task(loop.infer({"x": row(0)}, 1))
    await executor.wait_entered()
    queued = [asyncio.create_task(loop.infer({"x": row(i)}, 1)) for i in range(3)]
    await asyncio.sleep(0)
    with pytest.raises(ResourceExhausted, match="queue full"):
        await loop.infer({"x": row(9)}, 1)  # raised from enqueue, before any wait
    assert loop.stats.requests_refused == 1
    for _ in range(4):
        executor.release()
        await asyncio.sleep(0.001)
    await asyncio.gather(blocker, *queued)
    await loop.close()


async def test_cancelled_before_execution_never_reaches_the_model():
    executor = GatedExecutor(gated=True)
    loop = await started(executor, max_batch_size=8)
    blocker = asyncio.create_task(loop.infer({"x": row(0)}, 1))
    await executor.wait_entered()
    doomed = asyncio.create_task(loop.infer({"x": row(666)}, 1))
    kept = asyncio.create_task(loop.infer({"x": row(7)}, 1))
    await asyncio.sleep(0)
    doomed.cancel()
    await asyncio.sleep(0)
    assert loop.queue_depth == 1
    executor.release()
    await executor.wait_entered()
    executor.release()
    await asyncio.gather(blocker, kept)
    assert doomed.cancelled()
    assert all(666 not in b["x"] for b in executor.batches)
    assert loop.stats.requests_cancelled == 1
    await loop.close()


async def test_cancelled_during_execution_drops_only_that_result():
    executor = GatedExecutor(gated=True)
    loop = await started(executor, max_batch_size=8)
    blocker = asyncio.create_task(loop.infer({"x": row(0)}, 1))
    await executor.wait_entered()
    a = asyncio.create_task(loop.infer({"x": row(1)}, 1))
    b = asyncio.create_task(loop.infer({"x": row(2)}, 1))
    executor.release()
    await executor.wait_entered()  # a and b are on the executor together
    a.cancel()
    executor.release()
    assert float((await b).outputs["y"][0, 0]) == 5.0
    assert a.cancelled()
    await blocker
    await loop.close()


async def test_a_deadline_that_passes_in_the_queue_fails_before_the_model():
    executor = GatedExecutor(gated=True)
    loop = await started(executor, max_batch_size=8)
    blocker = asyncio.create_task(loop.infer({"x": row(0)}, 1))
    await executor.wait_entered()
    late = asyncio.create_task(loop.infer({"x": row(666)}, 1, timeout_s=0.01))
    patient = asyncio.create_task(loop.infer({"x": row(3)}, 1, timeout_s=5))
    with pytest.raises(DeadlineExceeded):
        await late  # answered at its deadline, while the executor is still busy
    executor.release()
    await executor.wait_entered()
    executor.release()
    await asyncio.gather(blocker, patient)
    assert all(666 not in b["x"] for b in executor.batches)
    assert loop.stats.requests_failed == 1
    await loop.close()


async def test_a_deadline_the_take_sees_first_is_answered_at_once_and_only_once():
    """The scheduler's take finds a waiting request past its deadline before the request's own timer fires
    (the clock says so; the timer is far off): it is answered DEADLINE_EXCEEDED then, not left waiting."""
    now = [1000.0]
    executor = GatedExecutor(gated=True)
    loop = EngineLoop(executor, BatchingConfig(max_batch_size=8), clock=lambda: now[0])
    await loop.start()
    blocker = asyncio.create_task(loop.infer({"x": row(0)}, 1))
    await executor.wait_entered()
    late = loop.enqueue({"x": row(666)}, 1, timeout_s=60)   # its own timer: a minute away
    now[0] += 120   # the deadline has passed as far as the scheduler is concerned
    executor.release()
    with pytest.raises(DeadlineExceeded):
        await asyncio.wait_for(late.future, 2)
    await blocker
    assert all(666 not in b["x"] for b in executor.batches)
    assert loop.stats.requests_failed == 1 and loop.queue_depth == 0
    loop._expire(late)   # its timer, had it not been cancelled, firing afterwards: nothing more happens
    assert loop.stats.requests_failed == 1
    await loop.close()


async def test_max_queue_delay_waits_for_fill_only_below_max():
    executor = GatedExecutor()
    loop = await started(executor, max_batch_size=4, max_queue_delay_s=0.25)
    first = asyncio.create_task(loop.infer({"x": row(1)}, 1))
    await asyncio.sleep(0.01)
    more = [asyncio.create_task(loop.infer({"x": row(i)}, 1)) for i in range(2, 4)]
    await asyncio.gather(first, *more)
    assert [len(b["x"]) for b in executor.batches] == [3]  # the delay gathered the later two
    full = [asyncio.create_task(loop.infer({"x": row(i)}, 1)) for i in range(4)]
    started_at = asyncio.get_running_loop().time()
    await asyncio.gather(*full)
    assert asyncio.get_running_loop().time() - started_at < 0.2  # at max it goes without waiting
    await loop.close()


async def test_executor_failure_fails_the_whole_batch_and_is_reported():
    outcomes: list[bool] = []

    def broken(batch):
        raise RuntimeError("model exploded")

    loop = EngineLoop(InProcessExecutor(broken), BatchingConfig(max_batch_size=4), on_outcome=outcomes.append)
    await loop.start()
    results = await asyncio.gather(*(loop.infer({"x": row(i)}, 1) for i in range(3)), return_exceptions=True)
    assert all(isinstance(r, RuntimeError) for r in results) and False in outcomes
    ok = EngineLoop(GatedExecutor(lambda b: {"y": b["x"][:1]}), BatchingConfig(max_batch_size=4))
    await ok.start()
    wrong = await asyncio.gather(*(ok.infer({"x": row(i)}, 1) for i in range(2)), return_exceptions=True)
    assert all("rows for a batch of" in str(r) for r in wrong)  # outputs must keep the batch length
    await loop.close()
    await ok.close()


async def test_halt_fails_queued_refuses_new_and_lets_the_running_batch_finish():
    executor = GatedExecutor(gated=True)
    loop = await started(executor, max_batch_size=1)
    running = asyncio.create_task(loop.infer({"x": row(1)}, 1))
    await executor.wait_entered()
    queued = [asyncio.create_task(loop.infer({"x": row(i)}, 1)) for i in range(5)]
    await asyncio.sleep(0)
    loop.halt(Unavailable("halted"))
    with pytest.raises(Unavailable, match="halted"):
        await loop.infer({"x": row(9)}, 1)
    executor.release()
    assert float((await running).outputs["y"][0, 0]) == 3.0
    for task in queued:
        with pytest.raises(Unavailable, match="halted"):
            await task
    loop.resume()
    executor.gated = False
    assert float((await loop.infer({"x": row(2)}, 1)).outputs["y"][0, 0]) == 5.0
    await loop.close()
    assert executor.closed


async def test_stats_report_latency_throughput_and_busy_ratio():
    loop = await started(InProcessExecutor(lambda b: {"y": b["x"]}), max_batch_size=8)
    await asyncio.gather(*(loop.infer({"x": row(i)}, 1) for i in range(50)))
    stats = loop.stats.snapshot(loop.queue_depth, loop.running)
    assert stats.requests_total == 50 and stats.throughput_rps > 0
    assert 0 < stats.latency_p50_ms <= stats.latency_p99_ms
    assert sum(k * v for k, v in stats.batch_size_counts.items()) == 50
    assert 0 < stats.busy_ratio <= 1
    await loop.close()


async def test_renamed_executor_maps_tensor_names_both_ways():
    from services.serving.engine import RenamedExecutor

    inner = GatedExecutor(lambda b: {"linear_1": b["x"] * 2 + 1})
    loop = await started(RenamedExecutor(inner, inputs={"input": "x"}, outputs={"linear_1": "output"}),
                         max_batch_size=4)
    done = await loop.infer({"input": row(3)}, 1)
    assert set(inner.batches[0]) == {"x"} and float(done.outputs["output"][0, 0]) == 7.0
    await loop.close()
    assert inner.closed

"""Tiny models run on the event loop: the executor's inline decision, the engine's run-now path when idle,
and the numpy MLP runtime that computes what the eager module computes."""

from __future__ import annotations

import asyncio
import os
import threading
import time

import numpy as np
import pytest
import torch
from threadpoolctl import threadpool_info, threadpool_limits

from services.core.errors import DeadlineExceeded, InvalidArgument, Unavailable
from services.core.models.architectures import build_module
from services.serving.engine import BatchingConfig, EngineLoop, InProcessExecutor, default_torch_threads
from services.serving.interfaces.backends import torch_backend
from services.serving.interfaces.backends.runtimes import NumpyMLPRuntime, TorchRuntime, runtime_for_module
from services.serving.sessions.manager import in_process_executor

LIMIT_S = 0.05  # generous: a test machine under load must still call an identity function "tiny"


def recording(fn):
    """`fn` that also records the thread each batch ran on."""
    threads: list[int] = []

    def run(batch):
        threads.append(threading.get_ident())
        return fn(batch)

    return run, threads


async def warmed(executor: InProcessExecutor, batches: int = InProcessExecutor._WARMUP_BATCHES) -> None:
    for i in range(batches):
        await executor.execute({"x": np.full((1, 2), i, np.float32)})


async def test_a_fast_model_moves_onto_the_event_loop_after_warm_up():
    fn, threads = recording(lambda b: {"y": b["x"] * 2})
    executor = InProcessExecutor(fn, inline_below_s=LIMIT_S)
    await warmed(executor)
    assert executor.inline
    assert threading.get_ident() not in threads  # the warm-up ran in the worker thread
    out = await executor.execute({"x": np.ones((3, 2), np.float32)})
    assert threads[-1] == threading.get_ident() and out["y"].tolist() == [[2.0, 2.0]] * 3
    await executor.close()


async def test_one_slow_batch_sends_the_model_back_to_its_thread():
    slow = {"on": False}

    def fn(batch):
        if slow["on"]:
            time.sleep(InProcessExecutor._INLINE_GIVE_UP * LIMIT_S * 1.5)
        return {"y": batch["x"]}

    executor = InProcessExecutor(fn, inline_below_s=LIMIT_S)
    await warmed(executor)
    assert executor.inline
    slow["on"] = True
    await executor.execute({"x": np.ones((1, 2), np.float32)})  # ran inline, too long
    assert not executor.inline
    await executor.close()


async def test_without_a_limit_every_batch_runs_in_the_worker_thread():
    fn, threads = recording(lambda b: {"y": b["x"]})
    executor = InProcessExecutor(fn)
    await warmed(executor, 20)
    assert not executor.inline and threading.get_ident() not in threads
    await executor.close()


async def test_an_inline_failure_reaches_the_caller_like_a_threaded_one():
    def fn(batch):
        if batch["x"][0, 0] < 0:
            raise ValueError("bad batch")
        return {"y": batch["x"]}

    executor = InProcessExecutor(fn, inline_below_s=LIMIT_S)
    await warmed(executor)
    with pytest.raises(ValueError, match="bad batch"):
        await executor.execute({"x": -np.ones((1, 2), np.float32)})
    await executor.close()


async def inline_engine(fn, **config) -> EngineLoop:
    executor = InProcessExecutor(fn, inline_below_s=LIMIT_S)
    await warmed(executor)
    outcomes: list[bool] = []
    loop = EngineLoop(executor, BatchingConfig(**{"max_batch_size": 8, **config}), on_outcome=outcomes.append)
    loop.outcomes = outcomes
    await loop.start()
    return loop


async def test_an_idle_engine_answers_at_once_in_the_callers_task_and_counts_it():
    fn, threads = recording(lambda b: {"y": b["x"] + 1})
    loop = await inline_engine(fn)
    done = await loop.infer({"x": np.zeros((2, 2), np.float32)}, 2)
    assert done.outputs["y"].tolist() == [[1.0, 1.0]] * 2 and done.batch_size == 2 and done.queue_s == 0.0
    assert threads[-1] == threading.get_ident()
    stats = loop.stats.snapshot(loop.queue_depth, loop.running)
    assert stats.requests_total == 1 and stats.batch_size_counts == {2: 1} and loop.outcomes == [True]
    await loop.close()


async def test_concurrent_callers_on_an_inline_engine_each_get_their_own_rows():
    loop = await inline_engine(lambda b: {"y": b["x"] * 3})
    inputs = [np.full((1, 2), i, np.float32) for i in range(50)]
    done = await asyncio.gather(*(loop.infer({"x": x}, 1) for x in inputs))
    assert [c.outputs["y"][0, 0] for c in done] == [3.0 * i for i in range(50)]
    assert loop.stats.snapshot(0, 0).requests_total == 50
    await loop.close()


async def test_the_run_now_path_keeps_the_engines_refusals():
    loop = await inline_engine(lambda b: {"y": b["x"]})
    with pytest.raises(DeadlineExceeded):
        await loop.infer({"x": np.zeros((1, 2), np.float32)}, 1, timeout_s=0)
    with pytest.raises(InvalidArgument) as too_many:
        await loop.infer({"x": np.zeros((9, 2), np.float32)}, 9)
    assert too_many.value.field == "rows"
    loop.halt(Unavailable("halted: test"))
    with pytest.raises(Unavailable, match="halted"):
        await loop.infer({"x": np.zeros((1, 2), np.float32)}, 1)
    await loop.close()


async def test_a_failing_inline_model_fails_the_call_and_tells_the_breaker():
    def fn(batch):
        raise RuntimeError("model broke")

    executor = InProcessExecutor(lambda b: {"y": b["x"]}, inline_below_s=LIMIT_S)
    await warmed(executor)
    executor._fn = fn  # the same executor, now failing: the decision to run inline stays
    outcomes: list[bool] = []
    loop = EngineLoop(executor, BatchingConfig(max_batch_size=4), on_outcome=outcomes.append)
    await loop.start()
    with pytest.raises(RuntimeError, match="model broke"):
        await loop.infer({"x": np.zeros((1, 2), np.float32)}, 1)
    assert outcomes == [False] and loop.stats.snapshot(0, 0).requests_failed == 1
    await loop.close()


@pytest.mark.parametrize("rows", [1, 7, 32])
def test_the_numpy_mlp_computes_what_the_eager_module_computes(rows):
    torch.manual_seed(rows)
    module = build_module({"type": "mlp", "layers": [8, 32, 16, 4]}).eval()
    with torch.no_grad():
        module.input_mean.copy_(torch.randn(8))
        module.input_std.copy_(torch.rand(8) + 0.5)
    x = np.random.default_rng(rows).normal(size=(rows, 8)).astype(np.float32)
    numpy_runtime = runtime_for_module(module)
    assert isinstance(numpy_runtime, NumpyMLPRuntime) and not numpy_runtime.uses_torch
    got = numpy_runtime(x)
    assert got.dtype == np.float32 and got.shape == (rows, 4)
    np.testing.assert_allclose(got, TorchRuntime(module)(x), rtol=1e-5, atol=1e-6)


def test_modules_other_than_the_mlp_keep_the_torch_runtime():
    lstm = build_module({"type": "lstm_forecaster", "input_size": 1, "hidden_size": 4, "num_layers": 1,
                         "window": 8})
    assert isinstance(runtime_for_module(lstm), TorchRuntime)


async def test_a_request_run_at_once_still_gets_its_batch_span(tracer, exporter):
    from opentelemetry import context as otel_context
    from opentelemetry import trace
    from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags

    executor = InProcessExecutor(lambda b: {"y": b["x"]}, inline_below_s=LIMIT_S)
    await warmed(executor)
    loop = EngineLoop(executor, BatchingConfig(max_batch_size=4), tracer=tracer)
    await loop.start()
    caller = SpanContext(trace_id=0xABC, span_id=0xDEF, is_remote=True, trace_flags=TraceFlags(TraceFlags.SAMPLED))
    token = otel_context.attach(trace.set_span_in_context(NonRecordingSpan(caller)))
    try:
        done = await loop.infer({"x": np.zeros((2, 2), np.float32)}, 2)
    finally:
        otel_context.detach(token)
    assert done.queue_s == 0.0  # it did take the run-now path
    (span,) = exporter.get_finished_spans()
    assert span.name == "serving.batch" and span.parent.span_id == 0xDEF
    assert [link.context.span_id for link in span.links] == [0xDEF] and span.attributes["mlmesh.batch.rows"] == 2
    await loop.close()


async def inline_sequences(**config):
    from services.serving.engine import SequenceLoop

    def step(batch):
        w = batch["window"]
        return {"next": (w.mean(axis=1) + 0.01).astype(np.float32)}

    executor = InProcessExecutor(step, inline_below_s=LIMIT_S)
    for _ in range(InProcessExecutor._WARMUP_BATCHES):
        await executor.execute({"window": np.zeros((1, 4), np.float32)})
    assert executor.inline
    loop = SequenceLoop(executor, BatchingConfig(**{"max_batch_size": 8, "iteration_level": True, **config}))
    await loop.start()
    return loop


async def test_an_inline_forecaster_still_lets_newcomers_join_at_step_boundaries():
    loop = await inline_sequences()
    window = np.zeros((1, 4), np.float32)
    long = asyncio.create_task(loop.infer({"window": window}, 1, steps=2000))
    await asyncio.sleep(0.01)         # the long sequence is stepping
    short = await loop.infer({"window": window}, 1, steps=2)
    assert not long.done()            # it joined the running batch, not after the 2000 steps
    assert short.batch_size == 2
    assert len((await long).outputs["next"]) == 2000
    await loop.close()


async def test_a_halt_reaches_an_inline_forecaster_between_steps():
    loop = await inline_sequences()
    long = asyncio.create_task(loop.infer({"window": np.zeros((1, 4), np.float32)}, 1, steps=100000))
    await asyncio.sleep(0.01)
    loop.halt(Unavailable("halted: test"))
    with pytest.raises(Unavailable, match="halted"):
        await long
    assert loop.stats.snapshot(0, 0).batch_size_counts.get(1, 0) < 100000   # stopped part-way
    await loop.close()


@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="one core: BLAS already runs one thread, nothing to leave")
async def test_a_numpy_model_leaves_the_event_loop_a_core(alpha_predictor):
    """The numpy MLP's matrix products run in the session's thread; numpy's BLAS pool must not take every
    core as well, or the event loop (calls, halts) queues behind a big batch. Same share as torch's."""
    metadata, weights = alpha_predictor
    backend = torch_backend("predictor", artifact_id="sha256:a", metadata=metadata, state_dict=weights)
    assert not backend.uses_torch                       # the numpy runtime
    threadpool_limits(limits=os.cpu_count(), user_api="blas")   # as numpy starts: every core
    executor = in_process_executor(backend, "blas-share")
    try:
        blas = [lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas"]
        assert blas and set(blas) == {default_torch_threads()} and default_torch_threads() < os.cpu_count()
        got = await executor.execute({"input": np.zeros((4, len(metadata["feature_names"])), np.float32)})
        assert got["output"].shape[0] == 4
    finally:
        await executor.close()

"""Batch spans: one per executed batch (per step for forecasters), linked to the span of every request it
served and a child of the first; nothing captured or recorded when the process records no traces."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import NonRecordingSpan, SpanContext, StatusCode, TraceFlags

from services.serving.engine import BatchingConfig, EngineLoop, SequenceLoop
from tests.serving.conftest import WINDOW, GatedExecutor, row


def caller(n: int) -> SpanContext:
    return SpanContext(trace_id=0x1000 + n, span_id=0x2000 + n, is_remote=True, trace_flags=TraceFlags(TraceFlags.SAMPLED))


async def infer_as(loop, span: SpanContext, inputs: dict, rows: int = 1, **kwargs):
    """A request submitted inside `span` (as the serving RPC's server span would be current)."""
    token = otel_context.attach(trace.set_span_in_context(NonRecordingSpan(span)))
    try:
        task = asyncio.ensure_future(loop.infer(inputs, rows, **kwargs))
    finally:
        otel_context.detach(token)
    return await task


async def test_a_batch_span_links_every_request_it_served(tracer, exporter):
    executor = GatedExecutor(gated=True)
    loop = EngineLoop(executor, BatchingConfig(max_batch_size=8), tracer=tracer)
    await loop.start()
    first = asyncio.create_task(infer_as(loop, caller(0), {"x": row(0)}))
    await executor.wait_entered()                 # the first runs alone; three wait behind it
    rest = [asyncio.create_task(infer_as(loop, caller(i), {"x": np.zeros((i, 4), np.float32)}, i)) for i in (1, 2, 3)]
    await asyncio.sleep(0.01)
    executor.release()
    await executor.wait_entered()
    executor.release()
    await asyncio.gather(first, *rest)
    await loop.close()

    alone, batch = exporter.get_finished_spans()
    assert (alone.name, batch.name) == ("serving.batch", "serving.batch")
    assert [link.context.span_id for link in alone.links] == [caller(0).span_id]
    assert [link.context.span_id for link in batch.links] == [caller(i).span_id for i in (1, 2, 3)]
    assert (batch.context.trace_id, batch.parent.span_id) == (caller(1).trace_id, caller(1).span_id)
    assert batch.attributes["mlmesh.batch.requests"] == 3 and batch.attributes["mlmesh.batch.rows"] == 6
    assert batch.attributes["mlmesh.executor"] == "GatedExecutor"
    assert alone.start_time < alone.end_time <= batch.start_time < batch.end_time   # when each batch ran


async def test_a_failed_batch_is_an_error_span(tracer, exporter):
    def broken(batch):
        raise RuntimeError("model bug")

    loop = EngineLoop(GatedExecutor(broken), BatchingConfig(max_batch_size=4), tracer=tracer)
    await loop.start()
    with pytest.raises(RuntimeError):
        await infer_as(loop, caller(7), {"x": row(1)})
    await loop.close()
    (span,) = exporter.get_finished_spans()
    assert span.status.status_code == StatusCode.ERROR and span.links[0].context == caller(7)


async def test_forecaster_steps_are_spans_linked_to_the_sequences_in_them(tracer, exporter):
    def step(batch):
        return {"next": batch["window"].mean(axis=1).astype(np.float32)}

    loop = SequenceLoop(GatedExecutor(step), BatchingConfig(max_batch_size=4), tracer=tracer)
    await loop.start()
    window = np.ones((1, WINDOW), np.float32)
    await asyncio.gather(infer_as(loop, caller(1), {"window": window}, steps=3),
                         infer_as(loop, caller(2), {"window": window}, steps=3))
    await loop.close()
    steps = exporter.get_finished_spans()
    assert {s.name for s in steps} == {"serving.step"}
    linked = [sorted(link.context.span_id for link in s.links) for s in steps]
    assert sum(len(ids) for ids in linked) == 6   # each sequence in each of its three steps
    assert all(ids and set(ids) <= {caller(1).span_id, caller(2).span_id} for ids in linked)


async def test_a_failed_forecaster_step_is_an_error_span(tracer, exporter):
    def broken(batch):
        raise RuntimeError("model bug")

    loop = SequenceLoop(GatedExecutor(broken), BatchingConfig(max_batch_size=4), tracer=tracer)
    await loop.start()
    with pytest.raises(RuntimeError):
        await infer_as(loop, caller(9), {"window": np.ones((1, WINDOW), np.float32)}, steps=3)
    await loop.close()
    (span,) = exporter.get_finished_spans()
    assert span.name == "serving.step" and span.status.status_code == StatusCode.ERROR
    assert [link.context for link in span.links] == [caller(9)]


async def test_without_a_recording_tracer_nothing_is_captured(exporter):
    executor = GatedExecutor()
    loop = EngineLoop(executor, BatchingConfig(max_batch_size=4))   # this test process records no traces
    await loop.start()
    request = loop.enqueue({"x": row(1)}, 1)
    await request.future
    await loop.close()
    assert request.span_context is None and exporter.get_finished_spans() == ()

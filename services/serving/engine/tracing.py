"""Batch spans: one span per executed batch (per step, for iteration-level forecaster batching), linked to
the span of every request it served. Recorded only when the process records traces.

A batch serves many callers from many traces, so it links them all (OpenTelemetry's fan-in pattern); it is
also a child of its first request's span, so a single caller's trace shows the batch that answered it.
The span is written when the executor call has returned, with the times it started and ended: the hot
path pays for nothing while the batch runs. A batch none of whose requests is in a sampled trace gets no span.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence

from opentelemetry import trace
from opentelemetry.trace import Link, NonRecordingSpan, SpanContext, Status, StatusCode, Tracer

from services.core.observability.tracing import recording_tracer
from services.serving.engine.request import Request

log = logging.getLogger("mlmesh.serving")


def current_span_context() -> SpanContext | None:
    """The caller's span when its trace is sampled; None otherwise (nothing would record the link)."""
    context = trace.get_current_span().get_span_context()
    return context if context.trace_flags.sampled and context.is_valid else None


class BatchSpans:
    __slots__ = ("_tracer", "name", "_attributes")

    def __init__(self, tracer: Tracer, name: str, executor: str) -> None:
        self._tracer = tracer
        self.name = name
        self._attributes = {"mlmesh.executor": executor}

    @classmethod
    def of_process(cls, name: str, executor: str) -> BatchSpans | None:
        tracer = recording_tracer("mlmesh.serving.engine")
        return cls(tracer, name, executor) if tracer is not None else None

    def record(self, requests: Sequence[Request], started: float, now: float, ok: bool) -> None:
        """`started`, `now`: the engine's monotonic clock at the executor call and after it. Never raises:
        a span that cannot be written must not stop the engine loop."""
        if not requests:
            return
        try:
            self._record(requests, started, now, ok)
        except Exception:  # noqa: BLE001
            log.warning("could not record a batch span", exc_info=True)

    def _record(self, requests: Sequence[Request], started: float, now: float, ok: bool) -> None:
        links = [Link(r.span_context) for r in requests if r.span_context is not None]
        if not links:
            return   # no request of the batch is in a sampled trace: a batch span would belong to none
        parent = trace.set_span_in_context(NonRecordingSpan(links[0].context))
        end_ns = time.time_ns()
        attributes = {**self._attributes, "mlmesh.batch.requests": len(requests),
                      "mlmesh.batch.rows": sum(r.rows for r in requests)}
        span = self._tracer.start_span(self.name, context=parent, links=links, attributes=attributes,
                                       start_time=end_ns - int((now - started) * 1e9))
        if not ok:
            span.set_status(Status(StatusCode.ERROR, "the executor failed the batch"))
        span.end(end_time=end_ns)

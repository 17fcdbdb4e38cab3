"""What tracing costs one serving request, in microseconds of CPU, per mode (services/core/observability):

  off     tracing_enabled=false: the interceptor does nothing for traces
  carry   on, nothing to export (the default): the caller's traceparent is read and made current
  record  on, an OTLP endpoint set: a SERVER span per call (batched export, here to an exporter that drops),
          the request's span captured at submit, one batch span per batch (here: batches of one, the worst case)
  record, unsampled   the same process, for a call whose caller did not sample its trace (traceparent flags 00)

Each mode also injects the context into one outgoing call's metadata, as a service calling another does.
Serving spends ~450 µs of CPU per request; the budget for metrics and tracing together is 5% (~22 µs).

    .venv/bin/python bench/tracing.py [ROUNDS]
"""

from __future__ import annotations

import sys
import time

import grpc
from opentelemetry import propagate
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parents[1]))

from services.core.observability.grpc_tracing import ServerTracing, inject_metadata  # noqa: E402
from services.serving.engine.request import Request  # noqa: E402
from services.serving.engine.tracing import BatchSpans, current_span_context  # noqa: E402

METHOD = "/mlmesh.v1.Serving/Predict"
TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


class _Context:
    """The part of a grpc.aio servicer context the interceptor's tracing reads."""

    def __init__(self, traceparent: str) -> None:
        self._metadata = (("authorization", "Bearer x" * 40), ("x-request-id", "r" * 32), ("traceparent", traceparent),
                          ("user-agent", "grpc-python-asyncio/1.85"))

    def invocation_metadata(self):
        return self._metadata


class _Drop(SpanExporter):
    def export(self, spans):
        return SpanExportResult.SUCCESS


def _per_request_us(tracing: ServerTracing, batch_spans: BatchSpans | None, n: int, sampled: bool = True) -> float:
    context = _Context(TRACEPARENT if sampled else TRACEPARENT[:-2] + "00")
    request = Request({}, 1, 1, 0, None, None, 0.0)
    start = time.process_time()
    for _ in range(n):
        call = tracing.begin(METHOD, context)
        if batch_spans is not None:
            request.span_context = current_span_context()
        inject_metadata(grpc.aio.Metadata(("authorization", "Bearer y")))
        if batch_spans is not None:
            batch_spans.record([request], 0.0, 0.0001, True)
        tracing.end(call, grpc.StatusCode.OK)
    return (time.process_time() - start) / n * 1e6


def main(rounds: int = 5, n: int = 20_000) -> None:
    propagate.set_global_textmap(TraceContextTextMapPropagator())
    provider = TracerProvider(resource=Resource.create({"service.name": "bench"}),
                              sampler=ParentBased(TraceIdRatioBased(1.0)))
    provider.add_span_processor(BatchSpanProcessor(_Drop()))
    tracer = provider.get_tracer("bench")
    recording = (ServerTracing(tracer), BatchSpans(tracer, "serving.batch", "bench"))
    modes = {"off": (ServerTracing(None, enabled=False), None, True),
             "carry": (ServerTracing(None), None, True),
             "record": (*recording, True),
             "record, unsampled": (*recording, False)}
    best = {}
    for _ in range(rounds):   # interleaved, best of rounds: the least disturbed measurement of each
        for mode, (tracing, batch_spans, sampled) in modes.items():
            best[mode] = min(best.get(mode, float("inf")), _per_request_us(tracing, batch_spans, n, sampled))
    provider.shutdown()
    for mode, us in best.items():
        print(f"{mode:18s} {us:7.1f} µs/request   {us / 450 * 100:5.2f}% of 450 µs")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 5)

"""A tiny OTLP/gRPC trace collector for tests: services export to it as to any collector; the test reads
the spans back, each with the `service.name` of the process that exported it."""

from __future__ import annotations

import threading
import time
from concurrent import futures
from dataclasses import dataclass

import grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc


@dataclass(frozen=True)
class CollectedSpan:
    service: str
    name: str
    trace_id: str          # hex, as in a traceparent
    span_id: str
    parent_span_id: str    # "" for a root
    kind: int
    attributes: dict
    links: tuple[tuple[str, str], ...]   # (trace id, span id) of each link
    status_code: int       # 0 unset, 1 ok, 2 error


class OtlpCollector(trace_service_pb2_grpc.TraceServiceServicer):
    def __init__(self) -> None:
        self._spans: list[CollectedSpan] = []
        self._lock = threading.Lock()
        self._server: grpc.Server | None = None
        self.port = 0

    def Export(self, request, context):
        with self._lock:
            for resource_spans in request.resource_spans:
                service = next((a.value.string_value for a in resource_spans.resource.attributes
                                if a.key == "service.name"), "")
                for scope_spans in resource_spans.scope_spans:
                    self._spans.extend(_collected(service, span) for span in scope_spans.spans)
        return trace_service_pb2.ExportTraceServiceResponse()

    def start(self) -> OtlpCollector:
        self._server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        trace_service_pb2_grpc.add_TraceServiceServicer_to_server(self, self._server)
        self.port = self._server.add_insecure_port("127.0.0.1:0")
        self._server.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop(None)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def spans(self, trace_id: str | None = None) -> list[CollectedSpan]:
        with self._lock:
            return [s for s in self._spans if trace_id is None or s.trace_id == trace_id]

    def wait_for(self, predicate, timeout_s: float = 30.0, trace_id: str | None = None) -> list[CollectedSpan]:
        """The spans (of `trace_id`) once `predicate(spans)` holds; exporters send in batches."""
        deadline = time.monotonic() + timeout_s
        while True:
            spans = self.spans(trace_id)
            if predicate(spans) or time.monotonic() > deadline:
                return spans
            time.sleep(0.1)


def _collected(service: str, span) -> CollectedSpan:
    attributes = {}
    for attribute in span.attributes:
        value = attribute.value
        attributes[attribute.key] = getattr(value, value.WhichOneof("value")) if value.WhichOneof("value") else None
    return CollectedSpan(service=service, name=span.name, trace_id=span.trace_id.hex(), span_id=span.span_id.hex(),
                         parent_span_id=span.parent_span_id.hex(), kind=span.kind, attributes=attributes,
                         links=tuple((link.trace_id.hex(), link.span_id.hex()) for link in span.links),
                         status_code=span.status.code)

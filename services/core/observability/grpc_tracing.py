"""W3C trace context over gRPC metadata: the server span the mesh interceptor opens around every call, and
the `traceparent` every outgoing call carries, so a call's spans in each service join one trace."""

from __future__ import annotations

import grpc
from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.trace import SpanKind, Status, StatusCode, Tracer

from services.core.observability.tracing import propagation_enabled, recording_tracer

TRACEPARENT, TRACESTATE = "traceparent", "tracestate"
# The codes that make a server span an error (OpenTelemetry's gRPC conventions: the server's own fault).
SERVER_ERRORS = frozenset({grpc.StatusCode.UNKNOWN, grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.UNIMPLEMENTED,
                           grpc.StatusCode.INTERNAL, grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DATA_LOSS})


class ServerTracing:
    """What the interceptor does for traces, per call: `begin` before the handler, `end` after it.

    Recording: a SERVER span named after the method (`mlmesh.v1.Serving/Predict`), a child of the caller's
    `traceparent` when one came. Carrying: no span, the caller's context made current so outgoing calls
    pass it on. Off, or nothing came and nothing records: no work at all.
    """

    __slots__ = ("_tracer", "_enabled", "_names")

    def __init__(self, tracer: Tracer | None, *, enabled: bool = True) -> None:
        self._tracer = tracer
        self._enabled = enabled
        self._names: dict[str, tuple[str, dict[str, str]]] = {}

    @classmethod
    def of_process(cls) -> ServerTracing:
        return cls(recording_tracer("mlmesh.grpc"), enabled=propagation_enabled())

    def begin(self, method: str, carrier: dict[str, str] | None) -> tuple | None:
        """`carrier`: the call's `traceparent` / `tracestate` metadata, None when it had neither (the
        interceptor collects them in its one pass over the metadata)."""
        if not self._enabled:
            return None
        tracer = self._tracer
        if tracer is None:
            return None if carrier is None else _attached(None, propagate.extract(carrier))
        parent = propagate.extract(carrier) if carrier is not None else None
        if parent is not None:
            caller = trace.get_current_span(parent).get_span_context()
            if caller.is_valid and not caller.trace_flags.sampled:
                # The caller did not sample this trace, so nothing here records it either (parent-based
                # sampling): carry its context on, and skip the span the SDK would make and drop (~10 µs).
                return _attached(None, parent)
        name, attributes = self._name(method)
        span = tracer.start_span(name, context=parent, kind=SpanKind.SERVER, attributes=attributes)
        return _attached(span, trace.set_span_in_context(span, parent))

    @staticmethod
    def end(call: tuple | None, code: grpc.StatusCode) -> None:
        if call is None:
            return
        span, token, attached = call
        if span is not None:
            span.set_attribute("rpc.grpc.status_code", code.value[0])
            if code in SERVER_ERRORS:
                span.set_status(Status(StatusCode.ERROR, code.name))
            span.end()
        # A streaming handler closed from another context (its generator finalised elsewhere) has nothing
        # to detach there: that context dies with its task, and detaching would only log an error.
        if otel_context.get_current() is attached:
            otel_context.detach(token)

    def _name(self, method: str) -> tuple[str, dict[str, str]]:
        named = self._names.get(method)
        if named is None:  # bounded: only methods the server serves get here (the interceptor checks first)
            service, _, rpc = method.lstrip("/").rpartition("/")
            named = self._names[method] = (method.lstrip("/"), {"rpc.system": "grpc", "rpc.service": service,
                                                                "rpc.method": rpc})
        return named


def _attached(span, context: otel_context.Context) -> tuple:
    return span, otel_context.attach(context), context


def inject_metadata(metadata) -> None:
    """Add the current span's `traceparent` (and `tracestate`) to outgoing metadata (grpc.aio.Metadata or a
    dict), unless the caller set one; nothing when there is no current trace or propagation is off."""
    if not trace.get_current_span().get_span_context().is_valid or TRACEPARENT in metadata:
        return
    propagate.inject(metadata)


def trace_metadata() -> tuple[tuple[str, str], ...]:
    """The current trace context as metadata pairs, for callers that build metadata as tuples."""
    if not trace.get_current_span().get_span_context().is_valid:
        return ()
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return tuple(carrier.items())

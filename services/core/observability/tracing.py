"""OpenTelemetry traces for one process: where spans go, and whether they are recorded at all.

Three modes, chosen once per process by its composition root (`setup_tracing`):
  * off (`tracing_enabled=false`): no spans, and W3C `traceparent` is neither read nor written;
  * carry (on, but no OTLP endpoint and no test exporter): no spans are recorded, but an incoming
    `traceparent` is made the current context and passed on, so the services downstream stay in the
    caller's trace. This is the default and costs about a metadata scan per call;
  * record (an OTLP endpoint, or an exporter a test injects): an SDK TracerProvider records sampled spans
    (parent-based, `trace_sample_ratio` for new traces) and exports them in batches off the hot path.

The process's provider and propagator are the OpenTelemetry API's globals (the API requires them to be
global so that libraries such as the MCP SDK find them); components ask `recording_tracer(name)` when they
are built, or take a tracer injected by a test.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

from opentelemetry import propagate, trace
from opentelemetry.propagators.composite import CompositePropagator
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor, SpanExporter
from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased
from opentelemetry.trace import Status, StatusCode, Tracer
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from services.core.settings import ObservabilitySettings


class _NoPropagation(CompositePropagator):
    """The global propagator when tracing is off: extracts nothing, injects nothing."""

    def __init__(self) -> None:
        super().__init__([])


@dataclass(frozen=True)
class Tracing:
    service: str
    enabled: bool                        # carry traceparent at all
    provider: TracerProvider | None      # set: spans are recorded and exported

    @property
    def recording(self) -> bool:
        return self.provider is not None

    def tracer(self, name: str) -> Tracer | None:
        return self.provider.get_tracer(name) if self.provider is not None else None

    def shutdown(self) -> None:
        """Flush what is buffered and stop exporting (the provider also does this at exit)."""
        if self.provider is not None:
            self.provider.shutdown()


def build_tracing(settings: ObservabilitySettings, service: str, *,
                  exporter: SpanExporter | None = None) -> Tracing:
    """`exporter` (tests: an InMemorySpanExporter) is exported to synchronously; the OTLP one in batches."""
    if not settings.tracing_enabled:
        return Tracing(service, enabled=False, provider=None)
    processor = None
    if exporter is not None:
        processor = SimpleSpanProcessor(exporter)
    elif settings.otlp_endpoint:
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        endpoint = settings.otlp_endpoint
        # Batches are sized and timed by the standard OTEL_BSP_* variables.
        processor = BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint, insecure=endpoint.startswith("http://")))
    if processor is None:
        return Tracing(service, enabled=True, provider=None)
    provider = TracerProvider(resource=Resource.create({"service.name": service}),
                              sampler=ParentBased(TraceIdRatioBased(settings.trace_sample_ratio)))
    provider.add_span_processor(processor)
    return Tracing(service, enabled=True, provider=provider)


def install_tracing(tracing: Tracing) -> None:
    """Make `tracing` the process's: the API's global propagator (W3C trace context only, or nothing when
    off) and, when it records, the global tracer provider (settable once per process)."""
    propagate.set_global_textmap(TraceContextTextMapPropagator() if tracing.enabled else _NoPropagation())
    if tracing.provider is not None:
        trace.set_tracer_provider(tracing.provider)


def setup_tracing(service: str, settings: ObservabilitySettings | None = None) -> Tracing:
    """For a service's composition root: build from the settings, install, return."""
    tracing = build_tracing(settings or ObservabilitySettings(), service)
    install_tracing(tracing)
    return tracing


def propagation_enabled() -> bool:
    return not isinstance(propagate.get_global_textmap(), _NoPropagation)


def recording_tracer(name: str) -> Tracer | None:
    """The process's recording tracer, or None when spans would go nowhere (then only carry the context)."""
    provider = trace.get_tracer_provider()
    if isinstance(provider, TracerProvider):
        return provider.get_tracer(name)
    return None


@contextlib.contextmanager
def maybe_span(tracer: Tracer | None, name: str, attributes: Mapping[str, object] | None = None) -> Iterator:
    """A current span when `tracer` records; nothing otherwise. Failures mark the span with the exception's
    type only: exception texts may carry inputs the trace store must not keep."""
    if tracer is None:
        yield None
        return
    with tracer.start_as_current_span(name, attributes=attributes, record_exception=False,
                                      set_status_on_exception=False) as span:
        try:
            yield span
        except BaseException as exc:
            span.set_status(Status(StatusCode.ERROR, type(exc).__name__))
            raise


def mark_failed(span, description: str) -> None:
    if span is not None:
        span.set_status(Status(StatusCode.ERROR, description))

"""Prometheus metrics of one service process: a `CollectorRegistry` of its own (built by the composition
root, never a module global), the RPC series the mesh interceptor records, and the /metrics HTTP server.

Where /metrics listens: `MLMESH_METRICS_PORT` when set (0 picks a free port), else the topology's
`metrics_port` of the service, plus the replica's index when the process runs on one of the service's
replica ports (port + i -> metrics_port + i). A process on any other port (tests, ad-hoc runs on port 0)
serves no metrics unless told where, so it never fights a running mesh for a fixed port.

Hot path: the interceptor binds each method's labelled children once (`RpcMetrics.for_method`); a call
then costs one dict lookup, a counter increment and a histogram observation.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar
from wsgiref.simple_server import WSGIServer

import grpc
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector, start_http_server

from services.core.errors import FailedPrecondition
from services.core.settings import ObservabilitySettings
from services.core.topology import ServiceEndpoint

log = logging.getLogger("mlmesh.metrics")

METRICS_PATH = "/metrics"
T = TypeVar("T")
# gRPC latencies from a health check (~100 µs) to a long compile's Watch stream.
RPC_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 120.0)


class MethodMetrics:
    """One RPC method's children, bound once: the OK counter up front, other codes when first seen."""

    __slots__ = ("_requests", "_method", "_by_code", "_latency")

    def __init__(self, requests: Counter, latency: Histogram, method: str) -> None:
        self._requests = requests
        self._method = method
        self._by_code = {grpc.StatusCode.OK: requests.labels(method, grpc.StatusCode.OK.name)}
        self._latency = latency.labels(method)

    def observe(self, code: grpc.StatusCode, seconds: float) -> None:
        child = self._by_code.get(code)
        if child is None:
            child = self._by_code[code] = self._requests.labels(self._method, code.name)
        child.inc()
        self._latency.observe(seconds)


class RpcMetrics:
    """`mlmesh_rpc_requests_total{method,code}` and `mlmesh_rpc_duration_seconds{method}` of a gRPC server."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.requests = Counter("mlmesh_rpc_requests", "RPCs handled, by method and gRPC status code.",
                                ["method", "code"], registry=registry)
        self.duration = Histogram("mlmesh_rpc_duration_seconds", "Time from a call's arrival to its status, "
                                  "by method.", ["method"], buckets=RPC_BUCKETS, registry=registry)

    def for_method(self, method: str) -> MethodMetrics:
        """`method` as gRPC names it (/pkg.Service/Method); the label drops the leading slash."""
        return MethodMetrics(self.requests, self.duration, method.lstrip("/"))


def metrics_port_for(settings: ObservabilitySettings, endpoint: ServiceEndpoint | None, port: int | None) -> int | None:
    """Where this process serves /metrics, or None (see the module notes). `port` is the service port asked for."""
    if settings.metrics_port is not None:
        return settings.metrics_port
    if endpoint is None or endpoint.metrics_port is None or port is None:
        return None
    index = port - endpoint.port
    return endpoint.metrics_port + index if 0 <= index < endpoint.replicas else None


@dataclass
class ServiceMetrics:
    """The metrics of one service process: its registry, RPC series, and /metrics server once started."""

    service: str
    settings: ObservabilitySettings
    endpoint: ServiceEndpoint | None = None
    registry: CollectorRegistry = field(default_factory=lambda: CollectorRegistry(auto_describe=True))
    rpc: RpcMetrics = field(init=False)
    port: int | None = field(default=None, init=False)
    _server: tuple[WSGIServer, threading.Thread] | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        self.rpc = RpcMetrics(self.registry)
        ProcessCollector(registry=self.registry)  # process_cpu_seconds_total, resident memory, open fds
        info = Gauge("mlmesh_service_info", "Always 1; names the mlmesh service this process runs.", ["service"],
                     registry=self.registry)
        info.labels(self.service).set(1)

    @classmethod
    def build(cls, service: str, settings: ObservabilitySettings | None,
              endpoint: ServiceEndpoint | None) -> ServiceMetrics | None:
        """None when metrics are off: then nothing is recorded and no port opens."""
        settings = settings or ObservabilitySettings()
        if not settings.metrics_enabled:
            return None
        return cls(service, settings, endpoint)

    @property
    def url(self) -> str | None:
        if self.port is None:
            return None
        return f"http://{_url_host(self.settings.metrics_host)}:{self.port}{METRICS_PATH}"

    def serve(self, service_port: int | None) -> int | None:
        """Start /metrics for a process asked to listen on `service_port`; the bound port, or None when
        nothing says where. A port in use fails the start, naming the setting to change."""
        if self._server is not None:
            return self.port
        port = metrics_port_for(self.settings, self.endpoint, service_port)
        if port is None:
            log.info("%s: no metrics port for service port %s (MLMESH_METRICS_PORT or the topology's "
                     "metrics_port); /metrics not served", self.service, service_port)
            return None
        try:
            self._server = start_http_server(port, addr=self.settings.metrics_host, registry=self.registry)
        except OSError as exc:
            raise FailedPrecondition(f"{self.service}: cannot serve metrics on {self.settings.metrics_host}:{port}: "
                                     f"{exc.strerror or exc}", field="metrics_port") from exc
        self.port = self._server[0].server_port
        log.info("%s metrics on %s", self.service, self.url)
        return self.port

    def close(self) -> None:
        if self._server is None:
            return
        server, thread = self._server
        self._server = None
        server.shutdown()
        server.server_close()
        thread.join(5)


def _url_host(host: str) -> str:
    if host in ("0.0.0.0", ""):
        return "127.0.0.1"
    return f"[{host}]" if ":" in host else host


class LoopReader:
    """Runs a read on the event loop that owns the objects it reads (their only writer), from the scrape
    thread: figures are read whole, never while the loop is half-way through changing them. Build it on
    that loop's thread; called there, it reads directly."""

    def __init__(self, loop: asyncio.AbstractEventLoop, timeout_s: float = 2.0) -> None:
        self._loop = loop
        self._thread = threading.get_ident()
        self.timeout_s = timeout_s

    def __call__(self, read: Callable[[], T]) -> T:
        if threading.get_ident() == self._thread:
            return read()
        done: concurrent.futures.Future[T] = concurrent.futures.Future()

        def run() -> None:
            try:
                done.set_result(read())
            except BaseException as exc:  # noqa: BLE001 - handed to the scrape thread
                done.set_exception(exc)

        self._loop.call_soon_threadsafe(run)  # RuntimeError once the loop is closed
        return done.result(self.timeout_s)

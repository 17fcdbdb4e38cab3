"""`ServiceHost`: a grpc.aio server with the mesh interceptor, health, reflection, limits and drain."""

from __future__ import annotations

import asyncio
import faulthandler
import logging
import signal
import sys
from collections.abc import Callable, Iterable, Mapping

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from services.core.auth.tokens import TokenVerifier
from services.core.errors import FailedPrecondition
from services.core.grpc.interceptor import MeshInterceptor
from services.core.observability.logs import install_logging
from services.core.observability.metrics import ServiceMetrics
from services.core.settings import ObservabilitySettings, ServerSettings

log = logging.getLogger("mlmesh.server")

HEALTH_SERVICE = health_pb2.DESCRIPTOR.services_by_name["Health"].full_name


def configure_logging(level: str | int = "INFO", *, service: str | None = None) -> None:
    """One line per record on stderr, JSON unless `MLMESH_LOG_FORMAT=text`, credentials redacted
    (services/core/observability/logs.py); the access log is logger `mlmesh.access`. `service` names the
    process in every line (default: the `services.<name>` module it runs as). A crash in native code
    (a segfault in a C extension) writes every thread's Python stack to stderr too, so the service's log
    says where it died instead of ending mid-stream."""
    install_logging(level, service=service, log_format=ObservabilitySettings().log_format)
    faulthandler.enable(file=sys.stderr, all_threads=True)


class ServiceHost:
    """Hosts one service process's gRPC services.

    `verifier` is None only when a caller opts out of auth on purpose (tests); real services pass one.
    """

    def __init__(
        self,
        name: str,
        server_settings: ServerSettings,
        verifier: TokenVerifier | None,
        method_scopes: Mapping[str, str] | None = None,
        metrics: ServiceMetrics | None = None,
        quiet_methods: Iterable[str] = (),
    ) -> None:
        """`quiet_methods`: high-rate methods whose successful calls get no access log line unless the
        settings' access_log is "all"."""
        self.name = name
        self.settings = server_settings
        self.metrics = metrics  # None: metrics off; else /metrics starts and stops with the host
        self.interceptor = MeshInterceptor(verifier, method_scopes,
                                           rpc_metrics=metrics.rpc if metrics is not None else None,
                                           quiet_methods=quiet_methods if server_settings.access_log == "control" else ())
        self._registrations: list[tuple[Callable[[grpc.aio.Server], None], list[str]]] = []
        self._server: grpc.aio.Server | None = None
        self.health: health.aio.HealthServicer | None = None
        self.port: int | None = None
        if verifier is None:
            log.warning("%s: authentication is OFF (no token verifier)", name)

    @property
    def service_names(self) -> list[str]:
        return [n for _, names in self._registrations for n in names]

    def add(self, register_fn: Callable[[grpc.aio.Server], None], service_full_names: list[str]) -> None:
        """Register a servicer, e.g. `host.add(lambda s: add_XServicer_to_server(x, s), ["mlmesh.v1.X"])`."""
        if self._server is not None:
            raise FailedPrecondition("services must be added before the host starts")
        self._registrations.append((register_fn, list(service_full_names)))

    async def start(self, host: str | None = None, port: int = 0) -> int:
        """Bind (port 0 picks a free one), mark every service SERVING, start; returns the bound port."""
        if self._server is not None:
            raise FailedPrecondition(f"{self.name} already started")
        if self.metrics is not None:
            self.metrics.serve(port)  # first: a metrics port in use fails the start before gRPC binds
        limit = self.settings.max_message_bytes
        server = grpc.aio.server(
            interceptors=[self.interceptor],
            options=[
                ("grpc.max_send_message_length", limit),
                ("grpc.max_receive_message_length", limit),
                # Without this, Linux lets a second server bind the same port and steal half the calls.
                ("grpc.so_reuseport", 0),
            ],
        )
        for register, _ in self._registrations:
            register(server)
        self.health = health.aio.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(self.health, server)
        names = self.service_names
        reflection.enable_server_reflection([*names, HEALTH_SERVICE, reflection.SERVICE_NAME], server)
        for service in ["", *names]:
            await self.health.set(service, health_pb2.HealthCheckResponse.SERVING)

        host = host or self.settings.bind_host
        if ":" in host and not host.startswith("["):
            host = f"[{host}]"  # an IPv6 literal
        try:
            self.port = server.add_insecure_port(f"{host}:{port}")
            await server.start()
        except BaseException:
            if self.metrics is not None:
                self.metrics.close()
            raise
        self._server = server
        log.info("%s listening on %s:%d (%s)", self.name, host, self.port, ", ".join(names) or "no services")
        return self.port

    async def stop(self, grace: float | None = None) -> None:
        """Report NOT_SERVING first (balancers stop sending), then let in-flight calls finish for
        `grace` seconds (default: the settings' shutdown grace)."""
        if self._server is None:
            return
        if self.health is not None:
            await self.health.enter_graceful_shutdown()
        grace = self.settings.shutdown_grace_s if grace is None else grace
        log.info("%s draining (grace %.1fs)", self.name, grace)
        await self._server.stop(grace)
        if self.metrics is not None:
            await asyncio.to_thread(self.metrics.close)  # waits out the HTTP server's poll, off the loop
        log.info("%s stopped", self.name)

    async def wait_for_termination(self) -> None:
        if self._server is None:
            raise FailedPrecondition(f"{self.name} is not started")
        await self._server.wait_for_termination()

    async def run_until_signal(self) -> None:
        """Serve until SIGTERM or SIGINT, then drain gracefully."""
        if self._server is None:
            raise FailedPrecondition(f"{self.name} is not started")
        loop = asyncio.get_running_loop()
        stopping = asyncio.Event()
        sigs = (signal.SIGTERM, signal.SIGINT)
        for sig in sigs:
            loop.add_signal_handler(sig, stopping.set)
        try:
            waiter = asyncio.ensure_future(self._server.wait_for_termination())
            signalled = asyncio.ensure_future(stopping.wait())
            await asyncio.wait({waiter, signalled}, return_when=asyncio.FIRST_COMPLETED)
            signalled.cancel()
            if stopping.is_set():
                log.info("%s: signal received", self.name)
                await self.stop()
            await waiter
        finally:
            for sig in sigs:
                loop.remove_signal_handler(sig)

"""Composition root of serving: settings -> registry client -> artifact toolkit -> Triton (optional) ->
sessions -> servicers (typed Serving + KServe v2 on one port) -> gRPC host. Nothing global.

Triton is started (or reached, with MLMESH_TRITON_URL) before the host binds, so health says SERVING
only once the service can serve as configured; a Triton that cannot start is logged and left out
(sessions then run in-process, and an explicit EXECUTOR_KIND_TRITON is FAILED_PRECONDITION with the
reason). SIGTERM halts every session (queued requests fail UNAVAILABLE at once), drains the calls in
flight, undeploys, and stops Triton.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import shutil
import signal
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict
from tritonclient.grpc import service_pb2_grpc

from mlmesh.v1 import serving_pb2_grpc
from services.core.artifacts.toolkit import build_artifact_toolkit
from services.core.auth import policy
from services.core.auth.tokens import TokenIssuer, TokenVerifier
from services.core.clients.registry import RegistryClient, lineage_sink
from services.core.errors import outward
from services.core.grpc.server import ServiceHost, configure_logging
from services.core.observability.tracing import setup_tracing
from services.core.lineage import LineageBus
from services.core.observability.metrics import LoopReader, ServiceMetrics
from services.core.observability.metrics_artifacts import register_cache
from services.core.settings import (
    ArtifactSettings, AuthSettings, MeshSettings, MLSettings, ObjectStoreSettings, ObservabilitySettings,
    ServerSettings,
)
from services.core.topology import load_topology
from services.serving.fanout import ReplicaFanout, advertised_host, host_port, replica_name
from services.serving.kserve.servicer import SERVICE_NAME as KSERVE_SERVICE
from services.serving.kserve.servicer import InferenceServicer
from services.serving.loading import Deployer, ExecutorPlacement, ModelResolver, TritonTarget
from services.serving.metrics import SessionCollector
from services.serving.rules.pack import RulePackLoader
from services.serving.servicer import ServingServicer
from services.serving.sessions.manager import SessionManager
from services.serving.triton.launcher import REPO_ROOT, TritonServer, TritonSettings, available
from services.serving.triton.repository import ModelRepository

SERVICE = "serving"
SHUTDOWN_REASON = "the serving service is shutting down"
log = logging.getLogger("mlmesh.serving")

_S = "/mlmesh.v1.Serving/"
_K = f"/{KSERVE_SERVICE}/"
METHOD_SCOPES = {
    **{_S + m: policy.SERVING_READ for m in ("GetSession", "ListSessions", "WatchSessions")},
    **{_S + m: policy.SERVING_DEPLOY for m in ("Deploy", "ResumeSession", "UndeploySession")},
    **{_S + m: policy.SERVING_HALT for m in ("HaltSession", "HaltAll")},
    **{_S + m: policy.SERVING_INFER for m in ("Predict", "Forecast", "Classify", "Segment", "Analyze")},
    **{_K + m: policy.SERVING_READ for m in (
        "ServerLive", "ServerReady", "ServerMetadata", "ModelReady", "ModelMetadata", "ModelConfig",
        "ModelStatistics", "RepositoryIndex",
    )},
    **{_K + m: policy.SERVING_INFER for m in ("ModelInfer", "ModelStreamInfer")},
    _K + "RepositoryModelLoad": policy.SERVING_DEPLOY,   # = ResumeSession
    _K + "RepositoryModelUnload": policy.SERVING_HALT,   # = HaltSession: the kill switch's scope
    **{_K + m: policy.SERVING_DEPLOY for m in (          # not implemented; answered UNIMPLEMENTED
        "SystemSharedMemoryStatus", "SystemSharedMemoryRegister", "SystemSharedMemoryUnregister",
        "CudaSharedMemoryStatus", "CudaSharedMemoryRegister", "CudaSharedMemoryUnregister", "TraceSetting",
        "LogSettings",
    )},
}
# The inference calls: successful ones get no access log line by default (ServerSettings.access_log).
INFERENCE_METHODS = frozenset(m for m, scope in METHOD_SCOPES.items() if scope == policy.SERVING_INFER)


class ServingSettings(BaseSettings):
    """`MLMESH_SERVING_*`: which executor sessions get, where rule packs live, whether to start Triton."""

    model_config = SettingsConfigDict(env_prefix="MLMESH_SERVING_", extra="ignore")

    executor: Literal["auto", "triton", "in_process"] = Field(
        "auto", description="What EXECUTOR_KIND_UNSPECIFIED means: auto = Triton when this service has one "
        "and the model runs there, else in-process; triton = Triton or refuse; in_process = never Triton.")
    rules_dir: Path = Field(REPO_ROOT / "configs" / "rules", description="Folder of the rule packs (<name>.yaml).")
    start_triton: bool = Field(True, description="Start the local tritonserver (.triton-venv) unless "
                               "MLMESH_TRITON_URL names one; off: Triton only by URL.")
    halt_fanout_timeout_s: float = Field(3.0, gt=0, description="How long HaltAll waits for each other serving "
                                         "replica of the topology; one that does not answer is reported.")


@dataclass
class ServingApp:
    host: ServiceHost
    manager: SessionManager
    deployer: Deployer
    servicer: ServingServicer
    registry: RegistryClient
    fanout: ReplicaFanout
    triton: TritonServer | None = None
    _stopped: bool = field(default=False, repr=False)

    async def start(self, bind_host: str, port: int, advertise_host: str = "") -> int:
        bound = await self.host.start(bind_host, port)
        host = advertised_host(bind_host, advertise_host)
        self.servicer.replica = replica_name(host_port(host, bound))
        if peers := self.fanout.bind(bound, host):
            log.info("HaltAll also halts the other serving replicas: %s", peers)
        return bound

    async def stop(self, grace: float | None = None) -> None:
        """Halt every session (nothing queued reaches a model any more), drain, undeploy, stop Triton."""
        if self._stopped:
            return
        self._stopped = True
        try:
            await self.manager.halt_all(SHUTDOWN_REASON)
            await self.host.stop(grace)
            await self.manager.close()
        finally:
            await self.registry.close()
            if self.triton is not None:
                await self.triton.stop()

    async def run_until_signal(self) -> None:
        """Serve until SIGTERM or SIGINT (or the server ends), then stop as above."""
        loop = asyncio.get_running_loop()
        stopping = asyncio.Event()
        signals = (signal.SIGTERM, signal.SIGINT)
        for sig in signals:
            loop.add_signal_handler(sig, stopping.set)
        try:
            waiter = asyncio.ensure_future(self.host.wait_for_termination())
            signalled = asyncio.ensure_future(stopping.wait())
            await asyncio.wait({waiter, signalled}, return_when=asyncio.FIRST_COMPLETED)
            signalled.cancel()
            if stopping.is_set():
                log.info("serving: signal received; halting every session, then draining")
            await self.stop()
            await waiter
        finally:
            for sig in signals:
                loop.remove_signal_handler(sig)


async def start_triton(serving: ServingSettings, settings: TritonSettings,
                       home: Path) -> tuple[TritonServer | None, TritonTarget | None, str]:
    """(server, target, "") when a Triton serves here; else (None, None, why not). Never raises."""
    if serving.executor == "in_process":
        return None, None, "the executor mode is in_process (MLMESH_SERVING_EXECUTOR)"
    if not settings.url and not serving.start_triton:
        return None, None, "MLMESH_SERVING_START_TRITON is off and MLMESH_TRITON_URL is empty"
    probe = available(settings)
    if not probe:
        log.warning("Triton is not available, sessions run in-process: %s", probe.reason)
        return None, None, probe.reason
    server = TritonServer.from_settings(settings, home)
    if server.local and settings.model_repository is None and server.model_repository.is_dir():
        # Our own folder: entries of an earlier run are never loaded again; start empty.
        await asyncio.to_thread(shutil.rmtree, server.model_repository, True)
    try:
        await server.start()
    except Exception as exc:  # noqa: BLE001 - whatever stops Triton, serving runs without it
        log.warning("Triton did not start: %s; sessions run in-process", exc)
        return None, None, f"Triton did not start: {outward(exc)}"   # what Deploy and mlmesh status show
    log.info("Triton ready at %s in %.1f s (repository %s)", server.url, server.startup_s or 0.0,
             server.model_repository)
    target = TritonTarget(server.url, ModelRepository(server.model_repository), settings.request_timeout_s,
                          settings.load_timeout_s)
    return server, target, ""


async def build_serving(
    mesh: MeshSettings,
    server: ServerSettings,
    auth: AuthSettings,
    *,
    ml: MLSettings | None = None,
    serving: ServingSettings | None = None,
    triton: TritonSettings | None = None,
    artifacts: ArtifactSettings | None = None,
    object_store: ObjectStoreSettings | None = None,
    verifier: TokenVerifier | None = None,
    registry_address: str | None = None,
    observability: ObservabilitySettings | None = None,
) -> ServingApp:
    ml, serving, triton = ml or MLSettings(), serving or ServingSettings(), triton or TritonSettings()
    artifacts = artifacts or ArtifactSettings()
    mesh.ensure_home()
    topology = load_topology(mesh.topology_file)
    address = registry_address or topology.get("registry").address
    issuer = TokenIssuer.from_settings(mesh, auth)
    registry = RegistryClient.connect(address, issuer, subject=SERVICE,
                                      scopes=(policy.REGISTRY_READ, policy.LINEAGE_WRITE))
    # The other replicas HaltAll reaches: the topology's serving entry (none when it has no such entry).
    fanout = ReplicaFanout(issuer, topology.services.get(SERVICE), timeout_s=serving.halt_fanout_timeout_s)
    bus = LineageBus()
    bus.subscribe(lineage_sink(registry))  # deploy and load events are recorded by the registry
    # The Deploy caller's serving.deploy scope is what the toolkit checks: serving loads on its behalf.
    kit = build_artifact_toolkit(mesh, bus, service=SERVICE, write_scope=policy.SERVING_DEPLOY,
                                 read_scope=policy.SERVING_DEPLOY, artifacts=artifacts, object_store=object_store,
                                 ml=ml)
    triton_server, target, reason = await start_triton(serving, triton, mesh.home)
    try:
        placement = ExecutorPlacement(serving.executor, target, reason)
        manager = SessionManager(ml, bus, rule_packs=RulePackLoader(serving.rules_dir),
                                 executor_kind=placement.default_kind, actor=SERVICE)
        resolver = ModelResolver(registry, kit.cache, kit.store, kit.signer,
                                 artifacts.cache_root(mesh.home) / "compiled", loader=kit.loader)
        deployer = Deployer(manager, resolver, placement, ml)
        metrics = ServiceMetrics.build(SERVICE, observability, topology.services.get(SERVICE))
        if metrics is not None:  # read at scrape time: the request path pays only the RPC series
            metrics.registry.register(SessionCollector(manager, LoopReader(asyncio.get_running_loop())))
            register_cache(metrics.registry, kit.cache)
        host = ServiceHost(SERVICE, server, verifier or TokenVerifier.from_settings(mesh, auth, audience=SERVICE),
                           METHOD_SCOPES, metrics=metrics, quiet_methods=INFERENCE_METHODS)
        servicer, kserve = ServingServicer(manager, deployer, fanout=fanout), InferenceServicer(manager)
        host.add(lambda s: serving_pb2_grpc.add_ServingServicer_to_server(servicer, s), ["mlmesh.v1.Serving"])
        host.add(lambda s: service_pb2_grpc.add_GRPCInferenceServiceServicer_to_server(kserve, s), [KSERVE_SERVICE])
    except BaseException:
        await registry.close()
        if triton_server is not None:
            await triton_server.stop()
        raise
    return ServingApp(host=host, manager=manager, deployer=deployer, servicer=servicer, registry=registry,
                      fanout=fanout, triton=triton_server)


async def serve(port: int | None = None) -> None:
    mesh, server, auth = MeshSettings(), ServerSettings(), AuthSettings()
    configure_logging(server.log_level, service=SERVICE)
    setup_tracing(SERVICE)  # before the host is built: its interceptor reads the process's tracer
    endpoint = load_topology(mesh.topology_file).get(SERVICE)
    app = await build_serving(mesh, server, auth)
    try:
        bound = await app.start(server.bind_host, endpoint.port if port is None else port, server.advertise_host)
        log.info("serving on %s:%d (executor mode %s, Triton %s)", server.bind_host, bound,
                 app.deployer.placement.mode, app.triton.url if app.triton else "off")
        await app.run_until_signal()
    finally:
        await app.stop()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m services.serving", description="The mlmesh serving service")
    parser.add_argument("--port", type=int, default=None, help="override the topology's port (0 picks a free one)")
    asyncio.run(serve(parser.parse_args(argv).port))
